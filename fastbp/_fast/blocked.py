"""Per-example SGD with W[1]'s updates deferred over blocks of examples: :func:`_sgd_epoch_blocked`.

W[1]'s updates are deferred over blocks of :data:`fastbp._fast._passes.BLOCK` examples,
with Gram-matrix corrections (exact in real arithmetic), so W[1] is read and written once
per block.  Pays when W[1] is large (the threshold is in :mod:`fastbp._dispatch`).
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ..losses import defer_cost, flush_costs
from ._common import COST_CHUNK, _alive, _borrow_epoch, _borrowed, _layer_bounds
from ._passes import BLOCK, _after_first_layer, _apply_block, _block_pass, _load_block


@jit_vec
def _sgd_epoch_blocked(params, sizes, X, Y, order, lr, act, out, limit):
    """Per-example SGD, the same steps as :func:`_sgd_epoch`, with W[1]'s updates
    deferred over blocks of 4 examples (exact in real arithmetic):

    * with W = W[1] at the start of a block and c_s = α dZ[1] of its example s,
      W[1] before example t of the block is W − Σ_{s<t} c_s x_sᵀ, so
      Z[1]_t = W x_t + b[1] − Σ_{s<t} c_s (x_s · x_t): one pass over W gives W x_t
      for all 4 examples, and the Gram matrix x_s · x_t the corrections;
    * that same pass first applies the previous block's 4 deferred updates.

    So W[1] is read and written once per 4 examples instead of once per example.
    Returns ``(total cost, resume)`` like :func:`_sgd_epoch`.
    """
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    K = BLOCK
    n_units = u_off[L - 1] + sizes[L]
    z_own = np.empty(n_units, params.dtype)
    z = _borrowed(z_own)
    a_own = np.empty(n_units, params.dtype)
    a = _borrowed(a_own)
    dz_own = np.empty(n_units, params.dtype)
    dz = _borrowed(dz_own)
    n0 = sizes[0]
    n1 = sizes[1]
    b0 = b_off[0]
    P_own = np.zeros((K, n0), params.dtype)
    P = _borrowed(P_own)
    Q_own = np.zeros((K, n0), params.dtype)
    Q = _borrowed(Q_own)
    C_own = np.zeros((K, n1), params.dtype)  # α dZ[1] per example of the block (deferred)
    C = _borrowed(C_own)
    Zp_own = np.empty((K, n1), params.dtype)
    Zp = _borrowed(Zp_own)
    G_own = np.empty((K, K), params.dtype)
    G = _borrowed(G_own)
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
    cnt_own = np.zeros(1, np.int64)
    cnt = _borrowed(cnt_own)
    m = order.shape[0]
    total = 0.0
    for t0 in range(0, m, K):
        nb = min(K, m - t0)
        P, Q = Q, P
        _load_block(X, order, t0, nb, Q)
        _block_pass(params, n0, n1, C, P, Q, Zp)
        for s in range(K):
            for j in range(n1):
                C[s, j] = T(0)
        for t in range(1, nb):
            for s in range(t):
                g = T(0)
                for k in range(n0):
                    g += Q[s, k] * Q[t, k]
                G[s, t] = g
        b1 = params[b0 : b0 + n1]
        for tt in range(nb):
            i = order[t0 + tt]
            for j in range(n1):
                z[j] = b1[j] + Zp[tt, j]
            for s in range(tt):
                g = G[s, tt]
                for j in range(n1):
                    z[j] -= C[s, j] * g
            safe, deferred, cost = _after_first_layer(
                params, sizes, w_off, b_off, u_off, X[i], Y[i], z, a, dz, sa, sd, wb, bb, lr, act, out, limit
            )
            if not safe:
                _apply_block(params, n0, n1, C, Q)  # the block's examples before this one
                _alive(
                    offs[0],
                    offs[1],
                    offs[2],
                    z_own,
                    a_own,
                    dz_own,
                    P_own,
                    Q_own,
                    C_own,
                    Zp_own,
                    G_own,
                    sa_own,
                    sd_own,
                    wb_own,
                    bb_own,
                    Zc_own,
                    Yc_own,
                    cnt_own,
                )
                return total + flush_costs(Zc, Yc, cnt, n_L, out), t0 + tt
            if deferred:
                defer_cost(z[top : top + n_L], Y[i], Zc, Yc, cnt)
                if cnt[0] == COST_CHUNK:
                    total += flush_costs(Zc, Yc, cnt, n_L, out)
            else:
                total += cost
            for j in range(n1):
                C[tt, j] = lr * dz[j]
    _apply_block(params, n0, n1, C, Q)
    _alive(
        offs[0],
        offs[1],
        offs[2],
        z_own,
        a_own,
        dz_own,
        P_own,
        Q_own,
        C_own,
        Zp_own,
        G_own,
        sa_own,
        sd_own,
        wb_own,
        bb_own,
        Zc_own,
        Yc_own,
        cnt_own,
    )
    return total + flush_costs(Zc, Yc, cnt, n_L, out), -1
