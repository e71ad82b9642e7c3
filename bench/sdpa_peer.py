#!/usr/bin/env python3
"""PyTorch SDPA peer for bench/bench_attention.c.

Times torch.nn.functional.scaled_dot_product_attention in fp32 (or, with
--dtype bf16|f16, in that type, as bench_attention --dtype does) on the same
shapes with the same method (CUDA events around each call, warm-up, median of
--runs calls, inputs rotated among enough buffer sets to exceed 4x a 50 MB
L2; each call queued behind a GPU hold of --hold-us, default 1000, so the
events time the GPU's work and not the host's dispatch; torch.cuda._sleep
is the hold here, calibrated once; call_ms is a call on an idle stream,
host included), prints one line per case in bench_attention's format prefixed with
"peer", and, given bench_attention's output (--ours FILE, or "-" for stdin),
one "ratio" line per case: ratio = our throughput / peer throughput
(= peer ms / our ms; above 1 means flashgpt is faster), then a short table.

Alignment: prefill uses is_causal=True with q_len == kv_len, where PyTorch's
top-left causal mask equals flashgpt's bottom-right one; decode (q_len 1)
needs no mask. GQA: enable_gqa=True where this PyTorch has it, else K/V are
expanded with repeat_interleave once, outside the timed region (noted as
"gqa=repeat"; the peer then reads 4x the K/V bytes, while GB/s is still
counted on the un-replicated bytes so that ratios compare times).
TF32 is disabled so the peer computes in fp32 like flashgpt. Every table run
first times a device-to-device copy of 1 GiB (a line "peer copy bytes=...
gbps=...", GB/s counting the read and the write), as bench_attention does.

Sweeps for charts (issue 19; bench/plot.py draws them), instead of the
table: --sweep-prefill and --sweep-decode time the same points as
bench_attention's options of those names (SWEEP_SEQS / SWEEP_KVS below);
--csv FILE appends one row per point in bench_attention's CSV columns, the
peer version being "torch <version>".

Batched decode (bench_attention's batched lines, same shapes): q (B, 32, 1,
128), K/V (B, 8, kv, 128) in --dtype f32|bf16|f16 (TF32 off for f32), one
SDPA call for the batch; the mixed case (key counts 4096 .. 32768 in one
batch, which SDPA cannot take in one call) is one call per sequence over
its own keys, all timed together. GB/s counts the same bytes as ours, and
copy_pct relates it to a 1 GiB device-to-device copy (GB/s counting read
and write) measured at the start of the run ("peer copy" line).

Usage: sdpa_peer.py [--runs N] [--ours FILE|-] [--only prefill|decode] [--hold-us N]
                    [--sweep-prefill] [--sweep-decode] [--csv FILE] [--commit ID]
                    [--dtype f32|bf16|f16]
"""
import datetime
import argparse
import re
import sys
import time

CASES = [
    ("prefill", 8, 16, 16, 1024, 1024, 64),
    ("prefill", 4, 16, 16, 4096, 4096, 64),
    ("prefill", 2, 16, 16, 8192, 8192, 128),
    ("prefill", 4, 32, 32, 4096, 4096, 128),
    ("decode", 1, 32, 8, 1, 4096, 128),
    ("decode", 8, 32, 8, 1, 4096, 128),
    ("decode", 1, 32, 8, 1, 32768, 128),
    ("decode", 8, 32, 8, 1, 32768, 128),
]
# Batched decode: bench_attention.c's batch_cases, kept identical:
# (B, Hq, Hkv, D, capacity, mixed); mixed: sequence b has capacity*(b+1)//B keys.
BATCH_CASES = [
    (1, 32, 8, 128, 4096, False),
    (8, 32, 8, 128, 4096, False),
    (1, 32, 8, 128, 32768, False),
    (8, 32, 8, 128, 32768, False),
    (8, 32, 8, 128, 32768, True),
]
ELEM_BYTES = {"f32": 4, "bf16": 2, "f16": 2}
# The sweep points: bench_attention.c's sweep_cases, kept identical.
SWEEP_SEQS = [512, 1024, 2048, 4096, 8192, 16384]
SWEEP_KVS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072]
SWEEP_PREFILL_TOKENS = 16384  # B*S per prefill point
CSV_HEADER = "date,card,commit,peer_version,sweep,impl,dtype,B,Hq,Hkv,S,kv,D,ms,value,unit"


