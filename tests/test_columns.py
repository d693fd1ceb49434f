"""The column mini-batch kernels (fastbp._fast.columns): both of their paths (their own loops and
BLAS) against the plain kernel, chunked batches, the padding of short batches, and the same bits
whatever BLAS's thread count (the dispatcher holds BLAS to one thread).  The dispatcher's grid
(tests/test_dispatch.py) covers them again as it selects them."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from fastbp import _dispatch, reference
from fastbp._blas import one_blas_thread
from fastbp._fast._columns import (
    PAD,
    _affine_rows,
    _affine_tiles,
    _back_rows,
    _back_tiles,
    _grad_rows,
    _grad_tiles,
    _lead,
    _sigmoid_cost_row,
    _softmax_columns,
    _softmax_cost_columns,
    _transpose,
)
from fastbp._fast._common import _matrix_view
from fastbp._fast._tiles import STRIP_BYTES
from fastbp._jit import jit_vec
from fastbp._plain import BUILTIN
from fastbp.activations import NAMES as ACT_CODES
from fastbp.losses import NAMES as OUT_CODES
from fastbp.losses import OUT_SIGMOID, OUT_SOFTMAX, cost_loop, output_loop
from fastbp.optimizers import Adam
from fastbp.params import Layout
from fastbp.testing import assert_agree, make_problem

#: How a column kernel runs its products, as ``(name suffix, blas_min)``: every layer on the loops,
#: every layer on BLAS, BLAS from the dispatcher's threshold, every layer on the register tiles
#: (the ``_tiles`` twins, which take no layer to BLAS).
PATHS = {
    "loops": ("", _dispatch.NO_BLAS),
    "blas": ("", 0),
    "dispatched": ("", _dispatch.BLAS_MIN_WEIGHTS),
    "tiles": ("_tiles", _dispatch.NO_BLAS),
}

#: How a column epoch runs its batches: whole (``split`` False), split in two halves on the
#: one-thread kernel, and split on its threaded twin (``parallel=True``).
WAYS = {"whole": ("", False), "split": ("", True), "threaded": ("_threads", True)}

#: The (way, dtype) pairs of the gradient-descent epoch's grid: every way in both dtypes, the threaded
#: twin in float64 only.  A threaded twin is its one-thread split kernel's source compiled again with
#: ``parallel=True`` (held to that kernel's bits below, whose float32 copy runs here as "split"); the
#: dtype's arithmetic is in the callees they share.  Each float32 threaded twin was a cold compile of
#: 26-27 s of CI's 15 minutes (docs/performance-kernels.md, "Where a digits fit's time goes").  A
#: float32 threaded twin still runs, on every thread count, in tests/test_fast_kernels.py
#: (``test_the_split_step_reads_its_partial_sums_on_every_thread_count``).
WAY_DTYPES = [(w, t) for w in WAYS for t in (np.float32, np.float64) if w != "threaded" or t == np.float64]

#: The plain kernels' ``sw`` argument for unweighted examples (the column kernels take none).
NO_WEIGHTS = {t: np.empty(0, t) for t in (np.float32, np.float64)}

#: Widths of 1, odd widths (the loops' two-row steps), depth 1 to 3, every output.
CASES = [
    ([3, 1], "identity"),
    ([2, 4, 1], "sigmoid"),
    ([5, 3, 7, 2], "softmax"),
    ([3, 1, 4], "exp"),
    ([17, 9, 3], "softmax"),
]


def _setup(sizes, out, dtype, m, bs, act="tanh"):
    prob = make_problem(sizes, dtype=dtype, activation=act, output=out, m=m, batch_size=bs, seed=3, learning_rate=0.05)
    lay = Layout(sizes)
    p0 = lay.pack(prob.weights, prob.biases, np.dtype(dtype))
    if out == "exp":  # Poisson targets are counts
        prob = dataclasses.replace(prob, Y=np.abs(np.round(prob.Y * 3)).astype(dtype))
    return prob, lay, p0


def _kernel(name, way, path):
    """The column epoch ``name`` run ``way`` (:data:`WAYS`) on ``path`` (:data:`PATHS`):
    ``(kernel, split, blas_min)``."""
    suffix, split = WAYS[way]
    tiles, blas_min = PATHS[path]
    return getattr(importlib.import_module("fastbp._fast.columns"), name + suffix + tiles), split, blas_min


def _gd_epoch(way, p, lay, prob, order, bs, lr, out, path):
    """One ``_columns_epoch`` run ``way`` (:data:`WAYS`) on ``p`` in place: ``(total, resume)``."""
    kernel, split, blas_min = _kernel("_columns_epoch", way, path)
    args = (lay.sizes, prob.X, prob.Y, order, bs, lr, ACT_CODES["tanh"], OUT_CODES[out], 1e30, blas_min, split)
    with one_blas_thread():
        return kernel(p, *args)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("way, dtype", WAY_DTYPES)
@pytest.mark.parametrize("bs", [4, 8, 17, 300, 700])
def test_columns_epoch_agrees_with_plain(path, way, dtype, bs):
    """Batches shorter than the padding, not a multiple of it, one chunk and several chunks
    (CHUNK = 256: batch 300 and 700; split in halves: 150 and 350, two chunks each), m not a
    multiple of the batch (701: a last batch of one example, whose second half is empty)."""
    for sizes, out in CASES:
        prob, lay, p0 = _setup(sizes, out, dtype, 701, bs)
        order = np.asarray(prob.order, dtype=np.int64)
        lr = np.dtype(dtype).type(prob.learning_rate)
        p_fast, p_plain = p0.copy(), p0.copy()
        total, resume = _gd_epoch(way, p_fast, lay, prob, order, bs, lr, out, path)
        J, failed = BUILTIN._train_epoch(
            p_plain, lay.sizes, prob.X, prob.Y, order, bs, lr, ACT_CODES["tanh"], OUT_CODES[out], NO_WEIGHTS[dtype]
        )
        assert resume == failed == -1
        assert_agree((total / 701, p_fast), (J, p_plain), dtype, f"{sizes} {out} batch {bs} {path}")
        if way == "threaded":  # the threaded twin: the one-thread split kernel's bits exactly
            p_one = p0.copy()
            assert _gd_epoch("split", p_one, lay, prob, order, bs, lr, out, path) == (total, resume)
            np.testing.assert_array_equal(p_one, p_fast)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("bs", [32, 300])
def test_columns_optimizer_epoch_agrees_with_plain(path, way, bs):
    """m = 301: a last batch of 13, or of one example (whose second half is empty)."""
    runs = {"fast": _kernel("_columns_epoch_opt", way, path), "plain": None}
    if way == "threaded":
        runs["one thread"] = _kernel("_columns_epoch_opt", "split", path)
    for sizes, out in CASES:
        prob, lay, p0 = _setup(sizes, out, np.float64, 301, bs)
        results = {}
        for run, kernel_split in runs.items():
            opt = Adam(0.01, alpha=0.01)
            opt.bind(lay.sizes, np.float64)
            p = p0.copy()
            args = (p, lay.sizes, prob.X, prob.Y, np.arange(301), bs, ACT_CODES["relu"], OUT_CODES[out], opt.kind)
            tail = (opt.hyper(), opt.state, opt.counter, opt.alpha, 1.0)
            if kernel_split is not None:
                kernel, split, blas_min = kernel_split
                with one_blas_thread():
                    res = kernel(*args, *tail, blas_min, split)
            else:
                res = BUILTIN._train_epoch_opt(*args, *tail, NO_WEIGHTS[np.float64])
            results[run] = (res, p, opt.state)
        assert results["fast"][0][1] == results["plain"][0][1] == -1
        assert_agree(results["fast"], results["plain"], np.float64, f"{sizes} {out} {path}")
        if "one thread" in results:  # the threaded twin: the one-thread split kernel's bits exactly
            assert results["one thread"][0] == results["fast"][0]
            for a, b in zip(results["one thread"][1:], results["fast"][1:]):
                np.testing.assert_array_equal(a, b)


def test_matrix_view_is_the_reshape_it_replaces():
    flat = np.arange(40.0)

    @njit
    def take(a, start, n, nc):
        return _matrix_view(a, start, n, nc).copy()

    np.testing.assert_array_equal(take(flat, 6, 3, 5), flat[6:21].reshape(3, 5))


def _tool(name):
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_same_bits_for_any_blas_thread_count():
    """Fresh processes with OPENBLAS_NUM_THREADS 1 and 2 (products big enough for OpenBLAS to
    split them): the dispatcher's hold gives the same parameters bit for bit."""
    tool = _tool("blas_threads")
    assert tool.fingerprint("200-64-3", 1, held=True) == tool.fingerprint("200-64-3", 2, held=True)


