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
    assert "count 6·Σ n_l·n_(l−1) flops per example" in out  # the table says what its GFLOP/s count


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


def _bench_help() -> str:
    from fastbp.cli import build_parser

    return " ".join(build_parser()._subparsers._group_actions[0].choices["bench"].format_help().split())


def test_default_epoch_is_time_based_and_long_as_the_help_says(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapped inside an option's name
    help_text = _bench_help()
    assert f"(default: {bench.EPOCH_SECONDS}; full-batch rows keep the probe's m)" in help_text
    assert "a probe epoch of 1024 examples (512 on networks over 1e5 flops per example)" in help_text
    assert "(default: time-based, see --epoch-seconds; --quick: 64)" in help_text
    assert 0.2 <= bench.EPOCH_SECONDS <= 0.5 and bench.ALWAYS["epoch_seconds"] == bench.EPOCH_SECONDS
    assert bench.DEFAULTS["examples"] is None  # no fixed m unless asked for
    small, large = (4, 8, 1), (784, 128, 10)
    assert bench._default_m(small) == 1024 and bench._default_m(large) == 512
    assert 6 * (4 * 8 + 8 * 1) < 1e5 < 6 * (784 * 128 + 128 * 10)


def test_examples_for_is_whole_batches_between_the_probe_and_the_cap():
    # 1 M examples/s for 0.3 s: 300,000, rounded up to whole batches (of 7: 42,858 of them)
    assert bench.examples_for(1e6, 0.3, 32, 1024, 10**7) == 300_000
    assert bench.examples_for(1e6, 0.3, 7, 1024, 10**7) == 300_006
    assert bench.examples_for(100.0, 0.3, 32, 1024, 10**7) == 1024  # never below the probe
    assert bench.examples_for(1e9, 0.3, 1000, 1000, 123_456) == 123_000  # the cap, in whole batches
    assert bench.examples_for(1e9, 0.3, 256, 256, 100) == 256  # at least one batch
    wide = bench.Case(sizes=(784, 128, 10), dtype="float64")
    assert bench.max_examples(wide) * 8 * (784 + 10) <= bench.MAX_DATA_BYTES
    assert bench.max_examples(bench.Case(sizes=(2, 4, 1))) == bench.MAX_EXAMPLES


def _fake_system(seen: list, seconds: float):
    """A system whose every epoch "takes" ``seconds`` (read by the fake timer below), recording its m."""

    def make(case, d):
        assert d.X.shape[0] == case.m  # the data are as long as the epoch
        seen.append(case.m)

        def epoch():
            return 0.0

        epoch.seconds = seconds
        return epoch

    return make


def test_time_based_epoch_scales_each_system_from_its_probe(monkeypatch):
    """A system probed at 1,024 examples in 1 ms (1 M examples/s) is timed on ~0.3 s of examples;
    one that took 1 s over its probe stays at the probe's 1,024."""
    fast, slow = [], []
    monkeypatch.setitem(bench.MAKERS, "numba", _fake_system(fast, 1e-3))
    monkeypatch.setitem(bench.MAKERS, "numpy", _fake_system(slow, 1.0))
    monkeypatch.setattr(bench, "best_seconds", lambda func, repeats=3, setup=None: func.seconds)
    case = bench.Case(sizes=(2, 4, 1), batch_size=32, m=1024)
    row = bench.run_case(case, ["numba", "numpy"], repeats=1, epoch_seconds=0.3)
    want = bench.examples_for(1024 / 1e-3, 0.3, 32, 1024, bench.max_examples(case))
    assert fast == [1024, want] and want >= 300_000
    assert slow == [1024]
    assert row.examples == {"numba": want, "numpy": 1024}
    assert bench._m_cell(row) == f"1,024–{want:,}"
    # a full batch is the whole epoch: its m is the problem, never scaled
    full = bench.Case(sizes=(2, 4, 1), batch_size=None, m=1024)
    fast.clear()
    assert bench.run_case(full, ["numba"], repeats=1, epoch_seconds=0.3).examples == {"numba": 1024}
    assert fast == [1024]


@pytest.mark.parametrize(
    "argv, epoch_seconds, m",
    [
        ([], bench.EPOCH_SECONDS, 1024),  # the default: time-based, probed at 1,024
        (["--examples", "96"], None, 96),  # --examples overrides
        (["--epoch-seconds", "0.05"], 0.05, 1024),
        (["--quick"], None, 64),
        (["--quick", "--epoch-seconds", "0.05"], 0.05, 64),  # (--quick's probe: its 64 examples' sizes)
    ],
)
def test_cli_epoch_length(argv, epoch_seconds, m, monkeypatch, capsys):
    calls = []

    def fake_run_case(case, systems, repeats=3, seed=0, epoch_seconds=None):
        calls.append((case.m, epoch_seconds))
        return bench.Row(case, rates={"numba": 1.0}, examples={"numba": case.m})

    monkeypatch.setattr(bench, "run_case", fake_run_case)
    monkeypatch.setattr(bench, "blas_peak_gflops", lambda dtype: 1.0)
    sizes = [] if "--quick" in argv else ["--sizes", "2-4-1", "--batch-sizes", "32"]
    assert main(["bench", "--systems", "numba", *sizes, *argv]) == 0
    out = capsys.readouterr().out
    if "--quick" in argv and epoch_seconds is not None:
        m = bench.build_cases(["2-4-1"], ["tanh"], ["sigmoid"], [1, 4], None, "float32", 0.01)[0].m
    assert calls and all(c == (m, epoch_seconds) for c in calls), calls
    assert ("epoch: time-based" in out) == (epoch_seconds is not None)


def test_examples_and_epoch_seconds_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--examples", "64", "--epoch-seconds", "0.1"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


# ------------------------------------------------ the CPU in the header, one core for the run


CPUINFO_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 33
model name\t: AMD Ryzen 9 5950X 16-Core Processor
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2

processor\t: 1
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2

processor\t: 2
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2
"""


def test_cpu_info_reads_the_vector_extensions():
    info = bench.cpu_info(CPUINFO_AVX2)
    assert info["model"] == "AMD Ryzen 9 5950X 16-Core Processor"
    assert (info["family"], info["model_number"]) == ("25", "33")
    assert info["flags"] == ["sse4_2", "avx", "avx2", "fma", "f16c"]
    assert info["widest_vector"] == "AVX2, 256-bit" and info["physical_cores"] == 2
    line = bench.describe_cpu(info)
    assert "family 25, model 33" in line and "avx avx2 fma" in line and "(widest: AVX2, 256-bit)" in line
    avx512 = bench.cpu_info("model name\t: X\nflags\t: avx avx2 fma avx512f avx512bw avx512vl avx512_vnni\n")
    assert avx512["flags"] == ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni"]
    assert avx512["widest_vector"] == "AVX-512, 512-bit"
    arm = bench.cpu_info("processor\t: 0\nFeatures\t: fp asimd evtstrm sve\n")
    assert arm["flags"] == ["asimd", "sve"] and arm["widest_vector"] == "SVE"
    unknown = bench.cpu_info("")
    assert unknown["flags"] == [] and not unknown["flags_known"]
    assert "vector extensions: unknown" in bench.describe_cpu(unknown)


def test_header_and_json_name_the_cpu_and_its_flags(tmp_path, capsys):
    js = tmp_path / "r.json"
    argv = ["bench", "--quick", "--systems", "numba", "--sizes", "2-4-1", "--batch-sizes", "1", "--json", str(js)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    cpu_line = next(ln for ln in out.splitlines() if ln.startswith("  CPU: "))
    info = bench.cpu_info()
    assert info["model"] in cpu_line and "vector extensions:" in cpu_line and "logical CPUs" in cpu_line
    for flag in info["flags"]:  # e.g. avx2 fma avx512f ... as this machine has them
        assert re.search(rf"\b{flag}\b", cpu_line), flag
    assert f"Numba/LLVM target: {info['llvm_cpu']}" in cpu_line
    data = json.loads(js.read_text())
    assert data["cpu_info"]["flags"] == info["flags"] and data["cpu"] == info["model"]
    assert data["cpu_info"]["logical_cpus"] == info["logical_cpus"]


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no os.sched_setaffinity")
def test_pinning_comes_first_and_is_undone(monkeypatch, capsys):
    """Mocked affinity calls: the process is pinned before the thread settings (and so before torch or
    jax is imported), to one CPU of its mask, every thread of it, and given its mask back at the end."""
    import os

    mask = {2, 3}
    calls, events = [], []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(mask))
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cpus: calls.append((pid, set(cpus))))
    real_set_one_thread = bench.set_one_thread

    def spy(systems):
        events.append(("threads", len(calls)))
        return real_set_one_thread(systems)

    monkeypatch.setattr(bench, "set_one_thread", spy)
    argv = ["bench", "--quick", "--systems", "numba", "--sizes", "2-4-1", "--batch-sizes", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    n_pin = events[0][1]
    assert n_pin >= 1, "set_one_thread ran before any pinning"
    assert calls[:n_pin] == [(pid, {2}) for pid, _ in calls[:n_pin]]  # the lowest CPU of the mask
    assert any(pid == 0 for pid, _ in calls[:n_pin])  # the calling thread itself
    assert calls[n_pin:] and all(cpus == mask for _, cpus in calls[n_pin:])  # restored
    assert "pinned: CPU 2 " in out and "the mask was {2, 3}" in out
    calls.clear()
    assert main([*argv, "--cpu", "3"]) == 0 and calls[0][1] == {3}
    calls.clear()
    assert main([*argv, "--no-pin"]) == 0 and calls == []
    assert "pinned: not pinned (--no-pin)" in capsys.readouterr().out


_AFFINITY_SCRIPT = """
import json, os, sys
from fastbp import bench
from fastbp.cli import main

def masks():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            out[tid] = sorted(os.sched_getaffinity(int(tid)))
        except OSError:
            pass
    return out

seen = []
real = bench.MAKERS["numba"]

def spy(case, d):
    epoch = real(case, d)
    def run():
        seen.append(masks())
        return epoch()
    return run

bench.MAKERS["numba"] = spy
before = sorted(os.sched_getaffinity(0))
main(["bench", "--quick", "--systems", "numba", "--sizes", "2-4-1", "--batch-sizes", "1", *sys.argv[1:]])
print(json.dumps({"before": before, "seen": seen, "after": masks()}))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="no os.sched_setaffinity")
@pytest.mark.parametrize("pin", [True, False], ids=["pinned", "no-pin"])
def test_every_thread_runs_on_one_cpu_in_a_fresh_process(pin):
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", _AFFINITY_SCRIPT, *([] if pin else ["--no-pin"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    before = result["before"]
    assert result["seen"]
    for masks in result["seen"]:  # during every epoch, every thread of the process
        assert set(map(tuple, masks.values())) == {(before[0],) if pin else tuple(before)}
    assert all(m == before for m in result["after"].values())  # given back