def sweep_cases(kind):
    """Prefill: H 16, B*S = 16384 tokens, at D 64 then 128; decode: GQA 32/8,
    D 128, batch 1 then 8."""
    if kind == "prefill":
        return [("prefill", max(1, SWEEP_PREFILL_TOKENS // s), 16, 16, s, s, d)
                for d in (64, 128) for s in SWEEP_SEQS]
    return [("decode", b, 32, 8, 1, kv, 128) for b in (1, 8) for kv in SWEEP_KVS]


ROTATE_BYTES = 200 << 20
MAX_SETS = 16
MAX_TOTAL_BYTES = 24 << 30
WARMUP = 3


def case_key(kind, B, Hq, Hkv, S, kv, D):
    if kind == "prefill":
        return "prefill B=%d H=%d S=%d D=%d" % (B, Hq, S, D)
    return "decode B=%d Hq=%d Hkv=%d D=%d kv=%d" % (B, Hq, Hkv, D, kv)


# --dtype: the torch type, its bytes, and the CSV / header label
DTYPES = {"f32": ("float32", 4, "fp32"), "bf16": ("bfloat16", 2, "bf16"),
          "f16": ("float16", 2, "f16")}


def throughput(kind, B, Hq, Hkv, S, kv, D, ms, elem=4):
    if kind == "prefill":
        return "tflops", 4.0 * B * Hq * S * S * D / 2.0 / (ms * 1e-3) / 1e12
    return "gbps", 2.0 * B * Hkv * kv * D * elem / (ms * 1e-3) / 1e9


def copy_bandwidth(torch, runs, nbytes=1 << 30):
    """(median ms, GB/s counting read and write) of a device-to-device copy."""
    src = torch.ones(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    times = []
    for r in range(-WARMUP, runs):
        start.record()
        dst.copy_(src)
        stop.record()
        stop.synchronize()
        if r >= 0:
            times.append(start.elapsed_time(stop))
    del src, dst
    torch.cuda.empty_cache()
    times.sort()
    mid = len(times) // 2
    ms = times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])
    return ms, 2.0 * nbytes / (ms * 1e-3) / 1e9


def hold_cycles(torch, hold_us):
    """torch.cuda._sleep cycles that last about hold_us on this GPU (0: no hold)."""
    if hold_us <= 0:
        return 0
    if not hasattr(torch.cuda, "_sleep"):
        sys.exit("sdpa_peer.py: this PyTorch has no torch.cuda._sleep; use --hold-us 0")
    probe = 10 ** 6
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    torch.cuda._sleep(probe)  # warm-up
    start.record()
    torch.cuda._sleep(probe)
    stop.record()
    stop.synchronize()
    return max(1, int(probe * hold_us / (start.elapsed_time(stop) * 1000.0)))


def time_case(torch, F, case, runs, has_gqa, hold_us, cycles, dtype="f32"):
    """(median ms with the hold, calls whose dispatch outlasted it, median ms
    of a call on an idle stream)."""
    kind, B, Hq, Hkv, S, kv, D = case
    tname, elem, _ = DTYPES[dtype]
    tdtype = getattr(torch, tname)
    set_bytes = elem * (2 * B * Hq * S * D + 2 * B * Hkv * kv * D)
    n_sets = max(2, min(MAX_SETS, -(-ROTATE_BYTES // set_bytes)))
    while n_sets > 1 and n_sets * set_bytes > MAX_TOTAL_BYTES:
        n_sets -= 1
    gen = torch.Generator(device="cuda").manual_seed(1234)
    sets = []
    for _ in range(n_sets):
        q = torch.randn(B, Hq, S, D, device="cuda", dtype=torch.float32, generator=gen).to(tdtype)
        k = torch.randn(B, Hkv, kv, D, device="cuda", dtype=torch.float32, generator=gen).to(tdtype)
        v = torch.randn(B, Hkv, kv, D, device="cuda", dtype=torch.float32, generator=gen).to(tdtype)
        if Hkv != Hq and not has_gqa:
            k = k.repeat_interleave(Hq // Hkv, dim=1)
            v = v.repeat_interleave(Hq // Hkv, dim=1)
        sets.append((q, k, v))
    kwargs = {"is_causal": kind == "prefill"}
    if Hkv != Hq and has_gqa:
        kwargs["enable_gqa"] = True
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)

    def median_ms(sleep):
        times, exposed = [], 0
        with torch.no_grad():
            for r in range(-WARMUP, runs):
                q, k, v = sets[(r + WARMUP) % n_sets]
                t0 = time.perf_counter()
                if sleep:
                    torch.cuda._sleep(sleep)
                start.record()
                out = F.scaled_dot_product_attention(q, k, v, **kwargs)
                stop.record()
                if sleep and r >= 0 and (time.perf_counter() - t0) * 1e6 >= hold_us:
                    exposed += 1
                stop.synchronize()
                if r >= 0:
                    times.append(start.elapsed_time(stop))
        if not torch.isfinite(out).all():
            raise RuntimeError("non-finite SDPA output")
        times.sort()
        mid = len(times) // 2
        return (times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])), exposed

    ms, exposed = median_ms(cycles)
    call_ms = median_ms(0)[0] if cycles else None
    del sets
    torch.cuda.empty_cache()
    return ms, exposed, call_ms


def parse_ours(text):
    ours = {}
    for line in text.splitlines():
        m = re.match(r"^((?:prefill|decode)\b.*?) ms=([0-9.eE+-]+)", line.strip())
        if m:
            ours[m.group(1)] = float(m.group(2))
    return ours


def batch_lens(case):
    B, _, _, _, cap, mixed = case
    return [cap * (b + 1) // B for b in range(B)] if mixed else [cap] * B


def batch_key(case, dtype):
    B, Hq, Hkv, D, cap, mixed = case
    lens = batch_lens(case)
    kv = "mixed%d-%d" % (lens[0], lens[-1]) if mixed else "%d" % cap
    return "decode dtype=%s B=%d Hq=%d Hkv=%d D=%d kv=%s" % (dtype, B, Hq, Hkv, D, kv)


def time_batch_case(torch, F, case, dtype, runs, has_gqa, hold_us, cycles):
    """Median ms of one batched decode case (the method of time_case)."""
    B, Hq, Hkv, D, cap, mixed = case
    tdt = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[dtype]
    lens = batch_lens(case)
    set_bytes = ELEM_BYTES[dtype] * (2 * B * Hq * D + 2 * B * Hkv * cap * D)
    n_sets = max(2, min(MAX_SETS, -(-ROTATE_BYTES // set_bytes)))
    while n_sets > 1 and n_sets * set_bytes > MAX_TOTAL_BYTES:
        n_sets -= 1
    gen = torch.Generator(device="cuda").manual_seed(1234)
    sets = []
    for _ in range(n_sets):
        q = torch.randn(B, Hq, 1, D, device="cuda", dtype=tdt, generator=gen)
        k = torch.randn(B, Hkv, cap, D, device="cuda", dtype=tdt, generator=gen)
        v = torch.randn(B, Hkv, cap, D, device="cuda", dtype=tdt, generator=gen)
        if Hkv != Hq and not has_gqa:
            k = k.repeat_interleave(Hq // Hkv, dim=1)
            v = v.repeat_interleave(Hq // Hkv, dim=1)
        if mixed:  # each sequence's own keys, views of its cache rows
            sets.append([(q[b:b + 1], k[b:b + 1, :, :lens[b]], v[b:b + 1, :, :lens[b]])
                         for b in range(B)])
        else:
            sets.append([(q, k, v)])
    kwargs = {"enable_gqa": True} if Hkv != Hq and has_gqa else {}
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    times, exposed = [], 0
    with torch.no_grad():
        for r in range(-WARMUP, runs):
            calls = sets[(r + WARMUP) % n_sets]
            t0 = time.perf_counter()
            if cycles:
                torch.cuda._sleep(cycles)
            start.record()
            outs = [F.scaled_dot_product_attention(q, k, v, **kwargs) for q, k, v in calls]
            stop.record()
            if cycles and r >= 0 and (time.perf_counter() - t0) * 1e6 >= hold_us:
                exposed += 1
            stop.synchronize()
            if r >= 0:
                times.append(start.elapsed_time(stop))
    if not all(torch.isfinite(o).all() for o in outs):
        raise RuntimeError("non-finite SDPA output")
    del sets
    torch.cuda.empty_cache()
    if exposed:
        print("# warning: %d calls of this case took longer to dispatch than the %d us hold"
              % (exposed, hold_us))
    times.sort()
    mid = len(times) // 2
    return times[mid] if len(times) % 2 else 0.5 * (times[mid - 1] + times[mid])


def run_batch_cases(torch, F, args, has_gqa, cycles, copy):
    """One peer line per batched decode case; returns [(key, ms or None)]."""
    rows = []
    for case in BATCH_CASES:
        key = batch_key(case, args.dtype)
        try:
            ms = time_batch_case(torch, F, case, args.dtype, args.runs, has_gqa, args.hold_us,
                                 cycles)
        except Exception as e:  # report the case, keep going
            print("peer %s failed: %s" % (key, str(e).splitlines()[0] if str(e) else type(e).__name__))
            rows.append((key, None))
            continue
        B, Hq, Hkv, D, cap, mixed = case
        gbps = 2.0 * Hkv * D * ELEM_BYTES[args.dtype] * sum(batch_lens(case)) / (ms * 1e-3) / 1e9
        print("peer %s ms=%.4f gbps=%.2f copy_pct=%.1f" % (key, ms, gbps, 100.0 * gbps / copy))
        sys.stdout.flush()
        rows.append((key, ms))
    return rows


def run_sweeps(torch, F, args, has_gqa, cycles):
    """The chart sweeps: one peer line per point and, with --csv, one row."""
    csv = None
    if args.csv:
        csv = open(args.csv, "a")
        if csv.tell() == 0:
            csv.write(CSV_HEADER + "\n")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    card = torch.cuda.get_device_name().replace(",", " ")
    peer = "torch %s" % torch.__version__
    cases = []
    if args.sweep_prefill:
        cases += sweep_cases("prefill")
    if args.sweep_decode:
        cases += sweep_cases("decode")
    ok = True
    for case in cases:
        key = case_key(*case)
        try:
            ms = time_case(torch, F, case, args.runs, has_gqa, args.hold_us, cycles,
                           args.dtype)[0]
        except Exception as e:  # report the point, keep going
            print("peer %s failed: %s" % (key, str(e).splitlines()[0] if str(e) else type(e).__name__))
            ok = False
            continue
        unit, value = throughput(*case, ms, DTYPES[args.dtype][1])
        print("peer %s ms=%.4f %s=%.2f" % (key, ms, unit, value))
        sys.stdout.flush()
        if csv:
            kind, B, Hq, Hkv, S, kv, D = case
            csv.write("%s,%s,%s,%s,%s,sdpa,%s,%d,%d,%d,%d,%d,%d,%.5f,%.6g,%s\n"
                      % (date, card, args.commit, peer, kind, DTYPES[args.dtype][2], B, Hq, Hkv,
                         S, kv, D, ms, value, "TFLOP/s" if unit == "tflops" else "GB/s"))
            csv.flush()
    if csv:
        csv.close()
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--ours", help="bench_attention output file, or - for stdin")
    ap.add_argument("--only", choices=["prefill", "decode"])
    ap.add_argument("--hold-us", type=int, default=1000,
                    help="GPU hold before each timed call, microseconds (0: none)")
    ap.add_argument("--sweep-prefill", action="store_true", help="the prefill sweep, not the table")
    ap.add_argument("--sweep-decode", action="store_true", help="the decode sweep, not the table")
    ap.add_argument("--csv", help="append one row per sweep point to this file")
    ap.add_argument("--commit", default="unknown", help="the flashgpt commit, for the CSV rows")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32",
                    help="element type of q, k, v (f32: TF32 off)")
    args = ap.parse_args()
    if "," in args.commit or "\n" in args.commit:
        sys.exit("sdpa_peer.py: --commit must not hold commas or newlines")
    if args.runs < 20:
        sys.exit("sdpa_peer.py: --runs must be at least 20")
    if not 0 <= args.hold_us <= 100000:
        sys.exit("sdpa_peer.py: --hold-us must be 0 to 100000")
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as e:
        sys.exit("sdpa_peer.py: PyTorch is not available: %s" % e)
    if not torch.cuda.is_available():
        sys.exit("sdpa_peer.py: no CUDA device visible to PyTorch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import inspect
    try:
        has_gqa = "enable_gqa" in inspect.signature(F.scaled_dot_product_attention).parameters
    except (TypeError, ValueError):
        has_gqa = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")
    ours = {}
    if args.ours:
        text = sys.stdin.read() if args.ours == "-" else open(args.ours).read()
        ours = parse_ours(text)
    cycles = hold_cycles(torch, args.hold_us)
    print("# sdpa_peer torch %s, %s, %s, gqa=%s, median of %d runs, %s"
          % (torch.__version__, torch.cuda.get_device_name(),
             "fp32 (TF32 off)" if args.dtype == "f32" else DTYPES[args.dtype][2],
             "enable_gqa" if has_gqa else "repeat",
             args.runs, "GPU time (each call queued behind a %d us hold); call_ms: a call on an "
             "idle stream, host dispatch included" % args.hold_us if cycles else
             "each call on an idle stream (host dispatch included)"))
    if args.sweep_prefill or args.sweep_decode:
        return run_sweeps(torch, F, args, has_gqa, cycles)
    copy_ms, copy = copy_bandwidth(torch, args.runs)
    print("peer copy bytes=%d ms=%.4f gbps=%.1f" % (1 << 30, copy_ms, copy))
    rows = []
    for case in CASES:
        if args.only and case[0] != args.only:
            continue
        if case[0] == "decode" and args.dtype != "f32":
            continue  # the table's decode rows are bench_attention's fp32 path
        key = case_key(*case)
        try:
            ms, exposed, call_ms = time_case(torch, F, case, args.runs, has_gqa, args.hold_us,
                                             cycles, args.dtype)
        except Exception as e:  # report the case, keep going
            print("peer %s failed: %s" % (key, str(e).splitlines()[0] if str(e) else type(e).__name__))
            rows.append((key, ours.get(key), None))
            continue
        unit, value = throughput(*case, ms, DTYPES[args.dtype][1])
        print("peer %s ms=%.4f %s=%.2f%s" % (key, ms, unit, value,
                                             " call_ms=%.4f" % call_ms if call_ms else ""))
        if exposed:
            print("# warning: %d calls of this case took longer to dispatch than the %d us "
                  "hold; their host time is in the numbers above" % (exposed, args.hold_us))
        rows.append((key, ours.get(key), ms))
        sys.stdout.flush()
    if args.only != "prefill":
        rows += [(key, ours.get(key), ms)
                 for key, ms in run_batch_cases(torch, F, args, has_gqa, cycles, copy)]
    if ours:
        for key, our_ms, peer_ms in rows:
            if our_ms and peer_ms:
                print("ratio %s ours_ms=%.4f peer_ms=%.4f ratio=%.2f"
                      % (key, our_ms, peer_ms, peer_ms / our_ms))
        print()
        print("%-60s %10s %10s %7s" % ("case", "ours ms", "peer ms", "ratio"))
        for key, our_ms, peer_ms in rows:
            fmt = lambda x: "%10.4f" % x if x else "%10s" % "-"
            ratio = "%7.2f" % (peer_ms / our_ms) if our_ms and peer_ms else "%7s" % "-"
            print("%-60s %s %s %s" % (key, fmt(our_ms), fmt(peer_ms), ratio))
    return 0 if all(r[2] is not None for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
