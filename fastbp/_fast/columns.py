"""Mini-batches as column matrices, SIMD across the batch's examples: :func:`_columns_epoch`
(gradient descent) and :func:`_columns_epoch_opt` (momentum, Nesterov, Adam, L2), each on one
thread, and their threaded twins :func:`_columns_epoch_threads`, :func:`_columns_epoch_opt_threads`.

Each batch's gradient is :func:`fastbp._fast._columns._columns_gradient` (the batch as
matrices with one column per example; BLAS for wide layers; the register tiles in the
``_tiles`` twins below), or, with ``split``, the sum of
:data:`PARTS` such gradients over the batch's halves (:func:`_split_gradient`), which the
threaded twins compute on two threads at once.  The update and the divergence contract
(:mod:`fastbp._fast`) of :func:`_columns_epoch` are those of
:func:`fastbp._fast.batch._batch_epoch`: per-layer bounds on max|W[l]|, max|b[l]| raised by
α Σ|dW[l]| per step; a step the bound cannot prove safe is not applied and the epoch hands
over to the plain kernel.  :func:`_columns_epoch_opt` runs the same gradient through the
optimizers' L2 term and steps (:mod:`fastbp.steps`), which check every step exactly.

Same bits for any thread count: the split into parts depends on the batch alone (``split``
is the dispatcher's choice from the problem's sizes, never from the threads), each part is
computed the same way by whichever thread runs it (BLAS held to one thread by the
dispatcher), and the parts are added in the same order.  A twin is the same function
compiled with ``parallel=True`` (:func:`fastbp._jit.compile_as`).

Each of the four has a ``_tiles`` twin (``_columns_epoch_tiles``, …,
``_columns_epoch_opt_threads_tiles``), the same source with the gradient re-bound to
:func:`fastbp._fast._columns._columns_gradient_tiled` (every product as register tiles, no BLAS),
which the dispatcher runs from batches of ``TILES_MIN_BATCH``, and at 16 and 28-31 (``fastbp._dispatch.uses_tiles``).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import JIT_INLINE, JIT_PARALLEL, JIT_VEC, compile_as, jit_inline, jit_inner
from ..steps import (
    BETA_1,
    BETA_2,
    EPSILON,
    LR,
    MOMENTUM,
    NESTEROV,
    OPT_ADAM,
    _adam_apply,
    _adam_bound_holds,
    _adam_constants,
    _adam_exact_check,
    _adam_sums,
    _add_l2,
    _add_l2_range,
    _gd_apply,
    _optimizer_step,
    _sgd_apply,
    _sgd_check,
)
from ._columns import (
    _borrow_workspace,
    _columns_gradient,
    _columns_gradient_tiled,
    _columns_workspace,
    _copies_inputs,
)
from ._common import _abs_sum, _alive, _borrow_epoch, _borrowed, _layer_bounds, _zeros

#: Whether this compiled copy of an epoch runs the register tiles: ``False`` here, ``True`` in the
#: ``_tiles`` twins below (re-bound with ``_split_gradient``; their workspaces are the tiles').
_TILES = False

#: A split batch runs as this many parts, examples [start, mid) and [mid, stop): two, the
#: cores of this project's machines.  Fixed, so that the bits do not depend on the threads.
PARTS = 2


@jit_inline
def _split_gradient(
    params, grad, grad1, sizes, w_off, b_off, u_off, X, Y, order, start, stop, act, out, ws, ws1, costs, blas_min, split
):
    """The gradient of the examples ``order[start:stop]``; returns the sum of their costs.
    Without ``split``: their mean gradient into ``grad``, one :func:`_columns_gradient` call.
    With it: the first half's share (Σ over [start, mid) / n_b) into ``grad`` and the second's
    into ``grad1``, each with its own workspace (``ws``, ``ws1``), as the two iterations of a
    ``prange`` (two threads in a threaded twin); the caller adds grad1 into grad over the two
    halves of the buffer (:func:`_split_step_check`, :func:`_split_descent_sums`), and the two
    costs are added here, in that order."""
    n_b = stop - start
    if not split:
        return _columns_gradient(
            params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, n_b, act, out, ws, blas_min
        )
    mid = start + (n_b + 1) // 2
    for part in prange(PARTS):
        if part == 0:
            costs[0] = _columns_gradient(
                params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, mid, n_b, act, out, ws, blas_min
            )
        elif mid < stop:
            costs[1] = _columns_gradient(
                params, grad1, sizes, w_off, b_off, u_off, X, Y, order, mid, stop, n_b, act, out, ws1, blas_min
            )
    if mid == stop:  # a batch of one example: no second half
        return costs[0]
    return costs[0] + costs[1]


@jit_inline
def _part_range(n, part):
    """Elements ``(lo, hi)`` of part ``part`` of :data:`PARTS` of a buffer of n: the halves."""
    half = (n + 1) // 2
    return (0, half) if part == 0 else (half, n)


# The split step's parts.  Each ``prange`` body below calls parts compiled once on their own
# (``jit_inner``), so both twins run the same machine code for them.  (The parallel loops cost the
# threaded twins' cold compile 2-5 s, bodies inlined or called alike: docs/performance-kernels.md,
# "The step on both threads".)  The partial sums the kernel reads
# after a ``prange`` are written by the loop body itself, from the parts' return values (as
# ``_split_gradient`` writes its costs): when only a called part wrote them, the threaded twin
# read wrong sums back (half the L2 term in the loss, a check that could not fail; Numba
# 0.68.1, ``test_the_split_step_reads_its_partial_sums_on_every_thread_count`` fails so).  Each
# part gets ``np.int64(part)``: a ``prange`` index is uint64 in a threaded twin's parallel loop and
# int64 elsewhere, and each type compiled the parts again (2 s of a first threaded fit).


@jit_inner
def _step_check_part(params, grad, grad1, halves, w_off, b_off, state, adam, k, alpha, l2_scale, part):
    """One half of :func:`_split_step_check`: grad += grad1 there (if ``halves``) and the L2
    term; returns the half's ‖W‖² and the step's check sums ``(check, neg, Σ|m|, Σ|W|)``, in
    float64 (``k``: the step's constants, as a tuple)."""
    if halves:
        _add_halves_part(grad, grad1, part)
    lo, hi = _part_range(params.shape[0], part)
    G = grad[lo:hi]
    l2 = _add_l2_range(grad, params, w_off, b_off, l2_scale, lo, hi) if alpha > 0.0 else 0.0
    lr_t, b1, b2, c1, c2, eps, lr, mu, nesterov = k
    if adam:
        check, neg, sum_m, sum_p = _adam_sums(params[lo:hi], G, state[0, lo:hi], state[1, lo:hi], b1, b2, c1, c2)
        return l2, np.float64(check), np.float64(neg), np.float64(sum_m), np.float64(sum_p)
    check = _sgd_check(params[lo:hi], G, state[0, lo:hi], lr, mu, nesterov)
    return l2, np.float64(check), 0.0, 0.0, 0.0


@jit_inner
def _step_apply_part(params, grad, state, adam, k, part):
    """One half of :func:`_split_step_apply`: the optimizer's writes there."""
    lo, hi = _part_range(params.shape[0], part)
    lr_t, b1, b2, c1, c2, eps, lr, mu, nesterov = k
    if adam:
        _adam_apply(params[lo:hi], grad[lo:hi], state[0, lo:hi], state[1, lo:hi], lr_t, b1, b2, c1, c2, eps)
    else:
        _sgd_apply(params[lo:hi], grad[lo:hi], state[0, lo:hi], lr, mu, nesterov)


@jit_inline
def _step_constants(params, counter, hyper):
    """The step's constants in the parameters' dtype: Adam's ``(α_t, β₁, β₂, 1 − β₁, 1 − β₂, ε)``
    for step counter[0] + 1, then momentum SGD's ``(α, μ, nesterov)``."""
    T = params.dtype.type
    lr_t, b1, b2, c1, c2, eps = _adam_constants(
        params.dtype, counter[0] + 1, hyper[LR], hyper[BETA_1], hyper[BETA_2], hyper[EPSILON]
    )
    return lr_t, b1, b2, c1, c2, eps, T(hyper[LR]), T(hyper[MOMENTUM]), hyper[NESTEROV] != 0.0


@jit_inline
def _split_step_check(params, grad, grad1, halves, w_off, b_off, state, counter, kind, hyper, alpha, l2_scale, sums):
    """The first half of a split batch's step: grad += grad1 (if ``halves``: the batch had a
    second half), the L2 term and the read-only check of the optimizer step of
    :mod:`fastbp.steps`, each over the two halves of the parameter buffer as the two
    iterations of a ``prange`` (on two threads in a threaded twin: on one, Adam's step took
    about as long as the gradient of a batch of 64 on 784-128-10 float64 took on two).
    Returns ``(‖W‖², ok)``: ok if the step would be finite (:func:`_split_step_apply` then
    applies it).

    Same bits for any thread count, and the same step as :func:`fastbp.steps._optimizer_step`:
    every value written is elementwise; the checks' partial sums (``sums``, PARTS × 5, float64)
    only decide whether the step is applied, and ‖W‖² is the two halves' sums added in order."""
    adam = kind == OPT_ADAM
    k = _step_constants(params, counter, hyper)
    for part in prange(PARTS):  # the sums written by the loop body itself (see above)
        l2p, check, neg, sum_m, sum_p = _step_check_part(
            params, grad, grad1, halves, w_off, b_off, state, adam, k, alpha, l2_scale, np.int64(part)
        )
        sums[part, 0] = l2p
        sums[part, 1] = check
        sums[part, 2] = neg
        sums[part, 3] = sum_m
        sums[part, 4] = sum_p
    l2 = sums[0, 0] + sums[1, 0]
    if sums[0, 1] + sums[1, 1] != 0.0:
        return l2, False
    lr_t, b1, b2, c1, c2, eps = k[0], k[1], k[2], k[3], k[4], k[5]
    neg = sums[0, 2] + sums[1, 2]
    sum_m = sums[0, 3] + sums[1, 3]
    sum_p = sums[0, 4] + sums[1, 4]
    if adam and not _adam_bound_holds(params.dtype, neg, sum_m, sum_p, lr_t, eps):
        check = _adam_exact_check(params, grad, state[0], state[1], lr_t, b1, b2, c1, c2, eps)
        return l2, check == params.dtype.type(0)
    return l2, True


@jit_inline
def _split_step_apply(params, grad, state, counter, kind, hyper):
    """The second half of a split batch's step (after :func:`_split_step_check` said ok): the
    optimizer's writes over the two halves of the parameter buffer, as a ``prange``."""
    adam = kind == OPT_ADAM
    k = _step_constants(params, counter, hyper)
    for part in prange(PARTS):
        _step_apply_part(params, grad, state, adam, k, np.int64(part))
    if adam:
        counter[0] += 1


@jit_inner
def _add_halves_part(grad, grad1, part):
    """grad += grad1 over one half of the buffer."""
    lo, hi = _part_range(grad.shape[0], part)
    G = grad[lo:hi]
    G1 = grad1[lo:hi]
    for i in range(G.shape[0]):
        G[i] += G1[i]


@jit_inline
def _abs_sum_in(v, a, b, lo, hi):
    """Σ|v[i]| over i in [a, b) ∩ [lo, hi), in float64."""
    a = max(a, lo)
    b = min(b, hi)
    return _abs_sum(v[a:b], b - a) if a < b else 0.0


@jit_inline
def _split_descent_sums(grad, grad1, halves, sizes, w_off, b_off, lsums):
    """A split gradient-descent batch: grad += grad1 (if ``halves``) and each layer's Σ|dW[l]|,
    Σ|db[l]| over each half of the parameter buffer (``lsums[part, 2l]``, ``lsums[part, 2l+1]``),
    as a ``prange`` (the step bound adds the two parts, in order)."""
    n = grad.shape[0]
    for part in prange(PARTS):  # the sums written by the loop body itself (see above)
        if halves:
            _add_halves_part(grad, grad1, np.int64(part))
        lo, hi = _part_range(n, part)
        for l in range(sizes.shape[0] - 1):
            nw = sizes[l + 1] * sizes[l]
            lsums[part, 2 * l] = _abs_sum_in(grad, w_off[l], w_off[l] + nw, lo, hi)
            lsums[part, 2 * l + 1] = _abs_sum_in(grad, b_off[l], b_off[l] + sizes[l + 1], lo, hi)


@jit_inner
def _descent_apply_part(params, grad, lr, part):
    """One half of :func:`_split_descent_apply`."""
    lo, hi = _part_range(params.shape[0], part)
    _gd_apply(params[lo:hi], grad[lo:hi], lr)


@jit_inline
def _split_descent_apply(params, grad, lr):
    """W −= α dW over the two halves of the parameter buffer, as a ``prange``."""
    for part in prange(PARTS):
        _descent_apply_part(params, grad, lr, np.int64(part))


@jit_inline
def _split_workspaces(params, sizes, u_off, order, batch_size, blas_min, split, tiles):
    """The workspaces of :func:`_split_gradient`: ``(ws, ws1, grad1, costs)``, for a whole batch
    (no ``split``; ``ws1`` and ``grad1`` then empty) or for each half of one (``tiles``: for the
    register tiles' gradient, :data:`_TILES`)."""
    copy_x = tiles or _copies_inputs(sizes, order, blas_min)
    if not split:
        return (
            _columns_workspace(params, sizes, u_off, batch_size, copy_x, tiles),
            _columns_workspace(params, sizes, u_off, 0, False, tiles),
            _zeros(0, params.dtype),
            _zeros(PARTS, np.float64),
        )
    half = (batch_size + 1) // 2
    return (
        _columns_workspace(params, sizes, u_off, half, copy_x, tiles),
        _columns_workspace(params, sizes, u_off, half, copy_x, tiles),
        _zeros(params.shape[0], params.dtype),
        _zeros(PARTS, np.float64),
    )


def _columns_epoch_body(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blas_min, split):
    """Mini-batch gradient descent over ``order``, each batch's gradient by
    :func:`_split_gradient` (in two parts if ``split``); returns ``(total cost, resume)`` like
    :func:`fastbp._fast.batch._batch_epoch` (``resume``: −1, or the position in ``order``
    of the batch whose step the bound could not prove safe, not applied)."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    ws_own, ws1_own, grad1_own, costs = _split_workspaces(
        params, sizes, u_off, order, batch_size, blas_min, split, _TILES
    )
    ws = _borrow_workspace(ws_own)
    ws1 = _borrow_workspace(ws1_own)
    grad1 = _borrowed(grad1_own)
    grad_own = _zeros(params.shape[0], params.dtype)
    grad = _borrowed(grad_own)
    bounds = np.empty((2, L), np.float64)
    wb = bounds[0]
    bb = bounds[1]
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    lsums = _zeros((PARTS, 2 * L), np.float64)
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_cost = _split_gradient(
            params,
            grad,
            grad1,
            sizes,
            w_off,
            b_off,
            u_off,
            X,
            Y,
            order,
            start,
            stop,
            act,
            out,
            ws,
            ws1,
            costs,
            blas_min,
            split,
        )
        if split:  # the halves' sum and the bound's sums over two halves of the parameters
            _split_descent_sums(grad, grad1, start + (stop - start + 1) // 2 < stop, sizes, w_off, b_off, lsums)
        step64 = np.float64(lr)
        # Step bound: max|W − α dW| ≤ max|W| + α Σ|dW| per layer.
        safe = np.isfinite(batch_cost)
        for l in range(L):
            if split:
                gw = step64 * (lsums[0, 2 * l] + lsums[1, 2 * l])
                gb = step64 * (lsums[0, 2 * l + 1] + lsums[1, 2 * l + 1])
            else:
                nw = sizes[l + 1] * sizes[l]
                gw = step64 * _abs_sum(grad[w_off[l] : w_off[l] + nw], nw)
                gb = step64 * _abs_sum(grad[b_off[l] : b_off[l] + sizes[l + 1]], sizes[l + 1])
            safe = safe and (wb[l] + gw <= limit) and (bb[l] + gb <= limit)
            wb[l] += gw
            bb[l] += gb
        if not safe:
            _alive(offs[0], offs[1], offs[2], ws_own)
            _alive(ws1_own, grad1_own, grad_own, bounds, lsums)
            return total, start
        # W −= α dW, b −= α db
        if split:
            _split_descent_apply(params, grad, lr)
        else:
            for p in range(params.shape[0]):
                params[p] -= lr * grad[p]
        total += batch_cost
    _alive(offs[0], offs[1], offs[2], ws_own)
    _alive(ws1_own, grad1_own, grad_own, bounds, lsums)
    return total, -1


def _columns_epoch_opt_body(
    params, sizes, X, Y, order, batch_size, act, out, kind, hyper, state, counter, alpha, cost_scale, blas_min, split
):
    """One epoch of mini-batches with an optimizer and L2, each batch's gradient by
    :func:`_split_gradient` (in two parts if ``split``); the arguments and result of
    :func:`fastbp._plain.loops._train_epoch_opt` (``act`` a built-in activation's code).

    Returns ``(J, failed)``: scikit-learn's epoch loss, and −1 or the index of the first
    batch whose loss, new parameters or new optimizer state would not be finite (that
    step is not applied; the epoch stops there: the step kernels check it exactly)."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    ws_own, ws1_own, grad1_own, costs = _split_workspaces(
        params, sizes, u_off, order, batch_size, blas_min, split, _TILES
    )
    ws = _borrow_workspace(ws_own)
    ws1 = _borrow_workspace(ws1_own)
    grad1 = _borrowed(grad1_own)
    grad_own = _zeros(params.shape[0], params.dtype)
    grad = _borrowed(grad_own)
    m = order.shape[0]
    total = 0.0
    failed = -1
    sums = _zeros((PARTS, 5), np.float64)
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_loss = cost_scale * _split_gradient(
            params,
            grad,
            grad1,
            sizes,
            w_off,
            b_off,
            u_off,
            X,
            Y,
            order,
            start,
            stop,
            act,
            out,
            ws,
            ws1,
            costs,
            blas_min,
            split,
        )
        if split:  # the halves' sum, L2 and the step over two halves of the parameters
            halves = start + (stop - start + 1) // 2 < stop
            l2, ok = _split_step_check(
                params,
                grad,
                grad1,
                halves,
                w_off,
                b_off,
                state,
                counter,
                kind,
                hyper,
                alpha,
                alpha / (stop - start),
                sums,
            )
            if alpha > 0.0:
                batch_loss += 0.5 * alpha * l2
            if not np.isfinite(batch_loss) or not ok:
                failed = start // batch_size
                break
            _split_step_apply(params, grad, state, counter, kind, hyper)
            total += batch_loss
            continue
        if alpha > 0.0:
            batch_loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / (stop - start))
        if not np.isfinite(batch_loss) or not _optimizer_step(params, grad, state, counter, kind, hyper):
            failed = start // batch_size
            break
        total += batch_loss
    _alive(offs[0], offs[1], offs[2], ws_own)
    _alive(ws1_own, grad1_own, grad_own, sums)
    return total / m, failed