def test_cpu_outside_the_mask_is_one_line_and_exit_2(capsys):
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no os.sched_getaffinity")
    outside = max(os.sched_getaffinity(0)) + 1
    assert main(["bench", "--quick", *FASTBP_ONLY, "--cpu", str(outside)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and "--cpu" in captured.err


def test_mini_batch_cells_run_for_every_system(capsys):
    """``--batch-sizes 1 8 32 256 1024``: a row per batch size, every installed system timed, each peer's ratio."""
    argv = ["bench", "--sizes", "2-4-1", "--batch-sizes", "1", "8", "32", "256", "1024"]
    argv += ["--activation", "tanh", "--output", "sigmoid", "--examples", "2048", "--repeats", "1"]
    systems = list(bench.SYSTEMS + bench.EXTRA_SYSTEMS)
    assert main([*argv, "--systems", *systems]) == 0
    out = capsys.readouterr().out
    header = next(ln for ln in out.splitlines() if ln.startswith("| "))
    head = [c.strip() for c in header.strip("|").split("|")]
    rows = _table_rows(out)
    assert [r[0] for r in rows] == [f"2-4-1 tanh/sigmoid b={b}" for b in (1, 8, 32, 256, 1024)]
    for system in systems:
        installed = system not in bench.PEERS or _importable(system)
        col = head.index(f"{system} ex/s")
        for r in rows:
            assert r[1] == "2,048"
            if installed:
                assert float(r[col].replace(",", "")) > 0, (system, r)
            if system != "numba":
                ratio = r[head.index(f"numba/{system}")]
                assert ratio.endswith("×") if installed else ratio == "–"


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


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


def test_true_flops_per_example_leaves_out_the_first_layers_da():
    # 784-128-10: 4·784·128 for the first layer (no W[1]ᵀ dZ[1]), 6·128·10 for the second
    assert bench.true_flops_per_example([784, 128, 10]) == 4 * 784 * 128 + 6 * 128 * 10
    assert bench.true_flops_per_example((2, 4, 3, 1)) == 4 * 2 * 4 + 6 * (4 * 3 + 3 * 1)
    with pytest.raises(ValueError, match="must be positive"):
        bench.true_flops_per_example([3, 0, 1])


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


HELPERS = (
    "flops_per_example",
    "true_flops_per_example",
    "best_seconds",
    "interleaved_best_seconds",
    "blas_peak_gflops",
    "_best",
    "_seconds",
)


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
