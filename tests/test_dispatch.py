"""fastbp._dispatch: select_epoch as the pure function it is, and every registered fast epoch
against the plain kernel on every problem of a grid it runs (no kernel is monkeypatched)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fastbp import _dispatch
from fastbp._dispatch import FAST_EPOCHS, FAST_OPTIMIZER_EPOCHS, PLAIN, run_epoch, run_epoch_opt, select_epoch
from fastbp._plain import BUILTIN
from fastbp.activations import ACT_CUSTOM, TRAITS, get_activation
from fastbp.activations import NAMES as ACT_CODES
from fastbp.losses import NAMES as OUT_CODES
from fastbp.optimizers import Adam
from fastbp.params import Layout
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS, assert_agree, make_problem

T = _dispatch  # the thresholds, by their names

#: Problems around every threshold of the dispatcher: per-example and mini-batches; one hidden
#: layer of ≤ 4, ≤ 16 and 17 units; W[1] below and above BLOCKED_MIN_WEIGHTS; depth 1 to 3.
GRID_SIZES = [
    [3, 2],
    [2, 4, 1],
    [3, 3, 2],
    [5, 16, 2],
    [17, 8, 1],
    [2, 17, 1],
    [40, 30, 2],
    [4, 5, 3, 2],
    [33, 37, 3],
    [9, 130, 4, 1],
]
GRID_BATCHES = [1, 3, 5, 64, 67]
M = 67  # a short last batch for every batch size above but 67


def _grid():
    for sizes, bs, out in itertools.product(GRID_SIZES, GRID_BATCHES, OUTPUTS):
        if out == "softmax" and sizes[-1] == 1:
            continue
        yield sizes, bs, out


def _requiring(row):
    return [(s, bs, out) for s, bs, out in _grid() if row.requires(_dispatch._case(s, bs, OUT_CODES[out], None))]


# -------------------------------------------------------------------- select_epoch, pure


@pytest.mark.parametrize(
    "sizes, batch_size, out, threads, expected",
    [
        ([2, 4, 1], 1, "sigmoid", None, "_tiny4_epoch"),
        ([2, 4, 1], 1, "softmax", None, "_tiny_epoch"),  # softmax: not the four-unit kernel
        ([128, 4, 1], 1, "sigmoid", None, "_tiny4_epoch"),  # n_0 n_1 = TINY4_MAX_WEIGHTS
        ([129, 4, 1], 1, "sigmoid", None, "_sgd_epoch"),
        ([5, 16, 3], 1, "sigmoid", None, "_tiny_epoch"),
        ([2, 17, 1], 1, "sigmoid", None, "_sgd_epoch"),
        ([2, 4, 3, 1], 1, "sigmoid", None, "_sgd_epoch"),
        ([32, 32, 1], 1, "sigmoid", None, "_sgd_epoch_blocked_tiles"),  # W[1] = BLOCKED_MIN_WEIGHTS
        ([32, 31, 1], 1, "sigmoid", None, "_sgd_epoch"),
        ([4, 4, 1], 8, "sigmoid", None, "_tiny4_batch_epoch"),  # TINY4_MAX_BATCH
        ([4, 4, 1], 9, "sigmoid", None, "_deferred_tiles_epoch"),
        ([4, 4, 1], 15, "sigmoid", None, "_deferred_tiles_epoch"),  # DEFERRED_MAX_BATCH
        ([4, 4, 1], 16, "sigmoid", None, "_columns_epoch"),
        ([5, 4, 1], 8, "sigmoid", None, "_tiny4_batch_epoch"),  # TINY4_MAX_BATCH on any inputs
        ([5, 4, 1], 9, "sigmoid", None, "_deferred_tiles_epoch"),
        ([4, 5, 2], 8, "sigmoid", None, "_tiny_batch_epoch"),  # TINY_MAX_BATCH_NARROW, TINY_NARROW_INPUTS
        ([5, 5, 2], 3, "sigmoid", None, "_deferred_tiles_epoch"),  # over TINY_NARROW_INPUTS: no lanes
        ([5, 5, 2], 4, "sigmoid", None, "_deferred_tiles_epoch"),
        ([2, 4, 1], 2, "softmax", None, "_tiny_batch_epoch"),  # softmax: not the four-unit kernel
        ([128, 4, 1], 4, "sigmoid", None, "_tiny4_batch_epoch"),  # n_0 n_1 = TINY4_MAX_WEIGHTS
        ([129, 4, 1], 4, "sigmoid", None, "_deferred_tiles_epoch"),
        ([16, 16, 3], 3, "sigmoid", None, "_deferred_tiles_epoch"),
        ([17, 16, 3], 3, "sigmoid", None, "_deferred_tiles_epoch"),
        ([16, 17, 3], 2, "sigmoid", None, "_deferred_tiles_epoch"),
        ([16, 17, 3], 2, "sigmoid", True, "_columns_epoch_split"),
        ([2, 4, 3, 1], 7, "sigmoid", None, "_deferred_tiles_epoch"),  # two hidden layers: DEFERRED_MAX_BATCH_DEEP
        ([2, 4, 3, 1], 8, "sigmoid", None, "_columns_epoch"),
        ([2, 4, 3, 1], 3, "sigmoid", None, "_deferred_tiles_epoch"),
        ([32, 32, 1], 3, "sigmoid", None, "_deferred_tiles_epoch"),  # W[1] = BLOCKED_MIN_WEIGHTS
        ([32, 31, 1], 3, "sigmoid", None, "_deferred_tiles_epoch"),
        ([2, 4, 3, 1], 2, "sigmoid", None, "_deferred_tiles_epoch"),
        ([32, 32, 1], 8, "sigmoid", None, "_deferred_tiles_epoch"),  # DEFERRED_MAX_BATCH
        ([32, 32, 1], 15, "sigmoid", None, "_deferred_tiles_epoch"),
        ([32, 32, 1], 16, "sigmoid", None, "_columns_epoch"),  # the column kernel's tiles
        ([32, 32, 1], 20, "sigmoid", None, "_deferred_tiles_epoch"),  # ... not at 17-27, on W[1] ≥ BLOCKED_MIN_WEIGHTS
        ([32, 31, 1], 20, "sigmoid", None, "_columns_epoch"),
        ([32, 31, 1], 7, "sigmoid", None, "_deferred_tiles_epoch"),
        ([32, 31, 1], 8, "sigmoid", None, "_deferred_tiles_epoch"),
        ([64, 256, 2], 2, "sigmoid", None, "_deferred_tiles_epoch"),
        ([64, 256, 2, 2], 15, "sigmoid", None, "_deferred_tiles_epoch"),  # deeper, LARGE_W1_WEIGHTS: DEFERRED_MAX_BATCH
        ([64, 256, 2, 2], 16, "sigmoid", None, "_columns_epoch"),
        ([64, 255, 2, 2], 8, "sigmoid", None, "_columns_epoch"),  # deeper, narrower: DEFERRED_MAX_BATCH_DEEP
        ([64, 256, 2], 16, "sigmoid", None, "_deferred_tiles_epoch"),  # DEFERRED_MAX_BATCH_LARGE, LARGE_W1_WEIGHTS
        ([64, 255, 2], 16, "sigmoid", None, "_columns_epoch"),
        ([64, 256, 2], 17, "sigmoid", None, "_deferred_tiles_epoch"),  # ... and on to 27, where the tiles do not run
        ([64, 256, 2], 27, "sigmoid", None, "_deferred_tiles_epoch"),
        ([64, 256, 2], 28, "sigmoid", None, "_columns_epoch"),  # the tiles: TILES_MAX_PADDING
        ([64, 256, 2], 31, "sigmoid", None, "_columns_epoch"),
        ([1025, 16, 2], 20, "sigmoid", None, "_deferred_tiles_epoch"),  # over TILES_MAX_INPUTS: no column tiles
        ([64, 256, 2], 64, "sigmoid", None, "_columns_epoch_split"),  # SPLIT_MIN_BATCH_LARGE, LARGE_W1_WEIGHTS
        ([64, 255, 2], 64, "sigmoid", None, "_columns_epoch"),
        ([64, 255, 2], 128, "sigmoid", None, "_columns_epoch_split"),  # SPLIT_MIN_BATCH
        ([64, 32, 2], 128, "sigmoid", None, "_columns_epoch_split"),  # SPLIT_MIN_WEIGHTS
        ([63, 32, 2], 128, "sigmoid", None, "_columns_epoch"),
        ([64, 256, 2], 63, "sigmoid", None, "_columns_epoch"),
        ([64, 256, 2], 64, "sigmoid", False, "_columns_epoch_split"),  # threads=False: the one-thread twin
        ([3, 4, 2], 5, "sigmoid", True, "_columns_epoch_split"),  # asked for
        ([3, 4, 2], 2, "sigmoid", True, "_columns_epoch_split"),
        ([3, 4, 2], 1, "sigmoid", True, "_tiny_epoch"),  # per-example never threads
        ([64, 256, 2], 1025, "sigmoid", None, "_columns_epoch_split"),  # any batch ≥ 64: chunked halves
    ],
)
def test_select_epoch(sizes, batch_size, out, threads, expected):
    got = select_epoch(sizes, batch_size, OUT_CODES[out], ACT_CODES["tanh"], threads)
    assert got == expected
    assert select_epoch(sizes, batch_size, OUT_CODES[out], ACT_CODES["tanh"], threads) == got  # pure


def _split_size_problem():
    """A net the split rows take at batch 128 (W[1] of 16,384 weights): ``(prob, layout, params,
    order, tanh)``, 256 examples, softmax output."""
    sizes = [128, 128, 3]
    prob = make_problem(sizes, m=256, output="softmax")
    lay = Layout(sizes)
    return (
        prob,
        lay,
        lay.pack(prob.weights, prob.biases, np.float64),
        np.arange(256, dtype=np.int64),
        get_activation("tanh"),
    )


def _kernel_run(monkeypatch, opt: bool, n_threads: int, cpus: int = 2, safe: bool = True) -> str:
    """The compiled kernel ``run_epoch`` (or ``run_epoch_opt``) hands over for the defaults on a
    net the split rows take, with Numba's thread count, the usable CPUs and the threading
    layer's safety patched; the kernel is not run (a spy stands in for the BLAS hold)."""
    monkeypatch.setattr(_dispatch, "_num_threads", lambda: n_threads)
    monkeypatch.setattr(_dispatch, "_usable_cpus", lambda: cpus)
    monkeypatch.setattr(_dispatch, "_threadsafe_layer", lambda: safe)
    seen = []

    def spy(sizes, blas_min, kernel, *args):
        seen.append((kernel.__name__, args[-1]))
        assert args[-2] == blas_min  # the kernel's own blas_min: NO_BLAS for a _tiles twin
        assert (blas_min == _dispatch.NO_BLAS) == kernel.__name__.endswith("_tiles")
        return (0.0, -1)

    monkeypatch.setattr(_dispatch, "_blas_held", spy)
    prob, lay, p, order, tanh = _split_size_problem()
    if opt:
        adam = Adam(0.01)
        adam.bind(lay.sizes, np.float64)
        tail = (adam.kind, adam.hyper(), adam.state, adam.counter, 0.0, 1.0)
        run_epoch_opt(p, lay.sizes, prob.X, prob.Y, order, 128, tanh, 1, *tail)
    else:
        run_epoch(p, lay.sizes, prob.X, prob.Y, order, 128, 0.01, tanh, 1)
    assert len(seen) == 1 and seen[0][1] is True  # the split row, whatever the threads
    return seen[0][0]


