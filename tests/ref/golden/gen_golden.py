#!/usr/bin/env python3
"""Writes tests/ref/golden/golden_data.h: inputs and expected outputs for the CPU
reference, computed by an independent NumPy implementation in float64.

Inputs are drawn with a fixed seed and rounded to float32 first; outputs are
computed in float64 from those float32 values and stored rounded to float32.
Regenerate only with this script:  python3 tests/ref/golden/gen_golden.py
"""
import os
import numpy as np

rng = np.random.default_rng(20261126)
out = []
ARRAYS = []


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def draw(*shape, scale=1.0, mean=0.0):
    return f32(mean + scale * rng.standard_normal(shape))


def emit(name, arr, ctype="float"):
    flat = np.asarray(arr).ravel()
    if ctype == "float":
        body = ", ".join(np.format_float_positional(np.float32(v), unique=True, trim="0") + "f"
                         if np.isfinite(v) else "NAN" for v in flat.astype(np.float32))
    else:
        body = ", ".join(str(int(v)) for v in flat)
    out.append(f"static const {ctype} golden_{name}[{flat.size}] = {{{body}}};")


def define(name, value):
    out.append(f"#define GOLDEN_{name} {value}")


# ---- independent reference implementations (float64) -------------------------

def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def causal_attention(q, k, v):
    """q (..., Tq, d), k v (..., Tk, d); bottom-right aligned causal mask."""
    tq, tk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(d)
    allowed = np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq)
    s = np.where(allowed, s, -np.inf)
    return softmax(s, -1) @ v


def gqa(q, k, v):
    group = q.shape[0] // k.shape[0]
    return causal_attention(q, np.repeat(k, group, axis=0), np.repeat(v, group, axis=0))


def rope(x, pos, base):
    """x (..., seq, d), interleaved pairs (2j, 2j+1)."""
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = np.asarray(pos, dtype=np.float64)[:, None] * inv[None, :]
    c, s = np.cos(ang), np.sin(ang)
    a, b = x[..., 0::2], x[..., 1::2]
    y = np.empty_like(x)
    y[..., 0::2] = a * c - b * s
    y[..., 1::2] = b * c + a * s
    return y


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return g * (x - mu) / np.sqrt(var + eps) + b


def rms_norm(x, g, eps):
    return g * x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps)


def silu(x):
    return x / (1.0 + np.exp(-x))


def decoder(cfg, w, ids):
    """Whole-sequence forward (no cache): returns (T, vocab) logits."""
    C, nh, nkv = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"]
    d = C // nh
    T = len(ids)
    pos = np.arange(T)
    x = w["wte"][ids] + (w["wpe"][pos] if "wpe" in w else 0.0)
    llama = cfg["arch"] == "llama"
    norm = (lambda x, g, b: rms_norm(x, g, cfg["eps"])) if llama else \
           (lambda x, g, b: layer_norm(x, g, b, cfg["eps"]))
    for L in w["layers"]:
        h = norm(x, L["ln_1_g"], L.get("ln_1_b"))
        qkv = h @ L["c_attn_w"] + L.get("c_attn_b", 0.0)
        q = qkv[:, :nh * d].reshape(T, nh, d).transpose(1, 0, 2)
        k = qkv[:, nh * d:(nh + nkv) * d].reshape(T, nkv, d).transpose(1, 0, 2)
        v = qkv[:, (nh + nkv) * d:].reshape(T, nkv, d).transpose(1, 0, 2)
        if cfg["use_rope"]:
            q, k = rope(q, pos, cfg["rope_base"]), rope(k, pos, cfg["rope_base"])
        a = gqa(q, k, v).transpose(1, 0, 2).reshape(T, nh * d)
        x = x + a @ L["c_proj_w"] + L.get("c_proj_b", 0.0)
        h = norm(x, L["ln_2_g"], L.get("ln_2_b"))
        if llama:
            m = (silu(h @ L["fc_w"]) * (h @ L["up_w"])) @ L["mlp_proj_w"]
        else:
            m = gelu(h @ L["fc_w"] + L["fc_b"]) @ L["mlp_proj_w"] + L["mlp_proj_b"]
        x = x + m
    h = norm(x, w["ln_f_g"], w.get("ln_f_b"))
    return h @ w.get("lm_head", w["wte"]).T


