#!/usr/bin/env bash
# Two demo trainings one after the other vs side by side (the reason scripts/demo.py runs lanes):
#   bash benchmarks/demo_lanes.sh SHARDS [STEPS] [MODE ...]
# SHARDS: a folder with dfew/ and see/ shard sets as `make demo` builds them (runs/demo/shards);
# STEPS: training steps of each run (default 150); MODE: seq (one after the other), par (side by side),
# par1 (side by side, one XLA thread each); default all three. Prints the wall seconds per mode.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARDS=${1:?usage: benchmarks/demo_lanes.sh SHARDS [STEPS] [MODE ...]}
STEPS=${2:-150}
shift $(($# < 2 ? $# : 2))
MODES=("$@")
[ ${#MODES[@]} -gt 0 ] || MODES=(seq par par1)
export TF_CPP_MIN_LOG_LEVEL=3
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
run() {  # run NAME CONFIG DATA
  "$PY" -m fer_jax.train --config "configs/$2.py" --workdir "$WORK/$MODE/$1" --config.data.dir="$SHARDS/$3" \
    --config.train.num_steps="$STEPS" --config.train.eval_every_steps="$STEPS" --no_progress >"$WORK/$MODE-$1.log" 2>&1
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $STEPS steps each"
for MODE in "${MODES[@]}"; do
  SECONDS=0
  case $MODE in
    seq) run dfew demo_dfew dfew; run see demo_see see ;;
    par) run dfew demo_dfew dfew & run see demo_see see & wait ;;
    par1) (export XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
           run dfew demo_dfew dfew & run see demo_see see & wait) ;;
    *) echo "unknown mode $MODE" >&2; exit 2 ;;
  esac
  echo "$MODE: ${SECONDS} s"
done
