#!/usr/bin/env bash
# The recommended recipe of every built-in dataset, as a user runs it: `cnflow train
# --data NAME --seed S` with no other flag (a dataset's measured recipe, if it has one,
# is applied by train itself), seeds 1-3. Prints one line per run:
# dataset seed best_kl_gap seconds_of_training seconds_to_kl_0.1 seconds_to_kl_0.05
# ("-" when never reached; times from metrics.csv's elapsed column at the evaluations).
# The first seed's model of each dataset is kept as $OUT/NAME.json, and the grid of all
# of them drawn with `cnflow plot --model ...` into $OUT/panels-all.png.
# FLAGS adds flags to every run (a candidate recipe; empty by default).
# Usage: SEEDS="1 2 3" [FLAGS="..."] benches/recipes.sh BINARY > recipes.log
set -u
BIN=$1; SEEDS=${SEEDS:-"1 2 3"}
out=${OUT:-/tmp/cnflow-recipes}; mkdir -p $out
for d in ${DATASETS:-8gaussians checkerboard 2spirals moons circles rings swissroll pinwheel}; do
  for s in $SEEDS; do
    line=$($BIN train --data $d --seed $s ${FLAGS:-} --out $out/run --force 2>&1 | grep '^best test NLL')
    gap=$(echo "$line" | sed -n 's/.*KL gap \([-0-9.]*\) nats.*/\1/p')
    secs=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) s of training.*/\1/p')
    col() { head -1 $out/run/metrics.csv | tr , '\n' | grep -nx "$1" | cut -d: -f1; }
    e=$(col elapsed); k=$(col kl_gap)
    t1=$(awk -F, -v e=$e -v k=$k 'NR>1 && $k!="" && $k<=0.1 {print $e; exit}' $out/run/metrics.csv)
    t05=$(awk -F, -v e=$e -v k=$k 'NR>1 && $k!="" && $k<=0.05 {print $e; exit}' $out/run/metrics.csv)
    echo "$d $s $gap $secs ${t1:--} ${t05:--}"
    [ "$s" = "$(echo $SEEDS | cut -d' ' -f1)" ] && cp $out/run/model.json $out/$d.json
  done
done
models=$(for d in ${DATASETS:-8gaussians checkerboard 2spirals moons circles rings swissroll pinwheel}; do echo $out/$d.json; done)
$BIN plot --model $models --output $out/panels-all.png >&2