def test_columns_sweep_prints_a_row_per_batch_and_interleaved_ratios(capsys):
    """tools/columns_sweep.py runs, both ways (a smoke run: no time asserted)."""
    tool = _tool("columns_sweep")
    args = ["--nets", "2-4-1", "--dtypes", "float32", "--batches", "8", "--examples", "64"]
    tool.main([*args, "--repeats", "1"])
    assert "2-4-1 float32 batch    8" in capsys.readouterr().out
    tool.main([*args, "--repeats", "2", "--interleave"])  # goal 1's mode: the same kernels, a ratio per batch
    assert re.search(r"2-4-1 float32 batch    8 \| ratio +[0-9.]+ \(lowest +[0-9.]+\)", capsys.readouterr().out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", list(PATHS))
def test_column_forward_kernels_agree_with_plain(path, dtype):
    """predict, forward and loss over several chunks (m = 601) against the plain kernels."""
    from fastbp._fast import forward as fwd

    for sizes, out in CASES:
        prob, lay, p = _setup(sizes, out, dtype, 601, 1)
        act, code = ACT_CODES["tanh"], OUT_CODES[out]
        n_L, n_units = sizes[-1], sum(sizes[1:])
        AL, AL_plain = np.empty((601, n_L), dtype), np.empty((601, n_L), dtype)
        Z, A = np.empty((n_units, 601), dtype).T, np.empty((n_units, 601), dtype).T  # the kernel's: units-major
        Zp, Ap = np.empty((601, n_units), dtype), np.empty((601, n_units), dtype)
        tiles, blas_min = PATHS[path]
        with one_blas_thread():
            found = [getattr(fwd, "_predict_fast" + tiles)(p, lay.sizes, prob.X, act, code, AL, blas_min)]
            found.append(getattr(fwd, "_forward_fast" + tiles)(p, lay.sizes, prob.X, act, code, Z.T, A.T, blas_min))
            J, non_finite = getattr(fwd, "_loss_fast" + tiles)(p, lay.sizes, prob.X, prob.Y, act, code, blas_min)
        assert found + [non_finite] == [False] * 3, "saw NaN or inf in a finite X"
        BUILTIN._output_batch(p, lay.sizes, prob.X, act, code, AL_plain)
        BUILTIN._forward_batch(p, lay.sizes, prob.X, act, code, Zp, Ap)
        J_plain = BUILTIN._loss_batch(p, lay.sizes, prob.X, prob.Y, act, code)
        assert_agree((AL, Z, A, J), (AL_plain, Zp, Ap, J_plain), dtype, f"{sizes} {out} {path}")


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
@pytest.mark.parametrize("path", list(PATHS))
def test_column_forward_kernels_find_non_finite_X_in_any_chunk(path, bad):
    """Each way of the column pass (loops, BLAS, tiles) reports NaN or inf in any row of X, in the
    first, a middle or the short last chunk: the public wrappers leave that check to it."""
    from fastbp._fast import forward as fwd

    m, dtype = 601, np.float64
    tiles, blas_min = PATHS[path]
    for sizes, out in CASES[:3]:
        prob, lay, p = _setup(sizes, out, dtype, m, 1)
        act, code = ACT_CODES["tanh"], OUT_CODES[out]
        n_units = sum(sizes[1:])
        for row, col in [(0, 0), (300, sizes[0] - 1), (m - 1, sizes[0] - 1)]:
            X = prob.X.copy()
            X[row, col] = bad
            ZT, AT = np.empty((2, n_units, m), dtype)
            AL = np.empty((m, sizes[-1]), dtype)
            with one_blas_thread():
                found = [getattr(fwd, "_predict_fast" + tiles)(p, lay.sizes, X, act, code, AL, blas_min)]
                found.append(getattr(fwd, "_forward_fast" + tiles)(p, lay.sizes, X, act, code, ZT, AT, blas_min))
                found.append(getattr(fwd, "_loss_fast" + tiles)(p, lay.sizes, X, prob.Y, act, code, blas_min)[1])
            assert found == [True] * 3, (sizes, path, row, col)


#: The built-in hidden activations, one name per code.
BUILTIN_ACTS = sorted({code: name for name, code in ACT_CODES.items()}.values())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("act", BUILTIN_ACTS)
def test_fast_backward_agrees_with_plain(act, order, dtype):
    """kernels.backward's kernels (fastbp/_fast/backward.py, BLAS: units-major for a Fortran-ordered
    stored pass, the column forward pass's; the examples as rows otherwise, e.g. the packed forward
    pass's row blocks) against the plain one-example-at-a-time kernel, from the same stored forward
    pass: dZ of every layer and the mean gradient, every output, depths 1-3, widths of 1, m = 1 and 601."""
    from fastbp.activations import get_activation

    for sizes, out in CASES:
        for m in (1, 601):
            prob, lay, p = _setup(sizes, out, dtype, m, 1, act)
            code = ACT_CODES[act]
            n_units = sum(sizes[1:])
            Z, A = np.empty((m, n_units), dtype), np.empty((m, n_units), dtype)
            BUILTIN._forward_batch(p, lay.sizes, prob.X, code, OUT_CODES[out], Z, A)
            dZ_plain, grad_plain = np.empty((m, n_units), dtype), np.empty_like(p)
            BUILTIN._backward_batch(p, lay.sizes, prob.X, prob.Y, Z, A, code, dZ_plain, grad_plain)
            Zs, As = lay.unit_views(Z), lay.unit_views(A)  # column blocks: strided rows
            if order == "F":
                Zs, As = [np.asfortranarray(z) for z in Zs], [np.asfortranarray(a) for a in As]
            dZ, grad = _dispatch.backward(p, lay.sizes, prob.X, prob.Y, Zs, As, get_activation(act))
            # units-major blocks transposed, or row blocks; for m = 1 a row is both
            assert all(d.flags.f_contiguous if order == "F" else d.flags.c_contiguous for d in dZ)
            assert_agree((dZ, grad), (lay.unit_views(dZ_plain), grad_plain), dtype, f"{sizes} {out} {act} m={m}")


def test_backward_reads_the_column_forward_pass_in_place_and_copies_anything_else(monkeypatch):
    """kernels.backward from kernels.forward's column pass (each Z[l], A[l] a transposed block of
    one units-major buffer) hands the kernel those buffers, not copies; layers that are not such
    views end to end (separate Fortran-ordered arrays, two passes' layers mixed, a read-only layer),
    and a pass below ``UNITS_MAJOR_MIN_ELEMENTS``, are copied; the bits are the same every way."""
    from fastbp import kernels
    from fastbp._fast import backward as bw

    monkeypatch.setattr(_dispatch, "FAST_FORWARD_MIN_ROWS", 0)
    monkeypatch.setattr(_dispatch, "UNITS_MAJOR_MIN_ELEMENTS", 0)  # (a pass of 601 x 12 values is below it)
    seen = []
    real = bw._backward_fast
    monkeypatch.setattr(bw, "_backward_fast", lambda *a: seen.append((a[4], a[5])) or real(*a))
    prob = make_problem([5, 3, 7, 2], output="softmax", m=601, seed=4)
    args = (prob.weights, prob.biases, prob.X)
    Z, A = kernels.forward(*args, "tanh", "softmax")
    Z2, A2 = kernels.forward(*args, "tanh", "softmax")
    frozen = [a.copy(order="F") for a in A]
    frozen[1].flags.writeable = False
    ways = {
        "in place": (Z, A, True),
        "separate arrays": ([z.copy(order="F") for z in Z], [a.copy(order="F") for a in A], False),
        "two passes mixed": ([Z[0], Z2[1], Z[2]], A, False),
        "a read-only layer": (Z, frozen, False),
    }
    results = {}
    for way, (Zs, As, in_place) in ways.items():
        seen.clear()
        results[way] = kernels.backward(*args, prob.Y, Zs, As, "tanh", "softmax")
        ((ZT, AT),) = seen
        assert np.shares_memory(ZT, Z[0]) is in_place and np.shares_memory(AT, A[0]) is (way == "in place"), way
    monkeypatch.setattr(_dispatch, "UNITS_MAJOR_MIN_ELEMENTS", 601 * 12 + 1)  # below it: copied
    seen.clear()
    kernels.backward(*args, prob.Y, Z, A, "tanh", "softmax")
    assert not np.shares_memory(seen[0][0], Z[0])
    want = reference.backward(*args, prob.Y, Z, A, "tanh", "softmax")
    assert_agree(results["in place"], want, np.float64, "backward from the column pass's buffers")
    for way in ways:
        for got, ref in zip(
            results[way][0] + results[way][1] + results[way][2],
            results["in place"][0] + results["in place"][1] + results["in place"][2],
        ):
            assert np.array_equal(got, ref), way


def test_public_forward_passes_take_the_column_kernels_above_the_threshold(monkeypatch):
    """kernels.predict/forward/loss/gradients: the same results through the column kernels
    (threshold 0) as below it (threshold out of reach: the rows kernels, fastbp/_fast/rows.py, and
    the plain gradients); 5-6-3 runs the plain column
    kernels, 9-8-3 (72 weights, 40 rows) their ``_tiles`` twins."""
    from fastbp import kernels

    for sizes in ([5, 6, 3], [9, 8, 3]):
        prob = make_problem(sizes, output="softmax", m=40, seed=1)
        results = {}
        for name, threshold in (("columns", 0), ("rows", 1 << 62)):
            monkeypatch.setattr(_dispatch, "FAST_FORWARD_MIN_ROWS", threshold)
            args = (prob.weights, prob.biases, prob.X)
            Z, A = kernels.forward(*args, "tanh", "softmax")  # the column kernel's: Fortran-ordered views
            results[name] = (
                kernels.predict(*args, "tanh", "softmax"),
                (Z, A),
                kernels.loss(*args, prob.Y, "tanh", "softmax"),
                kernels.gradients(*args, prob.Y, "tanh", "softmax"),
                kernels.backward(*args, prob.Y, Z, A, "tanh", "softmax"),  # takes them back, either order
                reference.backward(*args, prob.Y, Z, A, "tanh", "softmax"),
            )
            assert all(z.flags.f_contiguous for z in Z + A) is (name == "columns")
            # Z and A from one allocation (a loop of calls then reuses the memory the last one
            # freed, where two buffers of one size were handed back and faulted in anew each
            # call: fastbp._dispatch.forward, tools/output_faults.py)
            assert all(v.base is Z[0].base for v in Z + A) and Z[0].base is not None
        assert _dispatch.uses_tiles(sizes, 40) is (sizes[0] == 9)
        assert_agree(results["columns"], results["rows"], np.float64, f"public forward passes, {sizes}")


@njit
def _softmax_block(Z, YT, col):
    """The column kernels' softmax passes on a whole block: ``(A, summed cost)``."""
    A = np.empty_like(Z)
    _softmax_columns(Z, A, Z.shape[0], Z.shape[1], col)
    return A, _softmax_cost_columns(Z, YT, Z.shape[0], Z.shape[1], col)


@njit
def _softmax_by_column(Z, YT):
    """The plain kernel's softmax and cost, one column (example) at a time."""
    A = np.empty_like(Z)
    total = 0.0
    for t in range(Z.shape[1]):
        z = np.ascontiguousarray(Z[:, t])
        a = np.empty_like(z)
        output_loop(z, a, OUT_SOFTMAX)
        A[:, t] = a
        total += cost_loop(z, np.ascontiguousarray(YT[:, t]), OUT_SOFTMAX)
    return A, total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_out", [1, 2, 3, 10])
def test_the_softmax_along_the_rows_gives_each_columns_softmax(n_out, dtype):
    """_softmax_columns (passes along the rows, SIMD across examples) against the plain
    output_loop per column, NaN, ±inf and the dtype's largest logits included: the same NaN and
    infinities where they are, the rest to the dtype's tolerance (the plain loop's sum over the
    outputs may be vectorised, so the two may round differently); the summed cost likewise."""
    rng = np.random.default_rng(n_out)
    big = np.finfo(dtype).max
    Z = (rng.normal(size=(n_out, 40)) * 30).astype(dtype)
    Z[:, 33] = np.nan
    Z[0, 34] = np.inf
    Z[:, 35] = -np.inf
    Z[-1, 36] = -np.inf
    Z[:, 37] = big
    Z[0, 38] = -big
    YT = np.zeros_like(Z)
    YT[rng.integers(0, n_out, 40), np.arange(40)] = 1
    A, cost = _softmax_block(Z, YT, np.zeros(3 * 40))
    A_ref, cost_ref = _softmax_by_column(Z, YT)
    np.testing.assert_array_equal(np.isnan(A), np.isnan(A_ref))
    np.testing.assert_array_equal(np.where(np.isfinite(A_ref), 0, A), np.where(np.isfinite(A_ref), 0, A_ref))
    assert_agree(np.where(np.isfinite(A_ref), A, 0), np.where(np.isfinite(A_ref), A_ref, 0), dtype)
    finite = slice(0, 33)
    _, cost_finite = _softmax_block(Z[:, finite].copy(), YT[:, finite].copy(), np.zeros(3 * 33))
    _, cost_finite_ref = _softmax_by_column(Z[:, finite].copy(), YT[:, finite].copy())
    assert_agree(cost_finite, cost_finite_ref, dtype)
    assert np.isnan(cost) == np.isnan(cost_ref)


@njit
def _sigmoid_fused(z, a, d, y, nc, scale):
    """_sigmoid_cost_row called from compiled code (it has no Python entry point)."""
    return _sigmoid_cost_row(z, a, d, y, nc, scale)


@njit
def _sigmoid_apart(z, y, scale):
    """The plain passes the fused σ row replaces: output_loop's σ, cost_loop's cost, (A − Y)·scale."""
    a = np.empty_like(z)
    output_loop(z, a, OUT_SIGMOID)
    return a, cost_loop(z, y, OUT_SIGMOID), (a - y) * scale


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_fused_sigmoid_row_gives_the_sigmoid_its_cost_and_dz(dtype):
    """_sigmoid_cost_row (σ, cost and dZ from one e^(−|z|)) against output_loop and cost_loop: A
    and dZ the same bits (NaN, ±0, ±inf, the dtype's extremes, values around the flush to 0 and
    the overflow of e^|z| included), the cost to the dtype's tolerance (its own summation order);
    nothing written past ``nc``."""
    rng = np.random.default_rng(7)
    info = np.finfo(dtype)
    edges = [
        np.nan,
        -np.nan,
        0.0,
        -0.0,
        np.inf,
        -np.inf,
        info.max,
        -info.max,
        info.tiny,
        -info.tiny,
        1e-30,
        88.0,
        -88.0,
        104.0,
        -104.0,
        708.0,
        -745.0,
        20.0,
        -20.0,
    ]
    z = np.concatenate([np.array(edges), rng.normal(size=300) * 6, rng.normal(size=50) * 60]).astype(dtype)
    y = (rng.random(z.shape[0]) < 0.5).astype(dtype)
    nc = z.shape[0] - 5  # the last five: columns after the chunk's
    scale = dtype(1 / 37)
    a = np.full_like(z, 3.5)
    d = np.full_like(z, 3.5)
    cost = _sigmoid_fused(z, a, d, y, nc, scale)
    a_ref, cost_ref, d_ref = _sigmoid_apart(z[:nc], y[:nc], scale)
    bits = np.uint32 if dtype == np.float32 else np.uint64  # NaN's sign and payload too
    np.testing.assert_array_equal(a[:nc].view(bits), a_ref.view(bits))
    np.testing.assert_array_equal(d[:nc].view(bits), d_ref.view(bits))
    assert (a[nc:] == 3.5).all() and (d[nc:] == 3.5).all()
    assert np.isnan(cost) and np.isnan(cost_ref)  # the NaN logit
    finite = slice(len(edges), nc)
    cost = _sigmoid_fused(
        z[finite].copy(), a[finite].copy(), d[finite].copy(), y[finite].copy(), nc - len(edges), scale
    )
    _, cost_ref, _ = _sigmoid_apart(z[finite].copy(), y[finite].copy(), scale)
    assert_agree(cost, cost_ref, dtype)


#: Elements before and after each flat array of the tile test, and the value they hold.
GUARD = 21
SENTINEL = -7.25


@jit_vec  # the kernels' own options: the loops' ``contract`` fuses w·a + z into one FMA, as the tiles do
def _tiled_and_looped(params, wo, bo, n_in, n_out, A, D, G, first, transpose, ld):
    """The tiled products of the column kernels (on flat arrays at an offset, as the kernels call
    them, with :data:`GUARD` sentinel elements before and after each matrix, and in each row's
    columns from nc up to the row stride ``ld``: the tiled workspace's rows, ``_columns._lead``) and
    their plain loops on the same inputs.  ``transpose``: dW's tiles transpose A themselves
    (hidden layers), else they read Aᵀ as given (the first layer's copied rows of X); Aᵀ's rows
    ``_columns._lead`` (n_in) apart, as the workspace holds them, sentinels between."""
    nc = A.shape[1]
    g = GUARD
    Af = np.full(g + n_in * ld + g, SENTINEL, params.dtype)
    Af[g : g + n_in * ld].reshape((n_in, ld))[:, :nc] = A
    Df = np.full(g + n_out * ld + n_in * ld + g, SENTINEL, params.dtype)  # dZ[l], then dA[l−1]
    Df[g : g + n_out * ld].reshape((n_out, ld))[:, :nc] = D
    Zf = np.full(g + n_out * ld + g, SENTINEL, params.dtype)
    _affine_tiles(params, wo, bo, n_in, n_out, Af, g, Zf, g, nc, ld)
    Z_loop = np.zeros((n_out, nc), params.dtype)
    _affine_rows(params, wo, bo, n_in, n_out, A, Z_loop, nc)
    _back_tiles(params, wo, n_in, n_out, Df, g, g + n_out * ld, nc, ld)
    dA_loop = np.zeros((n_in, nc), params.dtype)
    _back_rows(params, wo, n_in, n_out, D, dA_loop, nc)
    ldt = _lead(n_in, params.itemsize)  # Aᵀ's rows, as the workspace spaces them
    Tf = np.full(g + nc * ldt + g, SENTINEL, params.dtype)
    if not transpose:
        Tf[g : g + nc * ldt].reshape((nc, ldt))[:, :n_in] = A.T
    G_tile = G.copy()
    G_loop = G.copy()
    A_rows = Af[g : g + n_in * ld].reshape((n_in, ld))  # A as the kernels hold it: rows ld apart
    _grad_tiles(G_tile, wo, n_in, n_out, A_rows, Df, g, Tf, g, nc, ld, first, transpose)
    _grad_rows(G_loop, wo, n_in, n_out, A, D, nc, first, 0)
    return Zf, Z_loop, Df, dA_loop, G_tile, G_loop, Af, Tf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n_in, n_out", [(1, 1), (40, 1), (3, 7), (16, 8), (17, 9), (70, 13), (33, 64), (128, 8), (300, 230)]
)
@pytest.mark.parametrize("nc", [PAD, 3 * PAD, 8 * PAD])
@pytest.mark.parametrize("first", [True, False])
@pytest.mark.parametrize("transpose", [True, False])
@pytest.mark.parametrize("gap", [0, 1], ids=["rows-nc-apart", "rows-a-strip-further"])
def test_register_tiles_give_the_plain_loops_results(n_in, n_out, nc, first, transpose, gap, dtype):
    """The register-tiled products (fastbp._fast._tiles: Z = W A + b and dA = Wᵀ dZ bit for bit,
    being the plain loops' sums in their order; dW (+)= dZ Aᵀ, summed in another order, to the
    dtype's tolerance; for a layer of one unit by the loops themselves, no Aᵀ written) against the
    loops, with tile remainders in rows (7, 9, 13) and in dW's columns (17, 33, 70 inputs: the
    loops take the columns after the last whole strip; 128 inputs: Aᵀ's rows a strip further apart,
    ``_columns._lead``; 300 × 230: a float64 W over ``K_BLOCK_MIN_BYTES``, summed in blocks of
    ``K_BLOCK`` terms in chunks of ``K_BLOCK_MIN_STRIPS`` strips or more: 8 · PAD columns), chunks
    of one, three and eight paddings, dW's Aᵀ transposed by the tiles or given, the
    matrices inside their flat arrays between sentinels that no product may touch, NaN and inf
    propagated where the loops have them, with the rows nc apart or a strip further (the tiled
    workspace's padded stride, ``_columns._lead``: the columns between untouched)."""
    rng = np.random.default_rng(n_in * 100 + n_out)
    wo = 5
    bo = wo + n_in * n_out
    params = rng.normal(size=bo + n_out + 3).astype(dtype)
    A = rng.normal(size=(n_in, nc)).astype(dtype)
    D = rng.normal(size=(n_out, nc)).astype(dtype)
    A[0, nc - 1] = np.nan
    D[n_out - 1, 0] = np.inf
    G = rng.normal(size=params.shape[0]).astype(dtype)
    ld = nc + gap * STRIP_BYTES // np.dtype(dtype).itemsize
    Zf, Z_loop, Df, dA_loop, G_tile, G_loop, Af, Tf = _tiled_and_looped(
        params, wo, bo, n_in, n_out, A, D, G, first, transpose, ld
    )
    g, zn, dn, an = GUARD, n_out * ld, n_in * ld, n_in * ld
    ldt = _lead.py_func(n_in, np.dtype(dtype).itemsize)
    for flat, used in ((Zf, zn), (Df, zn + dn), (Af, an), (Tf, nc * ldt)):  # nothing outside the matrices
        np.testing.assert_array_equal(flat[:g], SENTINEL)
        np.testing.assert_array_equal(flat[g + used :], SENTINEL)
    for flat, lo, n in ((Zf, g, n_out), (Df, g, n_out), (Df, g + zn, n_in), (Af, g, n_in)):  # nor between
        np.testing.assert_array_equal(flat[lo : lo + n * ld].reshape((n, ld))[:, nc:], SENTINEL)
    np.testing.assert_array_equal(Tf[g : g + nc * ldt].reshape((nc, ldt))[:, n_in:], SENTINEL)
    np.testing.assert_array_equal(Df[g : g + zn].reshape((n_out, ld))[:, :nc], D)  # dZ read, not written
    Z_tile = Zf[g : g + zn].reshape((n_out, ld))[:, :nc]
    dA_tile = Df[g + zn : g + zn + dn].reshape((n_in, ld))[:, :nc]
    np.testing.assert_array_equal(Z_tile, Z_loop)
    np.testing.assert_array_equal(dA_tile, dA_loop)
    np.testing.assert_array_equal(np.isnan(G_tile), np.isnan(G_loop))
    if n_out == 1:  # one unit: _grad_rows' dots over A as it is, not a tile of one row on Aᵀ
        np.testing.assert_array_equal(G_tile, G_loop)
        if transpose:
            np.testing.assert_array_equal(Tf, SENTINEL)
    finite = np.isfinite(G_loop)
    np.testing.assert_array_equal(G_tile[~finite], G_loop[~finite])
    assert_agree(G_tile[finite], G_loop[finite], dtype)
    np.testing.assert_array_equal(G_tile[:wo], G[:wo])  # nothing outside dW[l] is written
    np.testing.assert_array_equal(G_tile[bo:], G[bo:])


