#!/usr/bin/env bash
# Decode tokens/s against batch size (issue 19): what continuous batching
# buys while a step's bytes are the weights, read once for every stream.
#
#   bench/batch_sweep.sh BUILD_DIR [CSV_FILE]
#
# For each N in BATCHES (default "1 2 4 8 16 32 64"), runs `flashgpt bench
# --preset PRESET (default llama-1b) --device DEVICE (default cuda) --dtype
# DTYPE (default f32) --batch N --prompt PROMPT (default 128) --gen GEN
# (default 64) --threads THREADS (default 0: every core)`: N requests
# through the serving scheduler, the steps in which all N decode timed. Prints
# one line per point and appends a CSV row (header when the file is new;
# default bench/results/gpu_batch.csv): date, card (the GPU, or the CPU's
# model for DEVICE=cpu), commit, peer version ("-": the reference is the
# weight-read floor), model, parameters, device, dtype, threads, batch,
# prompt, gen, tokens/s, step ms, floor ms (weight bytes over the copy
# bandwidth measured in the same run; empty off the GPU), the 1-minute load
# average when the point ended (a shared machine's CPU numbers need it). bench/plot.py
# draws gpu_batch.png / cpu_batch.png from it. PRESET=tiny proves the path
# on the CUDA emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: $0 BUILD_DIR [CSV_FILE]}
CSV=${2:-bench/results/gpu_batch.csv}
PRESET=${PRESET:-llama-1b}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-f32}
THREADS=${THREADS:-0}
PROMPT=${PROMPT:-128}
GEN=${GEN:-64}
BATCHES=${BATCHES:-1 2 4 8 16 32 64}
FG="$BUILD/flashgpt"
[ -x "$FG" ] || { echo "no $FG: build flashgpt first" >&2; exit 1; }

. bench/sweep_common.sh
[ -s "$CSV" ] || echo "date,card,commit,peer_version,model,params,device,dtype,threads,batch,prompt,gen,tokens_per_s,step_ms,floor_ms,load1" >"$CSV"

failed=0
for n in $BATCHES; do
  if ! log=$("$FG" bench --preset "$PRESET" --device "$DEVICE" --dtype "$DTYPE" --threads "$THREADS" \
               --batch "$n" --prompt "$PROMPT" --gen "$GEN" --no-check 2>/dev/null); then
    echo "batch $n: flashgpt bench failed" >&2
    failed=1
    continue
  fi
  # "preset NAME (...): 124.4M parameters, ...", "batch decode: N streams, S steps,
  # T tokens in X s = R tokens/s, step M ms ..." and "weight-read floor: ... = F ms a step, ..."
  params=$(sed -n 's/.*: \([0-9.]*\)M parameters.*/\1/p' <<<"$log" | head -1)
  tps=$(sed -n 's/^batch decode: .* = \([0-9.]*\) tokens\/s, step \([0-9.]*\) ms.*/\1/p' <<<"$log")
  step=$(sed -n 's/^batch decode: .* = \([0-9.]*\) tokens\/s, step \([0-9.]*\) ms.*/\2/p' <<<"$log")
  floor=$(sed -n 's/^weight-read floor: .* = \([0-9.]*\) ms a step.*/\1/p' <<<"$log")
  if [ -z "$params" ] || [ -z "$tps" ] || [ -z "$step" ]; then
    echo "batch $n: no batch decode line in flashgpt bench's output" >&2
    failed=1
    continue
  fi
  row=$(awk -v d="$DATE" -v c="$CARD" -v g="$COMMIT" -v m="$PRESET" -v pm="$params" -v dev="$DEVICE" \
    -v dt="$DTYPE" -v th="$THREADS" -v b="$n" -v p="$PROMPT" -v k="$GEN" -v t="$tps" -v s="$step" -v f="$floor" \
    -v l="$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo '')" \
    'BEGIN { printf "%s,%s,%s,-,%s,%.0f,%s,%s,%s,%d,%d,%d,%s,%s,%s,%s", d, c, g, m, pm * 1e6, dev, dt, th, b, p, k, t, s, f, l }')
  echo "$row" >>"$CSV"
  echo "batch $n: $tps tokens/s, step $step ms${floor:+ (floor $floor ms)}"
done
exit $failed
