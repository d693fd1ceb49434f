"""``fastbp bench``: the command line, the table, the skipped-peer path, and that every system trains alike.

The command runs here on fastbp's own systems only, on tiny networks (``--quick``):
no timing is asserted, only that every case ran and the table holds what it says.
"""

from __future__ import annotations

import json
import math
import re
import sys

import pytest

from fastbp import bench
from fastbp.cli import main

FASTBP_ONLY = ["--systems", "numba", "numpy"]


def _table_rows(text: str) -> list[list[str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:]]  # without the header


def test_quick_runs_every_case_and_prints_a_table(capsys):
    assert main(["bench", "--quick", *FASTBP_ONLY]) == 0
    out = capsys.readouterr().out
    header = next(ln for ln in out.splitlines() if ln.startswith("| "))
    assert "numba ex/s" in header and "numpy ex/s" in header and "numba/numpy" in header
    rows = _table_rows(out)
    expected = bench.build_cases(
        ["2-4-1", "8-8-2"], ["tanh", "relu"], ["sigmoid", "softmax"], [1, 4], 64, "float32", 0.01
    )
    assert [r[0] for r in rows] == [c.label for c in expected]
    for r in rows:
        numba_rate, numpy_rate = (float(x.replace(",", "")) for x in r[2:4])
        ratio = float(r[4].rstrip("×"))
        assert numba_rate > 0 and numpy_rate > 0
        assert ratio == pytest.approx(numba_rate / numpy_rate, rel=0.02)  # rounding of the printed rates
    assert re.search(r"threads: numba: 1\b", out)
    assert re.search(r"BLAS matmul peak \(float32, 1 thread", out)