#: One thread (``prange`` runs as ``range``).
_columns_epoch = compile_as(_columns_epoch_body, "_columns_epoch", JIT_VEC)
_columns_epoch_opt = compile_as(_columns_epoch_opt_body, "_columns_epoch_opt", JIT_VEC)
#: The same epochs with a split batch's two parts on two threads.  Compiled only where they
#: run: ``parallel=True`` costs a cold compile about 6.5 s more (a first fit reaching the split
#: kernel on 784-128-10, fresh ``NUMBA_CACHE_DIR``: 18.1 s on this twin, 11.4 s on the one-thread
#: kernel; ``NUMBA_NUM_THREADS=2 python tools/startup_profile.py profile --sizes 784,128,10
#: --batch-size 200 --examples 400``).  A small ``parallel=True`` helper for the two halves,
#: called from one epoch, cost every user its compile (6.7 s, 21 s in all), so the threads stay
#: in twins.
_columns_epoch_threads = compile_as(_columns_epoch_body, "_columns_epoch_threads", JIT_PARALLEL)
_columns_epoch_opt_threads = compile_as(_columns_epoch_opt_body, "_columns_epoch_opt_threads", JIT_PARALLEL)

#: The four epochs' ``_tiles`` twins: each batch's gradient by the register tiles
#: (:func:`fastbp._fast._columns._columns_gradient_tiled`, no BLAS), the same source with
#: ``_split_gradient`` re-bound to a copy that calls it.  The dispatcher runs them where a layer
#: takes the tiles (``fastbp._dispatch.uses_tiles``); each is compiled only where it runs.
_split_gradient_tiles = compile_as(
    _split_gradient, "_split_gradient_tiles", JIT_INLINE, {"_columns_gradient": _columns_gradient_tiled}
)
_TILED = {"_split_gradient": _split_gradient_tiles, "_TILES": True}
_columns_epoch_tiles = compile_as(_columns_epoch_body, "_columns_epoch_tiles", JIT_VEC, _TILED)
_columns_epoch_opt_tiles = compile_as(_columns_epoch_opt_body, "_columns_epoch_opt_tiles", JIT_VEC, _TILED)
_columns_epoch_threads_tiles = compile_as(_columns_epoch_body, "_columns_epoch_threads_tiles", JIT_PARALLEL, _TILED)
_columns_epoch_opt_threads_tiles = compile_as(
    _columns_epoch_opt_body, "_columns_epoch_opt_threads_tiles", JIT_PARALLEL, _TILED
)
