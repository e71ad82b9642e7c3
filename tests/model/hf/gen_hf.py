#!/usr/bin/env python3
"""Writes the tiny Hugging Face checkpoints under tests/model/hf/ and their
expected logits (hf_golden.h), from an independent float64 NumPy transcription
of transformers' Llama / Qwen2 forward pass (half-split rotate_half RoPE,
nn.Linear (out, in) weights, RMSNorm, SwiGLU, GQA) and rope formulas
(default, linear, _compute_llama3_parameters).

torch is not installed here (too large to fetch for this), so the folders are
written by hand in the safetensors format instead of by save_pretrained; the
configs use the keys transformers 4 (rope_theta + rope_scaling) and 5
(rope_parameters) write. Weights are random, rounded to the stored dtype
before the forward pass. Regenerate only with this script:
    python3 tests/model/hf/gen_hf.py
"""
import json
import math
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261203)


def bf16_round(a):
    """float32 -> nearest-even bfloat16, returned as float64 and as raw bits."""
    u = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    bits = u.astype(np.uint16)
    val = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return val, bits


def store(a, dtype):
    """(value as float64, bytes) of array a stored as dtype."""
    if dtype == "BF16":
        val, bits = bf16_round(a)
        return val, bits.astype("<u2").tobytes()
    f = np.asarray(a, dtype=np.float32)
    return f.astype(np.float64), f.astype("<f4").tobytes()


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, shape, bytes), written in this order."""
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def inv_freq(cfg, d):
    theta = cfg["theta"]
    inv = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    kind = cfg.get("scaling")
    if kind == "linear":
        return inv / cfg["factor"]
    if kind == "llama3":
        f, lo, hi, orig = cfg["factor"], cfg["low"], cfg["high"], cfg["orig"]
        wl = 2 * math.pi / inv
        il = np.where(wl > orig / lo, inv / f, inv)
        sm = (orig / wl - lo) / (hi - lo)
        smoothed = (1 - sm) * il / f + sm * il
        medium = ~(wl < orig / hi) & ~(wl > orig / lo)
        return np.where(medium, smoothed, il)
    return inv


def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


def forward(cfg, W, ids):
    C, nh, nkv, L = cfg["hidden"], cfg["heads"], cfg["kv"], cfg["layers"]
    d, T, eps = C // nh, len(ids), cfg["eps"]
    freqs = np.outer(np.arange(T, dtype=np.float64), inv_freq(cfg, d))
    emb = np.concatenate([freqs, freqs], axis=-1)
    cos, sin = np.cos(emb), np.sin(emb)
    x = W["model.embed_tokens.weight"][ids]
    for l in range(L):
        p = "model.layers.%d." % l
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        proj = {}
        for n, heads in (("q", nh), ("k", nkv), ("v", nkv)):
            y = h @ W[p + "self_attn.%s_proj.weight" % n].T
            if p + "self_attn.%s_proj.bias" % n in W:
                y = y + W[p + "self_attn.%s_proj.bias" % n]
            proj[n] = y.reshape(T, heads, d).transpose(1, 0, 2)
        q = proj["q"] * cos + rotate_half(proj["q"]) * sin
        k = proj["k"] * cos + rotate_half(proj["k"]) * sin
        rep = nh // nkv
        k, v = np.repeat(k, rep, axis=0), np.repeat(proj["v"], rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
        s = s + np.triu(np.full((T, T), -np.inf), 1)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        a = (s / s.sum(axis=-1, keepdims=True)) @ v
        x = x + a.transpose(1, 0, 2).reshape(T, nh * d) @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.T


def make(name, cfg, config_json, dtype, shards, tied, biases, ids):
    C, nh, nkv, I, V = cfg["hidden"], cfg["heads"], cfg["kv"], cfg["inner"], cfg["vocab"]
    d = C // nh
    shapes = [("model.embed_tokens.weight", (V, C), 1.0)]
    for l in range(cfg["layers"]):
        p = "model.layers.%d." % l
        shapes += [(p + "input_layernorm.weight", (C,), "norm"),
                   (p + "self_attn.q_proj.weight", (nh * d, C), C ** -0.5),
                   (p + "self_attn.k_proj.weight", (nkv * d, C), C ** -0.5),
                   (p + "self_attn.v_proj.weight", (nkv * d, C), C ** -0.5)]
        if biases:
            shapes += [(p + "self_attn.q_proj.bias", (nh * d,), 0.2),
                       (p + "self_attn.k_proj.bias", (nkv * d,), 0.2),
                       (p + "self_attn.v_proj.bias", (nkv * d,), 0.2)]
        shapes += [(p + "self_attn.o_proj.weight", (C, nh * d), (nh * d) ** -0.5),
                   (p + "post_attention_layernorm.weight", (C,), "norm"),
                   (p + "mlp.gate_proj.weight", (I, C), C ** -0.5),
                   (p + "mlp.up_proj.weight", (I, C), C ** -0.5),
                   (p + "mlp.down_proj.weight", (C, I), I ** -0.5)]
    shapes.append(("model.norm.weight", (C,), "norm"))
    if not tied:
        shapes.append(("lm_head.weight", (V, C), C ** -0.5))
    W, tensors = {}, []
    for tname, shape, scale in shapes:
        if scale == "norm":
            a = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            a = scale * rng.standard_normal(shape)
        W[tname], raw = store(a, dtype)
        tensors.append((tname, dtype, shape, raw))
    folder = os.path.join(HERE, name)
    os.makedirs(folder, exist_ok=True)
    for f in os.listdir(folder):
        os.remove(os.path.join(folder, f))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config_json, f, indent=2)
        f.write("\n")
    if shards == 1:
        write_safetensors(os.path.join(folder, "model.safetensors"), tensors)
    else:
        weight_map = {}
        for k in range(shards):
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, shards)
            part = tensors[k::shards]
            write_safetensors(os.path.join(folder, fname), part)
            for t in part:
                weight_map[t[0]] = fname
        total = sum(len(t[3]) for t in tensors)
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f,
                      indent=2)
            f.write("\n")
    return forward(cfg, W, ids)


def base_config(model_type, cfg, tied):
    return {"model_type": model_type, "architectures": ["X"], "hidden_act": "silu",
            "hidden_size": cfg["hidden"], "num_attention_heads": cfg["heads"],
            "num_key_value_heads": cfg["kv"], "num_hidden_layers": cfg["layers"],
            "intermediate_size": cfg["inner"], "vocab_size": cfg["vocab"],
            "max_position_embeddings": 256, "rms_norm_eps": cfg["eps"],
            "tie_word_embeddings": tied, "attention_dropout": 0.0, "torch_dtype": "float32"}


SHAPE = {"hidden": 32, "heads": 2, "kv": 1, "layers": 2, "inner": 48, "vocab": 40, "eps": 1e-5}
IDS = [1, 7, 3, 39, 0, 22, 15, 8, 30, 2]
cases = []

# Llama 3.x as transformers 5 saves it: theta 500000 and llama3 scaling in
# rope_parameters (original context 64, so that at head_dim 16 the pairs
# fall in all three bands), BF16, three shards, untied head.
llama = dict(SHAPE, theta=500000.0, scaling="llama3", factor=8.0, low=1.0, high=4.0, orig=64)
c = base_config("llama", llama, False)
c.update({"attention_bias": False, "mlp_bias": False, "head_dim": 16,
          "rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0,
                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 64}})
cases.append(("llama3", make("llama3", llama, c, "BF16", 3, False, False, IDS)))

# Qwen2 as transformers 4 saves it: q/k/v biases, tied head, rope_theta at
# the top with linear scaling in rope_scaling, one F32 file.
qwen = dict(SHAPE, theta=1000000.0, scaling="linear", factor=2.0)
c = base_config("qwen2", qwen, True)
c.update({"rope_theta": 1000000.0, "rope_scaling": {"type": "linear", "factor": 2.0},
          "use_sliding_window": False, "sliding_window": 32, "max_window_layers": 2})
cases.append(("qwen2", make("qwen2", qwen, c, "F32", 1, True, True, IDS)))

# Mistral: no window, default RoPE, two F32 shards.
mistral = dict(SHAPE, theta=10000.0)
c = base_config("mistral", mistral, False)
c.update({"rope_theta": 10000.0, "sliding_window": None})
cases.append(("mistral", make("mistral", mistral, c, "F32", 2, False, False, IDS)))

with open(os.path.join(HERE, "hf_golden.h"), "w") as f:
    f.write("/* Generated by tests/model/hf/gen_hf.py: do not edit. Token ids and the\n"
            " * float64 NumPy logits (T, vocab) of each folder, rounded to float. */\n")
    f.write("#define HF_GOLDEN_T %d\n#define HF_GOLDEN_VOCAB %d\n" % (len(IDS), SHAPE["vocab"]))
    f.write("static const int hf_golden_ids[%d] = {%s};\n" % (len(IDS), ", ".join(map(str, IDS))))
    for name, logits in cases:
        body = ",\n    ".join(", ".join("%.9gf" % v for v in row) for row in logits)
        f.write("static const float hf_golden_%s[%d] = {\n    %s};\n" % (name, logits.size, body))
