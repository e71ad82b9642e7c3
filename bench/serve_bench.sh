#!/usr/bin/env bash
# The server under load (issue 15, item 8): `flashgpt serve` (batch engine)
# on a random-weight checkpoint, driven by bench/serve_load.py at one stream
# and at N concurrent streams; tokens/s and latency percentiles of each, and
# the two ratios the serving target names (N streams' tokens/s over one
# stream's; their p50 inter-token latencies).
#
#   bench/serve_bench.sh BUILD_DIR [CSV_FILE]
#
# Environment: SHAPE (default llama-1b; bench/random_checkpoint.py's shapes),
# DEVICE (cuda), DTYPE (bf16), CONCURRENCY (the levels, default "1 32"; the
# largest is also --max-batch), MAX_TOKENS (per request, default 128),
# ROUNDS (requests per stream, default 2), THREADS (CPU threads, default 0:
# every core), MODEL_DIR (default /tmp/flashgpt-serve-SHAPE-DTYPE: made
# with bench/random_checkpoint.py when missing, kept for the next run),
# PYTHON (an interpreter with NumPy; default the first of python3 and
# /usr/bin/python3 that has it).
#
# The checkpoint is served with the repository's GPT-2 tokenizer (its ids
# are the checkpoint's text rows; random_checkpoint.py). Every request asks
# for exactly MAX_TOKENS greedy tokens (ignore_eos). Before the timed runs
# one untimed round at each level (CUDA graphs of the batch shapes, the
# allocator). Appends a CSV row per level (header when the file is new;
# default bench/results/gpu_serve.csv): date, card, commit, peer version
# ("-"), model, device, dtype, concurrency, requests, max_tokens, tokens/s,
# TTFT p50, inter-token p50 / p90 / p99, request p50 (ms), errors, load1.
# Fails if a request fails, if the server reports KV blocks still in use at
# the end, or if it does not exit 0 on SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: $0 BUILD_DIR [CSV_FILE]}
CSV=${2:-bench/results/gpu_serve.csv}
SHAPE=${SHAPE:-llama-1b}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
CONCURRENCY=${CONCURRENCY:-1 32}
MAX_TOKENS=${MAX_TOKENS:-128}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-0}
FG="$BUILD/flashgpt"
[ -x "$FG" ] || { echo "no $FG: build flashgpt first" >&2; exit 1; }
if [ -z "${PYTHON:-}" ]; then
  for py in python3 /usr/bin/python3; do
    if "$py" -c 'import numpy' >/dev/null 2>&1; then PYTHON=$py; break; fi
  done
fi
[ -n "${PYTHON:-}" ] || { echo "serve_bench: no python3 with NumPy (set PYTHON)" >&2; exit 77; }
# the checkpoint's dtype: the served one, or bf16 for an f32 run (the
# loader widens it; random bits cost nothing to store small)
FILE_DTYPE=$DTYPE
[ "$DTYPE" = f32 ] && FILE_DTYPE=bf16
MODEL_DIR=${MODEL_DIR:-/tmp/flashgpt-serve-$SHAPE-$FILE_DTYPE}
max_c=0
for c in $CONCURRENCY; do [ "$c" -gt "$max_c" ] && max_c=$c; done

. bench/sweep_common.sh

if [ ! -f "$MODEL_DIR/config.json" ] || [ ! -f "$MODEL_DIR/model.safetensors" ]; then
  "$PYTHON" bench/random_checkpoint.py --shape "$SHAPE" --dtype "$FILE_DTYPE" --out "$MODEL_DIR"
fi

work=$(mktemp -d)
server=""
cleanup() { # on exit: a server still running is killed
  if [ -n "$server" ]; then kill -KILL "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

"$FG" serve -m "$MODEL_DIR" -t models/gpt2-tokenizer --engine batch --device "$DEVICE" \
  --dtype "$DTYPE" --threads "$THREADS" --max-batch "$max_c" --port 0 \
  --ctx $((MAX_TOKENS + 64)) >"$work/server.out" 2>"$work/server.err" &
server=$!
port=""
for _ in $(seq 1 1200); do # up to 120 s: the weights load and go to the card
  port=$(sed -n 's|^flashgpt serve: listening on http://[^ ]*:\([0-9]*\)$|\1|p' "$work/server.out")
  [ -n "$port" ] && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$port" ]; then
  echo "serve_bench: the server did not start" >&2
  cat "$work/server.out" "$work/server.err" >&2
  exit 1
fi
url="http://127.0.0.1:$port"
head -1 "$work/server.out"

load() { # CONCURRENCY REQUESTS [serve_load options...]
  local c=$1 n=$2
  shift 2
  "$PYTHON" bench/serve_load.py --url "$url" --concurrency "$c" --requests "$n" \
    --max-tokens "$MAX_TOKENS" --ignore-eos "$@"
}

for c in $CONCURRENCY; do load "$c" "$c" >/dev/null; done # warm-up
[ -s "$CSV" ] || echo "date,card,commit,peer_version,model,device,dtype,concurrency,requests,max_tokens,tokens_per_s,ttft_p50_ms,itl_p50_ms,itl_p90_ms,itl_p99_ms,latency_p50_ms,errors,load1" >"$CSV"
failed=0
for c in $CONCURRENCY; do
  n=$((c * ROUNDS))
  if ! load "$c" "$n" --json "$work/c$c.json"; then failed=1; fi
  [ -s "$work/c$c.json" ] || { failed=1; continue; }
  "$PYTHON" - "$work/c$c.json" "$DATE" "$CARD" "$COMMIT" "$SHAPE" "$DEVICE" "$DTYPE" \
    "$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '')" >>"$CSV" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
date, card, commit, shape, device, dtype, load1 = sys.argv[2:]
print(",".join([date, card, commit, "-", shape, device, dtype, str(r["concurrency"]),
                str(r["requests"]), str(r["max_tokens"]), f"{r['tokens_per_s']:.1f}",
                f"{r['ttft_ms_p50']:.3f}", f"{r['itl_ms_p50']:.3f}", f"{r['itl_ms_p90']:.3f}",
                f"{r['itl_ms_p99']:.3f}", f"{r['latency_ms_p50']:.3f}", str(r["errors"]), load1]))
EOF
done

# the serving target's two ratios: N streams against one
if [ -s "$work/c1.json" ] && [ "$max_c" -gt 1 ] && [ -s "$work/c$max_c.json" ]; then
  "$PYTHON" - "$work/c1.json" "$work/c$max_c.json" <<'EOF'
import json, sys
one, many = (json.load(open(p)) for p in sys.argv[1:])
print(f"serve: {many['concurrency']} streams against 1: "
      f"{many['tokens_per_s'] / one['tokens_per_s']:.2f}x the tokens/s (target >= 15), "
      f"p50 inter-token {many['itl_ms_p50'] / one['itl_ms_p50']:.2f}x (target <= 2)")
EOF
fi

# nothing may stay allocated once every request has ended
metrics=$("$PYTHON" -c "import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1]).read().decode())" \
  "$url/metrics")
used=$(sed -n 's/^flashgpt_kv_blocks_used \([0-9]*\)$/\1/p' <<<"$metrics")
if [ "$used" != 0 ]; then
  echo "serve_bench: the server holds ${used:-an unknown number of} KV blocks after the last request" >&2
  failed=1
fi
kill -TERM "$server"
rc=0
wait "$server" || rc=$?
server=""
if [ "$rc" -ne 0 ]; then
  echo "serve_bench: the server exited $rc on SIGTERM" >&2
  cat "$work/server.err" >&2
  failed=1
fi
exit $failed
