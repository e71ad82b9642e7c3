#!/usr/bin/env python3
"""Charts of how cost grows with the work (issue 19), from bench/results/*.csv.

    python3 bench/plot.py [--results DIR] [--out DIR]

Reads every CSV file under --results (default bench/results next to this
script) and writes PNG charts to --out (default: the same folder). Files are
told apart by their header, so any file name works:

- CPU decode (bench/cpu_peer.sh with CSV=...): columns date, machine,
  commit, peer_version, load1, model, params, threads, impl, metric,
  tokens_per_s -> cpu_decode.png: decode tokens/s against threads and
  against model size, flashgpt --device cpu against llama2.c.
- GPU attention (bench_attention / sdpa_peer.py with --csv): columns date,
  card, commit, peer_version, sweep, impl, dtype, B, Hq, Hkv, S, kv, D, ms,
  value, unit -> gpu_prefill.png (TFLOP/s against sequence length, the
  measured SGEMM throughput as a line) and gpu_decode.png (GB/s against kv
  length, the measured copy bandwidth as a line).
- GPU end to end (bench/e2e_context_sweep.sh): columns date, card, commit,
  peer_version, model, params, device, batch, prompt, gen,
  decode_tokens_per_s, step_ms, dtype -> gpu_e2e_context.png: decode step
  time against context, with the weight-read floor (weight bytes over the
  measured copy bandwidth) when a copy ceiling of the same card exists.

Aggregation: the CPU rows of every run on the newest run's machine are
pooled; a point is drawn at the median with a bar from the lowest to the
highest run (the machine is shared, so runs differ; the load averages are
in the title). GPU rows come from the newest run's card, the newest row of
each point. A chart without data is skipped with a note on stdout; a file
with an unknown header is named and ignored. Needs matplotlib (Debian:
python3-matplotlib); the rest is the standard library.
"""
import argparse
import csv
import glob
import os
import statistics
import sys
import textwrap

CPU_COLS = {"machine", "load1", "model", "params", "threads", "impl", "metric", "tokens_per_s"}
ATTN_COLS = {"card", "sweep", "impl", "dtype", "B", "Hq", "Hkv", "S", "kv", "D", "ms", "value"}
E2E_COLS = {"card", "model", "params", "prompt", "gen", "decode_tokens_per_s", "step_ms"}
BATCH_COLS = {"card", "model", "device", "dtype", "batch", "tokens_per_s", "step_ms", "floor_ms"}


def read_results(folder):
    """(cpu rows, attention rows, e2e rows, batch rows): lists of dicts, one per CSV row."""
    cpu, attn, e2e, batch = [], [], [], []
    for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            continue
        cols = set(rows[0].keys())
        if CPU_COLS <= cols:
            cpu += rows
        elif ATTN_COLS <= cols:
            attn += rows
        elif E2E_COLS <= cols:
            e2e += rows
        elif BATCH_COLS <= cols:
            batch += rows
        else:
            print("plot.py: %s: unknown columns, ignored" % path)
    return cpu, attn, e2e, batch


def newest(rows, field):
    """The value of field in the row with the latest date (ISO dates sort)."""
    return max(rows, key=lambda r: r["date"])[field]


def latest_per_key(rows, key):
    """The newest row for each key(row)."""
    best = {}
    for r in rows:
        k = key(r)
        if k not in best or r["date"] >= best[k]["date"]:
            best[k] = r
    return best


def finish(fig, ax_list, path, note):
    for ax in ax_list:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    lines = textwrap.wrap(note, 170)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.025 * (len(lines) + 1), 1, 1))
    fig.savefig(path, dpi=110)
    print("plot.py: wrote %s" % path)


