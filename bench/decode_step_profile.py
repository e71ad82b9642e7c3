#!/usr/bin/env python3
"""Where one decode step's GPU time goes: reads Nsight Compute's CSV of
`flashgpt bench` (metric gpu__time_duration.sum, one row per kernel launch,
the captured step's graph nodes included) and sums the last decode step,
from its last embed_kernel on, by kernel.

    ncu --clock-control none --metrics gpu__time_duration.sum --csv \\
        flashgpt bench --preset gpt2-124m --device cuda --no-check --gen 2 > step.csv
    python3 bench/decode_step_profile.py step.csv

ncu runs every kernel alone with cold caches, so the sum overstates the
step's time inside the graph; use it to rank kernels, not as the step time.
"""
import csv
import io
import sys
from collections import defaultdict


def launches(path):
    lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    body = [l for l in lines if l.startswith('"')]
    if not body or not body[0].startswith('"ID"'):
        raise SystemExit(f"{path}: no ncu CSV table")
    for row in csv.DictReader(io.StringIO("\n".join(body))):
        if row.get("Metric Name") == "gpu__time_duration.sum":
            yield row["Kernel Name"], float(row["Metric Value"].replace(",", "")) / 1000.0


def main():
    rows = list(launches(sys.argv[1]))
    starts = [i for i, (name, _) in enumerate(rows) if "embed_kernel" in name]
    if not starts:
        raise SystemExit("no embed_kernel launch: not a flashgpt forward")
    step = rows[starts[-1]:]
    by_kernel = defaultdict(lambda: [0, 0.0])
    for name, us in step:
        short = name.split("(")[0].replace("void ", "").replace("<unnamed>::", "")[:100]
        by_kernel[short][0] += 1
        by_kernel[short][1] += us
    total = sum(us for _, us in step)
    print(f"decode step: {len(step)} kernels, {total:.1f} us summed (ncu, cold caches)")
    for name, (count, us) in sorted(by_kernel.items(), key=lambda kv: -kv[1][1]):
        print(f"{us:9.1f} us {count:4d}x  {name}")


if __name__ == "__main__":
    main()
