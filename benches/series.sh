#!/usr/bin/env bash
# Time series side by side with the Python peers, one timing at a time:
#   the spiral demo (cnflow vs diffrax vs torchdiffeq, backprop and adjoint),
#   Lotka-Volterra parameter recovery (cnflow fit-series vs diffrax),
#   the ODE-Net classifier (cnflow vs PyTorch + torchdiffeq, ODE and residual blocks).
# Every line of output is one JSON record. Needs the venv of benches/peers/README.md.
#
#   benches/series.sh [SEEDS] > series.jsonl     (SEEDS: default "0 1 2")
#   PARTS="spiral lv classifier" chooses the sections (default all three).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/peers-venv/bin/python}
SEEDS=${1:-0 1 2}
TORCH_ITERS=${TORCH_ITERS:-30}
PARTS=${PARTS:-spiral lv classifier}
has() { [[ " $PARTS " == *" $1 "* ]]; }
cargo build --release --quiet --bin cnflow --example spiral_fit --example spirals_classifier
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

has spiral && for seed in $SEEDS; do
  for grad in backprop adjoint; do
    flag=""; [ "$grad" = adjoint ] && flag="--adjoint"
    target/release/examples/spiral_fit --seed "$seed" $flag | tail -1
    $PY benches/peers/spiral_diffrax.py --seed "$seed" --iters 1000 --adjoint "$grad" 2>/dev/null
  done
  # torchdiffeq takes 0.3-1.6 s an iteration: a short run gives its time per iteration.
  $PY benches/peers/spiral_torchdiffeq.py --seed "$seed" --iters "$TORCH_ITERS" --adjoint backprop 2>/dev/null
  $PY benches/peers/spiral_torchdiffeq.py --seed "$seed" --iters $((TORCH_ITERS / 3)) --adjoint adjoint 2>/dev/null
done

has lv && for seed in $SEEDS; do
  $PY benches/peers/lv_diffrax.py --seed "$seed" --write-csv "$tmp/lv.csv" 2>/dev/null
  start=$(date +%s.%N)
  target/release/cnflow fit-series --data "$tmp/lv.csv" --mechanistic "dx = a*x - b*x*y; dy = -d*y + g*x*y" \
    --params a=2.2,b=1.0,d=2.0,g=0.4 --lr 0.05 --iters 600 --out "$tmp/run" --force 2>/dev/null
  end=$(date +%s.%N)
  # The first iteration with all four parameters within 1 %, and the training time to it.
  awk -F, -v seed="$seed" -v wall="$(echo "$end - $start" | bc)" 'NR > 1 && !found {
      ok = ($8 > 1.485 && $8 < 1.515) && ($9 > 0.99 && $9 < 1.01) && ($10 > 2.97 && $10 < 3.03) && ($11 > 0.99 && $11 < 1.01)
      if (ok) { found = 1; printf "{\"peer\":\"cnflow fit-series\",\"seed\":%s,\"iters_to_1pct\":%d,\"seconds_to_1pct\":%s,\"command_wall_s_600_iters\":%s}\n", seed, $1, $4, wall }
    }' "$tmp/run/metrics.csv"
  $PY benches/peers/lv_diffrax.py --seed "$seed" 2>/dev/null
done

has classifier && for seed in $SEEDS; do
  for block in ode residual; do
    flag=""; [ "$block" = residual ] && flag="--residual"
    target/release/examples/spirals_classifier --seed "$seed" $flag | tail -1
    $PY benches/peers/classifier_torch.py --seed "$seed" --iters 300 $flag 2>/dev/null
  done
done
