#!/usr/bin/env bash
# flashgpt's fast CPU path (--device cpu) side by side with llama2.c on the
# same machine and the same checkpoint files (issue 16 item 4).
#
#   bench/cpu_peer.sh [BUILD_DIR] [THREADS]
#
# Builds llama2.c's run.c from ../shared/peers/llama2c twice (-Ofast
# -march=native, and the same with -fopenmp), writes random-weight
# checkpoints of the stories15M and stories110M shapes with
# ../shared/peers/llama2c_random_model.py (NumPy), then for each shape:
#  - decode: llama2.c single-threaded and OpenMP on THREADS threads, 256
#    steps from BOS (its own "achieved tok/s"), against `flashgpt bench -m`
#    with a 1-token prompt and 255 greedy decode steps on 1 thread (fg 1t,
#    x 1t against llama2.c's single thread) and on THREADS threads (fg,
#    x omp against its OpenMP build);
#  - prefill: a 256-token prompt in one `flashgpt bench` prefill, against
#    llama2.c's token-by-token loop over 256 tokens (256 / its tok/s, the
#    OpenMP build) and against flashgpt's own decode loop.
# Prints one table; the ratios are flashgpt / llama2.c (higher is faster).
# CSV=FILE also appends one row per measured point to FILE (header written
# when FILE is new; bench/plot.py reads bench/results/*.csv): date, CPU
# model, commit, peer version (sha256 of run.c), the 1-minute load average
# when the point ran, model, parameters, threads, implementation, metric
# (decode or prefill), tokens/s. MODELS picks the shapes (default
# "stories15M stories110M"; stories42M is also known).
# Work files go to ${FG_PEER_DIR:-/tmp/flashgpt-cpu-peer}. BUILD_DIR (default
# build) must hold a built flashgpt. The machine's other load shows in the
# numbers: run it twice.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${2:-$(nproc)}
WORK=${FG_PEER_DIR:-/tmp/flashgpt-cpu-peer}
PEERS=../shared/peers
PYTHON=${PYTHON:-/usr/bin/python3} # the Debian one has python3-numpy
FG="$BUILD/flashgpt"
[ -x "$FG" ] || { echo "no $FG: build flashgpt first" >&2; exit 1; }
mkdir -p "$WORK"

if [ ! -x "$WORK/run" ] || [ ! -x "$WORK/runomp" ]; then
  gcc -Ofast -march=native "$PEERS/llama2c/run.c" -lm -o "$WORK/run"
  gcc -Ofast -fopenmp -march=native "$PEERS/llama2c/run.c" -lm -o "$WORK/runomp"
fi
# name: dim hidden layers heads kv_heads vocab seq_len (peers/README.md)
declare -A SHAPE=([stories15M]="288 768 6 6 6 32000 256" [stories42M]="512 1376 8 8 8 32000 1024"
  [stories110M]="768 2048 12 12 12 32000 1024")
MODELS=${MODELS:-stories15M stories110M}
for name in $MODELS; do
  [ -n "${SHAPE[$name]:-}" ] || { echo "unknown model shape $name" >&2; exit 2; }
  [ -f "$WORK/$name.bin" ] || "$PYTHON" "$PEERS/llama2c_random_model.py" "$WORK/$name.bin" ${SHAPE[$name]} >/dev/null
done

l2c_toks() { # binary model -> llama2.c's achieved tok/s over 256 steps from BOS
  "$@" -z "$PEERS/llama2c/tokenizer.bin" -t 0 -n 256 2>&1 >/dev/null |
    sed -n 's/.*achieved tok\/s: \([0-9.]*\).*/\1/p'
}
fg_field() { # field (prefill|decode) then flashgpt bench args -> tokens/s
  local field=$1
  shift
  "$FG" bench "$@" --device cpu --threads "${THREADS}" --no-check 2>/dev/null |
    sed -n "s/^$field: *[0-9]* tokens in [0-9.]* s = \([0-9.]*\) tokens\/s.*/\1/p"
}

CSV=${CSV:-}
if [ -n "$CSV" ]; then
  # Metadata for every row: what ran where, so files from different days and
  # machines can sit side by side under bench/results/.
  DATE=$(date -u +%Y-%m-%dT%H:%MZ)
  CPU=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo | head -1 | tr -d ',')
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT+dirty"
  PEER="llama2.c run.c sha256 $(sha256sum "$PEERS/llama2c/run.c" | cut -c1-12)"
  [ -s "$CSV" ] || echo "date,machine,commit,peer_version,load1,model,params,threads,impl,metric,tokens_per_s" >"$CSV"
fi
csv_row() { # model params threads impl metric value
  [ -n "$CSV" ] || return 0
  echo "$DATE,$CPU,$COMMIT,$PEER,$(cut -d' ' -f1 /proc/loadavg),$1,$2,$3,$4,$5,$6" >>"$CSV"
}
params_of() { # dim hidden layers heads kv_heads vocab seq_len -> parameter count (shared classifier)
  awk -v d="$1" -v h="$2" -v l="$3" -v nh="$4" -v kv="$5" -v v="$6" \
    'BEGIN { printf "%d", v * d + l * (2 * d * d + 2 * d * d * kv / nh + 3 * d * h + 2 * d) + d }'
}

printf '%-12s %8s %8s %8s %7s %8s %7s | %11s %11s %8s %8s\n' shape "l2c 1t" "l2c omp" "fg 1t" \
  "x 1t" "fg" "x omp" "fg prefill" "l2c 256 tb" "x l2c" "x own"
for name in $MODELS; do
  model="$WORK/$name.bin"
  one=$(l2c_toks "$WORK/run" "$model")
  omp=$(OMP_NUM_THREADS=$THREADS l2c_toks "$WORK/runomp" "$model")
  dec1=$(THREADS=1 fg_field decode -m "$model" --prompt 1 --gen 255)
  dec=$(fg_field decode -m "$model" --prompt 1 --gen 255)
  pre=$(fg_field prefill -m "$model" --prompt 256 --gen 0)
  params=$(params_of ${SHAPE[$name]})
  csv_row "$name" "$params" 1 llama2.c decode "$one"
  csv_row "$name" "$params" "$THREADS" llama2.c decode "$omp"
  csv_row "$name" "$params" 1 flashgpt decode "$dec1"
  csv_row "$name" "$params" "$THREADS" flashgpt decode "$dec"
  csv_row "$name" "$params" "$THREADS" flashgpt prefill "$pre"
  awk -v n="$name" -v one="$one" -v omp="$omp" -v dec1="$dec1" -v dec="$dec" -v pre="$pre" 'BEGIN {
    # prefill speed-ups: time of 256 tokens one at a time / time of one 256-token prefill
    printf "%-12s %8.1f %8.1f %8.1f %6.2fx %8.1f %6.2fx | %9.1f/s %9.1f/s %7.1fx %7.1fx\n",
      n, one, omp, dec1, dec1 / one, dec, dec / omp, pre, omp, pre / omp, pre / dec }'
done
echo "tokens/s; $THREADS threads for llama2.c OpenMP and flashgpt; $(nproc) online cores;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
