#!/usr/bin/env bash
# The speed report of BENCHMARKS.md in one run (about 5 minutes on the 2-core Xeon of
# BENCHMARKS.md, 12 on the older 2-core EPYC):
#   1. training on 8gaussians with cnflow's defaults and with FFJORD's reference
#      configuration: ms per iteration and per evaluation, NFE, GFLOP/s against a
#      measured matrix-product peak, time to a KL gap of 0.1 and 0.03 nats, and the
#      picture of KL gap against wall time (assets/kl-vs-time.png);
#   2. peak memory of adjoint training at two tolerances 10× apart in NFE;
#   3. density and sampling throughput at 10^4, 10^5 and 10^6 points.
#
# Usage: benches/speed.sh [OUT_DIR]     (default runs/speed; REPEAT=3 repeats step 1)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/speed}
repeat=${REPEAT:-1}
mkdir -p "$out"
cargo build --release --bins --examples
cnflow=target/release/cnflow
# FFJORD's toy configuration (DESIGN.md §5); cnflow's defaults differ in tolerance,
# gradient, regularizers and learning-rate schedule.
reference=(--reference)

echo "## machine"
uptime
grep -m1 "model name" /proc/cpuinfo || true
nproc

echo "## 1. training (8gaussians)"
runs=()
for r in $(seq 1 "$repeat"); do
  "$cnflow" train --out "$out/default-$r" --force --eval-every 100 --seed "$r"
  "$cnflow" train --out "$out/reference-$r" --force --iters 3000 --eval-every 250 --seed "$r" "${reference[@]}"
  runs+=("$out/default-$r" "$out/reference-$r")
done
target/release/examples/speed_report assets/kl-vs-time.png "${runs[@]}"

echo "## 2. training memory at two tolerances (100 iterations, one thread)"
for grad in adjoint backprop; do
  for tol in 1e-1 1e-10; do
    echo "--grad $grad, rtol = atol = $tol:"
    "$cnflow" train --out "$out/memory-$grad-$tol" --force --iters 100 --eval-every 100 --test-size 500 \
      --parts 1 --threads 1 --grad "$grad" --rtol "$tol" --atol "$tol" 2>&1 | grep -E "^iter +100 |best test NLL"
  done
done

echo "## 3. density and sampling (default model, f32, exact trace, rtol = atol = 1e-5)"
model="$out/default-1/model.json"
# 10^4 points nine times each, alternating: the seconds each command reports, sorted,
# and their median (the timings at this size move by ±10 % from run to run).
"$cnflow" sample --model "$model" --n 10000 --output "$out/samples-10000.npy" --rtol 1e-5 --atol 1e-5 2>/dev/null
s_times=(); d_times=()
for r in $(seq 1 9); do
  s_times+=("$("$cnflow" sample --model "$model" --n 10000 --output "$out/samples-10000.npy" \
    --rtol 1e-5 --atol 1e-5 2>&1 | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')")
  d_times+=("$("$cnflow" density --model "$model" --input "$out/samples-10000.npy" --output "$out/log-p-10000.npy" \
    --rtol 1e-5 --atol 1e-5 2>&1 | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')")
done
for what in sample density; do
  if [ "$what" = sample ]; then t=("${s_times[@]}"); else t=("${d_times[@]}"); fi
  sorted=$(printf '%s\n' "${t[@]}" | sort -n)
  echo "  $what 10000, nine runs (s): $(echo $sorted) -> median $(echo "$sorted" | sed -n 5p) s"
done
for n in 10000 100000 1000000; do
  /usr/bin/time -f "  sample $n: %e s, peak RSS %M KiB" \
    "$cnflow" sample --model "$model" --n "$n" --output "$out/samples-$n.npy" --rtol 1e-5 --atol 1e-5
  /usr/bin/time -f "  density $n: %e s, peak RSS %M KiB" \
    "$cnflow" density --model "$model" --input "$out/samples-$n.npy" --output "$out/log-p-$n.npy" \
    --rtol 1e-5 --atol 1e-5
done