def plot_cpu(plt, rows, out):
    machine = newest(rows, "machine")
    rows = [r for r in rows if r["machine"] == machine and r["metric"] == "decode"]
    if not rows:
        print("plot.py: no CPU decode rows; cpu_decode.png skipped")
        return
    # (model, impl, threads) -> tokens/s of each run
    runs = {}
    params = {}
    for r in rows:
        runs.setdefault((r["model"], r["impl"], int(r["threads"])), []).append(float(r["tokens_per_s"]))
        params[r["model"]] = int(r["params"])
    models = sorted(params, key=params.get)
    impls = sorted({k[1] for k in runs})
    threads = sorted({k[2] for k in runs})
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    styles = {"flashgpt": ("-", "o"), "llama2.c": ("--", "s")}

    def stats(values):
        med = statistics.median(values)
        return med, med - min(values), max(values) - med

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.6))
    for model in models:
        for impl in impls:
            pts = [(t, stats(runs[(model, impl, t)])) for t in threads if (model, impl, t) in runs]
            if not pts:
                continue
            ls, mk = styles.get(impl, (":", "^"))
            ax_t.errorbar([p[0] for p in pts], [p[1][0] for p in pts],
                          yerr=[[p[1][1] for p in pts], [p[1][2] for p in pts]], capsize=3,
                          linestyle=ls, marker=mk, color=colors[model],
                          label="%s %s (%.0fM)" % (impl, model, params[model] / 1e6))
    ax_t.set_xticks(threads)
    ax_t.set_xlabel("threads")
    ax_t.set_ylabel("decode tokens/s (batch 1)")
    ax_t.set_yscale("log")
    ax_t.set_title("Decode against threads")
    for t in threads:
        for impl in impls:
            pts = [(params[m] / 1e6, stats(runs[(m, impl, t)])) for m in models if (m, impl, t) in runs]
            if not pts:
                continue
            ls, mk = styles.get(impl, (":", "^"))
            ax_m.errorbar([p[0] for p in pts], [p[1][0] for p in pts],
                          yerr=[[p[1][1] for p in pts], [p[1][2] for p in pts]], capsize=3,
                          linestyle=ls, marker=mk, alpha=1.0 if t == threads[-1] else 0.55,
                          label="%s, %d thread%s" % (impl, t, "" if t == 1 else "s"))
    ax_m.set_xscale("log")
    ax_m.set_yscale("log")
    ax_m.set_xticks([params[m] / 1e6 for m in models])
    ax_m.set_xticklabels(["%.0fM\n%s" % (params[m] / 1e6, m) for m in models])
    ax_m.minorticks_off()
    ax_m.set_xlabel("model parameters (millions, fp32 weights)")
    ax_m.set_ylabel("decode tokens/s (batch 1)")
    ax_m.set_title("Decode against model size")
    loads = sorted(float(r["load1"]) for r in rows)
    dates = sorted({r["date"] for r in rows})
    fig.suptitle("flashgpt --device cpu against llama2.c (run.c, -Ofast -march=native; "
                 "OpenMP build above 1 thread)", fontsize=10)
    note = ("%s; %d run(s) %s .. %s, commits %s; peer %s; median of runs, bars span min..max; "
            "1-min load average %.1f..%.1f (shared machine); no memory-bandwidth floor measured"
            % (machine, len(dates), dates[0], dates[-1],
               " ".join(sorted({r["commit"] for r in rows})), newest(rows, "peer_version"),
               loads[0], loads[-1]))
    finish(fig, (ax_t, ax_m), os.path.join(out, "cpu_decode.png"), note)
    plt.close(fig)


def gpu_note(rows, card):
    peers = sorted({r["peer_version"] for r in rows if r["peer_version"] not in ("", "-")})
    dtypes = sorted({r.get("dtype") for r in rows} - {None, ""})
    return "%s; %s; commit %s; peer %s; %s" % (
        card, newest(rows, "date"), " ".join(sorted({r["commit"] for r in rows})),
        ", ".join(peers) or "none", " / ".join(dtypes) or "fp32")