@njit
def _transposed(M):
    MT = np.full((M.shape[1], M.shape[0]), -1.0, M.dtype)
    _transpose(M, MT, M.shape[0], M.shape[1])
    return MT


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 8), (17, 40), (64, 32), (9, 16), (256, 24), (130, 9)])
def test_the_blocked_transpose_is_the_transpose(shape, dtype):
    """_transpose (8 × 8 blocks in registers, the edges element by element) gives Mᵀ exactly, in
    both of its loop orders (Mᵀ's rows 128 or more elements long: the last two shapes)."""
    M = np.random.default_rng(shape[0]).normal(size=shape).astype(dtype)
    np.testing.assert_array_equal(_transposed(M), M.T)


@pytest.mark.parametrize("way", list(WAYS))
def test_the_tiles_twins_run_no_layer_on_blas_whatever_blas_min_says(way):
    """A ``_tiles`` twin allocates the tiles' workspace (X's rows copied) and prunes BLAS, so a
    ``blas_min`` that would put every layer on BLAS, with X's rows in order (where a plain kernel
    reads them in place), gives the bits of ``NO_BLAS``: on every way, the threaded one included."""
    prob, lay, p0 = _setup([5, 16, 2], "sigmoid", np.float64, 40, 32)
    kernel, split, no_blas = _kernel("_columns_epoch", way, "tiles")
    results = []
    for blas_min in (0, no_blas):
        p = p0.copy()
        args = (lay.sizes, prob.X, prob.Y, np.arange(40), 32, 0.01, ACT_CODES["tanh"], OUT_CODES["sigmoid"], 1e30)
        results.append((kernel(p, *args, blas_min, split), p))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert not np.array_equal(results[0][1], p0)


