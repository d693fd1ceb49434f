"""The stand-alone instruments in ``tools/`` run (smoke runs: tiny networks, one repeat, no timing asserted).

``tools/tiny_chain.py`` is exercised in ``tests/test_fast_tiny.py``, ``tools/startup_profile.py`` in
``tests/test_startup.py`` and ``tools/compare_peers.py`` in ``tests/test_bench_cli.py``.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from fastbp.bench import true_flops_per_example

from ._targets import host_runs

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


def test_bit_identity_prints_the_same_fingerprints_twice(capsys):
    """tools/bit_identity.py (the evidence that the issue-11 move changed no bit) is deterministic."""
    mod = _script("bit_identity")
    mod.main(["--quick"])
    first = capsys.readouterr().out
    mod.main(["--quick"])
    assert capsys.readouterr().out == first
    assert len(first.splitlines()) == 6  # 2 dtypes × (2 batch sizes + the optimizers)


def _asv_www(tmp_path) -> Path:
    """A copy of the installed asv's report template (what ``asv publish`` copies into .asv/html)."""
    asv = pytest.importorskip("asv")
    import shutil

    www = tmp_path / "html"
    shutil.copytree(Path(asv.__file__).parent / "www", www)
    return www


def _fake_npm(tmp_path):
    """``fetch(spec)`` for asv_offline.vendor without a network: a tarball with every file the tool asks for."""
    import io
    import tarfile

    off = _script("asv_offline")
    members: dict[str, set[str]] = {}
    for spec, member, _ in off.LIBRARIES.values():
        members.setdefault(spec, set()).add(member)
    for spec, extras in off.EXTRAS.items():
        members.setdefault(spec, set()).update(member for member, _ in extras)

    def fetch(spec: str) -> Path:
        path = tmp_path / f"{spec.replace('@', '-')}.tgz"
        with tarfile.open(path, "w:gz") as tar:
            for member in members[spec]:
                data = f"/* {spec} {member} */".encode()
                info = tarfile.TarInfo(f"package/{member}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path

    return fetch


def test_asv_offline_makes_the_installed_asv_report_self_contained(tmp_path):
    """Every CDN reference of the installed asv's index.html is known, vendored and rewritten: the
    published report then loads nothing from the network (checked without a browser)."""
    off = _script("asv_offline")
    www = _asv_www(tmp_path)
    before = off.external_references(www)
    assert any("jquery" in ref for ref in before) and any("bootstrap" in ref for ref in before)
    off.vendor(www, _fake_npm(tmp_path))
    assert off.external_references(www) == []
    index = (www / "index.html").read_text()
    assert 'src="vendor/jquery.min.js"' in index and "integrity=" not in index and "crossorigin" not in index
    for _, _, local in off.LIBRARIES.values():
        assert (www / "vendor" / local).is_file()


def test_asv_offline_check_fails_on_an_external_url_and_names_it(tmp_path, capsys):
    off = _script("asv_offline")
    www = _asv_www(tmp_path)
    assert off.main(["--html", str(www), "--check"]) == 1
    assert "external reference left: index.html: https://code.jquery.com/jquery-3.3.1.min.js" in capsys.readouterr().err
    (www / "page.html").write_text('<link rel="stylesheet" href="//cdn.example.org/x.css">')
    (www / "style.css").write_text("body { background: url('https://cdn.example.org/x.png') }")
    refs = off.external_references(www)
    assert "page.html: //cdn.example.org/x.css" in refs and "style.css: https://cdn.example.org/x.png" in refs


def test_asv_offline_refuses_an_unknown_cdn_and_a_missing_report(tmp_path, capsys):
    off = _script("asv_offline")
    www = _asv_www(tmp_path)
    (www / "extra.html").write_text('<script src="https://cdn.example.org/new.js"></script>')
    with pytest.raises(off.UnknownURL, match="extra.html loads https://cdn.example.org/new.js"):
        off.vendor(www, _fake_npm(tmp_path))
    assert off.main(["--html", str(tmp_path / "nothing")]) == 2
    assert "no index.html" in capsys.readouterr().err


def test_epoch_speed_prints_a_rate_per_case(capsys):
    """tools/epoch_speed.py (the before/after speed check of the issue-11 move) runs; no time asserted."""
    _script("epoch_speed").main(["--quick"])
    out = capsys.readouterr().out
    assert out.count("batch") == 6 and "784-128-10 float32 batch 32" in out


def test_epoch_speed_compare_alternates_two_checkouts_and_prints_paired_ratios(capsys):
    """``--compare`` runs a process per checkout per pair (here this checkout against itself) and
    prints each pair's rates and the median new/old per case; no time asserted."""
    root = str(TOOLS.parent)
    tool = _script("epoch_speed")
    tool.main(["--compare", root, root, "--pairs", "2", "--quick", "--repeats", "1", "--cases", "2-4-1:float64:1"])
    out = capsys.readouterr().out
    assert out.count("pair ") == 2 and "2-4-1 float64 batch 1: " in out
    ratio = re.search(
        r"2-4-1 float64 batch 1: new/old median ([0-9.]+) \(range ([0-9.]+)-([0-9.]+) over 2 pairs; >1: new faster\)",
        out,
    )
    assert ratio and 0 < float(ratio[2]) <= float(ratio[1]) <= float(ratio[3])
    case = tool.parse_case("784-128-10:float64:256")
    sizes, batch, dtype, m = case
    flops = true_flops_per_example(sizes)
    assert (sizes, batch, dtype) == ([784, 128, 10], 256, np.float64) and m % 256 == 0
    assert m * flops <= tool.CASE_FLOPS < (m + 256) * flops
    assert tool.parse_case(tool.case_text(case)) == case  # what --compare hands its children
    for bad in ("64-32:float16:3", "64:float64:3", "64-32-1:float64", "64-x-1:float64:8", "4-2-1:float32:8:7"):
        with pytest.raises(SystemExit):
            tool.main(["--cases", bad])
        assert "a case" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--cpu", "100000", "--quick"])
    assert "--cpu 100000" in capsys.readouterr().err


def test_epoch_speed_compare_refuses_a_checkout_whose_modules_come_from_elsewhere(tmp_path):
    """A root without fastbp is refused before any process runs; one whose fastbp lacks the
    modules the tool imports (an editable install would hand them over from the installed tree)
    is refused after its process reports where its modules came from."""
    tool = _script("epoch_speed")
    root = str(TOOLS.parent)
    with pytest.raises(SystemExit, match="not a checkout of fastbp"):
        tool.compare(str(tmp_path), root, 1, ["--quick", "--repeats", "1", "--cases", "2-4-1:float64:1"])
    (tmp_path / "fastbp").mkdir()
    (tmp_path / "fastbp" / "__init__.py").write_text("")
    with pytest.raises(SystemExit, match="(ran fastbp modules from elsewhere|failed)"):
        tool.compare(str(tmp_path), root, 1, ["--quick", "--repeats", "1", "--cases", "2-4-1:float64:1"])


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_estimator_speed_runs_both_estimators(solver):
    r = _script("estimator_speed").measure("digits", hidden=(4,), max_iter=3, repeats=1, n=60, solver=solver)
    assert r["fastbp_iter"] == r["sklearn_iter"] and r["ratio"] > 0 and 0 <= r["fastbp_accuracy"] <= 1


def test_sparse_memory_measures_a_fit():
    r = _script("sparse_memory").measure(rows=400, cols=300, density=0.01)
    assert r["peak_traced_MB"] > 0 and r["dense_MB"] == pytest.approx(400 * 300 * 8 / 1e6)


def test_step_speed_prints_both_steps(capsys):
    """tools/step_speed.py (the optimizer steps' µs per call) runs; no time asserted."""
    _script("step_speed").main(["--params", "100", "--dtypes", "float32", "--repeats", "2"])
    assert "100 parameters float32: adam" in capsys.readouterr().out


def test_busy_threads_prints_both_machines_and_leaves_the_settings_as_they_were(capsys):
    """tools/busy_threads.py (the thread choice idle and beside a busy loop) runs; no time asserted."""
    import os

    import numba

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this platform (the tool pins its busy loops)")
    if len(os.sched_getaffinity(0)) < 2 or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two CPUs and two Numba threads")
    tool = _script("busy_threads")
    before = os.environ.get("FASTBP_BUSY_CHECK"), numba.get_num_threads()
    assert tool.main(["--hidden", "4", "--max-iter", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| idle |" in out and "| busy loop on the other CPUs |" in out
    assert (os.environ.get("FASTBP_BUSY_CHECK"), numba.get_num_threads()) == before
    with pytest.raises(SystemExit):
        tool.main(["--repeats", "0"])


def test_output_faults_prints_each_operation_per_case_and_refuses_bad_cases(capsys):
    tool = _script("output_faults")
    tool.main(["--cases", "4-8-3:40:float64", "--calls", "2"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("4-8-3:40:float64")]
    assert [r.split("|")[0].split()[-1] for r in rows] == ["forward", "backward"]
    assert all("fastbp" in r and "reference" in r and r.count("faults") == 2 for r in rows)
    bad_args = (["--cases", "4-8-3:40"], ["--cases", "4-8-3:forty:float64"], ["--calls", "0"], ["--ops", "predict"])
    for bad in bad_args:
        with pytest.raises(SystemExit):
            tool.main(bad)


def test_public_ops_speed_prints_a_ratio_per_operation(capsys):
    tool = _script("public_ops_speed")
    tool.main(["--nets", "4-8-3", "--dtypes", "float64", "--m", "40", "--batch", "8", "--repeats", "1"])
    row = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("4-8-3")]
    assert len(row) == 1 and len(re.findall(r"[0-9.]+x", row[0])) == len(tool.OPS) == 6
    # --forward-ways: the examples as rows against the column pass, a ratio per forward operation
    tool.main(["--forward-ways", "--nets", "40-30-1", "--dtypes", "float64", "--m", "40", "--repeats", "1"])
    row = [line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("40-30-1")]
    assert len(row) == 1 and len(re.findall(r"[0-9.]+x", row[0])) == len(tool.FORWARD_OPS) == 3


def test_split_speed_prints_a_row_per_case(capsys):
    """tools/split_speed.py (the split column kernels on one and two threads) runs; no time asserted."""
    # float64: the threaded twin the rest of the suite compiles (a float32 one would be 20 s more)
    args = ["--nets", "8-16-2", "--dtypes", "float64", "--batches", "8", "--repeats", "1", "--examples", "64"]
    _script("split_speed").main(args)
    out = capsys.readouterr().out
    assert out.count("batch    8") == 2 and "split/1 / whole" in out


def test_peak_share_prints_a_share_per_case(capsys):
    """tools/peak_share.py (an epoch's true GFLOP/s ÷ BLAS's, round by round) runs; no time asserted."""
    tool = _script("peak_share")
    args = ["--nets", "2-4-1", "--dtypes", "float64", "--batches", "32", "--rounds", "2", "--n", "16"]
    tool.main([*args, "--examples", "64"])
    assert "2-4-1 float64 batch   32 | share" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tool.main(["--rounds", "0"])
    tool.main([*args, "--examples", "64", "--step-products", "--stored-order"])
    out = capsys.readouterr().out
    assert "(the order stored)" in out and "products alone" in out and "epoch ÷ products" in out


def test_peak_share_step_products_are_the_steps_matrix_products():
    """tools/peak_share.py's ``_step_products`` (the bound an epoch is held to with --step-products)
    forms each layer's Z = W A, dW = Z Aᵀ and, from the second layer, Wᵀ Z: NumPy's products."""
    tool = _script("peak_share")
    W, A, Z, dW, dA = tool._products_problem([5, 3, 2], np.float64, 7)
    tool._step_products(W, A, Z, dW, dA, 1)
    for l in range(2):
        np.testing.assert_allclose(Z[l], W[l] @ A[l], rtol=1e-12)
        np.testing.assert_allclose(dW[l], Z[l] @ A[l].T, rtol=1e-12)
    np.testing.assert_allclose(dA[1], W[1].T @ Z[1], rtol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tile_speed_tiles_give_the_loops_bits(dtype):
    """tools/tile_speed.py: the kernels' register tiles over 19 rows (two or three tiles of R and a
    remainder) give bit for bit the column loops' Z = W A + b, and both match NumPy's; rates > 0; a
    shape that is not a whole number of strips is refused."""
    mod = _script("tile_speed")
    assert mod.tile_rows() in (6, 8) and mod.tile_strips() in (1, 2)
    r = mod.measure("19x70x32", np.dtype(dtype), 1, mod.make_kernels())
    assert r["same_bits"] and r["matches_numpy"] and min(r["tiles"], r["loops"], r["blas"]) > 0
    with pytest.raises(ValueError, match="multiple of"):
        mod.measure("9x70x12", np.dtype(dtype), 1, mod.make_kernels())
    with pytest.raises(ValueError, match="expected n_out x n_in x examples"):
        mod.parse_shape("64x64", dtype)


#: (NUMBA_CPU_NAME, R, strips per float32 tile, the features it needs, the tests/test_columns.py
#: cases also run there): AVX2's six rows, and an Intel AVX-512 core's eight rows by two float32
#: strips (fastbp/_fast/_tiles.py, tile_rows and tile_strips), whose tiles this host's own run
#: never compiles: all three products on them (float32; float64 tiles have one strip, as here).
_TILE_TARGETS = [
    ("haswell", 6, 1, ("avx2", "fma"), ""),
    ("skylake-avx512", 8, 2, ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "fma"), "float32"),
]


@pytest.mark.slow
@pytest.mark.parametrize("cpu, rows, strips, features, columns", _TILE_TARGETS, ids=[t[0] for t in _TILE_TARGETS])
def test_the_tiles_give_the_loops_bits_on_other_targets(tmp_path, cpu, rows, strips, features, columns):
    """The tiles compiled for another target in a fresh process with its own cache: AVX2 (R = 6)
    and an Intel AVX-512 core (two strips a float32 tile).  tools/tile_speed.py's Z = W A + b on
    23 rows (R = 6: three tiles and the remainders 4, 1; R = 8: two tiles and 4, 2, 1) and 32 and
    48 columns (one pair of float32 strips; a pair and a lone strip) gives the loops' bits, both
    dtypes; where ``columns`` names cases, tests/test_columns.py's check of all three products
    (bias, dA's start at 0, dW's accumulation) against the loops, between sentinels that no
    product may touch, runs there too."""
    import os
    import subprocess
    import sys

    if not host_runs(features):
        pytest.skip(f"this CPU cannot run code compiled for {cpu}")
    root = Path(__file__).resolve().parents[1]
    code = (
        "import numpy as np, importlib.util, sys, pytest;"
        "spec = importlib.util.spec_from_file_location('t', sys.argv[1]); m = importlib.util.module_from_spec(spec);"
        f"spec.loader.exec_module(m); assert (m.tile_rows(), m.tile_strips()) == ({rows}, {strips});"
        "k = m.make_kernels();"
        "rs = [m.measure(s, np.dtype(d), 1, k) for d in ('float32', 'float64') for s in ('23x70x32', '23x70x48')];"
        "assert all(r['same_bits'] and r['matches_numpy'] for r in rs), rs; print('tiles ok', flush=True);"
        "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '-k', sys.argv[3], sys.argv[2]]) if sys.argv[3] else 0)"
    )
    env = {**os.environ, "NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": "", "NUMBA_CACHE_DIR": str(tmp_path)}
    tool = str(root / "tools" / "tile_speed.py")
    check = str(root / "tests" / "test_columns.py") + "::test_register_tiles_give_the_plain_loops_results"
    done = subprocess.run(
        [sys.executable, "-c", code, tool, check, columns],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=root,
    )
    out = done.stdout
    assert done.returncode == 0 and "tiles ok" in out, (out[-2000:], done.stderr[-2000:])
    if columns:
        assert " passed" in out, out[-2000:]


def test_tile_speed_main_prints_a_row_and_refuses_bad_arguments(capsys):
    mod = _script("tile_speed")
    assert mod.main(["--shapes", "9x16x16", "--dtypes", "float64", "--repeats", "1"]) == 0
    assert "float64  9x16x16" in capsys.readouterr().out
    for bad in (["--repeats", "0"], ["--shapes", "8x8x3"], ["--dtypes", "float16"]):
        with pytest.raises(SystemExit):
            mod.main(bad)


def test_tile_speed_transposes_times_the_kernels_transpose_and_refuses_bad_shapes(capsys):
    """``--transposes``: a row per dtype and shape, each order checked to give Mᵀ (no time asserted)."""
    mod = _script("tile_speed")
    assert mod.main(["--transposes", "--shapes", "16x136", "--dtypes", "float32", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "float32  16x136" in out and "exact: True" in out
    for bad in ("16x13", "16", "0x8"):
        with pytest.raises(SystemExit):
            mod.main(["--transposes", "--shapes", bad])


def test_tile_speed_lead_gives_the_same_bits_at_either_stride_and_refuses_bad_shapes(capsys):
    """``--lead``: the tiles' Z and dA with the rows nc apart and at the tiled workspace's padded
    stride (``_columns._lead``: 128 float32 columns are 512 bytes, padded by a strip) agree bit for
    bit; a row per dtype and shape (no time asserted)."""
    mod = _script("tile_speed")
    r = mod.measure_lead("19x70x128", np.dtype("float32"), 1, mod.make_lead_kernels())
    assert r["ld"] == 144 and r["forward_same_bits"] and r["back_same_bits"]
    assert min(r["forward_nc"], r["forward_lead"], r["back_nc"], r["back_lead"]) > 0
    assert mod.main(["--lead", "--shapes", "9x16x64", "--dtypes", "float64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "float64  9x16x64" in out and "ld   72" in out and "same bits at nc = 64: True" in out
    with pytest.raises(SystemExit):
        mod.main(["--lead", "--shapes", "8x8x3"])


def test_hotspots_names_numba_functions_and_maps_this_process(tmp_path):
    """tools/hotspots.py: Numba's mangled names read back as dotted paths, and the perf map it
    writes lists the functions compiled in this process (address, size, name; perf's format)."""
    from numba import njit

    mod = _script("hotspots")
    assert mod._demangle("_ZN6fastbp5_fast6_tiles7_stripsB3v12E5Array") == "fastbp._fast._tiles._strips"
    assert mod._demangle("_ZN7cpython6fastbp3fooB2v1E") == "fastbp.foo.<wrapper>"
    assert mod._demangle("NRT_incref") == "NRT_incref"

    @njit(cache=False)
    def twice_plus_one(x):
        return 2 * x + 1

    assert twice_plus_one(3) == 7
    path, n = mod.write_perf_map(str(tmp_path / "perf.map"))
    lines = open(path).read().splitlines()
    assert n == len(lines) >= 1
    assert any(line.split(" ", 2)[2].endswith("twice_plus_one") for line in lines)
    for line in lines:
        addr, size, _name = line.split(" ", 2)
        assert int(addr, 16) > 0 and int(size, 16) > 0


def test_hotspots_refuses_bad_arguments(monkeypatch):
    """Each bad argument is refused before anything runs (perf present or not: its check comes last)."""
    mod = _script("hotspots")
    monkeypatch.setattr(mod.shutil, "which", lambda name: "/usr/bin/" + name)
    for bad in (["--net", "64x10"], ["--batch", "0"], ["--seconds", "0"], ["--top", "0"], ["--cpu", "4096"]):
        with pytest.raises(SystemExit):
            mod.main(bad)


@pytest.mark.skipif(np.finfo(np.longdouble).nmant <= 52, reason="needs a long double wider than float64")
def test_vmath_accuracy_prints_every_function_within_the_tests_bounds(capsys):
    tool = _script("vmath_accuracy")
    tool.main(["--points", "20000"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        (d, f) for d in ("float32", "float64") for f in ("tanh", "exp", "sigmoid")
    )
    assert all(float(r[2]) <= 4.0 for r in rows)  # tests/test_vmath.py's ULP_BOUND, at most


def test_boundscheck_sweep_draws_reach_the_fast_paths_and_refuses_an_unchecked_interpreter():
    from fastbp import _dispatch
    from fastbp.activations import get_activation
    from fastbp.losses import NAMES as OUTPUT_CODES

    sweep = _script("boundscheck_sweep")
    draws = sweep.draw_cases(0, 80)
    assert draws == sweep.draw_cases(0, 80) and draws != sweep.draw_cases(1, 80)  # seeded
    fast = [d for d in draws if _dispatch._fast_forward(get_activation(d.activation), d.sizes, d.m)]
    assert any(_dispatch.packed_forward(d.sizes, OUTPUT_CODES[d.output]) for d in fast)
    assert any(not _dispatch.packed_forward(d.sizes, OUTPUT_CODES[d.output]) for d in fast)
    assert {1, None} <= {d.batch_size for d in draws} and {"float32", "float64"} == {d.dtype for d in draws}
    assert any(1 in d.sizes[1:] for d in draws)  # a layer of one unit
    with pytest.raises(SystemExit, match="NUMBA_BOUNDSCHECK=1"):  # this interpreter checks no bounds
        sweep.main(["--cases", "1"])


def test_boundscheck_sweep_counts_a_divergence_only_when_the_reference_diverges_too():
    from fastbp import DivergenceError
    from fastbp.testing import make_problem

    sweep = _script("boundscheck_sweep")
    prob = make_problem((3, 4, 1), np.float64, "tanh", "sigmoid", m=5)

    def diverges(*args):
        raise DivergenceError(0)

    def answers(*args):
        return np.zeros(1)

    with pytest.raises(DivergenceError):  # both: the divergence contract at work, reported
        sweep.run_operation(diverges, diverges, prob, "loss", np.float64)
    for kernel, reference in ((diverges, answers), (answers, diverges)):  # one alone: a disagreement
        with pytest.raises(AssertionError, match="diverged"):
            sweep.run_operation(kernel, reference, prob, "loss", np.float64)
    sweep.run_operation(answers, answers, prob, "loss", np.float64)
    with pytest.raises(AssertionError):
        sweep.run_operation(answers, lambda *a: np.ones(1), prob, "loss", np.float64)
