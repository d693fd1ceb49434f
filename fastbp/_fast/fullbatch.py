"""The fast full-batch objective: scikit-learn's loss and its gradient over every example.

What ``solver="lbfgs"`` evaluates once per L-BFGS-B function call; the fast twin of the plain
:func:`fastbp._plain.loops._loss_and_gradient` (same arguments plus ``order`` and
``blas_min``, same result to rounding: the sums run in another order).  It is one call of the
column mini-batch pass :func:`fastbp._fast._columns._columns_gradient` over all m examples
(in chunks of 256 examples, one column per example; BLAS for layers of at least ``blas_min``
weights, held to one thread by the dispatcher), then the L2 term
:func:`fastbp.steps._add_l2`.  Its workspaces do not grow with m.  Its ``_tiles`` twin runs
:func:`fastbp._fast._columns._columns_gradient_tiled` (register tiles, no BLAS) instead, where
``fastbp._dispatch.uses_tiles`` says so (m of ``TILES_MIN_BATCH`` or more, or 16 and 28-31).

Preconditions: a built-in activation (the dispatch sends custom ones, and
``NUMBA_DISABLE_JIT=1``, to the plain kernel); no step is taken, so no divergence bound is
needed: a non-finite loss or gradient is returned as it is, for L-BFGS-B to handle.
"""

from __future__ import annotations

import numpy as np

from .._jit import JIT_VEC, compile_as
from ..steps import _add_l2
from ._columns import _borrow_workspace, _columns_gradient, _columns_gradient_tiled, _columns_workspace, _copies_inputs
from ._common import _alive, _borrow_epoch

#: ``True`` in the ``_tiles`` twin (re-bound with ``_columns_gradient``): the tiles' workspace.
_TILES = False


def _loss_and_gradient_body(params, sizes, X, Y, order, act, out, grad, alpha, cost_scale, blas_min):
    """grad = the mean dW, db over the examples ``order`` (all of X's rows) plus (alpha / m) W;
    returns cost_scale · mean cost + ½ alpha ‖W‖² / m (float64)."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    m = order.shape[0]
    copy_x = _TILES or _copies_inputs(sizes, order, blas_min)
    ws_own = _columns_workspace(params, sizes, u_off, m, copy_x, _TILES)
    ws = _borrow_workspace(ws_own)
    # start: an int64, not the literal 0, for which Numba would compile the gradient (15-20 s) a
    # second time beside the copy every mini-batch kernel calls
    start = np.int64(0)
    cost = _columns_gradient(params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, m, m, act, out, ws, blas_min)
    loss = cost_scale * cost / m
    if alpha > 0.0:
        loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / m) / m
    _alive(offs[0], offs[1], offs[2], ws_own)
    return loss


#: With BLAS for layers from ``blas_min`` weights; the ``_tiles`` twin runs the register tiles
#: (``fastbp._dispatch.uses_tiles`` picks).
_loss_and_gradient_fast = compile_as(_loss_and_gradient_body, "_loss_and_gradient_fast", JIT_VEC)
_loss_and_gradient_fast_tiles = compile_as(
    _loss_and_gradient_body,
    "_loss_and_gradient_fast_tiles",
    JIT_VEC,
    {"_columns_gradient": _columns_gradient_tiled, "_TILES": True},
)
