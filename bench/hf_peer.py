#!/usr/bin/env python3
"""Peer for `flashgpt bench --preset gpt2-124m --device cuda`: Hugging Face
transformers' eager GPT-2 generate on the same card, fp32, batch 1.

The GPU machine has no network, so the peer model is built from GPT2Config()
(the 124M shape) with random weights; speed does not depend on the values.
Greedy decoding with a fixed number of new tokens (EOS ignored), the same
prompt and generation lengths as our benchmark, timed with CUDA
synchronisation, median of several runs.

    python3 bench/hf_peer.py [--prompt 128] [--gen 128] [--runs 5] [--ours build/flashgpt]

With --ours it also runs our benchmark in the same process tree (same card,
same moment) and prints the ratio ours / peer for decode tokens/s.
"""
import argparse
import re
import statistics
import subprocess
import sys
import time


def peer_tokens_per_second(prompt_len, gen_len, runs):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).cuda().eval()
    ids = torch.randint(0, model.config.vocab_size, (1, prompt_len), device="cuda")
    mask = torch.ones_like(ids)

    def run(new_tokens):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=model.config.eos_token_id)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    run(8)  # warm-up
    # decode rate: the extra time of gen_len tokens over one token
    t_one = statistics.median(run(1) for _ in range(runs))
    t_all = statistics.median(run(gen_len) for _ in range(runs))
    return (gen_len - 1) / (t_all - t_one), torch.cuda.get_device_name()


def ours_tokens_per_second(binary, prompt_len, gen_len):
    out = subprocess.run([binary, "bench", "--preset", "gpt2-124m", "--device", "cuda",
                          "--dtype", "f32", "--prompt", str(prompt_len), "--gen", str(gen_len)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"decode:\s+\d+ tokens in [\d.]+ s = ([\d.]+) tokens/s", out)
    if not m:
        raise RuntimeError("no decode line in our output:\n" + out)
    return float(m.group(1)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ours", help="path to the flashgpt binary to run for the ratio")
    a = ap.parse_args()
    try:
        peer, card = peer_tokens_per_second(a.prompt, a.gen, a.runs)
    except ImportError as e:
        print(f"hf_peer: cannot run the peer ({e}); install torch and transformers")
        return 2
    print(f"peer  hf-transformers eager gpt2-124m fp32 batch 1 on {card}: decode {peer:.1f} tokens/s")
    if a.ours:
        ours, _ = ours_tokens_per_second(a.ours, a.prompt, a.gen)
        print(f"ours  flashgpt bench gpt2-124m fp32 batch 1: decode {ours:.1f} tokens/s")
        print(f"ratio ours/peer {ours / peer:.2f} (target >= 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