def random_model(cfg, untied):
    C, I, V = cfg["n_embd"], cfg["n_inner"], cfg["vocab"]
    qkv = (cfg["n_head"] + 2 * cfg["n_kv_head"]) * (C // cfg["n_head"])
    llama = cfg["arch"] == "llama"
    w = {"wte": draw(V, C, scale=0.5), "layers": []}
    if cfg.get("wpe"):
        w["wpe"] = draw(cfg["n_ctx"], C, scale=0.2)
    for _ in range(cfg["n_layer"]):
        L = {"ln_1_g": draw(C, mean=1.0, scale=0.1), "c_attn_w": draw(C, qkv, scale=C ** -0.5),
             "c_proj_w": draw(C, C, scale=C ** -0.5), "ln_2_g": draw(C, mean=1.0, scale=0.1),
             "fc_w": draw(C, I, scale=C ** -0.5), "mlp_proj_w": draw(I, C, scale=I ** -0.5)}
        if llama:
            L["up_w"] = draw(C, I, scale=C ** -0.5)
        else:
            for name, n in [("ln_1_b", C), ("c_attn_b", qkv), ("c_proj_b", C), ("ln_2_b", C),
                            ("fc_b", I), ("mlp_proj_b", C)]:
                L[name] = draw(n, scale=0.1)
        w["layers"].append(L)
    w["ln_f_g"] = draw(C, mean=1.0, scale=0.1)
    if not llama:
        w["ln_f_b"] = draw(C, scale=0.1)
    if untied:
        w["lm_head"] = draw(V, C, scale=0.5)
    return w


def emit_model(prefix, cfg, w, ids):
    for key in ["n_layer", "n_embd", "n_head", "n_kv_head", "n_inner", "vocab", "n_ctx", "use_rope"]:
        define(f"{prefix.upper()}_{key.upper()}", int(cfg[key]))
    define(f"{prefix.upper()}_ROPE_BASE", float(cfg["rope_base"]))
    define(f"{prefix.upper()}_T", len(ids))
    for name, arr in w.items():
        if name != "layers":
            emit(f"{prefix}_{name}", arr)
    layer_keys = sorted(w["layers"][0].keys())
    for key in layer_keys:  # stacked over layers: (n_layer, ...)
        emit(f"{prefix}_layers_{key}", np.stack([L[key] for L in w["layers"]]))
    emit(f"{prefix}_ids", np.array(ids), "int")
    emit(f"{prefix}_logits", decoder(cfg, w, ids))


def main():
    # 1. softmax over the middle and the last axis
    x = draw(3, 5, 4, scale=3.0)
    emit("softmax_x", x)
    emit("softmax_axis1", softmax(x, 1))
    emit("softmax_axis2", softmax(x, 2))
    # 3/7. single-head attention, q_len < kv_len
    q, k, v = draw(4, 8), draw(9, 8), draw(9, 8)
    emit("attention_q", q), emit("attention_k", k), emit("attention_v", v)
    emit("attention_out", causal_attention(q, k, v))
    # 5. MHA, q_len == kv_len
    q, k, v = draw(3, 5, 8), draw(3, 5, 8), draw(3, 5, 8)
    emit("mha_q", q), emit("mha_k", k), emit("mha_v", v)
    emit("mha_out", causal_attention(q, k, v))
    # 9. GQA 8 query heads on 2 kv heads
    q, k, v = draw(8, 3, 16), draw(2, 7, 16), draw(2, 7, 16)
    emit("gqa_q", q), emit("gqa_k", k), emit("gqa_v", v)
    emit("gqa_out", gqa(q, k, v))
    # 8. RoPE with large positions and two bases
    x = draw(2, 3, 16)
    pos = [0, 7, 99999]
    emit("rope_x", x), emit("rope_pos", np.array(pos), "int")
    emit("rope_out_base10000", rope(x, pos, 10000.0))
    emit("rope_out_base500", rope(x, pos, 500.0))
    # 6. linear, GELU, LayerNorm, FFN
    x, w, b = draw(3, 7), draw(7, 5), draw(5)
    emit("linear_x", x), emit("linear_w", w), emit("linear_b", b)
    emit("linear_out", x @ w + b)
    x = f32(np.linspace(-6.0, 6.0, 25))
    emit("gelu_x", x), emit("gelu_out", gelu(x))
    x, g, b = draw(4, 10, scale=2.0, mean=1.0), draw(10, mean=1.0, scale=0.2), draw(10, scale=0.2)
    emit("ln_x", x), emit("ln_g", g), emit("ln_b", b)
    emit("ln_out", layer_norm(x, g, b, 1e-5))
    x, w1, b1, w2, b2 = draw(3, 8), draw(8, 32, scale=0.3), draw(32, scale=0.1), draw(32, 8, scale=0.2), draw(8, scale=0.1)
    emit("ffn_x", x), emit("ffn_w_fc", w1), emit("ffn_b_fc", b1), emit("ffn_w_proj", w2), emit("ffn_b_proj", b2)
    emit("ffn_out", gelu(x @ w1 + b1) @ w2 + b2)
    # Llama family ops
    x, g = draw(3, 12, scale=2.0), draw(12, mean=1.0, scale=0.2)
    emit("rms_x", x), emit("rms_g", g), emit("rms_out", rms_norm(x, g, 1e-5))
    x, wg, wu, wd = draw(2, 8), draw(8, 20, scale=0.4), draw(8, 20, scale=0.4), draw(20, 8, scale=0.3)
    emit("swiglu_x", x), emit("swiglu_w_gate", wg), emit("swiglu_w_up", wu), emit("swiglu_w_down", wd)
    emit("swiglu_out", (silu(x @ wg) * (x @ wu)) @ wd)
    # 10-12. whole decoders
    gpt2 = dict(arch="gpt2", n_layer=2, n_embd=16, n_head=4, n_kv_head=2, n_inner=40, vocab=11,
                n_ctx=12, use_rope=1, rope_base=10000.0, eps=1e-5, wpe=True)
    emit_model("gpt2", gpt2, random_model(gpt2, False), list(rng.integers(0, 11, 6)))
    llama = dict(arch="llama", n_layer=2, n_embd=16, n_head=4, n_kv_head=1, n_inner=24, vocab=13,
                 n_ctx=16, use_rope=1, rope_base=500.0, eps=1e-5)
    emit_model("llama", llama, random_model(llama, True), list(rng.integers(0, 13, 5)))

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "golden_data.h"), "w") as f:
        f.write("/* Generated by tests/ref/golden/gen_golden.py (NumPy, float64); do not edit. */\n")
        f.write("#ifndef FLASHGPT_GOLDEN_DATA_H\n#define FLASHGPT_GOLDEN_DATA_H\n\n")
        f.write("\n".join(out) + "\n\n#endif\n")


if __name__ == "__main__":
    main()
