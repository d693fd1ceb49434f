"""Per-example SGD (``batch_size = 1``): :func:`_sgd_epoch`.

For layers l ≥ 2 one pass over W[l] both computes dA[l−1] = W[l]ᵀ dZ[l] (from the old
weights, row by row, contiguous) and writes W[l] −= α dZ[l] A[l−1]ᵀ; the update of W[1]
is fused into the *next* example's forward pass through W[1].  b[l] at once.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ..losses import flush_costs
from ._common import COST_CHUNK, _alive, _borrow_epoch, _borrowed, _layer_bounds, _queue_cost, _zeros
from ._passes import _after_first_layer, _first_layer, _first_layer_fused, _flush_first


@jit_vec
def _sgd_epoch(params, sizes, X, Y, order, lr, act, out, limit):
    """Per-example SGD over ``order``; returns ``(total cost, resume)``.

    ``resume`` is −1 when the epoch is done, else the position in ``order`` of
    the first example whose step this kernel could not prove safe (not applied).
    W[1]'s update is deferred into the next example's forward pass.
    """
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    n_units = u_off[L - 1] + sizes[L]
    z_own = np.empty(n_units, params.dtype)
    z = _borrowed(z_own)
    a_own = np.empty(n_units, params.dtype)
    a = _borrowed(a_own)
    dz_own = np.empty(n_units, params.dtype)
    dz = _borrowed(dz_own)
    n0 = sizes[0]
    n1 = sizes[1]
    c1_own = _zeros(n1, params.dtype)
    c1 = _borrowed(c1_own)
    sa_own = np.empty(L, np.float64)
    sa = _borrowed(sa_own)
    sd_own = np.empty(L, np.float64)
    sd = _borrowed(sd_own)
    wb_own = np.empty(L, np.float64)
    wb = _borrowed(wb_own)
    bb_own = np.empty(L, np.float64)
    bb = _borrowed(bb_own)
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    n_L = sizes[L]
    top = u_off[L - 1]
    Zc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    Zc = _borrowed(Zc_own)
    Yc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    Yc = _borrowed(Yc_own)
    cnt_own = _zeros(1, np.int64)
    cnt = _borrowed(cnt_own)
    m = order.shape[0]
    total = 0.0
    prev = -1
    for t in range(m):
        i = order[t]
        x = X[i]
        # Z[1], fused with the previous example's W[1] update
        if prev >= 0:
            _first_layer_fused(params, n0, n1, b_off[0], x, c1, X[prev], z)
        else:
            _first_layer(params, n0, n1, b_off[0], x, z)
        prev = -1
        safe, deferred, cost = _after_first_layer(
            params, sizes, w_off, b_off, u_off, x, Y[i], z, a, dz, sa, sd, wb, bb, lr, act, out, limit
        )
        if not safe:
            _alive(
                offs[0],
                offs[1],
                offs[2],
                z_own,
                a_own,
                dz_own,
                c1_own,
                sa_own,
                sd_own,
                wb_own,
                bb_own,
                Zc_own,
                Yc_own,
                cnt_own,
            )
            return total + flush_costs(Zc, Yc, cnt, n_L, out), t
        if deferred:
            total += _queue_cost(z[top : top + n_L], Y[i], Zc, Yc, cnt, n_L, out)
        else:
            total += cost
        for j in range(n1):
            c1[j] = lr * dz[j]
        prev = i
    if prev >= 0:
        _flush_first(params, n0, n1, c1, X[prev])
    _alive(
        offs[0], offs[1], offs[2], z_own, a_own, dz_own, c1_own, sa_own, sd_own, wb_own, bb_own, Zc_own, Yc_own, cnt_own
    )
    return total + flush_costs(Zc, Yc, cnt, n_L, out), -1
