# Shared by the sweep scripts (bench/*_sweep.sh), sourced after `cd` to the
# repository root: the identity every CSV row carries, so bench/plot.py
# can tell runs apart. Sets DATE (UTC, minutes), CARD (the GPU's name from
# nvidia-smi; for DEVICE=cpu/ref, or without a GPU, the CPU's model name)
# and COMMIT (FG_COMMIT when set: scripts/gpu-check passes the prebuilt
# tree's, as a copied working tree may lack .git; else the short hash,
# "+dirty" when the tree has changes).
DATE=$(date -u +%Y-%m-%dT%H:%MZ)
CARD=""
if [ "${DEVICE:-cuda}" = cuda ] || [ "${DEVICE:-cuda}" = auto ]; then
  CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -d ',' || true)
fi
if [ -z "$CARD" ] && [ "${DEVICE:-cuda}" != cuda ]; then
  CARD=$(sed -n 's/^model name[[:space:]]*: *//p' /proc/cpuinfo 2>/dev/null | head -1 | tr -d ',' || true)
fi
[ -n "$CARD" ] || CARD=unknown
if [ -n "${FG_COMMIT:-}" ]; then
  COMMIT=$FG_COMMIT
else
  COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT+dirty"
fi
