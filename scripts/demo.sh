#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: every step is the CLI a user would type on real data.
#   synthesize DFEW + SEE -> build shards -> train MambaFER, MCO-E Net, MCO-E Net RGB-only -> evaluate
#   -> Grad-CAM / expert-usage figures -> runs/demo/report.md + summary.json (+ a summary table)
# Sizes can be shrunk for a quick look: DEMO_DFEW_CLIPS=140 DEMO_SEE_CLIPS=140 DEMO_STEPS=20 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${DEMO_DIR:-runs/demo}
DFEW_CLIPS=${DEMO_DFEW_CLIPS:-700}
SEE_CLIPS=${DEMO_SEE_CLIPS:-560}
STEPS_OVERRIDE=()
if [ -n "${DEMO_STEPS:-}" ]; then
  STEPS_OVERRIDE=(--config.train.num_steps="$DEMO_STEPS" --config.train.eval_every_steps="$DEMO_STEPS")
fi
export TF_CPP_MIN_LOG_LEVEL=3
# evaluate / interpret reuse the evaluation programs that training compiled (persistent XLA cache)
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$OUT/.jax_cache}
# ... including the many sub-second programs of eager initialisation, which the later runs share
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-0}

started=$(date +%s)
SECONDS=0
n=0
step() { n=$((n + 1)); printf '\n\033[1m[demo %d/10 | %4ds] %s\033[0m\n' "$n" "$SECONDS" "$*"; }
cfg() { "$PY" -c "import sys; sys.path.insert(0, '.'); from configs.$1 import get_config; c = get_config(); print($2)"; }

rm -rf "$OUT"
mkdir -p "$OUT"
DFEW_FRAMES=$(cfg demo_dfew c.data.num_frames)
DFEW_STORED=$((DFEW_FRAMES * 2))  # the shards keep 8 frames; the model samples 4 of them
DFEW_SIZE=$(cfg demo_dfew c.data.image_size)
SEE_SIZE=$(cfg demo_see c.data.image_size)

step "synthesize DFEW-layout clips ($DFEW_CLIPS)"
"$PY" -m data_prep.synthesize --kind dfew --out "$OUT/raw/dfew" --clips "$DFEW_CLIPS" --seed 0 --nuisance 0.3
step "synthesize SEE-layout sequences ($SEE_CLIPS)"
"$PY" -m data_prep.synthesize --kind see --out "$OUT/raw/see" --clips "$SEE_CLIPS" --seed 0 --no-raw-events
step "build DFEW shards ($DFEW_STORED frames at ${DFEW_SIZE}px, landmark alignment + enhancement)"
"$PY" -m data_prep.build --dataset dfew --root "$OUT/raw/dfew" --out "$OUT/shards/dfew" \
  --frames "$DFEW_STORED" --size "$DFEW_SIZE" --landmarks "file:$OUT/raw/dfew/landmarks"
step "build SEE shards (${SEE_SIZE}px, RGB + event frames)"
"$PY" -m data_prep.build --dataset see --root "$OUT/raw/see" --out "$OUT/shards/see" --size "$SEE_SIZE"

step "train MambaFER (configs/demo_dfew.py)"
"$PY" -m fer_jax.train --config configs/demo_dfew.py --workdir "$OUT/mambafer" \
  --config.data.dir="$OUT/shards/dfew" "${STEPS_OVERRIDE[@]}"
step "train MCO-E Net, RGB + event (configs/demo_see.py)"
"$PY" -m fer_jax.train --config configs/demo_see.py --workdir "$OUT/mco_e_net" \
  --config.data.dir="$OUT/shards/see" "${STEPS_OVERRIDE[@]}"
step "train MCO-E Net, RGB only (configs/demo_see_rgb.py, paper 2 Table 2 row A)"
"$PY" -m fer_jax.train --config configs/demo_see_rgb.py --workdir "$OUT/mco_e_net_rgb" \
  --config.data.dir="$OUT/shards/see" "${STEPS_OVERRIDE[@]}"

step "evaluate the three runs on the test split"
"$PY" -m fer_jax.evaluate --workdir "$OUT/mambafer" "$OUT/mco_e_net" "$OUT/mco_e_net_rgb"
step "Grad-CAM strips (MambaFER) and expert usage (MCO-E Net)"
"$PY" -m fer_jax.interpret --workdir "$OUT/mambafer" "$OUT/mco_e_net" --clips 0 1 2

step "report"
"$PY" -m fer_jax.report --out "$OUT/report.md" --started "$started" --max-minutes 10 \
  --run mambafer="$OUT/mambafer" --run mco_e_net="$OUT/mco_e_net" --run mco_e_net_rgb="$OUT/mco_e_net_rgb" \
  --target mambafer.uar\>=0.80 --target mco_e_net.uar\>=0.85 \
  --compare-lighting mco_e_net,mco_e_net_rgb,low,0.05