@pytest.mark.parametrize("opt", [False, True], ids=["gradient descent", "adam"])
def test_the_thread_count_picks_the_twin_never_the_row(monkeypatch, opt):
    """The defaults run the split row with any thread count; two threads on two usable CPUs, a
    thread-safe layer and no fork run its threaded twin (the same bits), anything less the
    one-thread kernel."""
    base = "_columns_epoch_opt" if opt else "_columns_epoch"
    tiles = "_tiles"  # 128-128-3 at batch 128: the register tiles
    assert _kernel_run(monkeypatch, opt, 2) == base + "_threads" + tiles
    assert _kernel_run(monkeypatch, opt, 1) == base + tiles
    assert _kernel_run(monkeypatch, opt, 2, cpus=1) == base + tiles  # pinned to one CPU
    assert _kernel_run(monkeypatch, opt, 2, safe=False) == base + tiles  # workqueue layer
    monkeypatch.setattr(_dispatch, "_FORKED", True)
    assert _kernel_run(monkeypatch, opt, 2) == base + tiles  # a forked child


@pytest.mark.parametrize(
    "sizes, batch_size, expected",
    [
        ([2, 4, 1], 256, False),  # no layer of TILE_MIN_WEIGHTS weights: the loops alone
        ([8, 8, 1], 32, True),  # one layer of 64 weights: every layer on the tiles
        ([64, 64, 10], 15, False),  # a batch under TILES_MIN_BATCH_SHORT: BLAS from BLAS_MIN_WEIGHTS
        ([64, 64, 10], 16, True),  # one whole strip of TILE_STRIP columns
        ([64, 64, 10], 20, False),  # 12 columns of padding in its last strip: BLAS
        ([64, 64, 10], 27, False),
        ([64, 64, 10], 28, True),  # TILES_MAX_PADDING columns of padding
        ([64, 64, 10], 32, True),
        ([64, 64, 10], 33, True),  # from TILES_MIN_BATCH every batch
        ([784, 128, 10], 256, True),
        ([1025, 8, 1], 256, False),  # more inputs than TILES_MAX_INPUTS: BLAS reads X's rows
    ],
)
def test_uses_tiles_picks_the_tiles_twin(sizes, batch_size, expected):
    """Where the column kernels run their ``_tiles`` twins (a layer of at least TILE_MIN_WEIGHTS
    weights, batches from TILES_MIN_BATCH, at most TILES_MAX_INPUTS inputs), and that the row's
    kernel is then the twin."""
    assert _dispatch.uses_tiles(sizes, batch_size) is expected
    row = _dispatch._ROWS["_columns_epoch"]
    assert row.kernel(tiles=_dispatch.uses_tiles(sizes, batch_size)).__name__ == "_columns_epoch" + (
        "_tiles" if expected else ""
    )
    assert _dispatch._ROWS["_batch_epoch"].kernel(tiles=True).__name__ == "_batch_epoch"  # a row without twins


