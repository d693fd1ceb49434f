"""The passes the fast epochs share: one example's forward pass after layer 1, its fused
backward pass and update (per-example SGD), W[1] four examples at a time, one batch's mean
gradient (every mini-batch epoch, the optimizer epoch included).

Each helper is ``jit_inner`` (no CPython wrapper) or ``jit_inline`` (inlined at Numba-IR
level into its callers, where a call per example costs more than the code: measured below).
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_inline, jit_inner
from ..activations import activate_loop, times_derivative_loop
from ..losses import batch_weight, cost_loop, defer_cost, output_loop
from ._common import COST_SAFE, _abs_sum, _zeros


# ``inline="always"`` (Numba-IR inlining) for the two per-example helpers of the SGD
# kernels: measured 1.2–1.5x faster on the small nets (2-4-1, 64-32-1, 64-64-10: no call
# per example) and no slower to compile; inlining more helpers made the cold compile
# 35 % longer for no further gain.
@jit_inline
def _forward_rest(params, sizes, w_off, b_off, u_off, z, a, sa, act, out):
    """Layers 2 … L of one example (layer 1 is done by the caller into z, a).

    Also leaves sa[l] = Σ|A[l]| (the input of layer l+1) for the step bound.
    """
    L = sizes.shape[0] - 1
    for l in range(1, L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        a_prev = a[u_off[l - 1] : u_off[l - 1] + n_in]
        sa[l] = _abs_sum(a_prev, n_in)
        wo = w_off[l]
        uo = u_off[l]
        b = params[b_off[l] : b_off[l] + n_out]
        zl = z[uo : uo + n_out]
        # Z[l] = W[l] A[l−1] + b[l]: rows of W[l] against A[l−1], contiguous.
        # (Every inner loop indexes a view by its own loop variable only: an index
        # like ``params[row + k]`` gets Numba's negative-index wraparound, which
        # stops LLVM vectorising the loop.)
        for j in range(n_out):
            W = params[wo + j * n_in : wo + (j + 1) * n_in]
            s = b[j]
            for k in range(n_in):
                s += W[k] * a_prev[k]
            zl[j] = s
        if l < L - 1:
            activate_loop(z[uo : uo + n_out], a[uo : uo + n_out], n_out, act)
    if L > 1:
        uo = u_off[L - 1]
        output_loop(z[uo : uo + sizes[L]], a[uo : uo + sizes[L]], out)


@jit_inner
def _first_layer(params, n_in, n_out, b0, x, z):
    """Z[1] = W[1] x + b[1]."""
    b = params[b0 : b0 + n_out]
    for j in range(n_out):
        W = params[j * n_in : (j + 1) * n_in]
        s = b[j]
        for k in range(n_in):
            s += W[k] * x[k]
        z[j] = s


@jit_inner
def _first_layer_fused(params, n_in, n_out, b0, x, c, x_prev, z):
    """W[1] −= c x_prevᵀ (the previous example's deferred update), then Z[1] = W[1] x + b[1],
    in one pass over W[1]: each weight is read and written once."""
    b = params[b0 : b0 + n_out]
    for j in range(n_out):
        W = params[j * n_in : (j + 1) * n_in]
        s = b[j]
        cj = c[j]
        for k in range(n_in):
            w = W[k] - cj * x_prev[k]
            W[k] = w
            s += w * x[k]
        z[j] = s


@jit_inner
def _flush_first(params, n_in, n_out, c, x_prev):
    """Apply a deferred W[1] −= c x_prevᵀ."""
    for j in range(n_out):
        W = params[j * n_in : (j + 1) * n_in]
        cj = c[j]
        for k in range(n_in):
            W[k] -= cj * x_prev[k]


@jit_inline
def _after_first_layer(params, sizes, w_off, b_off, u_off, x, y, z, a, dz, sa, sd, wb, bb, lr, act, out, limit):
    """One example, given its Z[1] in ``z``: the rest of the forward pass, the cost, the
    step bound and, if the step is provably safe, the updates of W[l], b[l] for l ≥ 2
    and of b[1].  dZ[1] is left in ``dz[:n_1]``: the caller applies (or defers)
    W[1] −= α dZ[1] xᵀ.  Returns ``(safe, deferred, cost)``: nothing changes when
    not safe; ``deferred`` means the cost is provably finite and left for the caller
    to queue (:func:`defer_cost`), else ``cost`` is the example's cost.
    """
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n0 = sizes[0]
    n1 = sizes[1]
    top = u_off[L - 1]
    n_L = sizes[L]
    lr64 = np.float64(lr)
    if L > 1:
        activate_loop(z[:n1], a[:n1], n1, act)
    else:
        output_loop(z[:n1], a[:n1], out)
    sa[0] = _abs_sum(x, n0)
    _forward_rest(params, sizes, w_off, b_off, u_off, z, a, sa, act, out)
    # ---- the cost: provably finite (computed later, in a chunk), or computed now
    zL = z[top : top + n_L]
    deferred = _abs_sum(zL, n_L) + _abs_sum(y, n_L) <= COST_SAFE
    cost = 0.0 if deferred else cost_loop(zL, y, out)
    # ---- dZ[L] = A[L] − Y, and the step bound, before anything changes
    s = 0.0
    aL = a[top : top + n_L]
    dzL = dz[top : top + n_L]
    for j in range(n_L):
        d = aL[j] - y[j]
        dzL[j] = d
        s += abs(np.float64(d))
    safe = np.isfinite(cost)
    for l in range(L - 1, -1, -1):
        sd[l] = s
        safe = safe and (wb[l] + lr64 * s * sa[l] <= limit) and (bb[l] + lr64 * s <= limit)
        # |dZ[l−1]_k| ≤ |Σ_j W[l]_jk dZ[l]_j| · |g'| ≤ max|W[l]| · Σ|dZ[l]| (|g'| ≤ 1)
        s = s * wb[l] * sizes[l] if l > 0 else s
    if not safe:
        return False, deferred, cost
    # ---- backward, layers L … 2: dA[l−1] = W[l]ᵀ dZ[l] and W[l] −= α dZ[l] A[l−1]ᵀ in one pass
    for l in range(L - 1, 0, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        uo = u_off[l]
        up = u_off[l - 1]
        wo = w_off[l]
        b = params[b_off[l] : b_off[l] + n_out]
        dzl = dz[uo : uo + n_out]
        dp = dz[up : up + n_in]
        ap = a[up : up + n_in]
        for k in range(n_in):
            dp[k] = T(0)
        for j in range(n_out):
            W = params[wo + j * n_in : wo + (j + 1) * n_in]
            d = dzl[j]
            c = lr * d
            for k in range(n_in):
                w = W[k]
                dp[k] += w * d
                W[k] = w - c * ap[k]
            b[j] -= c
        wb[l] += lr64 * _abs_sum(dzl, n_out) * sa[l]
        bb[l] += lr64 * sd[l]
        times_derivative_loop(dp, z[up : up + n_in], ap, n_in, act)
    # ---- layer 1: b[1] now; W[1] is the caller's
    s1 = 0.0
    b1 = params[b_off[0] : b_off[0] + n1]
    for j in range(n1):
        b1[j] -= lr * dz[j]
        s1 += abs(np.float64(dz[j]))
    wb[0] += lr64 * s1 * sa[0]
    bb[0] += lr64 * s1
    return True, deferred, cost


#: Examples per block of the mini-batch kernels' W[1] passes (:func:`_batch_gradient`; the
#: unrolled loops of :func:`_block_pass_grad` are written for 4).
BLOCK = 4


# _load_block is inlined at Numba-IR level into its caller (:func:`_batch_gradient`), as the block
# passes it once shared with the blocked and deferred kernels (retired) were: compiled as functions of
# their own, they gave results 1 ulp apart in a kernel compiled in the process and the same kernel
# loaded from Numba's cache (tests/test_reproducibility.py, the compiled-and-cached test).
@jit_inline
def _load_block(X, order, t0, nb, Q):
    """Q[s] = X[order[t0 + s]] for the block's ``nb`` examples; the rows after them zero."""
    T = Q.dtype.type
    for s in range(Q.shape[0]):
        if s < nb:
            xs = X[order[t0 + s]]
            for k in range(Q.shape[1]):
                Q[s, k] = xs[k]
        else:
            for k in range(Q.shape[1]):
                Q[s, k] = T(0)


# inlined at Numba-IR level into both callers (the same machine code as before it was shared)
@jit_inline
def _forward_and_output_delta(params, sizes, w_off, b_off, u_off, y, z, a, dz, sa, act, out, Zc, Yc, cnt):
    """One example of a mini-batch, given its Z[1] in ``z``: the rest of the forward pass
    (A[1] = g(Z[1]) … A[L]) and dZ[L] = A[L] − Y into ``dz``.  Returns the example's cost; or,
    given a cost queue (``cnt`` not empty) with room, and a cost provably finite (Σ|Z[L]| + Σ|Y| ≤
    COST_SAFE), queues it (:func:`defer_cost`, into ``Zc``, ``Yc``) and returns 0."""
    L = sizes.shape[0] - 1
    n1 = sizes[1]
    top = u_off[L - 1]
    n_L = sizes[L]
    if L > 1:
        activate_loop(z[:n1], a[:n1], n1, act)
    else:
        output_loop(z[:n1], a[:n1], out)
    _forward_rest(params, sizes, w_off, b_off, u_off, z, a, sa, act, out)
    zL = z[top : top + n_L]
    if cnt.shape[0] > 0 and (cnt[0] + 1) * n_L <= Zc.shape[0] and _abs_sum(zL, n_L) + _abs_sum(y, n_L) <= COST_SAFE:
        defer_cost(zL, y, Zc, Yc, cnt)
        cost = 0.0
    else:
        cost = cost_loop(zL, y, out)
    aL = a[top : top + n_L]
    dzL = dz[top : top + n_L]
    for j in range(n_L):
        dzL[j] = aL[j] - y[j]
    return cost


# inlined at Numba-IR level into _deferred_tiles_epoch (as into the retired _deferred_epoch): as a
# call, its ~18 array arguments and the views it takes cost more than its work on a net of a few
# thousand weights (``taskset -c 1 python tools/columns_sweep.py --nets 64-32-1 --batches 4 8``:
# 2.09 M -> 3.33 M examples/s, float32, batch 4, measured on _deferred_epoch).  _batch_gradient
# calls the compiled twin below, _batch_example_call: inlined there too, _batch_epoch ran 1.28 M ->
# 1.85 M, but its cold compile grew by 2 s (``tools/startup_profile.py profile --sizes 16,32,32,3
# --batch-size 3``: 6.9 s -> 9.0 s for the first fit), and it now runs only what the other kernels
# cannot: weighted batches (and the optimizer epoch's short batches, :mod:`.optimizer`).
@jit_inline
def _batch_example(params, grad, sizes, w_off, b_off, u_off, x, y, z, a, dz, sa, scale, act, out, Zc, Yc, cnt):
    """One example of a mini-batch, given its Z[1] in ``z``: the rest of the forward
    pass, and dW[l] += scale · dZ[l] A[l−1]ᵀ, db[l] += scale · dZ[l] into ``grad`` for
    l ≥ 2, db[1] too; dZ[1] is left in ``dz[:n_1]`` (dW[1] is the caller's).
    Returns the example's cost, or 0 with the cost queued (``Zc``, ``Yc``, ``cnt``: a cost
    queue, or empty for none; :func:`_forward_and_output_delta`)."""
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n1 = sizes[1]
    cost = _forward_and_output_delta(params, sizes, w_off, b_off, u_off, y, z, a, dz, sa, act, out, Zc, Yc, cnt)
    # dW[l] += scale · dZ[l] A[l−1]ᵀ and dA[l−1] = W[l]ᵀ dZ[l], one pass per layer
    for l in range(L - 1, 0, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        uo = u_off[l]
        up = u_off[l - 1]
        wo = w_off[l]
        gb = grad[b_off[l] : b_off[l] + n_out]
        dzl = dz[uo : uo + n_out]
        dp = dz[up : up + n_in]
        ap = a[up : up + n_in]
        for k in range(n_in):
            dp[k] = T(0)
        for j in range(n_out):
            W = params[wo + j * n_in : wo + (j + 1) * n_in]
            G = grad[wo + j * n_in : wo + (j + 1) * n_in]
            d = dzl[j]
            g = scale * d
            for k in range(n_in):
                dp[k] += W[k] * d
                G[k] += g * ap[k]
            gb[j] += g
        times_derivative_loop(dp, z[up : up + n_in], ap, n_in, act)
    gb = grad[b_off[0] : b_off[0] + n1]
    for j in range(n1):
        gb[j] += scale * dz[j]
    return cost


@jit_inner
def _batch_example_call(params, grad, sizes, w_off, b_off, u_off, x, y, z, a, dz, sa, scale, act, out, Zc, Yc, cnt):
    """:func:`_batch_example` as a function of its own, called, not inlined (see the comment above
    :func:`_batch_example`)."""
    return _batch_example(params, grad, sizes, w_off, b_off, u_off, x, y, z, a, dz, sa, scale, act, out, Zc, Yc, cnt)


@jit_inner
def _block_pass_grad(params, grad, n0, n1, C, P, Q, Zp):
    """One pass over W[1] and dW[1]: dW[1] += Σ_s C[s] P[s]ᵀ (the previous block's four
    examples), and Zp[t] = W[1] Q[t] for this block's four inputs (two rows at a time)."""
    T = params.dtype.type
    j = 0
    while j < n1:
        two = j + 1 < n1
        r1 = j + 1 if two else j  # an odd last row: the second row is the same one, with C = 0
        W0 = params[j * n0 : (j + 1) * n0]
        W1 = params[r1 * n0 : (r1 + 1) * n0]
        G0 = grad[j * n0 : (j + 1) * n0]
        G1 = grad[r1 * n0 : (r1 + 1) * n0]
        c00, c01, c02, c03 = C[0, j], C[1, j], C[2, j], C[3, j]
        if two:
            c10, c11, c12, c13 = C[0, r1], C[1, r1], C[2, r1], C[3, r1]
        else:
            c10 = c11 = c12 = c13 = T(0)
        a0 = a1 = a2 = a3 = T(0)
        e0 = e1 = e2 = e3 = T(0)
        for k in range(n0):
            p0, p1, p2, p3 = P[0, k], P[1, k], P[2, k], P[3, k]
            G0[k] += (c00 * p0 + c01 * p1) + (c02 * p2 + c03 * p3)
            G1[k] += (c10 * p0 + c11 * p1) + (c12 * p2 + c13 * p3)
            w = W0[k]
            v = W1[k]
            q = Q[0, k]
            a0 += w * q
            e0 += v * q
            q = Q[1, k]
            a1 += w * q
            e1 += v * q
            q = Q[2, k]
            a2 += w * q
            e2 += v * q
            q = Q[3, k]
            a3 += w * q
            e3 += v * q
        Zp[0, j], Zp[1, j], Zp[2, j], Zp[3, j] = a0, a1, a2, a3
        if two:
            Zp[0, r1], Zp[1, r1], Zp[2, r1], Zp[3, r1] = e0, e1, e2, e3
        j += 2


@jit_inner
def _accumulate_block(grad, n0, n1, C, P):
    """dW[1] += Σ_s C[s] P[s]ᵀ (flush a block's deferred gradient terms)."""
    for j in range(n1):
        G = grad[j * n0 : (j + 1) * n0]
        c0, c1, c2, c3 = C[0, j], C[1, j], C[2, j], C[3, j]
        for k in range(n0):
            G[k] += (c0 * P[0, k] + c1 * P[1, k]) + (c2 * P[2, k] + c3 * P[3, k])


@jit_inner
def _batch_workspace(params, sizes, u_off):
    """The workspaces of :func:`_batch_gradient`, allocated once per epoch: ``(z, a, dz,
    grad, sa, P, Q, C, Zp)`` (``grad`` and ``C`` zero; see there for the shapes)."""
    L = sizes.shape[0] - 1
    n_units = u_off[L - 1] + sizes[L]
    n0 = sizes[0]
    n1 = sizes[1]
    return (
        np.empty(n_units, params.dtype),
        np.empty(n_units, params.dtype),
        np.empty(n_units, params.dtype),
        _zeros(params.shape[0], params.dtype),
        np.empty(L, np.float64),
        _zeros((BLOCK, n0), params.dtype),
        _zeros((BLOCK, n0), params.dtype),
        _zeros((BLOCK, n1), params.dtype),
        np.empty((BLOCK, n1), params.dtype),
    )


# inlined at Numba-IR level into the epoch kernels, so that calling it per batch costs
# nothing on tiny nets (its own callees stay calls)
@jit_inline
def _batch_gradient(
    params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, act, out, blocked, z, a, dz, sa, P, Q, C, Zp, sw
):
    """grad += the mean gradient of the costs of the examples ``order[start:stop]``; returns
    the sum of their costs (float64).

    With per-example weights ``sw`` (indexed like X's rows; empty: unweighted), the weighted
    mean of :func:`fastbp._plain.loops._mean_gradient`: example i's terms scaled by
    w_i / Σ_batch w instead of 1/n, and n · Σ w_i cost_i / Σ_batch w returned.

    The building block of every mini-batch epoch (:func:`_batch_epoch`, and the
    optimizers' :func:`fastbp._fast.optimizer._batch_epoch_opt`): ``grad`` is the flat
    gradient buffer (usually zero on entry); ``z``, ``a``, ``dz`` (n_units), ``sa`` (L)
    and, for ``blocked``, ``P``, ``Q`` (BLOCK × n_0), ``C``, ``Zp`` (BLOCK × n_1) are
    the caller's workspaces (``C`` all zero on entry, and again on exit).  With
    ``blocked``, W[1] x and dW[1] are handled four examples per pass over W[1] (the
    weights do not change inside a batch, so no corrections are needed).
    """
    T = params.dtype.type
    K = BLOCK
    n0 = sizes[0]
    n1 = sizes[1]
    n = stop - start
    scale = T(1) / T(n)
    weighted = sw.shape[0] > 0
    D = batch_weight(sw, order, start, stop)  # Σ_batch w_i (n when unweighted)
    none = z[:0]  # no cost queue: every cost computed at once (empty views, no allocation)
    no_cnt = order[:0]
    b1 = params[b_off[0] : b_off[0] + n1]
    batch_cost = 0.0
    if blocked:
        for t0 in range(start, stop, K):
            nb = min(K, stop - t0)
            P, Q = Q, P
            _load_block(X, order, t0, nb, Q)
            _block_pass_grad(params, grad, n0, n1, C, P, Q, Zp)
            for s in range(K):
                for j in range(n1):
                    C[s, j] = T(0)
            for tt in range(nb):
                i = order[t0 + tt]
                for j in range(n1):
                    z[j] = b1[j] + Zp[tt, j]
                if weighted:
                    scale = T(np.float64(sw[i]) / D)
                cost = _batch_example_call(
                    params,
                    grad,
                    sizes,
                    w_off,
                    b_off,
                    u_off,
                    X[i],
                    Y[i],
                    z,
                    a,
                    dz,
                    sa,
                    scale,
                    act,
                    out,
                    none,
                    none,
                    no_cnt,
                )
                batch_cost += np.float64(sw[i]) * cost if weighted else cost
                for j in range(n1):
                    C[tt, j] = scale * dz[j]
        _accumulate_block(grad, n0, n1, C, Q)
        for s in range(K):
            for j in range(n1):
                C[s, j] = T(0)
    else:
        for t in range(start, stop):
            i = order[t]
            x = X[i]
            _first_layer(params, n0, n1, b_off[0], x, z)
            if weighted:
                scale = T(np.float64(sw[i]) / D)
            cost = _batch_example_call(
                params, grad, sizes, w_off, b_off, u_off, x, Y[i], z, a, dz, sa, scale, act, out, none, none, no_cnt
            )
            batch_cost += np.float64(sw[i]) * cost if weighted else cost
            for j in range(n1):
                G = grad[j * n0 : (j + 1) * n0]
                g = scale * dz[j]
                for k in range(n0):
                    G[k] += g * x[k]
    if weighted:
        batch_cost *= n / D
    return batch_cost
