"""Mini-batches as matrices, 4 × 4 register tiles: :func:`_batch_epoch_tiled` (batches of
2-3 examples on a large W[1]; larger batches run the column kernels, :mod:`.columns`).

Z[1] = X_b W[1]ᵀ and dW[1] = dZ[1]ᵀ X_b by 4 × 4 register tiles (rows of W[1] × examples),
the rest per example.  Its loops over tiles of examples and over tasks of rows of dW[l] are
``prange`` loops, written so that every element is computed the same way in whichever
iteration order (they ran on threads in a ``parallel=True`` twin, now retired); compiled
without ``parallel``, they run as ``range``.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import JIT_VEC, compile_as, jit_vec
from ..activations import times_derivative_loop
from ..params import offsets
from ._common import _abs_sum, _layer_bounds
from ._passes import _forward_and_output_delta

#: The W[1] products of :func:`_batch_epoch_tiled` work on register tiles of this many
#: rows of W[1] × this many examples (16 accumulators, which LLVM keeps in vector registers).
TILE = 4


#: Rows of dW[1] per task of the ``prange`` over tasks (a multiple of :data:`TILE`; the split
#: never changes a result: every row is computed the same way in whichever task).
ROWS_PER_TASK = 8


@jit_vec
def _z1_tile(params, n0, n1, Xb, t, b1, Zs):
    """Zs[t + s, j] = W[1]_j · Xb[t + s] + b[1]_j for the four examples t … t+3 and every
    row j: four rows × four examples per pass over the inputs (k inner, contiguous).

    Past the last row the tile repeats row ``j`` (the same arithmetic, so the same
    value, written first and then overwritten by the genuine one).
    """
    T = params.dtype.type
    x0, x1, x2, x3 = Xb[t], Xb[t + 1], Xb[t + 2], Xb[t + 3]
    for j in range(0, n1, TILE):
        r1 = j + 1 if j + 1 < n1 else j
        r2 = j + 2 if j + 2 < n1 else j
        r3 = j + 3 if j + 3 < n1 else j
        W0 = params[j * n0 : (j + 1) * n0]
        W1 = params[r1 * n0 : (r1 + 1) * n0]
        W2 = params[r2 * n0 : (r2 + 1) * n0]
        W3 = params[r3 * n0 : (r3 + 1) * n0]
        a0 = a1 = a2 = a3 = T(0)
        e0 = e1 = e2 = e3 = T(0)
        f0 = f1 = f2 = f3 = T(0)
        g0 = g1 = g2 = g3 = T(0)
        for k in range(n0):
            p0 = x0[k]
            p1 = x1[k]
            p2 = x2[k]
            p3 = x3[k]
            w = W0[k]
            a0 += w * p0
            a1 += w * p1
            a2 += w * p2
            a3 += w * p3
            w = W1[k]
            e0 += w * p0
            e1 += w * p1
            e2 += w * p2
            e3 += w * p3
            w = W2[k]
            f0 += w * p0
            f1 += w * p1
            f2 += w * p2
            f3 += w * p3
            w = W3[k]
            g0 += w * p0
            g1 += w * p1
            g2 += w * p2
            g3 += w * p3
        Zs[t, r3], Zs[t + 1, r3], Zs[t + 2, r3], Zs[t + 3, r3] = g0 + b1[r3], g1 + b1[r3], g2 + b1[r3], g3 + b1[r3]
        Zs[t, r2], Zs[t + 1, r2], Zs[t + 2, r2], Zs[t + 3, r2] = f0 + b1[r2], f1 + b1[r2], f2 + b1[r2], f3 + b1[r2]
        Zs[t, r1], Zs[t + 1, r1], Zs[t + 2, r1], Zs[t + 3, r1] = e0 + b1[r1], e1 + b1[r1], e2 + b1[r1], e3 + b1[r1]
        Zs[t, j], Zs[t + 1, j], Zs[t + 2, j], Zs[t + 3, j] = a0 + b1[j], a1 + b1[j], a2 + b1[j], a3 + b1[j]


@jit_vec
def _dw1_rows(grad, n0, j0, j1, Xb, nbp, D1):
    """dW[1]_j = Σ_t D1[t, j] Xb[t] (overwritten; t in order, four examples per pass) for
    rows j in [j0, j1), four rows at a time (16 coefficients in registers, k inner,
    contiguous); the last rows one at a time.  Rows t ≥ the batch's
    size of ``Xb`` and ``D1`` are zero."""
    T = grad.dtype.type
    for j in range(j0, j1, TILE):
        if j + TILE <= j1:
            G0 = grad[j * n0 : (j + 1) * n0]
            G1 = grad[(j + 1) * n0 : (j + 2) * n0]
            G2 = grad[(j + 2) * n0 : (j + 3) * n0]
            G3 = grad[(j + 3) * n0 : (j + 4) * n0]
            for k in range(n0):
                G0[k] = T(0)
                G1[k] = T(0)
                G2[k] = T(0)
                G3[k] = T(0)
            for t in range(0, nbp, TILE):
                x0, x1, x2, x3 = Xb[t], Xb[t + 1], Xb[t + 2], Xb[t + 3]
                c00, c01, c02, c03 = D1[t, j], D1[t + 1, j], D1[t + 2, j], D1[t + 3, j]
                c10, c11, c12, c13 = D1[t, j + 1], D1[t + 1, j + 1], D1[t + 2, j + 1], D1[t + 3, j + 1]
                c20, c21, c22, c23 = D1[t, j + 2], D1[t + 1, j + 2], D1[t + 2, j + 2], D1[t + 3, j + 2]
                c30, c31, c32, c33 = D1[t, j + 3], D1[t + 1, j + 3], D1[t + 2, j + 3], D1[t + 3, j + 3]
                for k in range(n0):
                    p0, p1, p2, p3 = x0[k], x1[k], x2[k], x3[k]
                    G0[k] = G0[k] + c00 * p0 + c01 * p1 + c02 * p2 + c03 * p3
                    G1[k] = G1[k] + c10 * p0 + c11 * p1 + c12 * p2 + c13 * p3
                    G2[k] = G2[k] + c20 * p0 + c21 * p1 + c22 * p2 + c23 * p3
                    G3[k] = G3[k] + c30 * p0 + c31 * p1 + c32 * p2 + c33 * p3
        else:
            for r in range(j, j1):  # the last rows, one at a time
                G = grad[r * n0 : (r + 1) * n0]
                for k in range(n0):
                    G[k] = T(0)
                for t in range(0, nbp, TILE):
                    x0, x1, x2, x3 = Xb[t], Xb[t + 1], Xb[t + 2], Xb[t + 3]
                    c0, c1, c2, c3 = D1[t, r], D1[t + 1, r], D1[t + 2, r], D1[t + 3, r]
                    for k in range(n0):
                        G[k] = G[k] + c0 * x0[k] + c1 * x1[k] + c2 * x2[k] + c3 * x3[k]


@jit_vec
def _example_pass(params, sizes, w_off, b_off, u_off, y, z, a, dz, sa, act, out):
    """One example of a mini-batch, given its Z[1] in ``z``: the rest of the forward pass
    and dZ[l] for every layer into ``dz`` (W[l]ᵀ dZ[l] from the weights, which it only
    reads).  Returns the example's cost.  Touches only its own z, a, dz, sa."""
    L = sizes.shape[0] - 1
    T = params.dtype.type
    cost = _forward_and_output_delta(params, sizes, w_off, b_off, u_off, y, z, a, dz, sa, act, out)
    for l in range(L - 1, 0, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        wo = w_off[l]
        dzl = dz[u_off[l] : u_off[l] + n_out]
        up = u_off[l - 1]
        dp = dz[up : up + n_in]
        for k in range(n_in):
            dp[k] = T(0)
        for j in range(n_out):  # dA[l−1] = W[l]ᵀ dZ[l], row by row (contiguous)
            W = params[wo + j * n_in : wo + (j + 1) * n_in]
            d = dzl[j]
            for k in range(n_in):
                dp[k] += W[k] * d
        times_derivative_loop(dp, z[up : up + n_in], a[up : up + n_in], n_in, act)
    return cost


def _batch_epoch_tiled_body(params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    """Mini-batch gradient descent with each batch handled as matrices; returns
    ``(total cost, resume)`` like :func:`_batch_epoch`.

    Per batch, two ``prange`` loops (what the threaded twin spreads over threads):

    1. over tiles of four examples: their rows of X packed into ``Xb``, Z[1] = X_b W[1]ᵀ
       + b[1] by 4 × 4 register tiles (:func:`_z1_tile`), then the rest of each example's
       forward pass, its cost and dZ[l] (:func:`_example_pass`);
    2. over tasks: dW[1] = (dZ[1]/n_b)ᵀ X_b and db[1] for :data:`ROWS_PER_TASK` rows
       (:func:`_dw1_rows`), and every n_tasks-th row of dW[l], db[l] for l ≥ 2, each a
       sum over the batch's examples in order; each task writes its rows of W − α dW into the *other*
       parameter buffer, while they are still in cache;

    then the step bound (sums in a fixed order): if it proves the step safe, the two
    buffers swap roles (no pass over the parameters); if not, the step was never applied.
    On return the caller's ``params`` hold the current parameters.

    Every element is computed by one fixed sequence of operations whatever thread runs
    it, and no two tasks write the same element, so the threaded twin's result is
    bit-identical for any number of threads.  Workspaces are allocated once per call.
    """
    w_off, b_off, u_off = offsets(sizes)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n_units = u_off[L - 1] + sizes[L]
    n0 = sizes[0]
    n1 = sizes[1]
    m = order.shape[0]
    B = min(batch_size, m)
    Bp = (B + TILE - 1) // TILE * TILE
    Xb = np.zeros((Bp, n0), params.dtype)
    units = np.zeros((3, Bp, n_units), params.dtype)  # one allocation: Z, A, dZ per example
    Zs = units[0]
    As = units[1]
    DZs = units[2]
    SA = np.empty((Bp, L), np.float64)
    costs = np.empty(Bp, np.float64)
    D1 = np.zeros((Bp, n1), params.dtype)
    rowsum = np.empty(n1, np.float64)
    n_tasks = (n1 + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    n_upper = n_units - n1  # rows of W[2] … W[L]
    upper = np.empty((2, n_upper), np.int64)
    upper_l = upper[0]
    upper_j = upper[1]
    for l in range(1, L):
        for j in range(sizes[l + 1]):
            upper_l[u_off[l] - n1 + j] = l
            upper_j[u_off[l] - n1 + j] = j
    grad = np.zeros_like(params)
    bounds = np.empty((2, L), np.float64)
    wb = bounds[0]
    bb = bounds[1]
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    lr64 = np.float64(lr)
    other = np.empty_like(params)  # the parameters after the step, before it is checked
    cur = params
    nxt = other
    flipped = False  # cur is `other`
    resume = -1
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        nb = stop - start
        nbp = (nb + TILE - 1) // TILE * TILE
        scale = T(1) / T(nb)
        b1 = cur[b_off[0] : b_off[0] + n1]
        # 1. over tiles of four examples: their rows of X packed into Xb (rows past the
        # batch zero, in D1 too), Z[1], then the rest of each example's passes
        for tile in prange(nbp // TILE):
            t = tile * TILE
            for s in range(t, t + TILE):
                xb = Xb[s]
                if s < nb:
                    xs = X[order[start + s]]
                    for k in range(n0):
                        xb[k] = xs[k]
                else:
                    for k in range(n0):
                        xb[k] = T(0)
                    for j in range(n1):
                        D1[s, j] = T(0)
            _z1_tile(cur, n0, n1, Xb, t, b1, Zs)
            for s in range(t, min(t + TILE, nb)):
                dzs = DZs[s]
                costs[s] = _example_pass(
                    cur, sizes, w_off, b_off, u_off, Y[order[start + s]], Zs[s], As[s], dzs, SA[s], act, out
                )
                for j in range(n1):
                    D1[s, j] = scale * dzs[j]
        batch_cost = 0.0
        for t in range(nb):
            batch_cost += costs[t]
        # 2. over tasks: ROWS_PER_TASK rows of dW[1] and db[1], then every n_tasks-th row
        # of dW[l], db[l] for l ≥ 2 (dealt round, so that an even split of the tasks between
        # threads is an even split of the work)
        for task in prange(n_tasks):
            j0 = task * ROWS_PER_TASK
            j1 = min(j0 + ROWS_PER_TASK, n1)
            _dw1_rows(grad, n0, j0, j1, Xb, nbp, D1)
            for j in range(j0, j1):
                G = grad[j * n0 : (j + 1) * n0]
                rowsum[j] = _abs_sum(G, n0)
                Wc = cur[j * n0 : (j + 1) * n0]
                Wn = nxt[j * n0 : (j + 1) * n0]
                for k in range(n0):
                    Wn[k] = Wc[k] - lr * G[k]
                s1 = T(0)
                for t in range(nb):
                    s1 += D1[t, j]
                grad[b_off[0] + j] = s1
                nxt[b_off[0] + j] = cur[b_off[0] + j] - lr * s1
            for u in range(task, n_upper, n_tasks):
                l = upper_l[u]
                j = upper_j[u]
                n_in = sizes[l]
                uo = u_off[l]
                up = u_off[l - 1]
                row = w_off[l] + j * n_in
                G = grad[row : row + n_in]
                for k in range(n_in):
                    G[k] = T(0)
                s1 = T(0)
                for t in range(nb):
                    g = scale * DZs[t, uo + j]
                    Ap = As[t, up : up + n_in]
                    for k in range(n_in):
                        G[k] += g * Ap[k]
                    s1 += g
                grad[b_off[l] + j] = s1
                Wc = cur[row : row + n_in]
                Wn = nxt[row : row + n_in]
                for k in range(n_in):
                    Wn[k] = Wc[k] - lr * G[k]
                nxt[b_off[l] + j] = cur[b_off[l] + j] - lr * s1
        # the step bound (sums in a fixed order): max|W − α dW| ≤ max|W| + α Σ|dW| per layer
        safe = np.isfinite(batch_cost)
        for l in range(L):
            if l == 0:
                gw = 0.0
                for j in range(n1):
                    gw += rowsum[j]
            else:
                nw = sizes[l + 1] * sizes[l]
                gw = _abs_sum(grad[w_off[l] : w_off[l] + nw], nw)
            gb = _abs_sum(grad[b_off[l] : b_off[l] + sizes[l + 1]], sizes[l + 1])
            safe = safe and (wb[l] + lr64 * gw <= limit) and (bb[l] + lr64 * gb <= limit)
            wb[l] += lr64 * gw
            bb[l] += lr64 * gb
        if not safe:
            resume = start
            break
        cur, nxt = nxt, cur  # the step is applied
        flipped = not flipped
        total += batch_cost
    if flipped:
        for p in range(params.shape[0]):
            params[p] = cur[p]
    return total, resume


#: One thread (``prange`` runs as ``range``).  Its twin compiled with ``parallel=True``
#: (``_batch_epoch_threads``) ran mini-batches of 64 or more on two threads until the split
#: column kernels (:mod:`.columns`) took them: it was chosen by the thread count, so one and two
#: threads gave other bits; see ``docs/performance-kernels.md``.
_batch_epoch_tiled = compile_as(_batch_epoch_tiled_body, "_batch_epoch_tiled", JIT_VEC)
