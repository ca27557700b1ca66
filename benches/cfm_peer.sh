#!/usr/bin/env bash
# Flow-matching iterations side by side with torchcfm, on this machine, interleaved:
# batch 256, a 3×64 tanh field on [x, t] (cnflow: --layer concat --hidden 64-64-64),
# float32, CFM and OT-CFM, seeds 1-3. Prints one line per run:
# peer objective seed ms_per_iteration(median)
# Both figures are medians over windows of 200 iterations of the mean time per
# iteration (cnflow: metrics.csv's per-iteration seconds; torchcfm: cfm_torchcfm.py's
# clock), so that OT-CFM's alternating iterations (cnflow pairs two batches' exact
# assignments in one of every two) count at their average.
# Usage: PY=/work/peers-venv/bin/python benches/cfm_peer.sh BINARY [DATASET]
set -eu
BIN=$1; DATA=${2:-8gaussians}; PY=${PY:-python3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d); trap 'rm -rf $tmp' EXIT
$BIN datasets $DATA -n 100000 --seed 99 --output $tmp/points.csv 2>/dev/null
for s in ${SEEDS:-1 2 3}; do
  for obj in cfm ot-cfm; do
    iters=$([ $obj = cfm ] && echo 4000 || echo 1000)
    ot=$([ $obj = cfm ] && echo "" || echo --ot)
    $BIN train --data $DATA --objective $obj --batch 256 --layer concat --hidden 64-64-64 \
      --iters $iters --eval-every $iters --test-size 1000 --seed $s --out $tmp/run --force >/dev/null 2>&1
    ms=$(awk -F, 'NR>1 {s+=$8; if ((NR-1)%200==0) {print 1000*s/200; s=0}}' $tmp/run/metrics.csv \
      | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "cnflow $obj $s $ms"
    ms=$($PY $here/peers/cfm_torchcfm.py --data $tmp/points.csv --iters $iters --seed $s $ot 2>/dev/null \
      | $PY -c 'import json,sys; print(json.load(sys.stdin)["ms_per_iter_median"])')
    echo "torchcfm $obj $s $ms"
  done
done