def test_the_tiles_twins_are_the_kernels_with_the_tiles_rebound():
    """Each twin is its kernel's source with ``_TILES`` (and the gradient it calls) re-bound, and
    ``compile_as`` refuses a name that is not a global of the function (a misspelt flag would leave
    a "twin" identical to the plain kernel, which every agreement test would pass)."""
    from fastbp._fast import _columns, columns, forward, fullbatch
    from fastbp._jit import JIT_VEC, compile_as

    for module, names in (
        (columns, ("_columns_epoch", "_columns_epoch_opt", "_columns_epoch_threads", "_columns_epoch_opt_threads")),
        (forward, ("_predict_fast", "_forward_fast", "_loss_fast")),
        (fullbatch, ("_loss_and_gradient_fast",)),
    ):
        for name in names:
            plain, twin = getattr(module, name), getattr(module, name + "_tiles")
            assert plain.py_func.__code__ is twin.py_func.__code__
            assert plain.py_func.__globals__["_TILES"] is False and twin.py_func.__globals__["_TILES"] is True
    tiled_gradient = columns._split_gradient_tiles.py_func.__globals__["_columns_gradient"]
    assert tiled_gradient is _columns._columns_gradient_tiled
    for name in ("_predict_fast", "_forward_fast", "_loss_fast"):  # one compiled chunk pass each way
        assert getattr(forward, name).py_func.__globals__["_chunk_forward"] is forward._chunk_forward
        assert getattr(forward, name + "_tiles").py_func.__globals__["_chunk_forward"] is forward._chunk_forward_tiles
    assert forward._chunk_forward.py_func.__globals__["_TILES"] is False
    assert forward._chunk_forward_tiles.py_func.__globals__["_TILES"] is True
    assert _columns._columns_gradient_tiled.py_func.__globals__["_TILES"] is True
    assert fullbatch._loss_and_gradient_fast_tiles.py_func.__globals__["_columns_gradient"] is tiled_gradient
    with pytest.raises(ValueError, match="_TILE"):
        compile_as(forward._predict_body, "_misspelt", JIT_VEC, {"_TILE": True})
