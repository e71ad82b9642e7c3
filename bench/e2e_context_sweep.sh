#!/usr/bin/env bash
# End-to-end decode step time against context length (issue 19): how flat
# it stays while the weights dominate, and where attention takes over.
#
#   bench/e2e_context_sweep.sh BUILD_DIR [CSV_FILE]
#
# For each prompt length in PROMPTS (default "128 512 1024 1920"; the
# llama-1b preset's context is 2048), runs `flashgpt bench --preset PRESET
# (default llama-1b) --device DEVICE (default cuda) --dtype DTYPE (default
# f32) --prompt P --gen GEN
# (default 64) --no-check` and takes its decode tokens/s: the mean over GEN
# steps whose context runs from P to P + GEN. Prints one line per point and
# appends a CSV row (header when the file is new; default
# bench/results/gpu_e2e.csv): date, card (nvidia-smi, else "unknown"),
# commit, peer version ("-": the floor, drawn by bench/plot.py from the
# measured copy bandwidth, is the reference here), model, parameters,
# device, batch, prompt, gen, decode tokens/s, step ms, dtype. Each point builds
# its own random weights (some seconds for llama-1b), so a handful of
# points is a minute on a card. PRESET=tiny proves the path on the CUDA
# emulator.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: $0 BUILD_DIR [CSV_FILE]}
CSV=${2:-bench/results/gpu_e2e.csv}
PRESET=${PRESET:-llama-1b}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-f32}
GEN=${GEN:-64}
PROMPTS=${PROMPTS:-128 512 1024 1920}
FG="$BUILD/flashgpt"
[ -x "$FG" ] || { echo "no $FG: build flashgpt first" >&2; exit 1; }

. bench/sweep_common.sh
[ -s "$CSV" ] || echo "date,card,commit,peer_version,model,params,device,batch,prompt,gen,decode_tokens_per_s,step_ms,dtype" >"$CSV"

failed=0
for p in $PROMPTS; do
  if ! log=$("$FG" bench --preset "$PRESET" --device "$DEVICE" --dtype "$DTYPE" --prompt "$p" --gen "$GEN" --no-check 2>/dev/null); then
    echo "prompt $p: flashgpt bench failed" >&2
    failed=1
    continue
  fi
  # "preset NAME (...): 1235.8M parameters, ..." and "decode:  N tokens in T s = R tokens/s"
  params=$(sed -n 's/.*: \([0-9.]*\)M parameters.*/\1/p' <<<"$log" | head -1)
  tps=$(sed -n 's/^decode: *[0-9]* tokens in [0-9.]* s = \([0-9.]*\) tokens\/s.*/\1/p' <<<"$log")
  if [ -z "$params" ] || [ -z "$tps" ]; then
    echo "prompt $p: no decode line in flashgpt bench's output" >&2
    failed=1
    continue
  fi
  row=$(awk -v d="$DATE" -v c="$CARD" -v g="$COMMIT" -v m="$PRESET" -v pm="$params" -v dev="$DEVICE" \
    -v p="$p" -v n="$GEN" -v t="$tps" -v dt="$DTYPE" \
    'BEGIN { printf "%s,%s,%s,-,%s,%.0f,%s,1,%d,%d,%s,%.4f,%s", d, c, g, m, pm * 1e6, dev, p, n, t, 1000 / t, dt }')
  echo "$row" >>"$CSV"
  echo "context $p..$((p + GEN)): $tps tokens/s ($(cut -d, -f12 <<<"$row") ms a step)"
done
exit $failed
