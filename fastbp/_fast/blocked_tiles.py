"""Per-example SGD with W[1]'s updates deferred over blocks of examples, and W[1]'s products as
register tiles over a packed copy of W[1]ᵀ: :func:`_sgd_epoch_blocked_tiles`.

The same steps as the plain kernel (one update per example, in order), with W[1]'s work shaped as in
:mod:`fastbp._fast.deferred_tiles`: the epoch keeps its own copy of W[1] as W[1]ᵀ packed in strips
of 64 bytes of hidden units, and per block of :data:`TILE_BLOCK` examples

* W[1] −= the previous block's updates, W[1]ᵀ row k += Σ_s x_s[k] c_s with c_s = −α dZ[1]_s
  (register tiles of rows k, :func:`fastbp._fast._tiles._strips`);
* W[1] x_t for the block's examples (one tile of up to 8 examples per strip with AVX-512, 6 + 2
  without: every weight loaded once or twice for the whole block, no reductions);
* example t then takes the updates of the examples s < t of its own block through the Gram terms:
  Z[1]_t = W x_t + b[1] + Σ_{s<t} c_s (x_s · x_t), exact in real arithmetic.

Why: the kernel it replaced, ``_sgd_epoch_blocked`` (blocks of 4 examples, one fused pass over
the rows of W[1] per block applying the previous block's updates and forming W[1] x_t as a dot
product per row and example), had LLVM reduce eight vector accumulators to scalars per pair of
rows: on 64-32-1 as many instructions as the pass itself.  Measured 1.02-1.34x it on every net of
W[1] ≥ 1,024 weights tried (:data:`fastbp._dispatch.BLOCKED_MIN_WEIGHTS`).  Blocks of 8 rather
than 4 examples: the product's tile is then 8 examples (the AVX-512 tile; 6 + 2 on AVX2) and the
update's sum has 8 terms per load and store of W[1]ᵀ; the Gram terms grow to 28 dot products per
block (3.5 per example), O(n_0) each.

A step the bound cannot prove safe is not applied: the block's examples before it are applied to
the working copy, which is then copied back, so the parameters are those after the last safe
example, as in the plain kernel.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ..losses import flush_costs
from ._common import COST_CHUNK, _alive, _borrow_epoch, _borrowed, _layer_bounds, _queue_cost, _zeros
from ._passes import _after_first_layer
from ._tiles import _pack_transposed, _packed_update, _packed_width, _start_block, _unpack_transposed

#: Examples per block: one AVX-512 register tile of examples (``fastbp._fast._tiles.tile_rows``).
TILE_BLOCK = 8


@jit_vec
def _sgd_epoch_blocked_tiles(params, sizes, X, Y, order, lr, act, out, limit):
    """Per-example SGD, the same steps as :func:`fastbp._fast.sgd._sgd_epoch`, W[1]'s updates
    deferred over blocks of :data:`TILE_BLOCK` examples (module docstring).  Returns
    ``(total cost, resume)`` like :func:`fastbp._fast.sgd._sgd_epoch`."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    K = TILE_BLOCK
    n0 = sizes[0]
    n1 = sizes[1]
    b0 = b_off[0]
    n_units = u_off[L - 1] + sizes[L]
    V, n1p = _packed_width(n1, params.itemsize)  # W[1]ᵀ's rows padded to whole strips of V
    WT_own = _zeros(n0 * n1p, params.dtype)  # W[1]ᵀ packed strip by strip (deferred_tiles)
    P_own = _zeros((2, K * n0), params.dtype)  # the previous block's and this block's inputs
    C_own = _zeros((2, K * n1p), params.dtype)  # −α dZ[1] of each example of the two blocks
    Zp_own = _zeros(K * n1p, params.dtype)  # W[1] x_t for the block, one row per example
    G_own = np.empty((K, K), params.dtype)  # Gram terms x_s · x_t, s < t
    z_own = np.empty(n_units, params.dtype)
    a_own = np.empty(n_units, params.dtype)
    dz_own = np.empty(n_units, params.dtype)
    sa_own = np.empty(L, np.float64)
    sd_own = np.empty(L, np.float64)
    bounds_own = np.empty((2, L), np.float64)
    n_L = sizes[L]
    top = u_off[L - 1]
    Zc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    Yc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    cnt_own = _zeros(1, np.int64)
    WT = _borrowed(WT_own)
    P = _borrowed(P_own)
    C = _borrowed(C_own)
    Zp = _borrowed(Zp_own)
    G = _borrowed(G_own)
    z = _borrowed(z_own)
    a = _borrowed(a_own)
    dz = _borrowed(dz_own)
    sa = _borrowed(sa_own)
    sd = _borrowed(sd_own)
    Zc = _borrowed(Zc_own)
    Yc = _borrowed(Yc_own)
    cnt = _borrowed(cnt_own)
    wb = bounds_own[0]
    bb = bounds_own[1]
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    _pack_transposed(params, WT, n0, n1, V)
    m = order.shape[0]
    total = 0.0
    cur = 0
    prev_n = 0  # examples of the previous block whose W[1] updates are still pending
    for t0 in range(0, m, K):
        nb = min(K, m - t0)
        prev = 1 - cur
        Q = P[cur]
        Cc = C[cur]
        # ---- the block's inputs; W[1] −= the previous block's updates (W[1]ᵀ row k += Σ_s x_s[k] c_s);
        # W[1] x_t for the block's examples, from W[1] at the block's start
        _start_block(X, order, t0, nb, Q, P[prev], C[prev], prev_n, WT, Zp, n0, n1p, nb)
        # ---- the Gram terms x_s · x_t, s < t
        for t in range(1, nb):
            xt = Q[t * n0 : (t + 1) * n0]
            for s in range(t):
                xs = Q[s * n0 : (s + 1) * n0]
                g = T(0)
                for k in range(n0):
                    g += xs[k] * xt[k]
                G[s, t] = g
        b1 = params[b0 : b0 + n1]
        for tt in range(nb):
            i = order[t0 + tt]
            # Z[1]_t = W x_t + b[1] + Σ_{s<t} c_s (x_s · x_t): W[1] before example t
            zt = Zp[tt * n1p : tt * n1p + n1]
            for j in range(n1):
                z[j] = b1[j] + zt[j]
            for s in range(tt):
                g = G[s, tt]
                cs = Cc[s * n1p : s * n1p + n1]
                for j in range(n1):
                    z[j] += cs[j] * g
            safe, deferred, cost = _after_first_layer(
                params, sizes, w_off, b_off, u_off, X[i], Y[i], z, a, dz, sa, sd, wb, bb, lr, act, out, limit
            )
            if not safe:
                if tt > 0:  # the block's examples before this one
                    _packed_update(WT, n0, n1p, Q, Cc, tt)
                _unpack_transposed(params, WT, n0, n1, V)
                _alive(offs[0], offs[1], offs[2], WT_own, P_own, C_own, Zp_own, G_own, z_own, a_own, dz_own)
                _alive(sa_own, sd_own, bounds_own, Zc_own, Yc_own, cnt_own)
                return total + flush_costs(Zc, Yc, cnt, n_L, out), t0 + tt
            if deferred:
                total += _queue_cost(z[top : top + n_L], Y[i], Zc, Yc, cnt, n_L, out)
            else:
                total += cost
            c = Cc[tt * n1p : tt * n1p + n1]
            for j in range(n1):
                c[j] = -(lr * dz[j])
        cur = prev
        prev_n = nb
    if prev_n > 0:  # the last block's W[1] updates
        _packed_update(WT, n0, n1p, P[1 - cur], C[1 - cur], prev_n)
    _unpack_transposed(params, WT, n0, n1, V)
    _alive(offs[0], offs[1], offs[2], WT_own, P_own, C_own, Zp_own, G_own, z_own, a_own, dz_own)
    _alive(sa_own, sd_own, bounds_own, Zc_own, Yc_own, cnt_own)
    return total + flush_costs(Zc, Yc, cnt, n_L, out), -1
