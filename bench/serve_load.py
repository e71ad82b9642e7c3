#!/usr/bin/env python3
"""Load generator for `flashgpt serve` (or any OpenAI-compatible server).

Keeps --concurrency streaming requests in flight against a running server
(or, with --rate R, starts requests at R per second, Poisson arrivals,
with at most --concurrency in flight) until --requests have completed,
then prints the aggregate throughput
(generated tokens per second of wall time) and latency percentiles:
time to first token (TTFT), inter-token latency (ITL, between consecutive
streamed chunks of one request) and whole-request latency.

Standard library only (http.client, threads), so that the client's own cost
stays small and predictable; each streamed chunk is counted as one token
(flashgpt sends one chunk per token that releases text; the usage counts
at the end, requested with stream_options.include_usage, give the exact
token totals used for tokens/s).

    flashgpt serve -m models/stories260K/stories260K.bin --port 8080 &
    bench/serve_load.py --url http://127.0.0.1:8080 --concurrency 32 \
        --requests 256 --max-tokens 128

Compare --concurrency 1 with --concurrency N for the batching speed-up
(bench/serve_bench.sh does both on a server it starts). The requests are
spread over client processes (--processes), so that one interpreter's
parsing does not pace many fast streams.
--json FILE writes the numbers for bench/RESULTS.md. A benchmark, not a test.
"""
import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
import urllib.parse

PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom went to the park",
           "One day, a bird", "The sun was hot and", "A big red ball", "Mom said", "In the park"]


def percentile(values, p):
    """p-th percentile (0..100) by linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def one_request(url, headers, body):
    """Streams one completion; returns its timings and token count."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    if resp.status != 200:
        err = resp.read().decode("utf-8", "replace")
        conn.close()
        raise RuntimeError(f"HTTP {resp.status}: {err[:200]}")
    stamps, usage, done = [], None, False
    while True:
        line = resp.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise RuntimeError(f"stream error: {chunk['error'].get('message')}")
        if chunk.get("usage"):
            usage = chunk["usage"]
        if any(c.get("text") for c in chunk.get("choices", [])):
            stamps.append(time.perf_counter())
    conn.close()
    if not done:
        raise RuntimeError("the stream ended without [DONE]")
    end = time.perf_counter()
    tokens = usage["completion_tokens"] if usage else len(stamps)
    return {"ttft": stamps[0] - t0 if stamps else None,
            "itl": [b - a for a, b in zip(stamps, stamps[1:])],
            "latency": end - t0, "tokens": tokens}


