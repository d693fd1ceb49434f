#!/usr/bin/env bash
# Smoke-test the asv suite so that a broken benchmark fails CI.
#
# Run from the repository root:  PY=path/to/venv/bin/python bash .ci/bench-smoke.sh
# (default PY: .venv/bin/python).  The venv needs fastbp installed with the `bench`
# extra (asv, virtualenv, matplotlib, threadpoolctl).
#
# 1. `asv check`: every benchmark imports and has a valid signature and params.
# 2. `asv run --quick` of a small subset (one or two sizes of every class, every
#    kind: time_, track_, peakmem_, timeraw_), in the current environment
#    (--python=same, no build), results not saved (--dry-run).  The threaded
#    kernels in float64, whose twins the tests compiled into the cache this run
#    reuses; of the start-up benchmarks only the import: the first-fit pair
#    compiles a first fit twice from empty caches (25-30 s), and
#    tests/test_benchmarks.py runs their code against the tests' cache instead.
# asv exits non-zero when a benchmark raises; nothing here looks at a time.
set -euo pipefail

PY="${PY:-.venv/bin/python}"
if [[ ! -x "$PY" ]]; then
    echo "bench-smoke: no python at $PY (set PY to a venv's python)" >&2
    exit 1
fi
ASV=("$PY" -m asv)

# asv wants a machine description (~/.asv-machine.json); make one without questions.
"${ASV[@]}" machine --yes > /dev/null

"${ASV[@]}" check --python=same

SUBSET=(
    --bench "TrainEpoch.time_train_epoch\('64-32-1', 'float32'"
    --bench "Throughput.track_.*\('2-4-1', 'float64', '(numba|numpy)', '(1|full)'\)"
    --bench "SpeedUp.track_numba_over_numpy\('2-4-1', 'float64', '32'\)"
    --bench "MiniBatch.time_train_epoch\('64-32-1', 'float32', 'numba', '(8|1024)'\)"
    --bench "MiniBatchRatios.track_.*\('2-4-1', 'float64', '32'\)"
    --bench "Forward.time_.*\('64-64-10', 'float32'"
    --bench "Memory.peakmem_train_epoch\(2000, 'numba', '32'\)"
    --bench "TrainEpochThreaded.time_train_epoch\('784-128-10', 'float64', '64'"
    --bench "ThreadSpeedUp.track_.*\('784-128-10', 'float64', '64'\)"
    --bench "EpochOverProbe.track_.*\('2-4-1', 'float64', '(1|32)'\)"
    --bench "bench_startup.Import"
)
"${ASV[@]}" run --python=same --quick --dry-run --show-stderr "${SUBSET[@]}"
echo "bench-smoke: asv check and the quick subset ran"
