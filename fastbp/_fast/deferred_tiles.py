"""Mini-batch gradient descent with each batch's W[1] update deferred to the next batch, and
W[1]'s two products as register tiles over a packed copy of W[1]ᵀ: :func:`_deferred_tiles_epoch`.

Why: the kernel it replaced, ``_deferred_epoch``, did W[1]'s work four examples per pass over
the rows of W[1], each row a dot product per example: LLVM then reduced eight vector
accumulators to scalars per pair of rows, as many instructions as the pass itself when n_0 is 64
(float32: four vectors per row), and a batch's blocks needed Gram corrections x_s · x_t against
the previous batch's blocks not yet applied.  Here the epoch keeps its own copy of W[1] as
W[1]ᵀ (row k: the n_1 weights that multiply input k), packed in strips of 64 bytes of columns
(16 float32 or 8 float64 hidden units, n_0 rows each, contiguous; the last strip padded with
zero weights), and both products are the column kernels' register tiles
(:func:`fastbp._fast._tiles._strips`, vectors across the hidden units, no reductions):

* at the start of a batch, W[1] −= α Σ_s (dZ[1]_s / n_b) x_sᵀ over the previous batch's
  examples s (kept as their factors x_s and c_s = −α dZ[1]_s / n_b, never formed as dW[1]):
  W[1]ᵀ row k += Σ_s x_s[k] c_s, tiles of rows k;
* then W[1] x_t for every example t of the batch: Σ_k x_t[k] · W[1]ᵀ row k, a tile of up to
  8 examples (6 without AVX-512) per strip: every weight loaded once per tile of examples.

W[1] is whole before the products, so no Gram corrections (and no Gram terms that could
overflow: unlike the block kernels, this one needs no fallback for huge inputs,
``_dispatch._GRAM_ROWS``).  The divergence bound's Σ|dW[1]| is replaced by
Σ_s Σ_j |c_sj| Σ_k |x_sk| ≥ Σ|dW[1]|: O(n_0 + n_1) per example, no pass over dW[1] (a looser bound
can only hand over to the plain kernel earlier, never later).  Layers 2 … L and b[1] take their
gradient per example into a buffer (:func:`fastbp._fast._passes._batch_example`) and are
updated at the end of the batch.  A step the bound cannot prove safe is not applied; the
previous batch's update was applied at this batch's start, so the parameters written back are
those from before the failing batch, as the divergence contract asks.  W[1] is copied in at the
start of the epoch and back at each exit (O(n_0 n_1) per epoch).

Measured against ``_deferred_epoch`` (2026-11-30, AMD EPYC Zen 4, AVX-512, one core; numbers in
docs/performance-kernels.md, "Short batches and per-example SGD on register tiles"): 1.2-1.9x on 16-17-3, 4-32-2,
8-16-3, 64-32-1 and 64-64-10 at batches 2-24, 1.05-1.35x on 128-128-3, 784-128-10, 256-256-10
from batch 6, 0.99-1.34x at 3 (its product padded to a tile of 4 rows: :func:`_product_rows`),
0.92-1.17x at 4 (a tile of 4 examples loads each weight for 4 FMAs; the fused pass did 8).  Where
it runs: :mod:`fastbp._dispatch`, ``DEFERRED_MAX_BATCH``.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_inline, jit_vec
from ..losses import flush_costs
from ._common import COST_CHUNK, _abs_sum, _alive, _borrow_epoch, _borrowed, _layer_bounds, _zeros
from ._passes import _batch_example
from ._tiles import _pack_transposed, _packed_update, _packed_width, _start_block, _unpack_transposed


@jit_vec
def _deferred_tiles_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    """Mini-batch gradient descent over ``order`` with W[1]'s update of each batch applied at
    the start of the next batch (module docstring); returns ``(total cost, resume)`` like
    :func:`fastbp._fast.batch._batch_epoch` (``resume``: −1, or the position in ``order`` of
    the batch whose step the bound could not prove safe, not applied)."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n0 = sizes[0]
    n1 = sizes[1]
    nw1 = n0 * n1
    n_units = u_off[L - 1] + sizes[L]
    V, n1p = _packed_width(n1, params.itemsize)  # W[1]ᵀ's rows padded to whole strips of V
    # the epoch's working copy of W[1], packed strip by strip: strip i is W[1]ᵀ's columns
    # i·V … i·V + V − 1 (rows i·V … of W[1]), n0 rows of V, contiguous (the tiles stream it)
    WT_own = _zeros(n0 * n1p, params.dtype)
    # this batch's and the previous batch's inputs (P: n_b × n0) and −α dZ[1]/n_b (C: n_b × n1p)
    rows = batch_size + 1  # room for a product of n_b + 1 rows (_product_rows)
    P_own = _zeros((2, rows * n0), params.dtype)
    C_own = _zeros((2, batch_size * n1p), params.dtype)
    Zp_own = _zeros(rows * n1p, params.dtype)  # W[1] x_t, one row per example
    z_own = np.empty(n_units, params.dtype)
    a_own = np.empty(n_units, params.dtype)
    dz_own = np.empty(n_units, params.dtype)
    grad_own = _zeros(params.shape[0], params.dtype)  # layers 2 … L and b[1] (dW[1] is never formed)
    sa_own = np.empty(L, np.float64)
    bounds_own = np.empty((2, L), np.float64)
    # the costs queued and computed COST_CHUNK at a time (a vectorised loop), flushed only
    # between batches so that a failing batch's queued costs can be dropped
    n_L = sizes[L]
    Zc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    Yc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    cnt_own = _zeros(1, np.int64)
    WT = _borrowed(WT_own)
    P = _borrowed(P_own)
    C = _borrowed(C_own)
    Zp = _borrowed(Zp_own)
    z = _borrowed(z_own)
    a = _borrowed(a_own)
    dz = _borrowed(dz_own)
    grad = _borrowed(grad_own)
    sa = _borrowed(sa_own)
    Zc = _borrowed(Zc_own)
    Yc = _borrowed(Yc_own)
    cnt = _borrowed(cnt_own)
    wb = bounds_own[0]
    bb = bounds_own[1]
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    _pack_transposed(params, WT, n0, n1, V)
    lr64 = np.float64(lr)
    m = order.shape[0]
    total = 0.0
    cur = 0
    prev_n = 0  # examples of the previous batch whose W[1] update is still pending
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        n_b = stop - start
        if cnt[0] + n_b > COST_CHUNK:  # room for the whole batch's costs (n_b ≤ DEFERRED_BATCH_CAP)
            total += flush_costs(Zc, Yc, cnt, n_L, out)
        queued = cnt[0]
        prev = 1 - cur
        Pc = P[cur]
        Cc = C[cur]
        # ---- the batch's inputs; W[1] −= the previous batch's update (W[1]ᵀ row k += Σ_s x_s[k] ·
        # (−α dZ[1]_s / n_b)); then Z[1]_t − b[1] = W[1] x_t = Σ_k x_t[k] · W[1]ᵀ row k
        _start_block(X, order, start, n_b, Pc, P[prev], C[prev], prev_n, WT, Zp, n0, n1p, _product_rows(n_b))
        # ---- each example: the rest of the forward pass, the backward pass (layers ≥ 2
        # and b[1] into grad), and its share of W[1]'s update, −α dZ[1] / n_b
        scale = T(1) / T(n_b)
        step = lr * scale
        b1 = params[b_off[0] : b_off[0] + n1]
        batch_cost = 0.0
        s1 = 0.0  # Σ_s Σ_j |dZ[1]_sj / n_b| Σ_k |x_sk| ≥ Σ|dW[1]|
        for t in range(n_b):
            e = order[start + t]
            zt = Zp[t * n1p : t * n1p + n1]
            for q in range(n1):
                z[q] = b1[q] + zt[q]
            batch_cost += _batch_example(
                params, grad, sizes, w_off, b_off, u_off, X[e], Y[e], z, a, dz, sa, scale, act, out, Zc, Yc, cnt
            )
            c = Cc[t * n1p : t * n1p + n1]
            sd = 0.0
            for q in range(n1):
                d = dz[q]
                c[q] = -(step * d)
                sd += abs(np.float64(d))
            s1 += sd * np.float64(scale) * _abs_sum(Pc[t * n0 : (t + 1) * n0], n0)
        # ---- step bound: max|W − α dW| ≤ max|W| + α Σ|dW| per layer
        safe = np.isfinite(batch_cost)
        for l in range(L):
            nw = sizes[l + 1] * sizes[l]
            gw = lr64 * (s1 if l == 0 else _abs_sum(grad[w_off[l] : w_off[l] + nw], nw))
            gb = lr64 * _abs_sum(grad[b_off[l] : b_off[l] + sizes[l + 1]], sizes[l + 1])
            safe = safe and (wb[l] + gw <= limit) and (bb[l] + gb <= limit)
            wb[l] += gw
            bb[l] += gb
        if not safe:  # the previous batch's update is applied: the parameters from before this batch
            cnt[0] = queued  # this batch's costs dropped
            total += flush_costs(Zc, Yc, cnt, n_L, out)
            _unpack_transposed(params, WT, n0, n1, V)
            _alive(offs[0], offs[1], offs[2], WT_own, P_own, C_own, Zp_own, z_own, a_own, dz_own)
            _alive(grad_own, sa_own, bounds_own, Zc_own, Yc_own, cnt_own)
            return total, start
        # ---- W[l] −= α dW[l] (l ≥ 2), b −= α db; W[1]'s update waits for the next batch
        # (views, and the zeroing a loop of its own: indexed from nw1 with two stores, LLVM left
        # the loop scalar, 6 % of an epoch on 256-256-10 at batch 8, perf)
        rest = params[nw1:]
        grest = grad[nw1:]
        for p in range(rest.shape[0]):
            rest[p] -= lr * grest[p]
        for p in range(grest.shape[0]):
            grest[p] = T(0)
        total += batch_cost
        cur = prev
        prev_n = n_b
    if prev_n > 0:  # the last batch's W[1] update
        _packed_update(WT, n0, n1p, P[1 - cur], C[1 - cur], prev_n)
    _unpack_transposed(params, WT, n0, n1, V)
    total += flush_costs(Zc, Yc, cnt, n_L, out)
    _alive(offs[0], offs[1], offs[2], WT_own, P_own, C_own, Zp_own, z_own, a_own, dz_own)
    _alive(grad_own, sa_own, bounds_own, Zc_own, Yc_own, cnt_own)
    return total, -1


@jit_inline
def _product_rows(n_b):
    """Rows of the batch's product W[1] x_t: n_b, or n_b + 1 for n_b = 3, 7, 11, …, so that the
    tiles' last part is one tile of 4 rows rather than tiles of 2 and 1 (each a pass over W[1]ᵀ).
    The extra row is the input row after the batch's last (zero, or left from the batch two
    before, which used the same buffer: its product is never read)."""
    return n_b + 1 if n_b % 4 == 3 else n_b