def test_short_batches_take_the_tiles_only_with_a_nearly_full_last_strip():
    """From TILES_MIN_BATCH_SHORT to TILES_MIN_BATCH the tiles run batches whose last strip of
    TILE_STRIP columns (the column kernels' PAD) has at most TILES_MAX_PADDING padding columns."""
    from fastbp._fast._columns import PAD

    assert T.TILE_STRIP == PAD
    short = [b for b in range(1, T.TILES_MIN_BATCH) if _dispatch._tiles_batch(b)]
    assert short == [16, 28, 29, 30, 31]
    assert all(_dispatch._tiles_batch(b) for b in range(T.TILES_MIN_BATCH, 4 * T.TILES_MIN_BATCH))
    assert _dispatch.blas_min_weights([8, 8, 1], 16) == T.NO_BLAS
    assert _dispatch.blas_min_weights([8, 8, 1], 20) == T.BLAS_MIN_WEIGHTS


def test_usable_cpus_is_the_affinity_mask(monkeypatch):
    import os

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity mask on this platform")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert _dispatch._usable_cpus() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 5})
    assert _dispatch._usable_cpus() == 3


def test_threadsafe_layer_reads_numba_s_layer(monkeypatch):
    import numba

    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")
    assert _dispatch._threadsafe_layer() is False
    monkeypatch.setattr(numba, "threading_layer", lambda: "omp")
    assert _dispatch._threadsafe_layer() is True


