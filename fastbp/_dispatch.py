"""Which kernel runs an epoch: the one place that decides, and the only module that imports
both :mod:`fastbp._plain` and :mod:`fastbp._fast` (layer L3).

* **The speed thresholds** (one block, below): where a fast strategy was measured to pay.
  Each comment names the command that re-measures it.
* **The registry** :data:`FAST_EPOCHS`: one :class:`FastEpoch` row per fast gradient-descent
  epoch kernel, in order of preference, each with the preconditions it relies on
  (``requires``) and where it pays (``prefers``).  :data:`FAST_OPTIMIZER_EPOCHS` is the same
  for epochs with an optimizer.
* :func:`select_epoch` / :func:`select_optimizer_epoch`: pure functions of the problem's
  shape and codes to a kernel name (:data:`PLAIN` for the plain kernel).  Every fast
  kernel assumes |g′| ≤ 1 in its divergence bound, so an activation without that trait
  (:data:`fastbp.activations.TRAITS`), and every custom activation, runs the plain kernel.
* :func:`run_epoch` / :func:`run_epoch_opt` / :func:`predict`: run the selected kernel on
  inputs already checked (C-contiguous, the buffer's dtype), with the hand-over from a fast
  kernel to the exact plain check (:mod:`fastbp._fast`, the divergence contract).
* **Per-example weights** (``sw``, scikit-learn's ``sample_weight``): every row's ``requires``
  says whether its kernel takes them (``Case.weighted``); a row that does not is never
  selected, nor can be forced, for a weighted run.  The kernels take ``sw`` as their last
  argument, an empty array meaning none; a row's ``call`` is handed ``sw=`` only when the
  run is weighted, so a row without weights needs ``not c.weighted`` in ``requires``, nothing else.

A new fast kernel: one file in ``fastbp/_fast/`` and one row here; the agreement tests
(``tests/test_dispatch.py``) iterate the registry and fail if a row never runs.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba.core import config as numba_config

from . import _busy
from ._blas import one_blas_thread
from ._plain import BUILTIN, kernels_for
from ._validation import check_batch_weights, refuse_non_finite
from .activations import TRAITS, Activation
from .losses import OUT_IDENTITY, OUT_SIGMOID, OUT_SOFTMAX

__all__ = [
    "FAST_EPOCHS",
    "FAST_OPTIMIZER_EPOCHS",
    "PLAIN",
    "PLAIN_OPTIMIZER",
    "FastEpoch",
    "forward",
    "loss",
    "loss_and_gradient",
    "predict",
    "run_epoch",
    "run_epoch_opt",
    "select_epoch",
    "select_optimizer_epoch",
]

# ================================================================== speed thresholds
#
# Re-measure with ``python tools/perf_matrix.py`` (per-example and ``--batch``) and
# ``python tools/tiny_chain.py --kernels`` (the tiny kernels); docs/performance-kernels.md.

#: Examples per block of the blocked W[1] passes (the unrolled loops are written for 4).
BLOCK = 4

#: Per-example SGD defers W[1]'s updates over blocks (``_sgd_epoch_blocked_tiles``), and
#: mini-batches handle W[1] four examples per pass, when W[1] has at least this many
#: weights (below, the block bookkeeping costs more than the saved passes).  The blocks of
#: ``_sgd_epoch_blocked_tiles`` are 8 examples and its W[1] products register tiles over a packed
#: copy of W[1]ᵀ (fastbp/_fast/blocked_tiles.py): 1.02-1.34x the four-example fused passes it
#: replaced on 32-32-1, 64-32-1, 64-64-10, 128-128-3, 784-128-10, 256-256-10 and 64-64-32-10
#: (2026-11-30, AMD EPYC Zen 4, one core, AVX-512 code; 1.00-1.24x with AVX2 code,
#: ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=``; docs/performance-kernels.md, "Short batches and
#: per-example SGD on register tiles").
BLOCKED_MIN_WEIGHTS = 1024

#: Per-example SGD on nets with one hidden layer runs the tiny kernels (hidden units in
#: registers, a short dependency chain from one example's update to the next one's forward
#: pass) where measured faster: ``_tiny4_epoch`` for ≤ 4 hidden units, one σ or identity
#: output and n_0·n_1 ≤ TINY4_MAX_WEIGHTS; else ``_tiny_epoch`` for ≤ TINY_MAX_HIDDEN units
#: and ≤ TINY_MAX_INPUTS inputs (at 32-8-1 or 60-16-3 its per-input lane loops cost more
#: than they save: 0.7-0.9×).  TINY_MAX_HIDDEN is the tiny kernel's lane count.
TINY_MAX_HIDDEN = 16
TINY_MAX_INPUTS = 16
TINY4_MAX_WEIGHTS = 512

#: The tiny kernels form the next example's Z[1] from a Gram term xᵀx' + 1, whose size grows as
#: |x|²: at |x| ~ 1e20 in float32 it overflows where the plain kernel's W[1]x does not, and the
#: epoch ended "fine" where the reference (and the plain kernel) report a divergence.  They run
#: only on data with (n_0 + 1)·max|x|² below this fraction of the dtype's largest number (float32:
#: |x| up to ~9e12 for n_0 = 3); larger inputs take ``_sgd_epoch``, which agrees with the plain kernel.
TINY_MAX_GRAM_FRACTION = 2.0**-40

#: Mini-batches of at least SPLIT_MIN_BATCH examples (SPLIT_MIN_BATCH_LARGE on a W[1] of at
#: least LARGE_W1_WEIGHTS weights), on nets whose W[1] has at least SPLIT_MIN_WEIGHTS weights,
#: run the column kernels with each batch split in two halves (``_columns_epoch_split``,
#: ``_columns_epoch_opt_split``), on two threads when Numba has more than one
#: (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), else one after the other.  The choice
#: looks at the sizes only, never at the threads, so the bits are the same for any thread
#: count.  Measured with ``NUMBA_NUM_THREADS=2 python tools/split_speed.py`` on an idle
#: two-core machine (docs/performance-kernels.md): two threads over the whole batch on one
#: thread 1.3-2.0x at batches of 200-256 on the mid nets, 1.6-1.9x (gradient descent) and
#: 1.7-1.9x (Adam, after its cheaper step) at 256-1024 on the large ones; at batch 64, 1.1-1.5x on the
#: large nets but 0.86-1.16x on the small ones; the halves one after the other cost 0-11 % on
#: one thread (up to 27 % on nets of 1,024 weights or fewer at batch 64).
SPLIT_MIN_BATCH = 128
SPLIT_MIN_BATCH_LARGE = 64
LARGE_W1_WEIGHTS = 16384
SPLIT_MIN_WEIGHTS = 2048

#: Short mini-batches on nets with one small hidden layer run the tiny batch kernels (the
#: hidden units in registers or lanes, as the tiny per-example kernels; ``fastbp/_fast/tiny.py``):
#: ``_tiny4_batch_epoch`` where ``_tiny4_epoch`` runs per example, for batches of up to
#: TINY4_MAX_BATCH examples; ``_tiny_batch_epoch`` where ``_tiny_epoch`` does, for batches of up
#: to TINY_MAX_BATCH_NARROW on nets of at most TINY_NARROW_INPUTS inputs.
#: Measured with ``taskset -c 1 python tools/columns_sweep.py --nets 2-16-1 8-16-3 16-4-1 5-4-1
#: 16-17-3 4-32-2 --batches 2 4 6 8`` after the tiny kernels' tanh and σ became shorter and the
#: per-example passes ran inlined (2026-11-29, docs/performance-kernels.md): the four-unit kernel
#: 2.5-4x the column kernel and ``_deferred_epoch`` up to batch 8 on 5-4-1 (18.0 M against 6.9 M
#: examples/s at 8, float32), level with both on 16-4-1; the lane kernel 1.5-1.8x them up to 8 on
#: 2-16-1, but on 8-16-3 only at batch 2 (``_deferred_epoch`` 1.1x it at 4-6, the column kernel
#: 1.2x at 8).  Since ``_deferred_tiles_epoch`` (2026-11-30, same machine, one core,
#: ``--nets 2-16-1 5-16-3 16-16-1 8-16-3 5-4-1 16-4-1 2-4-1 --batches 2 3 4 6 8``): the lane kernel
#: stays 1.04-1.2x it on 2-16-1, but on more than TINY_NARROW_INPUTS inputs it lost (8-16-3,
#: 16-16-1: 1.15-1.67x for the deferred kernel at 2-3; 5-16-3 0.93-1.06x), so it runs only on nets
#: of at most TINY_NARROW_INPUTS inputs; the four-unit kernel keeps its batches (2.3-2.9x on 2-4-1
#: and 5-4-1; on 16-4-1 1.1-1.7x in float32, 0.74-0.99x in float64).
TINY4_MAX_BATCH = 8
TINY_MAX_BATCH_NARROW = 8
TINY_NARROW_INPUTS = 4

#: Short mini-batches run ``_deferred_tiles_epoch`` (each batch's W[1] update deferred to the
#: start of the next batch, W[1]'s two products as register tiles over a packed copy of W[1]ᵀ:
#: fastbp/_fast/deferred_tiles.py): every batch of up to DEFERRED_MAX_BATCH_DEEP examples on any
#: net; up to DEFERRED_MAX_BATCH on one hidden layer, and on a W[1] of at least LARGE_W1_WEIGHTS
#: at any depth; up to DEFERRED_MAX_BATCH_LARGE on one hidden layer with such a W[1]; and, on one
#: hidden layer with a W[1] of at least BLOCKED_MIN_WEIGHTS or at any depth with one of at least
#: LARGE_W1_WEIGHTS, every batch from there to TILES_MIN_BATCH that the column kernel's tiles do not
#: take (17-27: its last strip would be mostly padding; 16-31 on nets of more than
#: TILES_MAX_INPUTS inputs, where the tiles never run).  Measured
#: 2026-11-30 (AMD EPYC Zen 4, AVX-512, one core; ``taskset -c 1 python tools/columns_sweep.py
#: --nets … --batches …``, the "deferred tiles" column against what ran before;
#: docs/performance-kernels.md, "Short batches and per-example SGD on register tiles"):
#:
#: * against ``_deferred_epoch`` (the same update, four examples per fused pass over W[1]'s rows,
#:   now retired): 1.2-1.9x at batches 2-24 on 16-17-3, 4-32-2, 8-16-3, 64-32-1, 64-64-10,
#:   1.05-1.35x on 128-128-3, 784-128-10, 256-256-10 from batch 6; at 3-4 on those 0.99-1.34x
#:   (batch 3's product padded to a tile of 4 rows) but 0.92 on 784-128-10 float32 at 4;
#: * against the column kernel at 8-15 on one hidden layer: 1.3-1.8x on 64-32-1, 64-64-10,
#:   32-32-1, 4-32-2, 1.0-1.25x on 8-16-3, 0.92-1.17x on 16-17-3; at 16 it loses on 64-64-10
#:   (0.9x) but wins on 128-128-3, 784-128-10, 256-256-10 (1.07-1.21x); at 20-24 1.0-1.22x on
#:   W[1] ≥ BLOCKED_MIN_WEIGHTS, 0.6-0.78x on narrower ones;
#: * two or three hidden layers (64-64-32-10, 32-64-64-1, 100-50-50-5, 16-32-32-3, 5-16-16-3,
#:   8-8-8-1): 1.06-2.35x the column kernel and ``_batch_epoch`` at 2-6 (0.92x on 16-32-32-3
#:   float32 at 2), 0.76-1.08x at 8; 784-256-128-10 1.3-1.5x at 8-12, 0.84-0.88x at 16, 1.05-1.11x
#:   at 20.
DEFERRED_MAX_BATCH_DEEP = 7
DEFERRED_MAX_BATCH = 15
DEFERRED_MAX_BATCH_LARGE = 16

#: ``_deferred_tiles_epoch`` can run batches of at most this many examples (its workspace grows
#: as the batch).
DEFERRED_BATCH_CAP = 64


#: Every other unweighted gradient-descent mini-batch runs the column kernel (``_columns_epoch``:
#: the batch as matrices, one column per example, SIMD across the examples; larger ones also
#: split: SPLIT_MIN_BATCH); weighted ones run ``_batch_epoch``.  (The column kernel's own lower
#: bounds, COLUMNS_MIN_BATCH = 8 on one hidden layer and 4 on more, where it had beaten
#: ``_batch_epoch``, were retired with ``_deferred_tiles_epoch``, which takes every shorter batch.)

#: The same for the optimizer epochs (``_columns_epoch_opt`` from here, ``_batch_epoch_opt``
#: below), re-measured 2026-11-30 with Adam (``taskset -c 1 python tools/columns_sweep.py
#: --optimizer --nets 5-16-3 33-37-3 64-64-10 64-32-1 --batches 4 5 --repeats 5``, columns ÷
#: ``_batch_epoch_opt``): batch 4 0.87-1.12 (below 1 on six of the eight net and dtype pairs),
#: batch 5 1.03-1.38, batch 8 1.0-1.7.
COLUMNS_OPT_MIN_BATCH = 5

#: In the column mini-batch kernels (``_columns_epoch``, ``_columns_epoch_opt``; not their
#: ``_tiles`` twins, see TILES_MIN_BATCH) a layer with
#: at least this many weights has its matrix products done by BLAS (``np.dot``, on one thread:
#: :mod:`fastbp._blas`); smaller ones run the kernel's own loops.  Measured with
#: ``python tools/columns_sweep.py``: the loops win on 2-4-1 and 8-8-1 (BLAS's per-call cost),
#: BLAS from 16-16-1 up (1.1-1.6x at batches 8-256).
BLAS_MIN_WEIGHTS = 128

#: From this many examples per batch (or rows: ``predict``, ``forward``, ``loss``, the
#: full-batch objective) the column kernels run their ``_tiles`` twins, every product of every
#: layer as register tiles (:mod:`fastbp._fast._tiles`), no BLAS: the tiles reach 1.1-1.5x
#: BLAS's GFLOP/s on the mid and big nets' products (``python tools/tile_speed.py``) and whole
#: epochs ran up to 1.25x the BLAS path at batches 32-256 (``python tools/columns_sweep.py``,
#: "tiles" against "blas"; docs/performance-kernels.md).  Below it BLAS keeps the layers from
#: ``BLAS_MIN_WEIGHTS``: a batch of 8 is padded to a strip of 16 columns, twice the tiles' work.
TILES_MIN_BATCH = 32

#: ... and below it, from TILES_MIN_BATCH_SHORT, the batches whose last strip of TILE_STRIP columns
#: (``fastbp._fast._columns.PAD``) has at most TILES_MAX_PADDING columns of padding: 16 and 28-31.
#: Measured 2026-11-30 (AMD EPYC Zen 4, AVX-512, one core; ``taskset -c 1 python
#: tools/columns_sweep.py --nets 16-16-4 64-32-1 64-64-10 784-128-10 256-256-10 --batches 16 20
#: 24 28``, "tiles" against "blas"): at 16 the tiles ran 1.04-1.33x BLAS on each of those nets and dtypes,
#: at 28 1.03-1.27x; at 20 (12 columns of padding) 0.85-1.20x, at 24 0.87-1.28x.  Adam epochs
#: alike: 1.02-1.45x at 16 and 28 (docs/performance-kernels.md, "Short batches on the tiles").
TILES_MIN_BATCH_SHORT = 16
TILE_STRIP = 16
TILES_MAX_PADDING = 4

#: ... for a net with a layer of at least this many weights: nets of none (2-4-1) keep the
#: loops, whose code LLVM compiles better without the tiles beside them (2-4-1 float64 ran
#: 0.62-0.78x with the tile calls present in its pass, never taken: docs/performance-kernels.md).
TILE_MIN_WEIGHTS = 32

#: ... and for at most this many inputs: the tiles' first layer copies each chunk's rows of X and
#: their transpose (2 n_0 numbers per example of the chunk), where BLAS reads X's own rows; the
#: estimators' sparse path (4,000 × 5,000 at 0.1 %) keeps its memory to a batch of densified rows
#: that way (``tests/test_estimators.py``).  MNIST's 784 inputs take the tiles.
TILES_MAX_INPUTS = 1024

#: ``blas_min`` that keeps every layer off BLAS (on the tiles).
NO_BLAS = 1 << 62


def _tiles_batch(batch_size: int) -> bool:
    """Whether batches (or rows) of ``batch_size`` are long enough for the tiles:
    :data:`TILES_MIN_BATCH`, or a short batch whose last strip is nearly full
    (:data:`TILES_MIN_BATCH_SHORT`, :data:`TILES_MAX_PADDING`)."""
    if batch_size >= TILES_MIN_BATCH:
        return True
    return batch_size >= TILES_MIN_BATCH_SHORT and -batch_size % TILE_STRIP <= TILES_MAX_PADDING


def blas_min_weights(sizes, batch_size: int) -> int:
    """The column kernels' ``blas_min`` for a net of ``sizes`` and batches (or chunks) of
    ``batch_size`` examples: layers with at least this many weights go to BLAS
    (:func:`_tiles_batch`, :data:`TILES_MAX_INPUTS`)."""
    if not _tiles_batch(batch_size) or int(sizes[0]) > TILES_MAX_INPUTS:
        return BLAS_MIN_WEIGHTS
    return NO_BLAS


#: ``predict``, ``forward`` and ``loss`` of at least this many rows, or of at least
#: :data:`FAST_FORWARD_MIN_MACS` multiply-adds, run the column forward pass (:mod:`fastbp._fast.forward`);
#: smaller ones :mod:`fastbp._fast.rows` (blocks of 32 examples on the register tiles and loops the
#: training kernels have compiled).  The column pass compiles in about 4.9 s against the rows
#: kernel's 1.3-2.4 s (five cold runs on a noisy 2-core VM), which a first ``fastbp train`` (digits:
#: 1,347 and 450 rows of 64-32-10) would pay to score in milliseconds either way.  Since the rows
#: kernels run on the tiles (2026-12-01) the two are level at 1,000 rows (column time ÷ rows time
#: 0.92-1.07 on 2-4-1 … 784-128-10, both dtypes) and at 128 rows the rows kernels the faster on
#: every net but 784-128-10 float32 (1.11-1.27; 0.94 there; docs/performance-kernels.md, "The
#: public operations' Python, and fewer rows on the register tiles"); before, the column pass was
#: the faster from 128 rows up.
FAST_FORWARD_MIN_ROWS = 2048

#: ... or this many multiply-adds (rows × the net's weights): a call the rows kernels take about a
#: millisecond or more for (784-128-10 from 166 rows, 256-256-10 from 247), where the column pass
#: saves a third of it and more on every call after its one compile per machine (Numba's cache).
#: digits' 1,347 rows of 64-32-10 (3.2 M) and of scikit-learn's default 64-100-10 (10 M) stay on
#: the rows kernels.
FAST_FORWARD_MIN_MACS = 1 << 24


def _as_ints(sizes) -> list[int]:
    """``sizes`` (an int array or a sequence) as a list of Python ints: the sums and products
    below run on Python ints, not on NumPy scalars, which cost a microsecond each on every
    call of a public operation."""
    return sizes.tolist() if isinstance(sizes, np.ndarray) else [int(n) for n in sizes]


def _layer_weights(sizes) -> list[int]:
    """The weights of each layer of a net of ``sizes``: n_l · n_(l−1), as Python ints."""
    s = _as_ints(sizes)
    return [a * b for a, b in zip(s[:-1], s[1:])]


def uses_tiles(sizes, batch_size: int) -> bool:
    """Whether the column kernels run a net of ``sizes`` on batches (or rows) of ``batch_size`` on
    their ``_tiles`` twins: :func:`blas_min_weights` puts no layer on BLAS and some layer has
    :data:`TILE_MIN_WEIGHTS` weights."""
    weights = max(_layer_weights(sizes))
    return blas_min_weights(sizes, batch_size) == NO_BLAS and weights >= TILE_MIN_WEIGHTS


def uses_blas(sizes, blas_min: int = BLAS_MIN_WEIGHTS) -> bool:
    """Whether a column kernel given ``blas_min`` hands some layer of ``sizes`` to BLAS."""
    return any(w >= blas_min for w in _layer_weights(sizes))


def blocked_batches(sizes, batch_size: int, optimizer: bool = False) -> bool:
    """Whether a batch's W[1] work goes four examples per pass (``blocked`` of the batch
    kernels): W[1] of at least :data:`BLOCKED_MIN_WEIGHTS` weights; for the optimizer epoch
    also batches of ≥ :data:`BLOCK` examples.  (The two epochs grew these rules apart; they
    differ only for batches of 2-3 examples, and unifying them would change the bits those
    runs give, which the move into this module was not to do.  One rule, one place.)"""
    if optimizer and batch_size < BLOCK:
        return False
    return int(sizes[0]) * int(sizes[1]) >= BLOCKED_MIN_WEIGHTS


# ========================================================================= registry


@dataclass(frozen=True)
class Case:
    """What a kernel's preconditions look at: layer sizes, batch size, output code,
    whether threads were asked for (``threads=True``: the split column kernel wherever it
    can run), and whether the examples carry weights."""

    sizes: tuple[int, ...]
    batch_size: int
    out: int
    threaded: bool
    weighted: bool = False

    @property
    def w1(self) -> int:
        """The number of weights of W[1]."""
        return self.sizes[0] * self.sizes[1]


def _always(case: Case) -> bool:
    return True


@dataclass(frozen=True)
class FastEpoch:
    """One fast epoch kernel: where it lives, when it may run, when it pays, how it is called.

    ``requires(case)``: what the kernel needs to compute the epoch correctly (its
    preconditions: depth, widths, batch size, output).  ``prefers(case)``: where it was
    measured faster than the rows after it (the speed thresholds above).  :func:`select_epoch`
    takes the first row for which both hold; a forced ``epoch=`` (tests, benchmarks) needs
    ``requires`` only.  ``call(kernel, params, sizes, X, Y, order, batch_size, lr, act, out,
    limit)`` adapts the uniform arguments to the kernel's own (per-example kernels take no
    batch size) and returns its ``(total cost, resume)``; an optimizer epoch's ``call`` takes
    the arguments of :func:`run_epoch_opt` and returns ``(J, failed)``.  A weighted run adds
    the keyword ``sw=`` (the weights, one per row of X), only ever to a row whose
    ``requires`` admits ``Case.weighted``.
    """

    name: str
    module: str
    requires: Callable[[Case], bool]
    call: Callable
    prefers: Callable[[Case], bool] = _always
    #: The compiled kernel's name in ``module`` if not ``name`` (two rows sharing a kernel).
    function: str = ""
    #: Its twin compiled with ``parallel=True`` (the same bits on any number of threads), if any.
    threaded: str = ""
    #: Whether the module has ``_tiles`` twins of both (name + ``"_tiles"``): the same epoch with
    #: the register tiles (:func:`uses_tiles`).
    tiles: bool = False

    def applies(self, case: Case) -> bool:
        """Whether :func:`select_epoch` picks this row for ``case`` (if no row before it does)."""
        return self.requires(case) and self.prefers(case)

    def kernel(self, threaded: bool = False, tiles: bool = False):
        """The compiled kernel, or with ``threaded`` its threaded twin where it has one, and with
        ``tiles`` the ``_tiles`` twin of that where it has one (its module is imported on first
        use, so ``import fastbp`` and a process that never trains with it do not pay for it)."""
        name = self.threaded if threaded and self.threaded else self.function or self.name
        if tiles and self.tiles:
            name += "_tiles"
        return getattr(importlib.import_module(self.module), name)


def _weights(sw, dtype):
    """The kernels' ``sw`` argument: the weights, or an empty array of the buffer's dtype (none)."""
    return _NO_WEIGHTS[np.dtype(dtype)] if sw is None else sw


_NO_WEIGHTS = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}


def _per_example(kernel, params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    return kernel(params, sizes, X, Y, order, lr, act, out, limit)


def _batch(kernel, params, sizes, X, Y, order, batch_size, lr, act, out, limit, sw=None):
    blocked = blocked_batches(sizes, batch_size)
    return kernel(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blocked, _weights(sw, params.dtype))


def _batch_kernel(kernel, params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    return kernel(params, sizes, X, Y, order, batch_size, lr, act, out, limit)


def _columns(kernel, params, sizes, *rest):
    """A column kernel (gradient descent or optimizer epoch), each batch whole: the row's
    uniform arguments (``rest[3]``: the batch size) plus :func:`blas_min_weights`, BLAS held to
    one thread where a layer runs on it."""
    blas_min = blas_min_weights(sizes, rest[3])
    return _blas_held(sizes, blas_min, kernel, params, sizes, *rest, blas_min, False)


def _columns_split(kernel, params, sizes, *rest):
    """:func:`_columns` with each batch split in two halves (on two threads in a threaded twin)."""
    blas_min = blas_min_weights(sizes, rest[3])
    return _blas_held(sizes, blas_min, kernel, params, sizes, *rest, blas_min, True)


def _blas_held(sizes, blas_min, kernel, *args):
    """``kernel(*args)``, with BLAS held to one thread if a layer of ``sizes`` runs on it (given
    ``blas_min``)."""
    if not uses_blas(sizes, blas_min):
        return kernel(*args)
    with one_blas_thread():
        return kernel(*args)


def _with_optimizer(
    kernel, params, sizes, X, Y, order, batch_size, act, out, kind, hyper, state, counter, alpha, cost_scale, sw=None
):
    return kernel(
        params,
        sizes,
        X,
        Y,
        order,
        batch_size,
        act,
        out,
        kind,
        hyper,
        state,
        counter,
        alpha,
        cost_scale,
        blocked_batches(sizes, batch_size, optimizer=True),
        _weights(sw, params.dtype),
    )


def _per_example_sgd(c: Case) -> bool:
    # weights: no.  (With batch 1 a weight cancels out of w_i / Σw except through 0/0 or the L2
    # term; weighted runs go to _batch_epoch, which takes batch 1 when weighted.)
    return c.batch_size == 1 and not c.weighted


def _one_hidden_layer(c: Case) -> bool:
    return _per_example_sgd(c) and len(c.sizes) == 3


def _tiny_batches(c: Case) -> bool:
    # weights: no (every example's share of the gradient is 1/n_b).
    return 1 < c.batch_size and not c.weighted and len(c.sizes) == 3 and c.sizes[1] <= TINY_MAX_HIDDEN


def _tiny4_net(c: Case) -> bool:
    return c.sizes[1] <= 4 and c.sizes[2] == 1 and c.out in (OUT_SIGMOID, OUT_IDENTITY)


def _tiny4_batch_pays(c: Case) -> bool:
    return c.batch_size <= TINY4_MAX_BATCH and c.w1 <= TINY4_MAX_WEIGHTS


def _tiny_batch_pays(c: Case) -> bool:
    return c.batch_size <= TINY_MAX_BATCH_NARROW and c.sizes[0] <= TINY_NARROW_INPUTS


def _columns_rows(c: Case) -> bool:
    # weights: no (dZ[L] carries 1/n_b for every example).
    return c.batch_size > 1 and not c.weighted


def _split_pays(c: Case) -> bool:
    # the sizes only (or threads=True, asked for): never the thread count.
    min_batch = SPLIT_MIN_BATCH_LARGE if c.w1 >= LARGE_W1_WEIGHTS else SPLIT_MIN_BATCH
    return c.threaded or (c.batch_size >= min_batch and c.w1 >= SPLIT_MIN_WEIGHTS)


def _deferred_rows(c: Case) -> bool:
    # weights: no (every example's share of the update is 1/n_b).
    return 1 < c.batch_size <= DEFERRED_BATCH_CAP and not c.weighted


def _deferred_pays(c: Case) -> bool:
    b = c.batch_size
    one_hidden = len(c.sizes) == 3
    if b <= DEFERRED_MAX_BATCH_DEEP:
        return True
    if not one_hidden and c.w1 < LARGE_W1_WEIGHTS:
        return False
    if b <= DEFERRED_MAX_BATCH or (one_hidden and c.w1 >= LARGE_W1_WEIGHTS and b <= DEFERRED_MAX_BATCH_LARGE):
        return True
    # from there to TILES_MIN_BATCH, the batches the column kernel's tiles do not take
    return c.w1 >= BLOCKED_MIN_WEIGHTS and b < TILES_MIN_BATCH and not uses_tiles(c.sizes, b)


#: The fast gradient-descent epochs, in order of preference: the first whose ``requires`` and
#: ``prefers`` hold runs (the column kernel takes every unweighted batch the rows before it do not,
#: the last row every weighted run, ``_sgd_epoch`` every unweighted 1).  Each ``requires`` states
#: whether the row takes weights.
FAST_EPOCHS: tuple[FastEpoch, ...] = (
    FastEpoch(
        "_sgd_epoch_blocked_tiles",
        "fastbp._fast.blocked_tiles",
        requires=_per_example_sgd,  # weights: no
        # (narrow inputs unmeasured since the kernel it replaced needed n_0 ≥ BLOCK)
        prefers=lambda c: c.w1 >= BLOCKED_MIN_WEIGHTS and c.sizes[0] >= BLOCK,
        call=_per_example,
    ),
    FastEpoch(
        "_tiny4_epoch",
        "fastbp._fast.tiny",
        requires=lambda c: _one_hidden_layer(c) and _tiny4_net(c),  # weights: no
        prefers=lambda c: c.w1 <= TINY4_MAX_WEIGHTS,
        call=_per_example,
    ),
    FastEpoch(
        "_tiny_epoch",
        "fastbp._fast.tiny",
        requires=lambda c: (  # weights: no
            _one_hidden_layer(c) and c.sizes[1] <= TINY_MAX_HIDDEN and c.sizes[0] <= TINY_MAX_INPUTS
        ),
        call=_per_example,
    ),
    FastEpoch("_sgd_epoch", "fastbp._fast.sgd", requires=_per_example_sgd, call=_per_example),  # weights: no
    FastEpoch(
        "_columns_epoch_split",
        "fastbp._fast.columns",
        requires=_columns_rows,  # weights: no
        prefers=_split_pays,
        call=_columns_split,
        function="_columns_epoch",
        threaded="_columns_epoch_threads",
        tiles=True,
    ),
    FastEpoch(
        "_tiny4_batch_epoch",
        "fastbp._fast.tiny",
        requires=lambda c: _tiny_batches(c) and _tiny4_net(c),  # weights: no
        prefers=_tiny4_batch_pays,
        call=_batch_kernel,
    ),
    FastEpoch(
        "_tiny_batch_epoch",
        "fastbp._fast.tiny",
        requires=_tiny_batches,  # weights: no
        prefers=_tiny_batch_pays,
        call=_batch_kernel,
    ),
    FastEpoch(
        "_deferred_tiles_epoch",
        "fastbp._fast.deferred_tiles",
        requires=_deferred_rows,  # weights: no
        prefers=_deferred_pays,
        call=_batch_kernel,
    ),
    FastEpoch(
        "_columns_epoch",
        "fastbp._fast.columns",
        requires=_columns_rows,  # weights: no
        call=_columns,
        tiles=True,
    ),
    FastEpoch(
        "_batch_epoch",
        "fastbp._fast.batch",
        # weights: yes (w_i / Σ_batch w in _batch_gradient), and so also batch 1 when weighted
        requires=lambda c: c.batch_size > 1 or c.weighted,
        call=_batch,
    ),
)

#: The fast epochs with an optimizer (momentum, Nesterov, Adam, L2), in order of preference.
FAST_OPTIMIZER_EPOCHS: tuple[FastEpoch, ...] = (
    FastEpoch(
        "_columns_epoch_opt_split",
        "fastbp._fast.columns",
        requires=_columns_rows,  # weights: no
        prefers=_split_pays,
        call=_columns_split,
        function="_columns_epoch_opt",
        threaded="_columns_epoch_opt_threads",
        tiles=True,
    ),
    FastEpoch(
        "_columns_epoch_opt",
        "fastbp._fast.columns",
        requires=_columns_rows,  # weights: no
        prefers=lambda c: c.batch_size >= COLUMNS_OPT_MIN_BATCH,
        call=_columns,
        tiles=True,
    ),
    FastEpoch(
        "_batch_epoch_opt",
        "fastbp._fast.optimizer",
        requires=lambda c: c.batch_size >= 1,  # weights: yes (w_i / Σ_batch w in _batch_gradient, L2 / Σw)
        call=_with_optimizer,
    ),
)

#: The plain kernels' names: what runs where no fast row applies.
PLAIN = "_train_epoch"
PLAIN_OPTIMIZER = "_train_epoch_opt"

_ROWS = {row.name: row for row in FAST_EPOCHS + FAST_OPTIMIZER_EPOCHS}


# ======================================================================== selection


def _case(sizes, batch_size: int, out: int, threads: bool | None, weighted: bool = False) -> Case:
    sizes = tuple(int(n) for n in sizes)
    return Case(sizes, int(batch_size), int(out), bool(threads), bool(weighted))


def _fast_allowed(act: int) -> bool:
    """Whether a built-in activation's traits allow the fast kernels' divergence bound."""
    traits = TRAITS.get(act)
    return traits is not None and traits.slope_bounded


def select_epoch(
    sizes, batch_size: int, out: int, act: int, threads: bool | None = None, *, weighted: bool = False
) -> str:
    """The name of the kernel that runs a gradient-descent epoch: a row of
    :data:`FAST_EPOCHS`, or :data:`PLAIN`.

    ``act`` is an ``ACT_*`` code (a custom activation's code selects :data:`PLAIN`).
    ``threads``: ``True`` runs every unweighted mini-batch (batch > 1) in the split column
    kernel, whatever its size; ``None`` or ``False``, only those of at least
    :data:`SPLIT_MIN_BATCH` examples (:data:`SPLIT_MIN_BATCH_LARGE` on a W[1] of at least
    :data:`LARGE_W1_WEIGHTS`) on a W[1] of at least :data:`SPLIT_MIN_WEIGHTS`.  The
    number of threads never changes the choice (so never the bits): it only picks the split
    kernel's twin, in :func:`run_epoch`.  ``weighted``: the examples carry weights (only rows
    whose ``requires`` admit them).  A pure function: the same arguments always give the
    same name.
    """
    if not _fast_allowed(act):
        return PLAIN
    case = _case(sizes, batch_size, out, threads, weighted)
    for row in FAST_EPOCHS:
        if row.applies(case):
            return row.name
    return PLAIN


def select_optimizer_epoch(sizes, batch_size: int, out: int, act: int, weighted: bool = False) -> str:
    """The name of the kernel that runs an epoch with an optimizer: a row of
    :data:`FAST_OPTIMIZER_EPOCHS`, or :data:`PLAIN_OPTIMIZER`.  Pure, like :func:`select_epoch`."""
    if not _fast_allowed(act):
        return PLAIN_OPTIMIZER
    case = _case(sizes, batch_size, out, None, weighted)
    for row in FAST_OPTIMIZER_EPOCHS:
        if row.applies(case):
            return row.name
    return PLAIN_OPTIMIZER


def _num_threads() -> int:
    import numba

    return numba.get_num_threads()


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one: a process
    pinned with ``taskset`` or a container's cpuset has fewer than ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


#: Set in a child made by ``fork()`` from a process that had started Numba's threading layer (a
#: parallel kernel, ``numba.get_num_threads``/``set_num_threads``: so any fastbp fit): Numba's OpenMP
#: layer then aborts the child at its first parallel region ("Terminating: fork() called from a
#: process already using GNU OpenMP"), so such children run the one-thread twins (the same bits)
#: unless ``threads=True`` asks.  A child of a parent that never started it (asv's forkserver, which
#: forks every benchmark from a process that imported fastbp and ran nothing) keeps its threads.
_FORKED = False
_THREADS_BEFORE_FORK = False  # whether the process about to fork had started Numba's threads


def _threads_started() -> bool:
    """Whether this process has started Numba's threading layer (``numba.threading_layer()`` raises
    until then)."""
    import numba

    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


def _before_fork() -> None:
    global _THREADS_BEFORE_FORK
    _THREADS_BEFORE_FORK = _threads_started()


def _after_fork_in_child() -> None:
    global _FORKED
    _FORKED = _FORKED or _THREADS_BEFORE_FORK


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)


@functools.lru_cache(maxsize=None)
def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _threadsafe_layer() -> bool:
    """Whether Numba's threading layer is one that Python threads may call at once (TBB or
    OpenMP): its ``workqueue`` layer, the fallback where neither is installed (typically
    macOS), terminates the process when two threads run parallel kernels at the same time,
    so the defaults keep such a process on the one-thread twins."""
    import numba

    try:
        return numba.threading_layer() in ("tbb", "omp")
    except ValueError:  # no parallel kernel has run yet: the layer Numba would choose
        pass
    layer = numba.config.THREADING_LAYER
    if layer in ("tbb", "omp", "safe", "threadsafe"):
        return True
    if layer != "default":  # workqueue, or forksafe (which may choose workqueue)
        return False
    for name in numba.config.THREADING_LAYER_PRIORITY:
        if _importable(f"numba.np.ufunc.{name}pool"):
            return name in ("tbb", "omp")
    return False


#: The threaded twins run only while other processes leave at least THREADS_MIN_FREE_CPUS of the
#: process's CPUs free and its threads wait for a CPU less than THREADS_MAX_WAITING CPUs' worth of
#: the time (:func:`fastbp._busy.load`, over the window since its last look, at least a tenth of a
#: second): two threads meet at every batch, and one that waits for a CPU stalls both.  The first
#: figure says when threads may start (while they run, their own share hides part of the others'
#: demand: 2 hogs on 3 CPUs read 1.5), the second when running ones are short of CPUs.
#: ``MLPClassifier(hidden_layer_sizes=(32,)).fit`` on the digits, a busy loop on the other core of
#: a 2-core Zen 3: 0.902 s on two threads, 0.290 s on one, 0.295 s by this choice (idle: 0.196 s,
#: 0.289 s and 0.200 s); threaded under that load, the two threads waited 0.75 CPUs' worth, idle 0.0;
#: ``python tools/busy_threads.py`` re-measures it.  ``FASTBP_BUSY_CHECK=0`` runs them regardless.
THREADS_MIN_FREE_CPUS = 1.5
THREADS_MAX_WAITING = 0.25


def _busy_check_on() -> bool:
    """Whether the thread choice looks at the machine's load: not where ``FASTBP_BUSY_CHECK`` is
    0, false, off or no."""
    return os.environ.get("FASTBP_BUSY_CHECK", "1").strip().lower() not in ("0", "false", "off", "no")


def _room_for_threads(cpus: int) -> bool:
    """Whether the machine's load leaves room for two threads (:data:`THREADS_MIN_FREE_CPUS`,
    :data:`THREADS_MAX_WAITING`); True where the check is off."""
    if not _busy_check_on():
        return True
    others, waiting = _busy.load()
    return cpus - others >= THREADS_MIN_FREE_CPUS and waiting < THREADS_MAX_WAITING


def _threaded(threads: bool | None) -> bool:
    """Whether a row's threaded twin runs: ``threads`` if given, else whether Numba has more
    than one thread, the process more than one CPU to run them on (Numba counts the machine's
    CPUs, not the affinity mask: two threads on one pinned CPU ran the split kernel 0-8 %
    slower than one, ``NUMBA_NUM_THREADS=2 taskset -c 1 python tools/split_speed.py``) with
    :func:`_room_for_threads` on them (the machine's load), a thread-safe
    threading layer (:func:`_threadsafe_layer`), and the process was not made by ``fork()``
    (:data:`_FORKED`).  The twins give the same bits, so this only decides speed."""
    if threads is not None:
        return bool(threads)
    if _FORKED or _num_threads() < 2 or not _threadsafe_layer():
        return False
    cpus = _usable_cpus()
    return cpus > 1 and _room_for_threads(cpus)


# ========================================================================== running


#: The rows whose kernels form Gram terms x_sᵀx_t (+ 1) of the inputs, and the row with the same
#: preconditions that runs instead where :func:`tiny_inputs_safe` fails: float32 inputs of
#: |x| ~ 1e19 overflow x_sᵀx_t where the plain kernel's W[1] x does not (and the correction then
#: gave a wrong but finite Z[1]).
_GRAM_ROWS = {
    "_tiny4_epoch": "_sgd_epoch",
    "_tiny_epoch": "_sgd_epoch",
    "_sgd_epoch_blocked_tiles": "_sgd_epoch",
}


_GRAM_BOUND = {np.dtype(t): float(np.finfo(t).max) * TINY_MAX_GRAM_FRACTION for t in (np.float32, np.float64)}


def tiny_inputs_safe(X, x_abs_max: float | None = None) -> bool:
    """Whether the Gram terms of the tiny and blocked per-example kernels (:data:`_GRAM_ROWS`) stay
    far from overflow on ``X`` (see :data:`TINY_MAX_GRAM_FRACTION`); ``x_abs_max``: max|X| if the
    caller knows it already."""
    if x_abs_max is None:
        x_abs_max = max(X.max(), -X.min()) if X.size else 0.0
    x_abs_max = float(x_abs_max)  # a float32 max squared overflows (a warning) where the test is clear
    return x_abs_max * x_abs_max * (X.shape[1] + 1) <= _GRAM_BOUND[X.dtype]


def run_epoch(
    params,
    sizes,
    X,
    Y,
    order,
    batch_size,
    lr,
    activation: Activation,
    out: int,
    threads=None,
    epoch: str | None = None,
    x_abs_max: float | None = None,
    sw=None,
) -> tuple[float, int]:
    """One epoch on inputs already checked and converted: returns ``(J, failed_batch)``.

    J is the mean of the per-example costs, each measured in the forward pass before its
    batch's update; ``failed_batch`` is −1, or the index of the first batch whose loss or
    updated parameters would not be finite (that step is not applied, the parameters stay
    as they were before it, and the epoch stops).

    The kernel is :func:`select_epoch`'s choice (custom activations and
    ``NUMBA_DISABLE_JIT=1`` run the plain kernel: the fast ones use Numba intrinsics with
    no pure-Python form; inputs too large for a Gram term run a row without one,
    see :data:`_GRAM_ROWS` and :func:`tiny_inputs_safe`, given ``x_abs_max`` = max|X| if known); ``epoch``
    forces a registered kernel by name (``ValueError`` if
    its preconditions do not hold), for tests and benchmarks.  If a fast kernel stops
    before a step it cannot prove safe, the rest of the epoch runs in the plain kernel,
    which checks that step exactly.

    ``sw``: per-example weights (one per row of X, the buffer's dtype, C-contiguous), each
    batch's mean weighted by them (:func:`fastbp._plain.loops._train_epoch`); a batch whose
    weights sum to zero is refused first (ValueError), nothing changed.

    ``threads``: ``None`` (default): the split column kernel (:data:`SPLIT_MIN_BATCH`,
    :data:`SPLIT_MIN_WEIGHTS`, ...) runs on its threaded twin when Numba has more than one thread;
    ``True``: the split kernel for every unweighted mini-batch, on the threaded twin;
    ``False``: on the one-thread twin.  The same bits whatever ``threads`` and the thread
    count are, except that ``True`` also chooses the split kernel for smaller problems.
    """
    act = activation.code
    weighted = sw is not None
    if weighted:
        check_batch_weights(sw, order, batch_size)
    if epoch is None:
        if activation.is_custom or numba_config.DISABLE_JIT:
            epoch = PLAIN
        else:
            epoch = select_epoch(sizes, batch_size, out, act, threads, weighted=weighted)
            if epoch in _GRAM_ROWS and not tiny_inputs_safe(X, x_abs_max):
                epoch = _GRAM_ROWS[epoch]  # the same preconditions, no Gram term
    elif epoch != PLAIN:
        _check_forced(epoch, FAST_EPOCHS, sizes, batch_size, out, act, threads, weighted)
    w = _weights(sw, params.dtype)
    if epoch == PLAIN:
        return kernels_for(activation)._train_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, w)
    m = order.shape[0]
    limit = float(np.finfo(params.dtype).max) / 4.0
    row = _ROWS[epoch]
    kernel = row.kernel(_threaded(threads), tiles=uses_tiles(sizes, batch_size))
    args = (kernel, params, sizes, X, Y, order, batch_size, lr, act, out, limit)
    total, resume = row.call(*args, sw=sw) if weighted else row.call(*args)
    if resume < 0:
        return total / m, -1
    # The hand-over: the plain kernel checks the step the fast one could not prove safe.
    rest = np.ascontiguousarray(order[resume:])
    J_rest, failed = BUILTIN._train_epoch(params, sizes, X, Y, rest, batch_size, lr, act, out, w)
    total += J_rest * rest.shape[0]
    return total / m, (-1 if failed < 0 else resume // batch_size + failed)


def run_epoch_opt(
    params,
    sizes,
    X,
    Y,
    order,
    batch_size,
    activation: Activation,
    out: int,
    kind,
    hyper,
    state,
    counter,
    alpha,
    cost_scale,
    epoch: str | None = None,
    sw=None,
    threads: bool | None = None,
) -> tuple[float, int]:
    """One epoch with an optimizer (``kind``, an ``OPT_*`` code of :mod:`fastbp.steps`) and
    L2 on checked inputs: the arguments and ``(J, failed)`` result of
    :func:`fastbp._plain.loops._train_epoch_opt`.  The kernel is
    :func:`select_optimizer_epoch`'s choice (or ``epoch``, forced as in :func:`run_epoch`);
    no hand-over is needed: the step kernels check every step exactly.  ``sw``: per-example
    weights, as in :func:`run_epoch`.  ``threads``: whether the split kernel runs on its
    threaded twin (default: when Numba has more than one thread; the same bits either way)."""
    act = activation.code
    weighted = sw is not None
    if weighted:
        check_batch_weights(sw, order, batch_size)
    if epoch is None:
        if activation.is_custom or numba_config.DISABLE_JIT:
            epoch = PLAIN_OPTIMIZER
        else:
            epoch = select_optimizer_epoch(sizes, batch_size, out, act, weighted)
    elif epoch != PLAIN_OPTIMIZER:
        _check_forced(epoch, FAST_OPTIMIZER_EPOCHS, sizes, batch_size, out, act, None, weighted)
    tail = (kind, hyper, state, counter, alpha, cost_scale)
    if epoch == PLAIN_OPTIMIZER:
        k = kernels_for(activation)
        return k._train_epoch_opt(params, sizes, X, Y, order, batch_size, act, out, *tail, _weights(sw, params.dtype))
    row = _ROWS[epoch]
    kernel = row.kernel(_threaded(threads), tiles=uses_tiles(sizes, batch_size))
    args = (kernel, params, sizes, X, Y, order, batch_size, act, out, *tail)
    return row.call(*args, sw=sw) if weighted else row.call(*args)


def _check_forced(epoch: str, rows, sizes, batch_size, out, act, threads, weighted=False) -> None:
    names = [row.name for row in rows]
    if epoch not in names:
        raise ValueError(f"epoch must be one of {names} or the plain kernel; got {epoch!r}")
    if not _fast_allowed(act):
        raise ValueError(f"epoch {epoch!r}: the fast kernels need a built-in activation with |g'| <= 1")
    if not _ROWS[epoch].requires(_case(sizes, batch_size, out, threads, weighted)):
        what = " with sample weights" if weighted else ""
        raise ValueError(
            f"epoch {epoch!r} cannot run layer sizes {list(map(int, sizes))} at batch size {batch_size}{what}"
        )


#: The fast full-batch objective (``solver="lbfgs"``) and the plain one it is tested against.
FAST_LOSS_AND_GRADIENT = "_loss_and_gradient_fast"
PLAIN_LOSS_AND_GRADIENT = "_loss_and_gradient"


def select_loss_and_gradient(act: int) -> str:
    """The kernel :func:`loss_and_gradient` runs for activation code ``act``: the fast one for a
    built-in activation with the traits the fast kernels rely on, else the plain one.  Pure."""
    return FAST_LOSS_AND_GRADIENT if _fast_allowed(act) else PLAIN_LOSS_AND_GRADIENT


def loss_and_gradient(
    params, sizes, X, Y, activation: Activation, out: int, grad, alpha, cost_scale, order=None, kernel=None, sw=None
) -> float:
    """scikit-learn's full-batch objective (cost_scale · mean cost + ½ alpha ‖W‖² / m) of
    ``params`` on checked inputs, its gradient into ``grad``: one compiled call (what
    ``solver="lbfgs"`` evaluates).  The kernel is :func:`select_loss_and_gradient`'s choice,
    :func:`fastbp._fast.fullbatch._loss_and_gradient_fast` (its ``_tiles`` twin where
    :func:`uses_tiles` for m rows) or the plain
    :func:`fastbp._plain.loops._loss_and_gradient` (custom activations, ``NUMBA_DISABLE_JIT=1``);
    ``kernel`` forces one by name (tests).  ``order``: ``arange(m)``, the caller's to reuse.
    ``sw``: per-example weights, weighted means (m becomes Σ w): the plain kernel takes them,
    the fast one (the column passes) does not yet, so weighted calls run the plain kernel."""
    act = activation.code
    w = _weights(sw, params.dtype)
    if kernel is None:
        plain = activation.is_custom or numba_config.DISABLE_JIT or sw is not None
        kernel = PLAIN_LOSS_AND_GRADIENT if plain else select_loss_and_gradient(act)
    if kernel == PLAIN_LOSS_AND_GRADIENT:
        k = kernels_for(activation)
        return k._loss_and_gradient(params, sizes, X, Y, act, out, grad, float(alpha), float(cost_scale), w)
    if kernel != FAST_LOSS_AND_GRADIENT or not _fast_allowed(act) or sw is not None:
        raise ValueError(
            f"kernel must be {PLAIN_LOSS_AND_GRADIENT!r} or, for a built-in activation without sample weights, "
            f"{FAST_LOSS_AND_GRADIENT!r}"
        )
    if order is None:
        order = np.arange(X.shape[0], dtype=np.int64)
    name = "_loss_and_gradient_fast_tiles" if uses_tiles(sizes, X.shape[0]) else "_loss_and_gradient_fast"
    fast = getattr(importlib.import_module("fastbp._fast.fullbatch"), name)
    blas_min = blas_min_weights(sizes, X.shape[0])
    args = (params, sizes, X, Y, order, act, out, grad, float(alpha), float(cost_scale), blas_min)
    return _blas_held(sizes, blas_min, fast, *args)


def _plain_forward(activation: Activation) -> bool:
    """Whether ``predict``/``forward``/``loss`` run the plain kernels: a custom activation (the
    fast ones call the built-in g's loops), or ``NUMBA_DISABLE_JIT=1``."""
    return activation.is_custom or numba_config.DISABLE_JIT


def _fast_forward(activation: Activation, sizes, m: int) -> bool:
    """Whether the column forward kernels (:mod:`fastbp._fast.forward`) run: any built-in
    activation (nothing is updated, so no trait is needed), not ``NUMBA_DISABLE_JIT=1``, and
    at least :data:`FAST_FORWARD_MIN_ROWS` rows or :data:`FAST_FORWARD_MIN_MACS` multiply-adds."""
    if _plain_forward(activation):
        return False
    return m >= FAST_FORWARD_MIN_ROWS or m * sum(_layer_weights(sizes)) >= FAST_FORWARD_MIN_MACS


#: Above :func:`_fast_forward`'s thresholds, nets with at least this many weights (Σ n_l · n_(l−1))
#: run the forward passes with the examples as rows (:mod:`fastbp._fast.packed_forward`: no
#: transpose of X, no copy of Z and A out), ...  Column-pass time ÷ packed time, 4,096 rows, one
#: core of a Zen 4 (``taskset -c 1 python tools/public_ops_speed.py --forward-ways``; predict /
#: forward / loss): 64-32-1 1.10 / 1.19 / 1.12 float32, 1.10 / 1.19 / 1.10 float64; 16-32-1 (544
#: weights) 0.96-1.18, 8-16-1 0.91-1.08, 2-4-1 0.48-0.75 (a strip of 16 lanes for 4 units).
PACKED_MIN_WEIGHTS = 1024

#: ... and at least this many with a softmax output: its per-example passes run one example at a
#: time there, across the examples in the column pass (:mod:`fastbp._fast.forward`).  Same runs:
#: 784-128-10 1.09-1.15, 256-256-10 (68,096 weights) 0.97-1.13, 256-128-10 0.94-1.15,
#: 128-128-10 0.84-1.11, 64-64-10 0.72-0.99 (loss the lowest each time).
PACKED_MIN_WEIGHTS_SOFTMAX = 1 << 16


def packed_forward(sizes, out: int) -> bool:
    """Whether the public forward passes of a net of ``sizes`` with output ``out`` run
    :mod:`fastbp._fast.packed_forward` (above :func:`_fast_forward`'s thresholds) rather than the
    column pass: :data:`PACKED_MIN_WEIGHTS`, :data:`PACKED_MIN_WEIGHTS_SOFTMAX`."""
    least = PACKED_MIN_WEIGHTS_SOFTMAX if out == OUT_SOFTMAX else PACKED_MIN_WEIGHTS
    return sum(_layer_weights(sizes)) >= least


def forward_refuses_non_finite(activation: Activation, sizes, m: int) -> bool:
    """Whether :func:`predict`, :func:`forward` and :func:`loss` of m rows run the fast forward
    kernels (:func:`_fast_forward`: :mod:`fastbp._fast.packed_forward` or
    :mod:`fastbp._fast.forward`), which look for NaN and ±inf in each block's or chunk's rows of X
    just after reading them (``fastbp._fast._common._holds_non_finite``; :func:`_refuse_non_finite_X`
    raises): the public wrappers then skip their own NumPy pass over X
    (``fastbp._validation.check_X``).
    Reference time / fastbp time of predict on 4,096 rows, one core of a Zen 4, the NumPy pass
    before the kernel against the kernels' own look, two alternated runs each (``taskset -c 1
    python tools/public_ops_speed.py --nets 64-32-1 784-128-10 --repeats 60``): 64-32-1 float64
    1.47-1.49 -> 1.55-1.56, float32 1.24-1.27 -> 1.28-1.30; 784-128-10 1.30-1.33 -> 1.36-1.48 and
    1.16-1.18 -> 1.28-1.31."""
    return _fast_forward(activation, sizes, m)


def _refuse_non_finite_X(non_finite: bool, X) -> None:
    """The error of ``fastbp._validation.check_X`` (naming NaN or inf) where a fast forward kernel
    found them in X's rows; nothing a caller can see was changed (the outputs are the wrappers' own).
    The kernels run without the GIL: another thread may have changed X since."""
    if non_finite:
        refuse_non_finite(X, "X")
        raise ValueError("X contained NaN or inf while the kernel read it (did another thread change X?)")


def _packed_kernel(name: str):
    """:mod:`fastbp._fast.packed_forward`'s kernel ``name`` (imported on first use)."""
    return getattr(importlib.import_module("fastbp._fast.packed_forward"), name)


def _packed_pads(sizes, itemsize: int) -> list[int]:
    """Each layer's values per example in :mod:`fastbp._fast.packed_forward`'s blocks: n_l
    rounded up to a strip of 64 bytes, or 1 for one unit (its ``_layer_pads``)."""
    lanes = 64 // itemsize
    return [1 if n == 1 else -(-n // lanes) * lanes for n in _as_ints(sizes)[1:]]


def _run_forward(name: str, params, sizes, X, *args):
    """``fastbp._fast.forward``'s kernel ``name`` (its ``_tiles`` twin where :func:`uses_tiles`
    for X's rows) on ``params, sizes, X, *args`` and :func:`blas_min_weights`, BLAS held to one
    thread where a layer runs on it; returns the kernel's result."""
    m = X.shape[0]
    kernel = getattr(importlib.import_module("fastbp._fast.forward"), name + ("_tiles" if uses_tiles(sizes, m) else ""))
    blas_min = blas_min_weights(sizes, m)
    return _blas_held(sizes, blas_min, kernel, params, sizes, X, *args, blas_min)


def _rows_kernel(name: str):
    """:mod:`fastbp._fast.rows`' kernel ``name`` (imported on first use)."""
    return getattr(importlib.import_module("fastbp._fast.rows"), name)


def predict(params, sizes, X, activation: Activation, out: int, AL) -> None:
    """A[L] of every row of X into ``AL`` (m × n_L), on checked inputs: for a built-in activation
    where :func:`_fast_forward` (enough rows or multiply-adds) the examples as rows,
    :func:`fastbp._fast.packed_forward._predict_packed`, where :func:`packed_forward`, else the
    column forward pass :func:`fastbp._fast.forward._predict_fast`; :func:`fastbp._fast.rows._predict_rows`
    below (blocks of 32 examples on the training kernels' compiled tiles and loops); else the plain kernel."""
    if _plain_forward(activation):
        kernels_for(activation)._output_batch(params, sizes, X, activation.code, out, AL)
    elif not _fast_forward(activation, sizes, X.shape[0]):
        _rows_kernel("_predict_rows")(params, sizes, X, activation.code, out, AL)
    elif packed_forward(sizes, out):
        _refuse_non_finite_X(_packed_kernel("_predict_packed")(params, sizes, X, activation.code, out, AL), X)
    else:
        _refuse_non_finite_X(_run_forward("_predict_fast", params, sizes, X, activation.code, out, AL), X)


def _unit_spans(sizes) -> tuple[int, list[tuple[int, int]]]:
    """``(n_units, spans)``: the units of all layers, and layer l's units u … v as ``spans[l - 1]``."""
    bounds = list(itertools.accumulate(_as_ints(sizes)[1:], initial=0))
    return bounds[-1], list(zip(bounds[:-1], bounds[1:]))


def forward(params, sizes, X, activation: Activation, out: int) -> tuple[list, list]:
    """``(Z, A)``: lists of Z[l], A[l] (m × n_l) of every layer for every row of X, on checked
    inputs.  :func:`fastbp._fast.packed_forward._forward_packed` (where :func:`packed_forward`) fills
    a block of m × pads[l] values a layer, each layer that block's first n_l columns (C-contiguous
    where n_l fills whole strips); :func:`fastbp._fast.forward._forward_fast` fills units-major
    buffers (n_units × m), so each layer is a Fortran-ordered view ``ZT[u:u+n].T``; below their
    thresholds (:func:`_fast_forward`) :func:`fastbp._fast.rows._forward_rows` (or the plain kernel,
    one example at a time) fills example-major ones (m × n_units), each layer a column block.  Each
    way Z and A of every layer are views of one buffer per pass (a user who keeps one list keeps
    the whole buffer), and the values agree (tests/test_packed_forward.py, tests/test_columns.py,
    tests/test_rows.py)."""
    m = X.shape[0]
    n_units, spans = _unit_spans(sizes)
    if not _fast_forward(activation, sizes, m):
        Z, A = np.empty((2, m, n_units), params.dtype)  # one allocation: see below
        if _plain_forward(activation):
            kernels_for(activation)._forward_batch(params, sizes, X, activation.code, out, Z, A)
        else:
            _rows_kernel("_forward_rows")(params, sizes, X, activation.code, out, Z, A)
        return [Z[:, u:v] for u, v in spans], [A[:, u:v] for u, v in spans]
    if packed_forward(sizes, out):  # each layer an m × pads[l] block, sliced to its n_l columns
        pads = _packed_pads(sizes, params.itemsize)
        Zf, Af = np.empty((2, m * sum(pads)), params.dtype)  # one allocation: see below
        _refuse_non_finite_X(_packed_kernel("_forward_packed")(params, sizes, X, activation.code, out, Zf, Af), X)
        starts = list(itertools.accumulate(pads, initial=0))
        Z = [Zf[m * q : m * (q + p)].reshape(m, p)[:, :n] for q, p, n in zip(starts, pads, _as_ints(sizes)[1:])]
        A = [Af[m * q : m * (q + p)].reshape(m, p)[:, :n] for q, p, n in zip(starts, pads, _as_ints(sizes)[1:])]
        return Z, A
    # Z and A in one allocation, not two of the same size: glibc's malloc handed two such buffers
    # back to the system when both were freed (its adaptive thresholds size themselves on the
    # largest block freed), so a loop of calls faulted their pages in anew every time.  64-64-10
    # float64 on 4,096 rows, one core: 1,320 page faults a call and 5.4 ms, against 34 and 1.6 ms
    # in one buffer (`taskset -c 1 python tools/output_faults.py`, a fresh process each)
    ZT, AT = np.empty((2, n_units, m), params.dtype)
    _refuse_non_finite_X(_run_forward("_forward_fast", params, sizes, X, activation.code, out, ZT, AT), X)
    return [ZT[u:v].T for u, v in spans], [AT[u:v].T for u, v in spans]


#: :func:`backward` looks for :func:`forward`'s own units-major buffers in a stored pass of at least
#: this many values a list (m · Σ n_l) before copying it: the look reads each layer's address
#: (``ndarray.ctypes``, about 1 µs each), which cost 2-4-1's backward of 4,096 rows (20,480 values)
#: 1.73-1.79 -> 1.47-1.49x the reference float32, more than its copy (``taskset -c 1 python
#: tools/public_ops_speed.py --nets 2-4-1 64-64-10 --repeats 40``, its backward column).
UNITS_MAJOR_MIN_ELEMENTS = 1 << 16


def _units_major(layers, spans, m: int):
    """The units-major block (n_units × m, C-contiguous, writeable) whose rows u … v are
    ``layers[l].T`` for each layer's span ``(u, v)``, where the layers are exactly such views, end
    to end in memory (what :func:`forward`'s column pass returns: ``ZT[u:v].T``); else ``None``.
    The block covers the layers' own elements and nothing else, so the kernel reads only them.
    It spares :func:`backward` a copy of the stored pass (130 µs of 1.19 ms for 64-64-10 float32 on
    4,096 rows, cProfile): reference time / fastbp time of that backward 0.85-0.88 -> 0.89-0.90, float64
    0.96-0.98 -> 1.02-1.05, one core of a Zen 4, two alternated runs (``taskset -c 1 python
    tools/public_ops_speed.py --nets 64-64-10 --repeats 40``, its backward column)."""
    first = layers[0].T
    step = m * first.itemsize
    for (u, v), layer in zip(spans, layers):
        rows = layer.T
        if rows.shape != (v - u, m) or not rows.flags.c_contiguous or not rows.flags.writeable:
            return None
        if rows.ctypes.data != first.ctypes.data + u * step:
            return None
    return np.lib.stride_tricks.as_strided(first, shape=(spans[-1][1], m), strides=(step, first.itemsize))


def backward(params, sizes, X, Y, Z, A, activation: Activation) -> tuple[list, np.ndarray]:
    """``(dZ, grad)``: dZ[l] of every layer for every row of X (m × n_l each, unscaled) and the
    mean gradient (a flat buffer laid out as ``params``), from a stored forward pass ``Z``, ``A``
    (lists of m × n_l arrays of ``params``' dtype), on checked inputs.  For a built-in activation
    :func:`fastbp._fast.backward._backward_fast` where every Z[l], A[l] is Fortran-ordered (the
    column forward pass's: units-major buffers, each layer's products one BLAS call on one thread;
    dZ[l] a Fortran-ordered view), else :func:`fastbp._fast.backward._backward_fast_rows` (the
    examples as rows; dZ[l] C-contiguous); for a custom one (or ``NUMBA_DISABLE_JIT=1``) the plain
    kernel, one example at a time (example-major)."""
    m = X.shape[0]
    n_units, spans = _unit_spans(sizes)
    grad = np.empty(params.shape[0], params.dtype)
    if _plain_forward(activation):
        # the stored pass example-major, Z and A in one allocation (two of one size were handed back
        # to the system on every return and faulted in anew: see forward above)
        Zb, Ab = np.empty((2, m, n_units), params.dtype)
        np.concatenate(Z, axis=1, out=Zb)
        np.concatenate(A, axis=1, out=Ab)
        dZ = np.empty((m, n_units), params.dtype)
        kernels_for(activation)._backward_batch(params, sizes, X, Y, Zb, Ab, activation.code, dZ, grad)
        return [dZ[:, u:v] for u, v in spans], grad
    module = importlib.import_module("fastbp._fast.backward")
    if not all(z.flags.f_contiguous for z in Z + A):
        # the examples as rows (packed_forward's row blocks, a user's C-ordered arrays): each layer
        # copied row by row into an m × n_l block, where units-major blocks would take a transpose.
        # Reference time / fastbp time of backward from each module's own forward pass, 4,096 rows,
        # one core of a Zen 4 (`taskset -c 1 python tools/public_ops_speed.py --nets 64-32-1
        # 784-128-10 256-256-10`, its backward column): transposed into units-major, 256-256-10
        # 0.65 / 0.72-0.79 (float32 / float64), 784-128-10 0.80 / 0.86-0.93; this way 0.84 / 0.97,
        # 0.88 / 0.98, level with the column forward pass's Fortran-ordered Z, A on the units-major
        # kernel (0.89-0.91 / 1.02-1.05, 0.82-0.88 / 0.97-1.01)
        Zf, Af, dZf = np.empty((3, m * n_units), params.dtype)  # one allocation, for the same reason
        for (u, v), z, a in zip(spans, Z, A):
            Zf[m * u : m * v].reshape(m, v - u)[...] = z
            Af[m * u : m * v].reshape(m, v - u)[...] = a
        with one_blas_thread():
            module._backward_fast_rows(params, sizes, X, Y, Zf, Af, activation.code, dZf, grad)
        return [dZf[m * u : m * v].reshape(m, v - u) for u, v in spans], grad
    ZT = AT = None
    if m * n_units >= UNITS_MAJOR_MIN_ELEMENTS:  # forward's own buffers, not copied
        ZT, AT = _units_major(Z, spans, m), _units_major(A, spans, m)
    if ZT is not None and AT is not None:
        dZT = np.empty((n_units, m), params.dtype)
    else:
        ZT, AT, dZT = np.empty((3, n_units, m), params.dtype)  # one allocation, for the same reason
        for (u, v), z, a in zip(spans, Z, A):
            ZT[u:v] = z.T
            AT[u:v] = a.T
    YT = np.ascontiguousarray(Y.T)
    with one_blas_thread():
        module._backward_fast(params, sizes, X, YT, ZT, AT, activation.code, dZT, grad)
    return [dZT[u:v].T for u, v in spans], grad


def loss(params, sizes, X, Y, activation: Activation, out: int) -> float:
    """J, the mean cost over the rows of X, on checked inputs: :func:`fastbp._fast.packed_forward._loss_packed`,
    :func:`fastbp._fast.forward._loss_fast`, :func:`fastbp._fast.rows._loss_rows` or the plain
    kernel, as :func:`predict`."""
    if _plain_forward(activation):
        return kernels_for(activation)._loss_batch(params, sizes, X, Y, activation.code, out)
    if not _fast_forward(activation, sizes, X.shape[0]):
        return _rows_kernel("_loss_rows")(params, sizes, X, Y, activation.code, out)
    if packed_forward(sizes, out):
        J, non_finite = _packed_kernel("_loss_packed")(params, sizes, X, Y, activation.code, out)
        _refuse_non_finite_X(non_finite, X)
        return J
    J, non_finite = _run_forward("_loss_fast", params, sizes, X, Y, activation.code, out)
    _refuse_non_finite_X(non_finite, X)
    return J