def plot_attention(plt, rows, out):
    if not rows:
        print("plot.py: no GPU attention rows (they await a card: scripts/gpu-check); "
              "gpu_prefill.png and gpu_decode.png skipped")
        return
    card = newest(rows, "card")
    rows = [r for r in rows if r["card"] == card]
    best = latest_per_key(rows, lambda r: (r["sweep"], r["impl"], r["dtype"], r["B"], r["S"],
                                           r["kv"], r["D"]))
    # (sweep, dtype) -> the newest ceiling row: the GEMM one per dtype, the copy one
    ceilings = {(r["sweep"], r["dtype"]): r for r in best.values()
                if r["sweep"].startswith("ceiling_")}
    for sweep, x_field, group_field, group_name, ceiling, ylabel, fname in (
            ("prefill", "S", "D", "head_dim", "ceiling_gemm", "TFLOP/s (causal: half of 4*B*H*S^2*D)",
             "gpu_prefill.png"),
            ("decode", "kv", "B", "batch", "ceiling_copy", "GB/s of K and V read (2*B*Hkv*kv*D*bytes)",
             "gpu_decode.png")):
        pts = [r for r in best.values() if r["sweep"] == sweep]
        if not pts:
            print("plot.py: no %s sweep rows; %s skipped" % (sweep, fname))
            continue
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        series = sorted({(r["impl"], r["dtype"], r[group_field]) for r in pts},
                        key=lambda s: (s[0] != "flashgpt", s[1], int(s[2])))
        for impl, dtype, group in series:
            sel = sorted((int(r[x_field]), float(r["value"])) for r in pts
                         if (r["impl"], r["dtype"], r[group_field]) == (impl, dtype, group))
            ax.plot([p[0] for p in sel], [p[1] for p in sel],
                    linestyle="-" if impl == "flashgpt" else "--",
                    marker="o" if impl == "flashgpt" else "s",
                    label="%s %s, %s %s" % (impl, dtype, group_name, group))
        for (kind, dtype), c in sorted(ceilings.items()):
            if kind != ceiling:
                continue
            ax.axhline(float(c["value"]), color="0.3",
                       linestyle={"fp32": ":", "bf16": "-.", "f16": "--"}.get(dtype, ":"),
                       label="measured %s: %.0f %s" % (
                           ("cuBLAS SGEMM 8192^3" if dtype == "fp32" else
                            "cuBLASLt %s GEMM 8192^3" % dtype) if kind == "ceiling_gemm"
                           else "device copy", float(c["value"]), c["unit"]))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length (tokens)" if sweep == "prefill" else "kv length (keys)")
        ax.set_ylabel(ylabel)
        ax.set_title("Causal prefill attention, H 16, B*S = 16384" if sweep == "prefill"
                     else "GQA decode attention, 32/8 heads, D 128, q_len 1")
        finish(fig, [ax], os.path.join(out, fname), gpu_note(rows, card))
        plt.close(fig)


