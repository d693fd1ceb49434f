"""pytest-benchmark over the registry the agreement tests use (:data:`fastbp.testing.IMPLEMENTATIONS`).

In the normal test run (``--benchmark-disable`` is in pyproject's addopts) each
benchmark runs once, as a smoke test whose result is checked against the other
implementation.  To time them::

    python -m pytest tests/test_benchmarks.py --benchmark-enable --benchmark-only

``--benchmark-enable`` overrides the ``--benchmark-disable`` in addopts (pytest-benchmark
refuses ``--benchmark-only`` alone next to it); add ``--benchmark-autosave`` and
``--benchmark-compare`` to keep runs and compare them.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastbp.testing import IMPLEMENTATIONS, assert_agree, make_problem

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
