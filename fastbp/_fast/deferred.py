"""Mini-batch gradient descent with each batch's W[1] update deferred into the next batch's
forward pass: :func:`_deferred_epoch`.

Why: on a short batch (4-32 examples) on a net with a wide W[1], the column kernels
(:mod:`.columns`) pay per batch for six BLAS calls and separate passes over W[1] and dW[1]
(the forward product, dW[1], the step bound's Σ|dW[1]|, the update), and ran slower than
per-example SGD on the same net (issue 12, goal 1: batch 8 at 0.56-0.87x of
``_sgd_epoch_blocked`` on 64-32-1 … 256-256-10; ``taskset -c 1 python tools/columns_sweep.py
--batches 8 16``).  Per-example SGD itself reads and writes W[1] once per four examples
(:mod:`.blocked`); this kernel does the same for a batch, and never forms dW[1]:

* the batch's dW[1] = Σ_s c_s x_sᵀ, c_s = dZ[1]_s / n_b, is kept as its factors (c_s, x_s),
  like :func:`fastbp._fast.blocked._sgd_epoch_blocked`'s deferred updates;
* the next batch's passes over W[1], one per block of :data:`BLOCK` examples
  (:func:`fastbp._fast._passes._block_pass`), each apply one block of the previous batch's
  update, W[1] −= α Σ_s c_s x_sᵀ over its four examples, and in the same pass compute
  W[1] x_t for this batch's block of four;
* block i's W[1] x_t was formed before the previous batch's blocks i+1, … were applied, so
  the Gram corrections −α Σ_s c_s (x_s · x_t) over those blocks are added (exact in real
  arithmetic: W x_t with every pending update applied);
* the divergence bound's Σ|dW[1]| is replaced by Σ_s Σ_j |c_sj| Σ_k |x_sk| ≥ Σ|dW[1]|:
  O(n_0 + n_1) per example, no pass over dW[1] (a looser bound can only hand over to the
  plain kernel earlier, never later).

Layers 2 … L, and b[1], take their gradient per example into a buffer
(:func:`fastbp._fast._passes._batch_example`) and are updated at the end of the batch, as in
:func:`fastbp._fast.batch._batch_epoch`; the costs, where provably finite, are queued and
computed :data:`fastbp._fast._common.COST_CHUNK` at a time, as in the per-example kernels. A
step the bound cannot prove safe is not applied; by then the previous batch's update is
wholly applied (every pass of the batch ran), so the parameters are those from before the
failing batch, as the divergence contract asks.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ..losses import flush_costs
from ._common import COST_CHUNK, _abs_sum, _alive, _borrow_epoch, _borrowed, _layer_bounds
from ._passes import BLOCK, _apply_block, _batch_example, _block_pass, _load_block


@jit_vec
def _deferred_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    """Mini-batch gradient descent over ``order`` with W[1]'s update of each batch applied in
    the next batch's passes (module docstring); returns ``(total cost, resume)`` like
    :func:`fastbp._fast.batch._batch_epoch` (``resume``: −1, or the position in ``order`` of
    the batch whose step the bound could not prove safe, not applied)."""
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    K = BLOCK
    n0 = sizes[0]
    n1 = sizes[1]
    nw1 = n0 * n1
    n_units = u_off[L - 1] + sizes[L]
    blocks_max = (batch_size + K - 1) // K
    # this batch's and the previous batch's inputs (P) and α dZ[1]/n_b (C), block by block;
    # rows past a batch's last example are zero, so a block's pass adds exact zeros for them
    P_own = np.zeros((2, blocks_max, K, n0), params.dtype)
    C_own = np.zeros((2, blocks_max, K, n1), params.dtype)
    Zp_own = np.empty((blocks_max, K, n1), params.dtype)  # W[1] x_t, block by block
    P_none_own = np.zeros((K, n0), params.dtype)  # a block with nothing to apply
    C_none_own = np.zeros((K, n1), params.dtype)
    z_own = np.empty(n_units, params.dtype)
    a_own = np.empty(n_units, params.dtype)
    dz_own = np.empty(n_units, params.dtype)
    grad_own = np.zeros_like(params)  # layers 2 … L and b[1] (dW[1] is never formed)
    sa_own = np.empty(L, np.float64)
    bounds_own = np.empty((2, L), np.float64)
    # the costs queued and computed COST_CHUNK at a time (a vectorised loop), flushed only
    # between batches so that a failing batch's queued costs can be dropped
    n_L = sizes[L]
    Zc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    Yc_own = np.empty(COST_CHUNK * n_L, params.dtype)
    cnt_own = np.zeros(1, np.int64)
    P = _borrowed(P_own)
    C = _borrowed(C_own)
    Zp = _borrowed(Zp_own)
    P_none = _borrowed(P_none_own)
    C_none = _borrowed(C_none_own)
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
    lr64 = np.float64(lr)
    m = order.shape[0]
    total = 0.0
    cur = 0
    prev_blocks = 0  # blocks of the previous batch whose update is still pending
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        n_b = stop - start
        blocks = (n_b + K - 1) // K
        if cnt[0] + n_b > COST_CHUNK:  # room for the whole batch's costs (n_b ≤ DEFERRED_BATCH_CAP)
            total += flush_costs(Zc, Yc, cnt, n_L, out)
        queued = cnt[0]
        prev = 1 - cur
        Pc = P[cur]
        Cc = C[cur]
        Pp = P[prev]
        Cp = C[prev]
        for i in range(blocks):
            _load_block(X, order, start + i * K, min(K, stop - start - i * K), Pc[i])
        # ---- W[1] −= the previous batch's update, block i in pass i; W[1] x_t for block i
        for i in range(max(blocks, prev_blocks)):
            if i < blocks and i < prev_blocks:
                _block_pass(params, n0, n1, Cp[i], Pp[i], Pc[i], Zp[i])
            elif i < blocks:  # the epoch's first batch: nothing pending
                _block_pass(params, n0, n1, C_none, P_none, Pc[i], Zp[i])
            else:  # a last batch shorter than the one before it
                _apply_block(params, n0, n1, Cp[i], Pp[i])
        # ---- the Gram corrections: block i's W[1] x_t before the pending blocks after i
        for i in range(blocks):
            for tt in range(min(K, n_b - i * K)):
                x = Pc[i, tt]
                zt = Zp[i, tt]
                for j in range(i + 1, prev_blocks):
                    for s in range(K):
                        xs = Pp[j, s]
                        g = T(0)
                        for k in range(n0):
                            g += xs[k] * x[k]
                        cs = Cp[j, s]
                        for q in range(n1):
                            zt[q] -= cs[q] * g
        # ---- each example: the rest of the forward pass, the backward pass (layers ≥ 2
        # and b[1] into grad), and its share of W[1]'s update, α dZ[1] / n_b
        scale = T(1) / T(n_b)
        step = lr * scale
        b1 = params[b_off[0] : b_off[0] + n1]
        batch_cost = 0.0
        s1 = 0.0  # Σ_s Σ_j |dZ[1]_sj / n_b| Σ_k |x_sk| ≥ Σ|dW[1]|
        for t in range(n_b):
            i = t // K
            tt = t - i * K
            e = order[start + t]
            zt = Zp[i, tt]
            for q in range(n1):
                z[q] = b1[q] + zt[q]
            batch_cost += _batch_example(
                params, grad, sizes, w_off, b_off, u_off, X[e], Y[e], z, a, dz, sa, scale, act, out, Zc, Yc, cnt
            )
            c = Cc[i, tt]
            sd = 0.0
            for q in range(n1):
                d = dz[q]
                c[q] = step * d
                sd += abs(np.float64(d))
            s1 += sd * np.float64(scale) * _abs_sum(Pc[i, tt], n0)
        last = blocks - 1
        for tt in range(n_b - last * K, K):  # the last block's rows past the batch
            for q in range(n1):
                Cc[last, tt, q] = T(0)
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
            _alive(offs[0], offs[1], offs[2], P_own, C_own, Zp_own, P_none_own, C_none_own, z_own, a_own, dz_own)
            _alive(grad_own, sa_own, bounds_own, Zc_own, Yc_own, cnt_own)
            return total, start
        # ---- W[l] −= α dW[l] (l ≥ 2), b −= α db; W[1]'s update waits for the next batch
        for p in range(nw1, params.shape[0]):
            params[p] -= lr * grad[p]
            grad[p] = T(0)
        total += batch_cost
        cur = prev
        prev_blocks = blocks
    for i in range(prev_blocks):  # the last batch's W[1] update
        _apply_block(params, n0, n1, C[1 - cur, i], P[1 - cur, i])
    total += flush_costs(Zc, Yc, cnt, n_L, out)
    _alive(offs[0], offs[1], offs[2], P_own, C_own, Zp_own, P_none_own, C_none_own, z_own, a_own, dz_own)
    _alive(grad_own, sa_own, bounds_own, Zc_own, Yc_own, cnt_own)
    return total, -1
