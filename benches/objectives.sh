#!/usr/bin/env bash
# KL gap, W2 and training time of each objective on every built-in dataset, several
# seeds: `cnflow train --data NAME --seed S --iters ITERS [objective flags]`, everything
# else at its default, then `cnflow eval --json` of the best model (W2 on 1000 points,
# beside two true samples' W2). Prints one line per run:
# dataset objective seed kl_gap seconds w2 w2_reference.
# OBJECTIVES picks some of "mle cfm ot-cfm cfm+mle" (all four by default).
# Usage: SEEDS="1 2 3" ITERS=2000 benches/objectives.sh BINARY > objectives.log
set -u
BIN=$1; SEEDS=${SEEDS:-"1 2 3"}; ITERS=${ITERS:-2000}
out=${OUT:-/tmp/cnflow-objectives}; mkdir -p $out
for d in 8gaussians checkerboard 2spirals moons circles rings swissroll pinwheel; do
  for s in $SEEDS; do
    for obj in ${OBJECTIVES:-mle cfm ot-cfm cfm+mle}; do
      case $obj in
        mle) flags="--objective mle" ;;
        cfm) flags="--objective cfm" ;;
        ot-cfm) flags="--objective ot-cfm" ;;
        cfm+mle) flags="--objective cfm --then-mle $((ITERS / 4))" ;;
      esac
      line=$($BIN train --data $d --seed $s --iters $ITERS --out $out/run --force $flags 2>&1 | grep '^best test NLL')
      gap=$(echo "$line" | sed -n 's/.*KL gap \([-0-9.]*\) nats.*/\1/p')
      secs=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) s of training.*/\1/p')
      w2=$($BIN eval --model $out/run/model.json --data $d --json 2>/dev/null \
        | sed -n 's/.*"w2":\([-0-9.e]*\),"w2_points":[0-9]*,"w2_reference":\([-0-9.e]*\).*/\1 \2/p')
      echo "$d $obj $s $gap $secs $w2"
    done
  done
done
