"""Mini-batches as column matrices, SIMD across the batch's examples: :func:`_columns_epoch`
(gradient descent) and :func:`_columns_epoch_opt` (momentum, Nesterov, Adam, L2).

Each batch's gradient is :func:`fastbp._fast._columns._columns_gradient` (the batch as
matrices with one column per example; BLAS for wide layers).  The update and the divergence
contract (:mod:`fastbp._fast`) of :func:`_columns_epoch` are those of
:func:`fastbp._fast.batch._batch_epoch`: per-layer bounds on max|W[l]|, max|b[l]| raised by
α Σ|dW[l]| per step; a step the bound cannot prove safe is not applied and the epoch hands
over to the plain kernel.  :func:`_columns_epoch_opt` runs the same gradient through the
optimizers' L2 term and steps (:mod:`fastbp.steps`), which check every step exactly.  One
thread, BLAS held to one thread by the dispatcher: every sum runs over the same elements in
the same order for a given problem, whatever the thread settings.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ..steps import _add_l2, _optimizer_step
from ._columns import _borrow_workspace, _columns_gradient, _columns_workspace, _copies_inputs
from ._common import _abs_sum, _alive, _borrow_epoch, _borrowed, _layer_bounds


@jit_vec
def _columns_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blas_min):
    """Mini-batch gradient descent over ``order``, each batch's gradient by
    :func:`_columns_gradient`; returns ``(total cost, resume)`` like
    :func:`fastbp._fast.batch._batch_epoch` (``resume``: −1, or the position in ``order``
    of the batch whose step the bound could not prove safe, not applied)."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    ws_own = _columns_workspace(params, sizes, u_off, batch_size, _copies_inputs(sizes, order, blas_min))
    ws = _borrow_workspace(ws_own)
    grad_own = np.zeros_like(params)
    grad = _borrowed(grad_own)
    bounds = np.empty((2, L), np.float64)
    wb = bounds[0]
    bb = bounds[1]
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_cost = _columns_gradient(
            params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, act, out, ws, blas_min
        )
        step64 = np.float64(lr)
        # Step bound: max|W − α dW| ≤ max|W| + α Σ|dW| per layer.
        safe = np.isfinite(batch_cost)
        for l in range(L):
            nw = sizes[l + 1] * sizes[l]
            gw = step64 * _abs_sum(grad[w_off[l] : w_off[l] + nw], nw)
            gb = step64 * _abs_sum(grad[b_off[l] : b_off[l] + sizes[l + 1]], sizes[l + 1])
            safe = safe and (wb[l] + gw <= limit) and (bb[l] + gb <= limit)
            wb[l] += gw
            bb[l] += gb
        if not safe:
            _alive(offs[0], offs[1], offs[2], ws_own)
            _alive(grad_own, bounds)
            return total, start
        # W −= α dW, b −= α db
        for p in range(params.shape[0]):
            params[p] -= lr * grad[p]
        total += batch_cost
    _alive(offs[0], offs[1], offs[2], ws_own)
    _alive(grad_own, bounds)
    return total, -1


@jit_vec
def _columns_epoch_opt(
    params, sizes, X, Y, order, batch_size, act, out, kind, hyper, state, counter, alpha, cost_scale, blas_min
):
    """One epoch of mini-batches with an optimizer and L2, each batch's gradient by
    :func:`_columns_gradient`; the arguments and result of
    :func:`fastbp._plain.loops._train_epoch_opt` (``act`` a built-in activation's code).

    Returns ``(J, failed)``: scikit-learn's epoch loss, and −1 or the index of the first
    batch whose loss, new parameters or new optimizer state would not be finite (that
    step is not applied; the epoch stops there: the step kernels check it exactly)."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    ws_own = _columns_workspace(params, sizes, u_off, batch_size, _copies_inputs(sizes, order, blas_min))
    ws = _borrow_workspace(ws_own)
    grad_own = np.zeros_like(params)
    grad = _borrowed(grad_own)
    m = order.shape[0]
    total = 0.0
    failed = -1
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_loss = cost_scale * _columns_gradient(
            params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, act, out, ws, blas_min
        )
        if alpha > 0.0:
            batch_loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / (stop - start))
        if not np.isfinite(batch_loss) or not _optimizer_step(params, grad, state, counter, kind, hyper):
            failed = start // batch_size
            break
        total += batch_loss
    _alive(offs[0], offs[1], offs[2], ws_own)
    _alive(grad_own)
    return total / m, failed
