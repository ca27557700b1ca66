#!/usr/bin/env bash
# The stiff test problems side by side, one timing at a time: cnflow's BDF, RODAS4, RADAU5,
# KVAERNO5, TR-BDF2
# and Dopri5 (examples/stiff_benchmark.rs) against SciPy's Radau, BDF and LSODA (analytic
# Jacobians) and diffsol's BDF (pydiffsol), at rtol 1e-3 … 1e-9 with atol = rtol·s and the
# test set's mixed error (benches/peers/stiff_problems.md). One JSON record per line.
#
#   benches/stiff.sh > stiff.jsonl                 (REPEATS: default 3; medians)
#   cargo run --release --example stiff_benchmark -- --plot stiff.jsonl --out assets
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-/work/peers-venv/bin/python}
REPEATS=${REPEATS:-3}
RTOLS=${RTOLS:-1e-3,1e-4,1e-5,1e-6,1e-7,1e-8,1e-9}
# cnflow's runs go one decade further, so that its curves reach an error of 1e-9 too.
CNFLOW_RTOLS=${CNFLOW_RTOLS:-$RTOLS,1e-10}
cargo build --release --quiet --example stiff_benchmark
target/release/examples/stiff_benchmark --methods bdf,rodas4,radau5,kvaerno5,tr-bdf2,dopri5 --rtols "$CNFLOW_RTOLS" --repeats "$REPEATS"
$PY benches/peers/stiff_scipy.py --methods Radau,BDF,LSODA,diffsol-bdf --rtols "$RTOLS" --repeats "$REPEATS" 2>/dev/null
