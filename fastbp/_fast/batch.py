"""Mini-batch gradient descent: :func:`_batch_epoch`.

W[1] x and dW[1] for four examples per pass over W[1] (``blocked``); for layers ≥ 2 one
pass accumulates dW[l] and computes dA[l−1]; the update W −= α dW also zeroes dW for the
next batch.  Its workspace does not grow with the batch, so it also runs full-batch
training on large data sets.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ._common import _abs_sum, _alive, _borrow_epoch, _borrowed, _layer_bounds
from ._passes import _batch_gradient, _batch_workspace


@jit_vec
def _batch_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blocked, sw):
    """Mini-batch gradient descent over ``order``; returns ``(total cost, resume)``.

    ``sw``: per-example weights (empty: none), each batch's mean weighted by them
    (:func:`fastbp._plain.loops._train_epoch`'s meaning).  Per-example SGD with weights
    (``batch_size`` 1) runs here too, the per-example kernels taking none.

    ``resume`` is −1, or the position in ``order`` where the batch starts whose
    step this kernel could not prove safe (not applied).  Each batch's gradient is
    :func:`_batch_gradient` (``blocked``: W[1] four examples per pass).
    """
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    ws = _batch_workspace(params, sizes, u_off)
    z, a, dz, grad, sa = _borrowed(ws[0]), _borrowed(ws[1]), _borrowed(ws[2]), _borrowed(ws[3]), _borrowed(ws[4])
    P, Q, C, Zp = _borrowed(ws[5]), _borrowed(ws[6]), _borrowed(ws[7]), _borrowed(ws[8])
    wb_own = np.empty(L, np.float64)
    wb = _borrowed(wb_own)
    bb_own = np.empty(L, np.float64)
    bb = _borrowed(bb_own)
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    lr64 = np.float64(lr)
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_cost = _batch_gradient(
            params,
            grad,
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
            blocked,
            z,
            a,
            dz,
            sa,
            P,
            Q,
            C,
            Zp,
            sw,
        )
        # Step bound: max|W − α dW| ≤ max|W| + α Σ|dW| per layer.
        safe = np.isfinite(batch_cost)
        for l in range(L):
            nw = sizes[l + 1] * sizes[l]
            gw = _abs_sum(grad[w_off[l] : w_off[l] + nw], nw)
            gb = _abs_sum(grad[b_off[l] : b_off[l] + sizes[l + 1]], sizes[l + 1])
            safe = safe and (wb[l] + lr64 * gw <= limit) and (bb[l] + lr64 * gb <= limit)
            wb[l] += lr64 * gw
            bb[l] += lr64 * gb
        if not safe:
            _alive(offs[0], offs[1], offs[2], ws, wb_own, bb_own)
            return total, start
        # W −= α dW, b −= α db; dW, db back to zero for the next batch
        for p in range(params.shape[0]):
            params[p] -= lr * grad[p]
            grad[p] = T(0)
        total += batch_cost
    _alive(offs[0], offs[1], offs[2], ws, wb_own, bb_own)
    return total, -1