def plot_e2e(plt, rows, attn, out):
    if not rows:
        print("plot.py: no end-to-end GPU rows (they await a card: bench/e2e_context_sweep.sh); "
              "gpu_e2e_context.png skipped")
        return
    card = newest(rows, "card")
    rows = [r for r in rows if r["card"] == card]
    for r in rows:  # files from before the dtype column were fp32
        r["dtype"] = r.get("dtype") or "f32"
    best = latest_per_key(rows, lambda r: (r["model"], r["dtype"], r["batch"], r["prompt"],
                                           r["gen"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    series = sorted({(r["model"], r["dtype"]) for r in best.values()})
    for model, dtype in series:
        sel = sorted((int(r["prompt"]) + int(r["gen"]) / 2.0, float(r["step_ms"]))
                     for r in best.values() if (r["model"], r["dtype"]) == (model, dtype))
        ax.plot([p[0] for p in sel], [p[1] for p in sel], marker="o",
                label="flashgpt %s %s decode step" % (model, dtype))
    copies = [r for r in attn if r["card"] == card and r["sweep"] == "ceiling_copy"]
    if copies:
        gbps = float(max(copies, key=lambda r: r["date"])["value"])
        for model, dtype in series:
            params = float(next(r["params"] for r in best.values() if r["model"] == model))
            size = 4 if dtype in ("f32", "fp32") else 2
            ax.axhline(params * size / (gbps * 1e9) * 1e3, linestyle=":", color="0.3",
                       label="weight-read floor %s: %.0fM %s params at %.0f GB/s"
                       % (model, params / 1e6, dtype, gbps))
    else:
        print("plot.py: no copy ceiling for %s; the weight-read floor is left out" % card)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("context length (tokens; the middle of each timed decode window)")
    ax.set_ylabel("decode step time (ms, batch 1)")
    ax.set_title("End-to-end decode step against context")
    finish(fig, [ax], os.path.join(out, "gpu_e2e_context.png"), gpu_note(rows, card))
    plt.close(fig)


def plot_batch(plt, rows, out):
    """One chart per device kind (cuda -> gpu_batch.png, cpu -> cpu_batch.png)."""
    for device, fname in (("cuda", "gpu_batch.png"), ("cpu", "cpu_batch.png")):
        sel = [r for r in rows if r["device"] == device]
        if not sel:
            print("plot.py: no %s batch rows (bench/batch_sweep.sh%s); %s skipped"
                  % (device, "; they await a card" if device == "cuda" else " DEVICE=cpu", fname))
            continue
        card = newest(sel, "card")
        sel = [r for r in sel if r["card"] == card]
        best = latest_per_key(sel, lambda r: (r["model"], r["dtype"], r["threads"], r["batch"],
                                              r["prompt"], r["gen"]))
        fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(11, 4.6))
        series = sorted({(r["model"], r["dtype"], r["threads"], r["prompt"], r["gen"])
                         for r in best.values()})
        for model, dtype, threads, prompt, gen in series:
            pts = sorted((int(r["batch"]), float(r["tokens_per_s"]), float(r["step_ms"]),
                          float(r["floor_ms"]) if r["floor_ms"] else None)
                         for r in best.values()
                         if (r["model"], r["dtype"], r["threads"], r["prompt"], r["gen"]) ==
                         (model, dtype, threads, prompt, gen))
            label = "flashgpt %s %s, prompt %s + %s%s" % (
                model, dtype, prompt, gen, "" if device == "cuda" else
                ", %s threads" % ("all" if threads == "0" else threads))
            line = ax_t.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
            ax_s.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=label,
                      color=line[0].get_color())
            floor = [(p[0], p[0] / p[3] * 1e3) for p in pts if p[3]]
            if floor:
                ax_t.plot([p[0] for p in floor], [p[1] for p in floor], linestyle=":",
                          color=line[0].get_color(),
                          label="weight-read floor %s %s (batch / floor step)" % (model, dtype))
        for ax in (ax_t, ax_s):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("streams decoding together (batch)")
        ax_t.set_yscale("log")
        ax_t.set_ylabel("decode tokens/s (all streams)")
        ax_t.set_title("Throughput against batch size")
        ax_s.set_ylim(bottom=0)
        ax_s.set_ylabel("step time = inter-token latency (ms)")
        ax_s.set_title("Step time against batch size")
        fig.suptitle("flashgpt serving scheduler (continuous batching), --device %s" % device,
                     fontsize=10)
        loads = sorted(float(r["load1"]) for r in best.values() if r.get("load1"))
        note = "%s; %s; commit %s; reference: the weight-read floor%s" % (
            card, newest(sel, "date"), " ".join(sorted({r["commit"] for r in sel})),
            "" if device == "cuda" else
            " (not measured on the CPU); shared machine%s" % (
                ", 1-min load average %.1f..%.1f" % (loads[0], loads[-1]) if loads else ""))
        finish(fig, (ax_t, ax_s), os.path.join(out, fname), note)
        plt.close(fig)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(here, "results"),
                    help="folder of CSV files (default bench/results)")
    ap.add_argument("--out", help="folder for the PNGs (default: --results)")
    args = ap.parse_args()
    out = args.out or args.results
    if not os.path.isdir(args.results):
        sys.exit("plot.py: no folder %s" % args.results)
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError as e:
        sys.exit("plot.py: matplotlib is not available (apt-get install python3-matplotlib): %s" % e)
    os.makedirs(out, exist_ok=True)
    cpu, attn, e2e, batch = read_results(args.results)
    if cpu:
        plot_cpu(plt, cpu, out)
    else:
        print("plot.py: no CPU rows (bench/cpu_peer.sh with CSV=...); cpu_decode.png skipped")
    plot_attention(plt, attn, out)
    plot_e2e(plt, e2e, attn, out)
    plot_batch(plt, batch, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
