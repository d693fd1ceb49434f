"""The stand-alone instruments in ``tools/`` run (smoke runs: tiny networks, one repeat, no timing asserted).

``tools/tiny_chain.py`` is exercised in ``tests/test_fast_tiny.py``, ``tools/startup_profile.py`` in
``tests/test_startup.py`` and ``tools/compare_peers.py`` in ``tests/test_bench_cli.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_perf_matrix_blas_peak_runs_in_a_subprocess():
    peak = _script("perf_matrix").blas_peak(n=32)
    assert peak["float32"] > 0 and peak["float64"] > 0 and isinstance(peak["blas"], list)


def test_perf_matrix_data_are_fastbp_benchs():
    from fastbp import bench

    pm = _script("perf_matrix")
    prob = pm.make_data([4, 8, 3], "float32", 16, output="softmax")
    ref = bench.make_data(bench.Case(sizes=(4, 8, 3), output="softmax", m=16, dtype="float32"))
    assert prob.X.tobytes() == ref.X.tobytes() and prob.Y.tobytes() == ref.Y.tobytes()
    assert all(a.tobytes() == b.tobytes() for a, b in zip(prob.weights + prob.biases, ref.weights + ref.biases))


@pytest.mark.slow  # compiles the plain and the mini-batch kernels (~20 s cold)
def test_perf_matrix_sections_print_a_row_per_case(capsys):
    pm = _script("perf_matrix")
    use_jax = importlib.util.find_spec("jax") is not None
    rows = pm.per_example_matrix(["2-4-1"], ["float64"], 1, 1e-9, use_jax, {"float64": 50.0})
    assert len(rows) == 1 and rows[0]["m"] == 2000 and rows[0]["plain"] > 0 and rows[0]["fast"] > 0
    assert ("jax" in rows[0]) == use_jax
    assert rows[0]["gflops"] == pytest.approx(rows[0]["fast"] * 6 * 12 / 1e9)
    pm.batch_section(["4-8-3"], ["float64"], 1, 1e-9)
    out = capsys.readouterr().out
    assert "2-4-1 float64 | plain" in out
    assert [line.split("|")[0].split()[-1] for line in out.splitlines() if "batch" in line and "|" in line] == [
        "32",
        "64",
        "256",
    ]


def test_lbfgs_speed_runs_both_estimators():
    r = _script("lbfgs_speed").measure("digits", hidden=(4,), max_iter=3, repeats=1, n=60)
    assert r["fastbp_iter"] == r["sklearn_iter"] and r["ratio"] > 0


def test_sparse_memory_measures_a_fit():
    r = _script("sparse_memory").measure(rows=400, cols=300, density=0.01)
    assert r["peak_traced_MB"] > 0 and r["dense_MB"] == pytest.approx(400 * 300 * 8 / 1e6)
