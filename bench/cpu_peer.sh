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
declare -A SHAPE=([stories15M]="288 768 6 6 6 32000 256" [stories110M]="768 2048 12 12 12 32000 1024")
for name in stories15M stories110M; do
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

printf '%-12s %8s %8s %8s %7s %8s %7s | %11s %11s %8s %8s\n' shape "l2c 1t" "l2c omp" "fg 1t" \
  "x 1t" "fg" "x omp" "fg prefill" "l2c 256 tb" "x l2c" "x own"
for name in stories15M stories110M; do
  model="$WORK/$name.bin"
  one=$(l2c_toks "$WORK/run" "$model")
  omp=$(OMP_NUM_THREADS=$THREADS l2c_toks "$WORK/runomp" "$model")
  dec1=$(THREADS=1 fg_field decode -m "$model" --prompt 1 --gen 255)
  dec=$(fg_field decode -m "$model" --prompt 1 --gen 255)
  pre=$(fg_field prefill -m "$model" --prompt 256 --gen 0)
  awk -v n="$name" -v one="$one" -v omp="$omp" -v dec1="$dec1" -v dec="$dec" -v pre="$pre" 'BEGIN {
    # prefill speed-ups: time of 256 tokens one at a time / time of one 256-token prefill
    printf "%-12s %8.1f %8.1f %8.1f %6.2fx %8.1f %6.2fx | %9.1f/s %9.1f/s %7.1fx %7.1fx\n",
      n, one, omp, dec1, dec1 / one, dec, dec / omp, pre, omp, pre / omp, pre / dec }'
done
echo "tokens/s; $THREADS threads for llama2.c OpenMP and flashgpt; $(nproc) online cores;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)"
