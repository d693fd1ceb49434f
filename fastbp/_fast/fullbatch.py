"""The fast full-batch objective: scikit-learn's loss and its gradient over every example.

What ``solver="lbfgs"`` evaluates once per L-BFGS-B function call; the fast twin of the plain
:func:`fastbp._plain.loops._loss_and_gradient` (same arguments plus ``order`` and ``blocked``,
same result to rounding: the sums run in another order).  It is one call of the mini-batch
building block :func:`fastbp._fast._passes._batch_gradient` over all m examples (W[1] x and
dW[1] four examples per pass over W[1] when ``blocked``, vectorised activations), then the L2
term :func:`fastbp.steps._add_l2`.  Its workspaces do not grow with m.

Preconditions: a built-in activation (the dispatch sends custom ones, and
``NUMBA_DISABLE_JIT=1``, to the plain kernel); no step is taken, so no divergence bound is
needed: a non-finite loss or gradient is returned as it is, for L-BFGS-B to handle.
"""

from __future__ import annotations

from .._jit import jit_vec
from ..losses import batch_weight
from ..steps import _add_l2
from ._common import _alive, _borrow_epoch, _borrowed
from ._passes import _batch_gradient, _batch_workspace


@jit_vec
def _loss_and_gradient_fast(params, sizes, X, Y, order, act, out, grad, alpha, cost_scale, blocked, sw):
    """grad = the mean dW, db over the examples ``order`` (all of X's rows) plus (alpha / m) W;
    returns cost_scale · mean cost + ½ alpha ‖W‖² / m (float64).  With weights ``sw`` (one
    per row of X; empty: none) the means are weighted and m becomes Σ w, as in the plain
    :func:`fastbp._plain.loops._loss_and_gradient`."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    T = params.dtype.type
    ws = _batch_workspace(params, sizes, u_off)
    z, a, dz, sa = _borrowed(ws[0]), _borrowed(ws[1]), _borrowed(ws[2]), _borrowed(ws[4])
    P, Q, C, Zp = _borrowed(ws[5]), _borrowed(ws[6]), _borrowed(ws[7]), _borrowed(ws[8])
    for p in range(grad.shape[0]):
        grad[p] = T(0)
    m = order.shape[0]
    cost = _batch_gradient(
        params, grad, sizes, w_off, b_off, u_off, X, Y, order, 0, m, act, out, blocked, z, a, dz, sa, P, Q, C, Zp, sw
    )
    loss = cost_scale * cost / m  # (m · the weighted mean with weights: the weighted mean)
    if alpha > 0.0:
        D = batch_weight(sw, order, 0, m)  # Σ w, or m
        loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / D) / D
    _alive(offs[0], offs[1], offs[2], ws)
    return loss
