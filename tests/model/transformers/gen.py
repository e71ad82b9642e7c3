#!/usr/bin/env python3
"""Tiny Hugging Face checkpoints made by transformers itself, and the logits
transformers computes for them (issue 14, item 8).

Each case builds a model with AutoModelForCausalLM.from_config (random
weights, redrawn at realistic scales so that every weight moves the logits),
saves it with save_pretrained in the stored dtype (F32, BF16 or F16, sharded
where asked), loads it back with from_pretrained in float64 and records the
logits of one fixed prompt. The C tests (tests/model/test_transformers.c)
load each folder with flashgpt and compare.

Nothing is downloaded. Needs torch and transformers (a venv):
    python -m venv /tmp/hfvenv && /tmp/hfvenv/bin/pip install torch transformers
    /tmp/hfvenv/bin/python tests/model/transformers/gen.py
Versions used are written into golden.h.
"""
import json
import os
import shutil

import torch
import transformers
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

HERE = os.path.dirname(os.path.abspath(__file__))
IDS = [1, 7, 3, 39, 0, 22, 15, 8, 30, 2, 11, 5]
VOCAB = 40
torch.manual_seed(20261203)

SMALL = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=256,
             rms_norm_eps=1e-5)


def redraw(model):
    """Weights at the scales of a trained model: norms near 1, matrices
    1/sqrt(fan_in), biases and embeddings O(0.1..1)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or "ln_" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn_like(p))
            elif "embed" in name or name.endswith("wte.weight") or name.endswith("wpe.weight"):
                p.copy_(torch.randn_like(p) * (0.5 if "wpe" in name else 1.0))
            else:
                # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out)
                fan_in = p.shape[0] if name.startswith("transformer.h.") else p.shape[1]
                p.copy_(torch.randn_like(p) * fan_in ** -0.5)


def make(name, config, dtype, shard=None):
    model = AutoModelForCausalLM.from_config(config)
    redraw(model)
    model = model.to(dtype)
    folder = os.path.join(HERE, name)
    shutil.rmtree(folder, ignore_errors=True)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, **kwargs)
    back = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float64)
    back.eval()
    with torch.no_grad():
        logits = back(torch.tensor([IDS])).logits[0]
    return name, logits.numpy()


cases = []
# Llama, default RoPE (theta 10000), GQA 4/2, untied head, F32, one file.
cases.append(make("llama_f32", LlamaConfig(**SMALL, tie_word_embeddings=False), torch.float32))
# Llama 3.x: theta 500000 and llama3 scaling (original context 64, so the
# pairs of head_dim 8 fall in all three bands), BF16 in shards.
cases.append(make("llama3_bf16_sharded", LlamaConfig(
    **SMALL, tie_word_embeddings=False,
    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 64}), torch.bfloat16, "12KB"))
# Llama with linear scaling, tied head, F16.
cases.append(make("llama_linear_f16_tied", LlamaConfig(
    **SMALL, tie_word_embeddings=True,
    rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
    torch.float16))
# Qwen2: q/k/v biases, tied head, theta 1e6, MQA, no window.
cases.append(make("qwen2_f32", Qwen2Config(
    **dict(SMALL, num_key_value_heads=1), tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    use_sliding_window=False), torch.float32))
# Mistral, no window, BF16, sharded.
cases.append(make("mistral_bf16_sharded", MistralConfig(
    **SMALL, tie_word_embeddings=False, sliding_window=None), torch.bfloat16, "16KB"))
# GPT-2 (learned positions, LayerNorm, GELU tanh, tied head), F32 and F16.
gpt2 = dict(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=VOCAB,
            layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0)
cases.append(make("gpt2_f32", GPT2Config(**gpt2), torch.float32))
cases.append(make("gpt2_f16", GPT2Config(**gpt2), torch.float16))
# Sliding windows (issue 14 item 2): Mistral with a window of 4 keys over a
# 12-token prompt; Qwen2 with use_sliding_window on the layers from
# max_window_layers = 1 up (layer 0 full, layer 1 windowed).
cases.append(make("mistral_window4", MistralConfig(
    **SMALL, tie_word_embeddings=False, sliding_window=4), torch.float32))
cases.append(make("qwen2_window3", Qwen2Config(
    **SMALL, tie_word_embeddings=False, use_sliding_window=True, sliding_window=3,
    max_window_layers=1), torch.float32))
# head_dim given explicitly, unlike hidden / heads (32 / 4 = 8 vs 12).
cases.append(make("llama_head_dim12", LlamaConfig(
    **SMALL, head_dim=12, tie_word_embeddings=False), torch.float32))

with open(os.path.join(HERE, "golden.h"), "w") as f:
    f.write("/* Generated by tests/model/transformers/gen.py (torch %s, transformers %s):\n"
            " * do not edit. Logits (T, vocab) transformers computes in float64 for each\n"
            " * folder, rounded to float. */\n" % (torch.__version__, transformers.__version__))
    f.write("#define TF_GOLDEN_T %d\n#define TF_GOLDEN_VOCAB %d\n" % (len(IDS), VOCAB))
    f.write("static const int tf_golden_ids[%d] = {%s};\n" % (len(IDS), ", ".join(map(str, IDS))))
    for name, logits in cases:
        body = ",\n    ".join(", ".join("%.9gf" % v for v in row) for row in logits)
        f.write("static const float tf_golden_%s[%d] = {\n    %s};\n" % (name, logits.size, body))