def run_share(job, indices, concurrency):
    """Serves requests `indices` with `concurrency` threads (one client
    process's share); returns (results, errors)."""
    args, headers, prompts, arrivals, t0 = job
    results, errors, lock = [], [], threading.Lock()
    queue = list(reversed(indices))

    def take():
        """The next request's index, or None when all are taken."""
        with lock:
            return queue.pop() if queue else None

    def serve(i):
        body = {"model": args.model, "prompt": prompts[i % len(prompts)],
                "max_tokens": args.max_tokens, "temperature": args.temperature,
                "seed": i, "stream": True, "stream_options": {"include_usage": True}}
        if args.ignore_eos:
            body["ignore_eos"] = True
        try:
            r = one_request(args.url, headers, body)
            with lock:
                results.append(r)
        except Exception as exc:  # counted and reported, the run goes on
            with lock:
                errors.append(repr(exc))

    def worker():
        while (i := take()) is not None:
            serve(i)

    # one worker at a time waits for the next arrival, then serves it
    start_gate = threading.Lock()

    def paced_worker():
        while True:
            with start_gate:
                i = take()
                if i is None:
                    return
                delay = t0 + arrivals[i] - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            serve(i)

    threads = [threading.Thread(target=paced_worker if arrivals else worker)
               for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080", help="server base URL")
    ap.add_argument("--model", help="model name (default: the server's first in /v1/models)")
    ap.add_argument("--api-key", help="sent as 'Authorization: Bearer KEY'")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight (default 8)")
    ap.add_argument("--requests", type=int, default=64, help="requests in all (default 64)")
    ap.add_argument("--rate", type=float,
                    help="requests per second, Poisson arrivals (default: as fast as --concurrency allows)")
    ap.add_argument("--seed", type=int, default=0, help="arrival times' seed (default 0)")
    ap.add_argument("--max-tokens", type=int, default=128, help="per request (default 128)")
    ap.add_argument("--temperature", type=float, default=0.0, help="default 0 (greedy)")
    ap.add_argument("--prompt", action="append", help="prompt(s) to cycle (default: built in)")
    ap.add_argument("--ignore-eos", action="store_true",
                    help="ask for exactly --max-tokens tokens (a vLLM extension; ignored by servers without it)")
    ap.add_argument("--processes", type=int, default=0,
                    help="client processes sharing the requests (default: one per 4 concurrent "
                         "requests, at most half the cores)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.concurrency < 1 or args.requests < 1 or args.max_tokens < 1 or args.processes < 0:
        ap.error("--concurrency, --requests and --max-tokens must be >= 1, --processes >= 0")
    if args.rate is not None and not args.rate > 0:
        ap.error("--rate must be > 0")

    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    if args.model is None:
        u = urllib.parse.urlsplit(args.url)
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=30)
        conn.request("GET", "/v1/models", headers=headers)
        resp = conn.getresponse()
        models = json.loads(resp.read())
        conn.close()
        if resp.status != 200:
            sys.exit(f"serve_load: GET /v1/models: HTTP {resp.status}: {models}")
        args.model = models["data"][0]["id"]
    prompts = args.prompt or PROMPTS

    # --rate: request i starts at its arrival time (exponential gaps)
    arrivals = None
    if args.rate is not None:
        import random
        rng, t = random.Random(args.seed), 0.0
        arrivals = []
        for _ in range(args.requests):
            arrivals.append(t)
            t += rng.expovariate(args.rate)

    # Client processes: 32 streams at a 1 ms step send 32,000 chunks a
    # second, and every one is read, parsed (4 us of json.loads here) and
    # stamped under one interpreter lock per process: a single process would
    # add its own queueing to the inter-token times it measures. Each
    # process takes every P-th request and its share of the concurrency.
    procs = min(args.processes or max(1, min(args.concurrency // 4, (os.cpu_count() or 2) // 2)),
                args.concurrency, args.requests)
    shares = [(list(range(k, args.requests, procs)), args.concurrency // procs +
               (k < args.concurrency % procs)) for k in range(procs)]
    # the clock starts once the client processes exist (CLOCK_MONOTONIC:
    # one clock for every process)
    if procs == 1:
        t0 = time.perf_counter()
        parts = [run_share((args, headers, prompts, arrivals, t0), *shares[0])]
    else:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            t0 = time.perf_counter()
            job = (args, headers, prompts, arrivals, t0)
            parts = pool.starmap(run_share, [(job, idx, conc) for idx, conc in shares])
    wall = time.perf_counter() - t0
    results = [r for part in parts for r in part[0]]
    errors = [e for part in parts for e in part[1]]

    tokens = sum(r["tokens"] for r in results)
    ttft = [r["ttft"] for r in results if r["ttft"] is not None]
    itl = [x for r in results for x in r["itl"]]
    lat = [r["latency"] for r in results]
    out = {
        "url": args.url, "model": args.model, "concurrency": args.concurrency, "rate": args.rate,
        "requests": args.requests, "completed": len(results), "errors": len(errors),
        "max_tokens": args.max_tokens, "wall_s": wall, "generated_tokens": tokens,
        "tokens_per_s": tokens / wall if wall > 0 else 0.0,
        "requests_per_s": len(results) / wall if wall > 0 else 0.0,
    }
    for name, values in (("ttft_ms", ttft), ("itl_ms", itl), ("latency_ms", lat)):
        for p in (50, 90, 99):
            out[f"{name}_p{p}"] = percentile(values, p) * 1000
        out[f"{name}_mean"] = statistics.fmean(values) * 1000 if values else float("nan")

    pace = f" and {args.rate:g} requests/s" if args.rate else ""
    print(f"{args.url} model {args.model}: {len(results)}/{args.requests} requests at "
          f"concurrency {args.concurrency}{pace}, {len(errors)} errors, {wall:.2f} s")
    print(f"  throughput  {out['tokens_per_s']:10.1f} tokens/s  {out['requests_per_s']:8.2f} requests/s"
          f"  ({tokens} tokens)")
    print(f"  {'':12}{'p50':>10}{'p90':>10}{'p99':>10}{'mean':>10}   (ms)")
    for name, label in (("ttft_ms", "TTFT"), ("itl_ms", "inter-token"), ("latency_ms", "request")):
        print(f"  {label:12}" + "".join(f"{out[f'{name}_{k}']:10.2f}" for k in ("p50", "p90", "p99", "mean")))
    for e in errors[:5]:
        print(f"  error: {e}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
            f.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
