#!/usr/bin/env bash
# Decode tokens/s against batch size (issue 19): what continuous batching
# buys while a step's bytes are the weights, read once for every stream.
#
#   bench/batch_sweep.sh BUILD_DIR [CSV_FILE]
#
# Runs `flashgpt bench --preset PRESET (default llama-1b) --device DEVICE
# (default cuda) --dtype DTYPE (default f32) --batch N,N,... --prompt PROMPT
# (default 128) --gen GEN (default 64) --threads THREADS (default 0: every
# core)` once for every N in BATCHES (default "1 2 4 8 16 32 64"; one run,
# so the random weights are made once): for each N, N requests through the
# serving scheduler, the steps in which all N decode timed. Prints
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
list=$(tr -s ' ' ',' <<<"$BATCHES" | sed 's/^,//; s/,$//')
log=$("$FG" bench --preset "$PRESET" --device "$DEVICE" --dtype "$DTYPE" --threads "$THREADS" \
        --batch "$list" --prompt "$PROMPT" --gen "$GEN" --no-check 2>/dev/null) || {
  echo "flashgpt bench --batch $list failed (the points it printed are kept)" >&2
  failed=1
}
# "preset NAME (...): 124.4M parameters, ...", then per N "batch decode: N streams,
# S steps, T tokens in X s = R tokens/s, step M ms ..." and, on the GPU,
# "weight-read floor: ... = F ms a step, ..."
params=$(sed -n 's/.*: \([0-9.]*\)M parameters.*/\1/p' <<<"$log" | head -1)
points=$(awk '
  /^batch decode: / { if (n != "") print n, t, s, f
                      n = $3; t = $0; sub(/.* = /, "", t); sub(/ tokens\/s.*/, "", t)
                      s = $0; sub(/.*, step /, "", s); sub(/ ms.*/, "", s); f = "" }
  /^weight-read floor: / { f = $0; sub(/.* = /, "", f); sub(/ ms a step.*/, "", f) }
  END { if (n != "") print n, t, s, f }' <<<"$log")
for n in $BATCHES; do
  # (read empties the fields when the count has no line)
  read -r _ tps step floor < <(awk -v n="$n" '$1 == n' <<<"$points") || true
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