def test_a_forked_child_trains_on_one_thread_after_its_parent_ran_threads():
    """GNU OpenMP aborts a forked child that starts a parallel region after its parent did;
    fastbp's defaults keep such a child on the one-thread twin (the same bits)."""
    import multiprocessing as mp
    import os

    if not hasattr(os, "fork"):
        pytest.skip("no fork() on this platform")
    prob, lay, p0, order, tanh = _split_size_problem()
    run_epoch(p0.copy(), lay.sizes, prob.X, prob.Y, order, 128, 0.01, tanh, 1, threads=True)  # OpenMP in use
    expected = p0.copy()
    run_epoch(expected, lay.sizes, prob.X, prob.Y, order, 128, 0.01, tanh, 1, threads=False)
    with mp.get_context("fork").Pool(1) as pool:  # a child aborted by OpenMP would hang apply(): a timeout
        threaded, params = pool.apply_async(_train_in_child, (p0, lay.sizes, prob.X, prob.Y, order)).get(timeout=120)
    assert threaded is False
    np.testing.assert_array_equal(params, expected)


_FORK_SCRIPT = """
import os
import numba, numpy as np
from fastbp import _dispatch

def child_forked():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"1" if _dispatch._FORKED else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    return os.read(r, 1).decode()

@numba.njit(parallel=True)
def total(x):
    s = 0.0
    for i in numba.prange(x.shape[0]):
        s += x[i]
    return s

print(child_forked(), end="")  # fastbp imported, no parallel kernel run yet
total(np.ones(64))
print(child_forked(), end="")  # after one
"""


