#!/usr/bin/env python3
"""Writes a Hugging Face Llama checkpoint folder with random weights in a
chosen shape and type, for benchmarks that need a model file (the server:
bench/serve_bench.sh) where no real checkpoint can be fetched.

    bench/random_checkpoint.py --shape llama-1b --dtype bf16 --out /tmp/llama-1b

The folder holds config.json and model.safetensors (one file, written in
pieces: host memory stays at a few hundred MB whatever the shape). Shapes
are flashgpt bench's presets (host/cli/cmd_bench.c): llama-1b (Llama-3.2-1B:
16 layers, 2048 wide, 32 query / 8 KV heads, SwiGLU 8192, vocabulary
128256, context 2048), llama-3b, llama-8b, and tiny (2 layers, 128 wide) for
smoke tests (head_dim 32: the 16-bit GPU kernels run it); the classifier is tied to the embedding, as in the presets.

Text: no Llama 3 tokenizer can be fetched, so the model is served with
GPT-2's (models/gpt2-tokenizer: pass -t). Its ids are the first
--text-vocab (default 50257) rows; the embedding rows above are zero, so
with the tied classifier those ids score exactly 0 while the text rows
score at random around 0: greedy decoding picks a text id (the best of
50257 random scores is far above 0), and the classifier's cost is still
the whole vocabulary's. Sample with temperature 0.

Values: bits drawn at random for the sign and mantissa, the exponent fixed
per tensor so that magnitudes lie in [s, 2s) with s the power of two
nearest 1/sqrt(fan-in): activations keep their scale layer after layer
(RMSNorm weights are exactly 1). No NumPy float arithmetic touches the
values, so writing 2.5 GB takes seconds. Needs only NumPy.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

# name: (layers, width, query heads, kv heads, SwiGLU width, vocabulary, context)
SHAPES = {
    "tiny": (2, 128, 4, 2, 256, 50257, 512),
    "llama-1b": (16, 2048, 32, 8, 8192, 128256, 2048),
    "llama-3b": (28, 3072, 24, 8, 8192, 128256, 4096),
    "llama-8b": (32, 4096, 32, 8, 14336, 128256, 4096),
}

# dtype: (safetensors name, torch name, bits, mantissa bits, exponent bias)
TYPES = {
    "bf16": ("BF16", "bfloat16", 16, 7, 127),
    "f16": ("F16", "float16", 16, 10, 15),
    "f32": ("F32", "float32", 32, 23, 127),
}

PIECE = 1 << 24  # elements generated and written at a time


def tensors(shape):
    """(name, rows, columns, fan-in or 0 for a norm) in file order."""
    n_layer, c, hq, hkv, inner, vocab, _ = shape
    d = c // hq
    out = [("model.embed_tokens.weight", vocab, c, c)]
    for i in range(n_layer):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", 1, c, 0),
                (p + "self_attn.q_proj.weight", hq * d, c, c),
                (p + "self_attn.k_proj.weight", hkv * d, c, c),
                (p + "self_attn.v_proj.weight", hkv * d, c, c),
                (p + "self_attn.o_proj.weight", c, hq * d, hq * d),
                (p + "post_attention_layernorm.weight", 1, c, 0),
                (p + "mlp.gate_proj.weight", inner, c, c),
                (p + "mlp.up_proj.weight", inner, c, c),
                (p + "mlp.down_proj.weight", c, inner, inner)]
    out.append(("model.norm.weight", 1, c, 0))
    return out


def random_bits(rng, n, fan_in, dtype):
    """n values of the type as unsigned ints: random sign and mantissa,
    exponent of the power of two nearest 1/sqrt(fan_in); 1.0 when fan_in
    is 0 (norm weights)."""
    _, _, bits, mant, bias = TYPES[dtype]
    utype = np.uint16 if bits == 16 else np.uint32
    one = np.array(bias << mant, dtype=utype)
    if fan_in == 0:
        return np.full(n, one, dtype=utype)
    exponent = bias + round(math.log2(1.0 / math.sqrt(fan_in)))
    keep = np.array((1 << (bits - 1)) | ((1 << mant) - 1), dtype=utype)
    r = np.frombuffer(rng.bytes(n * (bits // 8)), dtype=utype)
    return (r & keep) | np.array(exponent << mant, dtype=utype)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-1b")
    ap.add_argument("--dtype", choices=sorted(TYPES), default="bf16")
    ap.add_argument("--text-vocab", type=int, default=50257,
                    help="ids with nonzero embedding rows (default 50257: GPT-2's tokenizer)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="folder to write (made if missing)")
    args = ap.parse_args()
    shape = SHAPES[args.shape]
    n_layer, c, hq, hkv, inner, vocab, n_ctx = shape
    if not 1 <= args.text_vocab <= vocab:
        ap.error(f"--text-vocab must be 1 .. {vocab} for {args.shape}")
    st_name, torch_name, bits, _, _ = TYPES[args.dtype]
    size = bits // 8

    header, offset = {"__metadata__": {"format": "pt"}}, 0
    layout = tensors(shape)
    for name, rows, cols, _ in layout:
        dims = [cols] if rows == 1 else [rows, cols]
        header[name] = {"dtype": st_name, "shape": dims,
                        "data_offsets": [offset, offset + rows * cols * size]}
        offset += rows * cols * size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned

    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    path = os.path.join(args.out, "model.safetensors")
    with open(path + ".part", "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name, rows, cols, fan_in in layout:
            n = rows * cols
            live = args.text_vocab * cols if name == "model.embed_tokens.weight" else n
            for start in range(0, n, PIECE):
                count = min(PIECE, n - start)
                text_count = max(0, min(count, live - start))
                piece = random_bits(rng, count, fan_in, args.dtype)
                piece[text_count:] = 0  # embedding rows past the text vocabulary
                f.write(piece.tobytes())
    os.replace(path + ".part", path)

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": c, "intermediate_size": inner, "num_hidden_layers": n_layer,
        "num_attention_heads": hq, "num_key_value_heads": hkv, "head_dim": c // hq,
        "vocab_size": vocab, "max_position_embeddings": n_ctx, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": True,
        "bos_token_id": args.text_vocab - 1, "eos_token_id": args.text_vocab - 1, "torch_dtype": torch_name,
    }
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    params = offset // size
    print(f"{args.out}: {args.shape} in {args.dtype}, {params / 1e6:.1f}M parameters, "
          f"{(offset + 8 + len(text)) / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
