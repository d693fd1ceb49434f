"""pytest-benchmark over the registry the agreement tests use (:data:`fastbp.testing.IMPLEMENTATIONS`).

In the normal test run (``--benchmark-disable`` is in pyproject's addopts) each
benchmark runs once, as a smoke test whose result is checked against the other
implementation.  To time them::

    python -m pytest tests/test_benchmarks.py --benchmark-enable --benchmark-only

``--benchmark-enable`` overrides the ``--benchmark-disable`` in addopts (pytest-benchmark
refuses ``--benchmark-only`` alone next to it); add ``--benchmark-save=NAME`` and
``--benchmark-compare`` to keep runs and compare them (README, "Performance tracking").

Threads: BLAS is limited to one thread for the whole module (threadpoolctl), as the asv
suite does; none of these problems is large enough for fastbp's threaded kernel.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastbp.testing import IMPLEMENTATIONS, assert_agree, make_problem


@pytest.fixture(scope="module", autouse=True)
def one_blas_thread():
    """One BLAS thread while this module's benchmarks run (the NumPy reference's matmuls)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1):
        yield


def test_benchmarks_run_with_one_blas_thread():
    from threadpoolctl import threadpool_info

    assert all(pool["num_threads"] == 1 for pool in threadpool_info() if pool["user_api"] == "blas")


SIZES = {"2-4-1": [2, 4, 1], "64-64-10": [64, 64, 10]}
M = 128
ROUNDS = 20  # with --benchmark-only; one call when benchmarks are disabled
MUTATING = ("update", "train_epoch")  # change the parameters in place: fresh copies per round


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_benchmark(benchmark, name, backend, size, dtype):
    kernel, reference = IMPLEMENTATIONS[name]
    # time one implementation, check it against the other (so neither half can pass by itself)
    func, other = (kernel, reference) if backend == "numba" else (reference, kernel)
    output = "softmax" if SIZES[size][-1] > 1 else "sigmoid"
    prob = make_problem(SIZES[size], dtype=dtype, output=output, m=M, batch_size=32)
    if backend == "numba":  # compile (or load from cache) outside the timing
        func(*prob.args(name, *prob.copy_params()))
    benchmark.group = f"{name} {size} {np.dtype(dtype).name}"
    benchmark.extra_info["examples"] = M

    if name in MUTATING:
        params_seen = []

        def setup():
            W, b = prob.copy_params()
            params_seen.append((W, b))
            return prob.args(name, W, b), {}

        benchmark.pedantic(func, setup=setup, rounds=ROUNDS, iterations=1)
        expected = prob.copy_params()
        other(*prob.args(name, *expected))
        assert_agree(params_seen[-1], expected, dtype, err_msg=f"{name} {backend}")
    else:
        result = benchmark.pedantic(func, args=prob.args(name), rounds=ROUNDS, iterations=1)
        assert_agree(result, other(*prob.args(name)), dtype, err_msg=f"{name} {backend}")


_THREADS_SCRIPT = """
import os, sys, inspect
import numba
from threadpoolctl import threadpool_info, threadpool_limits
sys.path.insert(0, os.getcwd())
from benchmarks import bench_training as bt

threadpool_limits(limits=2)
out = []
for name, cls in inspect.getmembers(bt, inspect.isclass):
    if cls.__module__ != bt.__name__ or not hasattr(cls, "setup"):
        continue
    params = cls.params if isinstance(cls.params, tuple) else (cls.params,)
    names = cls.param_names
    # the first value of each parameter, but the largest thread count
    first = [values[-1] if name == "threads" else values[0] for name, values in zip(names, params)]
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    try:
        cls().setup(*first)
    except NotImplementedError:
        continue
    blas = {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
    wanted = dict(zip(cls.param_names, first)).get("threads", 2 if name == "ThreadSpeedUp" else 1)
    out.append(f"{name} {numba.get_num_threads()} {wanted} {sorted(blas)}")
print("\\n".join(out))
"""


@pytest.mark.slow  # a subprocess that sets up every benchmark class (compiles the threaded kernel)
def test_every_asv_benchmark_fixes_its_own_thread_counts():
    """Each training benchmark's setup sets Numba's and BLAS's thread counts itself, whatever they were
    before: one thread each, except the threaded kernel's own benchmarks (their ``threads`` parameter)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split(" ", 3) for line in done.stdout.strip().splitlines()]
    assert {row[0] for row in rows} >= {
        "TrainEpoch",
        "Throughput",
        "SpeedUp",
        "Forward",
        "Memory",
        "TrainEpochThreaded",
        "MiniBatch",
        "MiniBatchRatios",
    }
    for name, numba_threads, wanted, blas in rows:
        assert numba_threads == str(wanted), (name, numba_threads, wanted)
        assert blas in ("[1]", "[]"), (name, blas)


def test_the_first_fit_start_up_benchmarks_run_their_code(monkeypatch):
    """asv's ``FirstFit`` benchmarks (benchmarks/bench_startup.py) run their code in fresh interpreters,
    as asv does: each timed statement after its setup, the warm one's untimed fill first.  Against the
    tests' own Numba cache rather than the empty folders asv gives them: .ci/bench-smoke.sh leaves
    them out (the pair compiles a first fit twice, 25-30 s), so a break in their code shows here."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from benchmarks import bench_startup

    prelude = bench_startup._prelude
    monkeypatch.setattr(bench_startup, "_prelude", lambda _cache_dir: prelude(os.environ["NUMBA_CACHE_DIR"]))
    bench = bench_startup.FirstFit()
    bench.setup()
    try:
        for timeraw in (bench.timeraw_first_fit_cold, bench.timeraw_first_fit_warm):
            stmt, setup = timeraw()
            done = subprocess.run([sys.executable, "-c", setup + stmt], capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, (timeraw.__name__, done.stderr[-2000:])
        assert os.path.exists(bench.filled), "the warm benchmark's fill did not run"
    finally:
        bench.teardown()