def test_a_forked_child_of_a_parent_that_never_ran_threads_may_run_them():
    """Only a parent that started Numba's threads marks its forked children (asv's forkserver forks every
    benchmark from a process that imported fastbp and ran nothing parallel: its threaded benchmarks
    ran the one-thread twin while every child was marked)."""
    import os
    import subprocess
    import sys

    if not hasattr(os, "fork"):
        pytest.skip("no fork() on this platform")
    done = subprocess.run([sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "01"


def _train_in_child(p, sizes, X, Y, order):
    run_epoch(p, sizes, X, Y, order, 128, 0.01, get_activation("tanh"), 1)
    return _dispatch._threaded(None), p


def test_select_epoch_reads_the_thresholds_from_one_block():
    """The rows' numbers are the module's named thresholds (changing one moves the boundary)."""
    w = T.BLOCKED_MIN_WEIGHTS
    tanh = ACT_CODES["tanh"]
    assert select_epoch([w, 1, 1], 1, 0, tanh) == "_sgd_epoch_blocked_tiles"
    assert select_epoch([w - 1, 1, 1], 1, 0, tanh) != "_sgd_epoch_blocked_tiles"
    deferred = "_deferred_tiles_epoch"
    for n1 in (w, w - 1):  # one hidden layer: the deferred update to DEFERRED_MAX_BATCH on any W[1]
        assert select_epoch([1, n1, 2], T.DEFERRED_MAX_BATCH, 0, tanh) == deferred
        assert select_epoch([1, n1, 2], T.DEFERRED_MAX_BATCH + 1, 0, tanh) == "_columns_epoch"  # (16: tiles)
    # from there to TILES_MIN_BATCH, where the column kernel's tiles do not run, on W[1] ≥ BLOCKED_MIN_WEIGHTS
    for batch in range(T.DEFERRED_MAX_BATCH + 1, 2 * T.TILES_MIN_BATCH):
        tiles = _dispatch._tiles_batch(batch)
        assert select_epoch([1, w, 2], batch, 0, tanh) == ("_columns_epoch" if tiles else deferred), batch
        assert select_epoch([1, w - 1, 2], batch, 0, tanh) == "_columns_epoch", batch
    # more hidden layers: to DEFERRED_MAX_BATCH_DEEP; with a wide W[1] to DEFERRED_MAX_BATCH
    assert select_epoch([1, 2, 2, 2], T.DEFERRED_MAX_BATCH_DEEP, 0, tanh) == deferred
    assert select_epoch([1, 2, 2, 2], T.DEFERRED_MAX_BATCH_DEEP + 1, 0, tanh) == "_columns_epoch"
    assert select_epoch([1, T.LARGE_W1_WEIGHTS, 2, 2], T.DEFERRED_MAX_BATCH, 0, tanh) == deferred
    assert select_epoch([1, T.LARGE_W1_WEIGHTS, 2, 2], T.DEFERRED_MAX_BATCH + 1, 0, tanh) == "_columns_epoch"
    # one hidden layer with a wide W[1]: to DEFERRED_MAX_BATCH_LARGE
    wide = [1, T.LARGE_W1_WEIGHTS, 2]
    for batch in range(2, 2 * T.TILES_MIN_BATCH):
        expected = (
            "_columns_epoch" if batch > T.DEFERRED_MAX_BATCH_LARGE and _dispatch._tiles_batch(batch) else deferred
        )
        assert select_epoch(wide, batch, 0, tanh) == expected, batch
    assert select_epoch(wide, T.DEFERRED_MAX_BATCH_LARGE, 0, tanh) == deferred
    assert select_epoch([1, T.LARGE_W1_WEIGHTS - 1, 2], T.DEFERRED_MAX_BATCH_LARGE, 0, tanh) == "_columns_epoch"
    n0 = T.TINY_NARROW_INPUTS  # the lanes: at most TINY_NARROW_INPUTS inputs, TINY_MAX_BATCH_NARROW examples
    assert select_epoch([n0, 2, 2], T.TINY_MAX_BATCH_NARROW, 0, tanh) == "_tiny_batch_epoch"
    assert select_epoch([n0, 2, 2], T.TINY_MAX_BATCH_NARROW + 1, 0, tanh) != "_tiny_batch_epoch"
    assert select_epoch([n0 + 1, 2, 2], 2, 0, tanh) != "_tiny_batch_epoch"
    assert select_epoch([5, 4, 1], T.TINY4_MAX_BATCH, OUT_CODES["sigmoid"], ACT_CODES["tanh"]) == "_tiny4_batch_epoch"
    assert (
        select_epoch([5, 4, 1], T.TINY4_MAX_BATCH + 1, OUT_CODES["sigmoid"], ACT_CODES["tanh"]) != "_tiny4_batch_epoch"
    )
    for w1, batch in ((T.SPLIT_MIN_WEIGHTS, T.SPLIT_MIN_BATCH), (T.LARGE_W1_WEIGHTS, T.SPLIT_MIN_BATCH_LARGE)):
        split = [1, w1, 2]
        assert select_epoch(split, batch, 0, ACT_CODES["tanh"]) == "_columns_epoch_split"
        assert select_epoch(split, batch - 1, 0, ACT_CODES["tanh"]) == "_columns_epoch"
        assert T.select_optimizer_epoch(split, batch, 0, ACT_CODES["tanh"]) == "_columns_epoch_opt_split"
        assert T.select_optimizer_epoch(split, batch - 1, 0, ACT_CODES["tanh"]) == "_columns_epoch_opt"
    assert select_epoch([1, T.SPLIT_MIN_WEIGHTS - 1, 2], T.SPLIT_MIN_BATCH, 0, ACT_CODES["tanh"]) == "_columns_epoch"


@pytest.mark.parametrize("act", [*HIDDEN_ACTIVATIONS, "custom"])
def test_activations_without_the_slope_trait_run_the_plain_kernel(act):
    """The fast kernels' divergence bound assumes |g'| ≤ 1: it is read from the traits."""
    code = ACT_CUSTOM if act == "custom" else ACT_CODES[act]
    fast = code in TRAITS and TRAITS[code].slope_bounded
    for sizes, bs, out in _grid():
        name = select_epoch(sizes, bs, OUT_CODES[out], code)
        assert (name != PLAIN) == fast, (act, sizes, bs, out, name)
        opt = _dispatch.select_optimizer_epoch(sizes, bs, OUT_CODES[out], code)
        assert (opt != _dispatch.PLAIN_OPTIMIZER) == fast


def test_every_registered_row_is_selected_somewhere():
    """Each fast epoch in the registry is the dispatcher's choice for some problem (a row
    shadowed by the rows before it would never run)."""
    chosen = set()
    for sizes, bs, out in _grid():
        for threads in (None, True):
            chosen.add(select_epoch(sizes, bs, OUT_CODES[out], ACT_CODES["tanh"], threads))
        chosen.add(select_epoch(sizes, bs, OUT_CODES[out], ACT_CODES["tanh"], weighted=True))  # _batch_epoch
        chosen.add(T.select_optimizer_epoch(sizes, bs, OUT_CODES[out], ACT_CODES["tanh"]))
    for bs in (3, 64):  # a large W[1]: the deferred row (short batches), the split rows (batch ≥ 64)
        chosen.add(select_epoch([64, 256, 2], bs, 0, ACT_CODES["tanh"]))
        chosen.add(T.select_optimizer_epoch([64, 256, 2], bs, 0, ACT_CODES["tanh"]))
    assert {row.name for row in FAST_EPOCHS + FAST_OPTIMIZER_EPOCHS} <= chosen


def test_a_forced_kernel_must_be_able_to_run_the_problem():
    prob = make_problem([3, 5, 2], m=4)
    lay = Layout([3, 5, 2])
    p = lay.pack(prob.weights, prob.biases, np.float64)
    args = (p, lay.sizes, prob.X, prob.Y, np.arange(4), 2, 0.1, get_activation("tanh"), OUT_CODES["sigmoid"])
    with pytest.raises(ValueError, match="cannot run"):
        run_epoch(*args, epoch="_sgd_epoch")  # a per-example kernel, batches of 2
    with pytest.raises(ValueError, match="epoch must be one of"):
        run_epoch(*args, epoch="_no_such_epoch")
    np.testing.assert_array_equal(p, lay.pack(prob.weights, prob.biases, np.float64))


# ------------------------------------------------------- every registered kernel, agreement


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("row", FAST_EPOCHS, ids=lambda row: row.name)
def test_every_fast_epoch_agrees_with_plain_where_it_runs(row, dtype):
    """The row's kernel (forced) on every grid problem it can run, every activation: the plain
    kernel's epoch to the dtype's tolerance.  Fails if the row runs no problem of the grid.

    A row with a threaded twin runs it in float64 and its one-thread twin in float32: the twins are
    one source (``fastbp._jit.compile_as``), the dtype's arithmetic is in the callees both share,
    and each float32 threaded twin is a cold compile of 20-30 s in a suite that is mostly compiling
    (docs/performance-kernels.md, "Where a cold CI goes").  A float32 threaded twin runs on every
    thread count in ``test_the_split_step_reads_its_partial_sums_on_every_thread_count``
    (tests/test_fast_kernels.py)."""
    threads = False if row.threaded and np.dtype(dtype) == np.float32 else None
    problems = _requiring(row)
    assert problems, f"{row.name} runs no problem of the grid"
    rng = np.random.default_rng(0)
    for k, (sizes, bs, out) in enumerate(problems):
        act = HIDDEN_ACTIVATIONS[k % len(HIDDEN_ACTIVATIONS)]
        prob = make_problem(
            sizes,
            dtype=dtype,
            activation=act,
            output=out,
            m=M,
            batch_size=bs,
            seed=int(rng.integers(1 << 30)),
            learning_rate=0.05 if max(sizes) <= 8 else 0.01,
        )
        lay = Layout(sizes)
        p0 = lay.pack(prob.weights, prob.biases, np.dtype(dtype))
        order = np.asarray(prob.order, dtype=np.int64)
        lr = np.dtype(dtype).type(prob.learning_rate)
        p_fast, p_plain = p0.copy(), p0.copy()
        args = (p_fast, lay.sizes, prob.X, prob.Y, order, bs, lr, get_activation(act), OUT_CODES[out])
        res = run_epoch(*args, threads=threads, epoch=row.name)
        ref = BUILTIN._train_epoch(
            p_plain, lay.sizes, prob.X, prob.Y, order, bs, lr, ACT_CODES[act], OUT_CODES[out], np.empty(0, dtype)
        )
        msg = f"{row.name} {sizes} batch {bs} {act} {out} {np.dtype(dtype)}"
        assert res[1] == ref[1] == -1, msg
        assert_agree((res[0], p_fast), (ref[0], p_plain), dtype, msg)


@pytest.mark.parametrize("row", FAST_OPTIMIZER_EPOCHS, ids=lambda row: row.name)
def test_every_fast_optimizer_epoch_agrees_with_plain(row):
    problems = _requiring(row)
    assert problems, f"{row.name} runs no problem of the grid"
    for k, (sizes, bs, out) in enumerate(problems[::3]):
        act = HIDDEN_ACTIVATIONS[k % len(HIDDEN_ACTIVATIONS)]
        prob = make_problem(sizes, dtype=np.float64, activation=act, output=out, m=M, batch_size=bs, seed=k)
        lay = Layout(sizes)
        p0 = lay.pack(prob.weights, prob.biases, np.float64)
        results = []
        for epoch in (row.name, _dispatch.PLAIN_OPTIMIZER):
            opt = Adam(0.01, alpha=0.01)
            opt.bind(lay.sizes, np.float64)
            p = p0.copy()
            J, failed = run_epoch_opt(
                p,
                lay.sizes,
                prob.X,
                prob.Y,
                np.arange(M),
                bs,
                get_activation(act),
                OUT_CODES[out],
                opt.kind,
                opt.hyper(),
                opt.state,
                opt.counter,
                opt.alpha,
                1.0,
                epoch=epoch,
            )
            assert failed == -1
            results.append((J, p, opt.state))
        assert_agree(results[0], results[1], np.float64, f"{sizes} batch {bs} {act} {out}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [23, 45])
def test_fast_full_batch_objective_agrees_with_plain(m, dtype):
    """``solver="lbfgs"``'s objective: the fast kernel against the plain one, every hidden
    activation and output, depths 1-3, W[1] blocked and not, m not a multiple of the block; m = 45
    takes 40-30-2 to the register tiles (the ``_tiles`` twin)."""
    grid = [([3, 1], "identity"), ([5, 4, 3], "softmax"), ([40, 30, 2], "sigmoid"), ([6, 5, 4, 2], "identity")]
    for k, ((sizes, out), act) in enumerate(itertools.product(grid, HIDDEN_ACTIVATIONS)):
        for output in (out,) if len(sizes) > 2 else OUTPUTS:
            if output == "softmax" and sizes[-1] < 2:
                continue
            prob = make_problem(sizes, dtype=dtype, activation=act, output=output, m=m, seed=k)
            lay = Layout(sizes)
            p = lay.pack(prob.weights, prob.biases, np.dtype(dtype))
            results = []
            for kernel in (_dispatch.FAST_LOSS_AND_GRADIENT, _dispatch.PLAIN_LOSS_AND_GRADIENT):
                grad = np.full_like(p, np.nan)
                J = _dispatch.loss_and_gradient(
                    p, lay.sizes, prob.X, prob.Y, get_activation(act), OUT_CODES[output], grad, 0.3, 0.5, kernel=kernel
                )
                results.append((J, grad))
            assert_agree(results[0], results[1], dtype, f"{sizes} {act} {output}")
    assert _dispatch.select_loss_and_gradient(ACT_CODES["tanh"]) == _dispatch.FAST_LOSS_AND_GRADIENT
    assert _dispatch.select_loss_and_gradient(ACT_CUSTOM) == _dispatch.PLAIN_LOSS_AND_GRADIENT