def test_missing_peer_is_a_skipped_column_with_a_note(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` now raises ImportError
    assert main(["bench", "--quick", "--systems", "numba", "jax", "--sizes", "2-4-1", "--batch-sizes", "1"]) == 0
    out = capsys.readouterr().out
    rows = _table_rows(out)
    assert rows and all(r[3] == "skipped" and r[4] == "–" for r in rows)
    assert "skipped: jax: jax not installed" in out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--sizes", "2-x-1"], "--sizes"),
        (["--sizes", "7"], "--sizes"),
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--systems", "tensorflow"], "--systems"),
        (["--examples", "-3"], "--examples"),
        (["--examples", "2.5"], "--examples"),
        (["--repeats", "0"], "--repeats"),
        (["--batch-sizes", "full", "x"], "--batch-sizes"),
        (["--learning-rate", "-1"], "--learning-rate"),
        (["--learning-rate", "nan"], "--learning-rate"),
        (["--dtype", "float16"], "--dtype"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_unwritable_output_is_one_line_and_exit_2_before_running(option, tmp_path, capsys):
    path = str(tmp_path / "no-such-folder" / "out")
    assert main(["bench", "--quick", *FASTBP_ONLY, option, path]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing ran
    assert len(captured.err.strip().splitlines()) == 1 and option in captured.err


def test_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "r.json", tmp_path / "r.png"
    argv = ["bench", "--quick", *FASTBP_ONLY, "--sizes", "2-4-1", "--json", str(js), "--plot", str(png)]
    assert main(argv) == 0
    data = json.loads(js.read_text())
    assert data["systems"] == ["numba", "numpy"] and data["blas_peak_gflops"] > 0
    assert all(r["rates"]["numba"] > 0 and r["rates"]["numpy"] > 0 for r in data["rows"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cases_cover_every_batch_size_and_whole_batches():
    cases = bench.build_cases(
        ["64-32-1", "4-8-3"], ["tanh", "relu"], ["sigmoid", "softmax"], [1, 32, 256, None], 1000, "float64", 0.1
    )
    one = [c for c in cases if c.sizes == (64, 32, 1)]
    # headline at every batch size, relu at batch 1; no softmax row for one output
    assert [(c.activation, c.output, c.batch_size) for c in one] == [
        ("tanh", "sigmoid", 1),
        ("tanh", "sigmoid", 32),
        ("tanh", "sigmoid", 256),
        ("tanh", "sigmoid", None),
        ("relu", "sigmoid", 1),
    ]
    assert any(c.output == "softmax" for c in cases if c.sizes == (4, 8, 3))
    assert all(c.m == 768 for c in cases)  # 1000 rounded down to whole batches of 256 (and 32)
    assert one[0].flops_per_example == 6 * (64 * 32 + 32 * 1)


PEER_CASES = [
    bench.Case(
        sizes=(4, 8, 1), activation="tanh", output="sigmoid", batch_size=1, m=32, dtype="float64", learning_rate=0.1
    ),
    bench.Case(
        sizes=(4, 8, 3), activation="relu", output="sigmoid", batch_size=4, m=32, dtype="float64", learning_rate=0.1
    ),
    bench.Case(
        sizes=(4, 8, 1), activation="sigmoid", output="sigmoid", batch_size=2, m=32, dtype="float64", learning_rate=0.1
    ),
    bench.Case(
        sizes=(4, 8, 6, 3),
        activation="tanh",
        output="softmax",
        batch_size=None,
        m=32,
        dtype="float64",
        learning_rate=0.1,
    ),
]


@pytest.mark.parametrize("system", ["numba-api", "numpy", "jax", "torch", "sklearn"])
@pytest.mark.parametrize("case", PEER_CASES, ids=lambda c: c.label)
def test_every_system_trains_the_same_network_alike(system, case):
    """Same weights, data, order and α: the epoch losses of 3 epochs agree with fastbp's kernels.

    The loss of epoch e is measured before each batch's update, so epochs 2 and 3
    also check that every system applied the same updates: the comparison is fair.
    """
    if system in bench.PEERS:
        pytest.importorskip(system)
    d = bench.make_data(case)
    mine, theirs = bench.MAKERS["numba"](case, d), bench.MAKERS[system](case, d)
    losses = [(float(mine()), float(theirs())) for _ in range(3)]
    for a, b in losses:
        assert math.isfinite(a) and b == pytest.approx(a, rel=1e-9)
    assert losses[2][0] < losses[0][0]  # it trains


def test_default_examples_per_epoch_are_as_the_help_says():
    from fastbp.cli import build_parser

    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["bench"].format_help().split())
    assert "default: 1024, or 512 for networks over 1e5 flops per example" in help_text
    small, large = (4, 8, 1), (784, 128, 10)
    assert bench._default_m(small) == 1024 and bench._default_m(large) == 512
    assert 6 * (4 * 8 + 8 * 1) < 1e5 < 6 * (784 * 128 + 128 * 10)


def test_blas_peak_is_a_positive_rate():
    assert bench.blas_peak_gflops("float64", n=64, repeats=2) > 0


def test_ratio_is_numba_over_peer():
    row = bench.Row(PEER_CASES[0], rates={"numba": 300.0, "torch": 100.0, "jax": None})
    assert row.ratio("torch") == 3.0 and row.ratio("jax") is None and row.ratio("sklearn") is None
    assert row.gflops() == pytest.approx(300.0 * PEER_CASES[0].flops_per_example / 1e9)


def test_compare_peers_script_is_fastbp_bench():
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tools" / "compare_peers.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--systems", "numba", "--sizes", "2-4-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert [r[0] for r in _table_rows(proc.stdout)] == [
        "2-4-1 tanh/sigmoid b=1",
        "2-4-1 tanh/sigmoid b=4",
        "2-4-1 relu/sigmoid b=1",
    ]


# ------------------------------------------------ the measuring helpers (one copy each, here)


def test_flops_per_example_is_six_per_weight_and_refuses_bad_sizes():
    assert bench.flops_per_example([64, 32, 1]) == 6 * (64 * 32 + 32 * 1)
    assert bench.flops_per_example((2, 4, 1)) == bench.Case(sizes=(2, 4, 1)).flops_per_example == 6 * 12
    with pytest.raises(ValueError, match="at least two entries"):
        bench.flops_per_example([3])
    with pytest.raises(ValueError, match="must be positive"):
        bench.flops_per_example([3, 0, 1])
    with pytest.raises(TypeError, match="layer_sizes must"):
        bench.flops_per_example("64-32-1")


def test_best_seconds_is_the_shortest_run_with_untimed_setup():
    seen = []
    best = bench.best_seconds(seen.append, repeats=4, setup=lambda: (len(seen),))
    assert seen == [0, 1, 2, 3] and 0 <= best < 1
    assert bench.best_seconds(lambda: None) >= 0  # no setup: no arguments
    with pytest.raises(ValueError, match="repeats must be at least 1"):
        bench.best_seconds(lambda: None, repeats=0)
    with pytest.raises(TypeError, match="repeats must be an integer"):
        bench.best_seconds(lambda: None, repeats=2.0)


def test_interleaved_best_seconds_alternates_the_calls():
    order = []
    best = bench.interleaved_best_seconds(
        {"a": lambda x: order.append(("a", x)), "b": lambda x: order.append(("b", x))},
        repeats=3,
        setup=lambda: (len(order),),
    )
    assert order == [("a", 0), ("b", 1), ("a", 2), ("b", 3), ("a", 4), ("b", 5)]
    assert set(best) == {"a", "b"} and all(0 <= s < 1 for s in best.values())
    with pytest.raises(ValueError, match="repeats"):
        bench.interleaved_best_seconds({"a": lambda: None}, repeats=0)


def test_blas_peak_refuses_bad_arguments():
    with pytest.raises(ValueError, match="float32 or float64"):
        bench.blas_peak_gflops("float16")
    with pytest.raises(ValueError, match="n must be at least 1"):
        bench.blas_peak_gflops("float64", n=0)
    with pytest.raises(ValueError, match="repeats"):
        bench.blas_peak_gflops("float64", n=8, repeats=0)


HELPERS = ("flops_per_example", "best_seconds", "interleaved_best_seconds", "blas_peak_gflops", "_best", "_seconds")


def test_each_measuring_helper_has_one_copy():
    """benchmarks/ and tools/ import the helpers from fastbp.bench instead of defining their own."""
    import ast
    from pathlib import Path

    import benchmarks.common as common

    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "benchmarks").glob("*.py")) + sorted((root / "tools").glob("*.py")):
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not defined & set(HELPERS), (path.name, defined & set(HELPERS))
        assert "6 * sum(" not in path.read_text(), path.name  # the flop count, inline
    for name in ("flops_per_example", "best_seconds", "interleaved_best_seconds"):
        assert getattr(common, name) is getattr(bench, name)
