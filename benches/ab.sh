#!/usr/bin/env bash
# Interleaved A/B of two cnflow binaries: reference and default training iterations,
# density and sampling of 10^4 points. Prints one line per measurement.
# Usage: REPS=7 benches/ab.sh BINARY_A BINARY_B > ab.log   (about 3 minutes at REPS=7;
# run it twice with the binaries swapped, since the first of each pair runs cold)
set -u
A=$1; B=$2; REPS=${REPS:-5}
out=${AB_OUT:-/tmp/cnflow-ab}; mkdir -p $out
med() { sort -n | awk '{a[NR]=$1} END {print (NR%2? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# median ms/iter of metrics.csv (column 'seconds'), skipping the first 10 iterations
iter_ms() { awk -F, 'NR==1{for(i=1;i<=NF;i++) if($i=="seconds") c=i; next} NR>11{print $c*1000}' "$1/metrics.csv" | med; }
nfe() { awk -F, 'NR==1{for(i=1;i<=NF;i++){if($i=="nfe_forward") f=i; if($i=="nfe_backward") b=i}; next} {sf+=$f; sb+=$b; n++} END {printf "%.1f/%.1f", sf/n, sb/n}' "$1/metrics.csv"; }
$A train --out $out/model --force --iters 300 --eval-every 300 --seed 1 >/dev/null 2>&1
$A datasets 8gaussians -n 10000 --output $out/pts.npy >/dev/null 2>&1
for r in $(seq 1 $REPS); do
  for tag in A B; do
    bin=${!tag}
    $bin train --out $out/ref-$tag --force --iters 200 --eval-every 1000 --seed $r --reference >/dev/null 2>&1
    echo "ref $tag rep $r ms/iter $(iter_ms $out/ref-$tag) nfe $(nfe $out/ref-$tag)"
    $bin train --out $out/def-$tag --force --iters 400 --eval-every 1000 --seed $r >/dev/null 2>&1
    echo "def $tag rep $r ms/iter $(iter_ms $out/def-$tag) nfe $(nfe $out/def-$tag)"
    s=$($bin density --model $out/model/model.json --input $out/pts.npy --output $out/lp-$tag.npy --rtol 1e-5 --atol 1e-5 2>&1 | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')
    echo "density $tag rep $r s $s"
    s=$($bin sample --model $out/model/model.json -n 10000 --output $out/s-$tag.npy --rtol 1e-5 --atol 1e-5 2>&1 | sed -n 's/.* in \([0-9.]*\) s .*/\1/p')
    echo "sample $tag rep $r s $s"
  done
done
cmp $out/lp-A.npy $out/lp-B.npy && echo "density outputs identical"
cmp $out/s-A.npy $out/s-B.npy && echo "sample outputs identical"
