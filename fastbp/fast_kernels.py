"""Fast training kernels: what ``backend="numba"`` runs for the built-in activations.

:mod:`fastbp.kernels` stays the readable scalar-loop reference; this module
computes the same epoch (same visiting order, same per-example or per-batch
updates, same returned cost, same divergence contract) faster.  Measurements:
``docs/performance-kernels.md`` (``benchmarks/perf_matrix.py``).

* **Vectorisable activations** (:mod:`fastbp.vmath`): no libm call per unit.
* **Per-example SGD** (``batch_size = 1``), :func:`_sgd_epoch`: for layers l ≥ 2
  one pass over W[l] both computes dA[l−1] = W[l]ᵀ dZ[l] (from the old weights,
  row by row, contiguous) and writes W[l] −= α dZ[l] A[l−1]ᵀ; the update of W[1]
  is fused into the *next* example's forward pass through W[1].  b[l] at once.
* **Per-example SGD, blocked** (W[1] ≥ :data:`BLOCKED_MIN_WEIGHTS` weights),
  :func:`_sgd_epoch_blocked`: W[1]'s updates deferred over blocks of
  :data:`BLOCK` examples, with Gram-matrix corrections (exact in real
  arithmetic), so W[1] is read and written once per block.
* **Mini-batches**, :func:`_batch_epoch`: W[1] x and dW[1] for four examples
  per pass over W[1]; for layers ≥ 2 one pass accumulates dW[l] and computes
  dA[l−1]; the update W −= α dW also zeroes dW for the next batch.
* **Threads**, :func:`_batch_epoch_threads`: mini-batches with the work on W[1]
  spread over threads by rows; bit-identical for any number of threads.
* **Start-up**: only the epoch kernel a call needs is compiled (lazily, on first
  use; activation and output are run-time codes, not specialisations).  The
  epoch kernels, which Python calls, are ``jit_vec``; every helper is
  ``jit_inner`` (no CPython wrapper to build), ``docs/performance.md``.
* **No allocation inside the epoch**: workspaces are allocated once per call;
  the kernels work on *borrowed* views (:func:`_borrowed`) so that taking a row
  costs no atomic reference counting.

The divergence contract of :func:`fastbp.kernels._train_epoch` holds: a step
whose loss or new parameters would not be finite is never applied.  Instead of
the reference's extra pass over all parameters per step, the kernel keeps, per
layer, an upper bound on max|W[l]| and max|b[l]| (exact at the start of the
epoch, then raised by α·Σ|dZ|·Σ|A| per step), which proves the new parameters
finite as long as it stays below ``limit`` (a quarter of the dtype's largest
number).  If a step's loss is not finite or the bound cannot prove the step
safe, the kernel stops *before* that step (flushing the deferred W[1] update
of the previous example) and returns its position; the wrapper
:func:`train_epoch` then finishes the epoch with the exact reference kernel,
which makes the exact check and reports the failing batch.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.core import cgutils
from numba.extending import intrinsic

from .activations import LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, TANH
from .losses import SIGMOID as OUT_SIGMOID
from .losses import SOFTMAX as OUT_SOFTMAX
from .params import offsets
from .vmath import JIT_VEC, jit_inner, jit_vec, vexp, vlog1p_unit, vsigmoid, vtanh

#: :data:`fastbp.vmath.JIT_VEC` plus ``parallel=True``, for the threaded kernel.
JIT_PARALLEL: dict = {**JIT_VEC, "parallel": True}

__all__ = ["train_epoch"]


# ================================================================ building blocks


@jit_inner
def _alive(*arrays):
    """Nothing: a use of the workspaces' owners at a kernel's exits keeps them allocated
    while their borrowed views (:func:`_borrowed`) are in use."""
    return len(arrays)


@intrinsic
def _borrowed(typingctx, arr):
    """The same array with no reference-counted owner (meminfo and parent NULL).

    Every view taken from it then skips Numba's atomic reference counting (an
    ``NRT_incref``/``NRT_decref`` pair per row view, per example, otherwise).  Only
    for arrays that outlive the kernel call: the arguments the Python caller holds.
    """
    from numba.core import types as nbtypes

    if not isinstance(arr, nbtypes.Array):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        out = context.make_array(signature.return_type)(context, builder)
        cgutils.copy_struct(out, ary)
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        out.parent = cgutils.get_null_value(out.parent.type)
        return out._getvalue()

    return arr(arr), codegen


@jit_inner
def _activate(z, a, n, act):
    """a[:n] = g(z[:n]) for a built-in g (one branch per layer, a vectorised loop)."""
    T = z.dtype.type
    if act == TANH:
        for j in range(n):
            a[j] = vtanh(z[j])
    elif act == SIGMOID:
        for j in range(n):
            a[j] = vsigmoid(z[j])
    elif act == RELU:
        for j in range(n):
            zj = z[j]
            a[j] = T(0) if zj < T(0) else zj
    elif act == LEAKY_RELU:
        for j in range(n):
            zj = z[j]
            a[j] = zj * T(LEAKY_SLOPE) if zj < T(0) else zj
    else:
        for j in range(n):
            a[j] = z[j]


@jit_inner
def _times_derivative(d, z, a, n, act):
    """d[:n] ∗= g'(Z) (given A = g(Z)): dZ[l] = dA[l] ∗ g'(Z[l])."""
    T = z.dtype.type
    if act == TANH:
        for k in range(n):
            d[k] *= T(1) - a[k] * a[k]
    elif act == SIGMOID:
        for k in range(n):
            d[k] *= a[k] * (T(1) - a[k])
    elif act == RELU:
        for k in range(n):
            d[k] = d[k] if z[k] > T(0) else T(0)
    elif act == LEAKY_RELU:
        for k in range(n):
            d[k] = d[k] if z[k] > T(0) else d[k] * T(LEAKY_SLOPE)


@jit_inner
def _output(z, a, out):
    """A[L] from Z[L]: σ, softmax or identity (vectorised)."""
    n = z.shape[0]
    T = z.dtype.type
    if out == OUT_SIGMOID:
        for j in range(n):
            a[j] = vsigmoid(z[j])
    elif out == OUT_SOFTMAX:
        zmax = z[0]
        for j in range(1, n):
            zmax = z[j] if z[j] > zmax else zmax
        total = T(0)
        for j in range(n):
            e = vexp(z[j] - zmax)
            a[j] = e
            total += e
        inv = T(1) / total
        for j in range(n):
            a[j] *= inv
    else:
        for j in range(n):
            a[j] = z[j]


@jit_inner
def _cost(z, y, out):
    """One example's cost from its logits (float64; the same formulas as losses.example_cost)."""
    n = z.shape[0]
    cost = 0.0
    if out == OUT_SIGMOID:
        for j in range(n):
            zj = np.float64(z[j])
            cost += (zj if zj > 0.0 else 0.0) - np.float64(y[j]) * zj + vlog1p_unit(vexp(-abs(zj)))
    elif out == OUT_SOFTMAX:
        zmax = np.float64(z[0])
        for j in range(1, n):
            zj = np.float64(z[j])
            zmax = zj if zj > zmax else zmax
        total = 0.0
        for j in range(n):
            total += vexp(np.float64(z[j]) - zmax)
        lse = zmax + np.log(total)
        for j in range(n):
            cost += np.float64(y[j]) * (lse - np.float64(z[j]))
    else:
        for j in range(n):
            d = np.float64(z[j]) - np.float64(y[j])
            cost += 0.5 * d * d
    return cost


#: Per-example costs are computed in chunks of this many examples (vectorised),
#: not one by one, whenever they are provably finite (see :data:`COST_SAFE`).
COST_CHUNK = 256

#: Σ|Z[L]| + Σ|Y| up to this bound proves an example's cost finite in float64
#: (|Z − Y| ≤ 2e150, so ½(Z − Y)² and the cross-entropies stay far below 1.8e308).
COST_SAFE = 1e150


@jit_inner
def _defer_cost(zL, y, Zc, Yc, cnt):
    """Queue one example's logits and targets for :func:`_flush_costs`."""
    n = zL.shape[0]
    o = cnt[0] * n
    for j in range(n):
        Zc[o + j] = zL[j]
        Yc[o + j] = y[j]
    cnt[0] += 1


@jit_inner
def _flush_costs(Zc, Yc, cnt, n_L, out):
    """Σ of the queued examples' costs (float64, the formulas of :func:`_cost`); empties the queue."""
    n = cnt[0] * n_L
    cnt[0] = 0
    total = 0.0
    if out == OUT_SIGMOID:
        for k in range(n):
            zk = np.float64(Zc[k])
            total += (zk if zk > 0.0 else 0.0) - np.float64(Yc[k]) * zk + vlog1p_unit(vexp(-abs(zk)))
    elif out == OUT_SOFTMAX:
        for e in range(0, n, n_L):
            total += _cost(Zc[e : e + n_L], Yc[e : e + n_L], out)
    else:
        for k in range(n):
            d = np.float64(Zc[k]) - np.float64(Yc[k])
            total += 0.5 * d * d
    return total


@jit_inner
def _abs_sum(v, n):
    """Σ|v[:n]| in float64 (NaN and inf propagate)."""
    s = 0.0
    for k in range(n):
        s += abs(np.float64(v[k]))
    return s


@jit_inner
def _abs_max(v):
    """max|v| in float64, or inf if any entry is NaN or ±inf."""
    m = 0.0
    bad = 0.0
    for k in range(v.shape[0]):
        x = abs(np.float64(v[k]))
        m = x if x > m else m
        bad += x * 0.0  # 0 for finite entries, NaN otherwise
    return m if bad == 0.0 else np.inf


@jit_inner
def _layer_bounds(params, sizes, w_off, b_off, wb, bb):
    """wb[l], bb[l] = max|W[l]|, max|b[l]| (inf where a parameter is not finite)."""
    for l in range(sizes.shape[0] - 1):
        n = sizes[l + 1] * sizes[l]
        wb[l] = _abs_max(params[w_off[l] : w_off[l] + n])
        bb[l] = _abs_max(params[b_off[l] : b_off[l] + sizes[l + 1]])


# ======================================================================= forward


# ``inline="always"`` (Numba-IR inlining) for the two per-example helpers of the SGD
# kernels: measured 1.2–1.5x faster on the small nets (2-4-1, 64-32-1, 64-64-10: no call
# per example) and no slower to compile; inlining more helpers made the cold compile
# 35 % longer for no further gain.
@njit(**JIT_VEC, inline="always")
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
            _activate(z[uo : uo + n_out], a[uo : uo + n_out], n_out, act)
    if L > 1:
        uo = u_off[L - 1]
        _output(z[uo : uo + sizes[L]], a[uo : uo + sizes[L]], out)


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


# ====================================================================== per-example


@njit(**JIT_VEC, inline="always")
def _after_first_layer(params, sizes, w_off, b_off, u_off, x, y, z, a, dz, sa, sd, wb, bb, lr, act, out, limit):
    """One example, given its Z[1] in ``z``: the rest of the forward pass, the cost, the
    step bound and, if the step is provably safe, the updates of W[l], b[l] for l ≥ 2
    and of b[1].  dZ[1] is left in ``dz[:n_1]``: the caller applies (or defers)
    W[1] −= α dZ[1] xᵀ.  Returns ``(safe, deferred, cost)``: nothing changes when
    not safe; ``deferred`` means the cost is provably finite and left for the caller
    to queue (:func:`_defer_cost`), else ``cost`` is the example's cost.
    """
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n0 = sizes[0]
    n1 = sizes[1]
    top = u_off[L - 1]
    n_L = sizes[L]
    lr64 = np.float64(lr)
    if L > 1:
        _activate(z[:n1], a[:n1], n1, act)
    else:
        _output(z[:n1], a[:n1], out)
    sa[0] = _abs_sum(x, n0)
    _forward_rest(params, sizes, w_off, b_off, u_off, z, a, sa, act, out)
    # ---- the cost: provably finite (computed later, in a chunk), or computed now
    zL = z[top : top + n_L]
    deferred = _abs_sum(zL, n_L) + _abs_sum(y, n_L) <= COST_SAFE
    cost = 0.0 if deferred else _cost(zL, y, out)
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
        _times_derivative(dp, z[up : up + n_in], ap, n_in, act)
    # ---- layer 1: b[1] now; W[1] is the caller's
    s1 = 0.0
    b1 = params[b_off[0] : b_off[0] + n1]
    for j in range(n1):
        b1[j] -= lr * dz[j]
        s1 += abs(np.float64(dz[j]))
    wb[0] += lr64 * s1 * sa[0]
    bb[0] += lr64 * s1
    return True, deferred, cost


@jit_vec
def _sgd_epoch(params, sizes, X, Y, order, lr, act, out, limit):
    """Per-example SGD over ``order``; returns ``(total cost, resume)``.

    ``resume`` is −1 when the epoch is done, else the position in ``order`` of
    the first example whose step this kernel could not prove safe (not applied).
    W[1]'s update is deferred into the next example's forward pass.
    """
    params = _borrowed(params)
    X = _borrowed(X)
    Y = _borrowed(Y)
    sizes = _borrowed(sizes)
    order = _borrowed(order)
    offs = offsets(sizes)
    w_off, b_off, u_off = _borrowed(offs[0]), _borrowed(offs[1]), _borrowed(offs[2])
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
    c1_own = np.zeros(n1, params.dtype)
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
    cnt_own = np.zeros(1, np.int64)
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
            _alive(offs[0], offs[1], offs[2], z_own, a_own, dz_own, c1_own, sa_own, sd_own, wb_own, bb_own, Zc_own, Yc_own, cnt_own)
            return total + _flush_costs(Zc, Yc, cnt, n_L, out), t
        if deferred:
            _defer_cost(z[top : top + n_L], Y[i], Zc, Yc, cnt)
            if cnt[0] == COST_CHUNK:
                total += _flush_costs(Zc, Yc, cnt, n_L, out)
        else:
            total += cost
        for j in range(n1):
            c1[j] = lr * dz[j]
        prev = i
    if prev >= 0:
        _flush_first(params, n0, n1, c1, X[prev])
    _alive(offs[0], offs[1], offs[2], z_own, a_own, dz_own, c1_own, sa_own, sd_own, wb_own, bb_own, Zc_own, Yc_own, cnt_own)
    return total + _flush_costs(Zc, Yc, cnt, n_L, out), -1


#: Examples per block in :func:`_sgd_epoch_blocked` (the unrolled loops below are written for 4).
BLOCK = 4


@jit_inner
def _block_pass(params, n0, n1, C, P, Q, Zp):
    """One pass over W[1]: W[1] −= Σ_s C[s] P[s]ᵀ (the previous block's four deferred
    per-example updates), then Zp[t] = W[1] Q[t] for the block's four inputs.

    Two rows of W[1] at a time share the loads of P and Q (each row is its own
    array view, so LLVM checks their overlap at run time and vectorises); each
    weight is loaded and stored once per 4 examples, with 8 FMAs on it.
    """
    T = params.dtype.type
    j = 0
    while j + 1 < n1:
        r0 = j * n0
        W0 = params[r0 : r0 + n0]
        W1 = params[r0 + n0 : r0 + 2 * n0]
        c00, c01, c02, c03 = C[0, j], C[1, j], C[2, j], C[3, j]
        c10, c11, c12, c13 = C[0, j + 1], C[1, j + 1], C[2, j + 1], C[3, j + 1]
        a0 = a1 = a2 = a3 = T(0)
        e0 = e1 = e2 = e3 = T(0)
        for k in range(n0):
            p0, p1, p2, p3 = P[0, k], P[1, k], P[2, k], P[3, k]
            w = W0[k] - ((c00 * p0 + c01 * p1) + (c02 * p2 + c03 * p3))
            v = W1[k] - ((c10 * p0 + c11 * p1) + (c12 * p2 + c13 * p3))
            W0[k] = w
            W1[k] = v
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
        Zp[0, j + 1], Zp[1, j + 1], Zp[2, j + 1], Zp[3, j + 1] = e0, e1, e2, e3
        j += 2
    if j < n1:  # an odd last row
        W0 = params[j * n0 : (j + 1) * n0]
        c00, c01, c02, c03 = C[0, j], C[1, j], C[2, j], C[3, j]
        a0 = a1 = a2 = a3 = T(0)
        for k in range(n0):
            w = W0[k] - ((c00 * P[0, k] + c01 * P[1, k]) + (c02 * P[2, k] + c03 * P[3, k]))
            W0[k] = w
            a0 += w * Q[0, k]
            a1 += w * Q[1, k]
            a2 += w * Q[2, k]
            a3 += w * Q[3, k]
        Zp[0, j], Zp[1, j], Zp[2, j], Zp[3, j] = a0, a1, a2, a3


@jit_inner
def _apply_block(params, n0, n1, C, P):
    """W[1] −= Σ_s C[s] P[s]ᵀ (flush the deferred updates of a block)."""
    for j in range(n1):
        W0 = params[j * n0 : (j + 1) * n0]
        c0, c1, c2, c3 = C[0, j], C[1, j], C[2, j], C[3, j]
        for k in range(n0):
            W0[k] -= (c0 * P[0, k] + c1 * P[1, k]) + (c2 * P[2, k] + c3 * P[3, k])


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
    params = _borrowed(params)
    X = _borrowed(X)
    Y = _borrowed(Y)
    sizes = _borrowed(sizes)
    order = _borrowed(order)
    offs = offsets(sizes)
    w_off, b_off, u_off = _borrowed(offs[0]), _borrowed(offs[1]), _borrowed(offs[2])
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
        for s in range(K):
            if s < nb:
                xs = X[order[t0 + s]]
                for k in range(n0):
                    Q[s, k] = xs[k]
            else:
                for k in range(n0):
                    Q[s, k] = T(0)
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
                _alive(offs[0], offs[1], offs[2], z_own, a_own, dz_own, P_own, Q_own, C_own, Zp_own, G_own, sa_own, sd_own, wb_own, bb_own, Zc_own, Yc_own, cnt_own)
                return total + _flush_costs(Zc, Yc, cnt, n_L, out), t0 + tt
            if deferred:
                _defer_cost(z[top : top + n_L], Y[i], Zc, Yc, cnt)
                if cnt[0] == COST_CHUNK:
                    total += _flush_costs(Zc, Yc, cnt, n_L, out)
            else:
                total += cost
            for j in range(n1):
                C[tt, j] = lr * dz[j]
    _apply_block(params, n0, n1, C, Q)
    _alive(offs[0], offs[1], offs[2], z_own, a_own, dz_own, P_own, Q_own, C_own, Zp_own, G_own, sa_own, sd_own, wb_own, bb_own, Zc_own, Yc_own, cnt_own)
    return total + _flush_costs(Zc, Yc, cnt, n_L, out), -1


# ====================================================================== mini-batch


@jit_inner
def _batch_example(params, grad, sizes, w_off, b_off, u_off, x, y, z, a, dz, sa, scale, act, out):
    """One example of a mini-batch, given its Z[1] in ``z``: the rest of the forward
    pass, and dW[l] += scale · dZ[l] A[l−1]ᵀ, db[l] += scale · dZ[l] into ``grad`` for
    l ≥ 2, db[1] too; dZ[1] is left in ``dz[:n_1]`` (dW[1] is the caller's).
    Returns the example's cost."""
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n1 = sizes[1]
    top = u_off[L - 1]
    n_L = sizes[L]
    if L > 1:
        _activate(z[:n1], a[:n1], n1, act)
    else:
        _output(z[:n1], a[:n1], out)
    _forward_rest(params, sizes, w_off, b_off, u_off, z, a, sa, act, out)
    cost = _cost(z[top : top + n_L], y, out)
    aL = a[top : top + n_L]
    dzL = dz[top : top + n_L]
    for j in range(n_L):
        dzL[j] = aL[j] - y[j]
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
        _times_derivative(dp, z[up : up + n_in], ap, n_in, act)
    gb = grad[b_off[0] : b_off[0] + n1]
    for j in range(n1):
        gb[j] += scale * dz[j]
    return cost


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


@jit_vec
def _batch_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blocked):
    """Mini-batch gradient descent over ``order``; returns ``(total cost, resume)``.

    ``resume`` is −1, or the position in ``order`` where the batch starts whose
    step this kernel could not prove safe (not applied).  With ``blocked``, W[1]
    x and dW[1] are handled four examples per pass over W[1] (the weights do not
    change inside a batch, so no corrections are needed).
    """
    params = _borrowed(params)
    X = _borrowed(X)
    Y = _borrowed(Y)
    sizes = _borrowed(sizes)
    order = _borrowed(order)
    offs = offsets(sizes)
    w_off, b_off, u_off = _borrowed(offs[0]), _borrowed(offs[1]), _borrowed(offs[2])
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
    grad_own = np.zeros_like(params)
    grad = _borrowed(grad_own)
    sa_own = np.empty(L, np.float64)
    sa = _borrowed(sa_own)
    wb_own = np.empty(L, np.float64)
    wb = _borrowed(wb_own)
    bb_own = np.empty(L, np.float64)
    bb = _borrowed(bb_own)
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    lr64 = np.float64(lr)
    n0 = sizes[0]
    n1 = sizes[1]
    P_own = np.zeros((K, n0), params.dtype)
    P = _borrowed(P_own)
    Q_own = np.zeros((K, n0), params.dtype)
    Q = _borrowed(Q_own)
    C_own = np.zeros((K, n1), params.dtype)
    C = _borrowed(C_own)
    Zp_own = np.empty((K, n1), params.dtype)
    Zp = _borrowed(Zp_own)
    b1 = params[b_off[0] : b_off[0] + n1]
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        scale = T(1) / T(stop - start)
        batch_cost = 0.0
        if blocked:
            for t0 in range(start, stop, K):
                nb = min(K, stop - t0)
                P, Q = Q, P
                for s in range(K):
                    if s < nb:
                        xs = X[order[t0 + s]]
                        for k in range(n0):
                            Q[s, k] = xs[k]
                    else:
                        for k in range(n0):
                            Q[s, k] = T(0)
                _block_pass_grad(params, grad, n0, n1, C, P, Q, Zp)
                for s in range(K):
                    for j in range(n1):
                        C[s, j] = T(0)
                for tt in range(nb):
                    i = order[t0 + tt]
                    for j in range(n1):
                        z[j] = b1[j] + Zp[tt, j]
                    batch_cost += _batch_example(
                        params, grad, sizes, w_off, b_off, u_off, X[i], Y[i], z, a, dz, sa, scale, act, out
                    )
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
                batch_cost += _batch_example(
                    params, grad, sizes, w_off, b_off, u_off, x, Y[i], z, a, dz, sa, scale, act, out
                )
                for j in range(n1):
                    G = grad[j * n0 : (j + 1) * n0]
                    g = scale * dz[j]
                    for k in range(n0):
                        G[k] += g * x[k]
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
            _alive(offs[0], offs[1], offs[2], z_own, a_own, dz_own, grad_own, sa_own, wb_own, bb_own, P_own, Q_own, C_own, Zp_own)
            return total, start
        # W −= α dW, b −= α db; dW, db back to zero for the next batch
        for p in range(params.shape[0]):
            params[p] -= lr * grad[p]
            grad[p] = T(0)
        total += batch_cost
    _alive(offs[0], offs[1], offs[2], z_own, a_own, dz_own, grad_own, sa_own, wb_own, bb_own, P_own, Q_own, C_own, Zp_own)
    return total, -1


# ================================================================ mini-batch, threads


@jit_inner
def _rows_times_inputs(params, n0, j0, j1, Xb, nb, b1, Z1):
    """Z1[t, j] = W[1]_j · Xb[t] + b[1]_j for rows j in [j0, j1), examples t < nb
    (two rows and four examples at a time share their loads)."""
    T = params.dtype.type
    for j in range(j0, j1, 2):
        r1 = j + 1 if j + 1 < j1 else j
        W0 = params[j * n0 : (j + 1) * n0]
        W1 = params[r1 * n0 : (r1 + 1) * n0]
        for t in range(0, nb, 4):
            t1 = t + 1 if t + 1 < nb else t
            t2 = t + 2 if t + 2 < nb else t
            t3 = t + 3 if t + 3 < nb else t
            x0, x1, x2, x3 = Xb[t], Xb[t1], Xb[t2], Xb[t3]
            a0 = a1 = a2 = a3 = T(0)
            e0 = e1 = e2 = e3 = T(0)
            for k in range(n0):
                w = W0[k]
                v = W1[k]
                q = x0[k]
                a0 += w * q
                e0 += v * q
                q = x1[k]
                a1 += w * q
                e1 += v * q
                q = x2[k]
                a2 += w * q
                e2 += v * q
                q = x3[k]
                a3 += w * q
                e3 += v * q
            Z1[t3, j], Z1[t2, j], Z1[t1, j], Z1[t, j] = a3 + b1[j], a2 + b1[j], a1 + b1[j], a0 + b1[j]
            Z1[t3, r1], Z1[t2, r1], Z1[t1, r1], Z1[t, r1] = e3 + b1[r1], e2 + b1[r1], e1 + b1[r1], e0 + b1[r1]


@jit_inner
def _grad_rows(grad, n0, j0, j1, Xb, nb, D1, rowsum):
    """dW[1]_j = Σ_t D1[t, j] Xb[t] (overwritten) and rowsum[j] = Σ|dW[1]_j| for rows j in
    [j0, j1) (two rows and four examples at a time share their loads)."""
    T = grad.dtype.type
    for j in range(j0, j1, 2):
        two = j + 1 < j1
        r1 = j + 1 if two else j
        G0 = grad[j * n0 : (j + 1) * n0]
        G1 = grad[r1 * n0 : (r1 + 1) * n0]
        for k in range(n0):
            G0[k] = T(0)
            G1[k] = T(0)
        for t in range(0, nb, 4):
            t1 = t + 1 if t + 1 < nb else t
            t2 = t + 2 if t + 2 < nb else t
            t3 = t + 3 if t + 3 < nb else t
            c00 = D1[t, j]
            c01 = D1[t1, j] if t1 > t else T(0)
            c02 = D1[t2, j] if t2 > t else T(0)
            c03 = D1[t3, j] if t3 > t else T(0)
            c10 = D1[t, r1] if two else T(0)
            c11 = D1[t1, r1] if two and t1 > t else T(0)
            c12 = D1[t2, r1] if two and t2 > t else T(0)
            c13 = D1[t3, r1] if two and t3 > t else T(0)
            x0, x1, x2, x3 = Xb[t], Xb[t1], Xb[t2], Xb[t3]
            for k in range(n0):
                p0, p1, p2, p3 = x0[k], x1[k], x2[k], x3[k]
                G0[k] += (c00 * p0 + c01 * p1) + (c02 * p2 + c03 * p3)
                G1[k] += (c10 * p0 + c11 * p1) + (c12 * p2 + c13 * p3)
        rowsum[j] = _abs_sum(G0, n0)
        if two:
            rowsum[r1] = _abs_sum(G1, n0)


#: Rows of W[1] per parallel task (the split never changes a result: rows are independent).
ROWS_PER_TASK = 8


@njit(**JIT_PARALLEL)
def _batch_epoch_threads(params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    """Mini-batch gradient descent with W[1]'s work spread over threads by rows.

    Per batch: Z[1] = W[1] X_bᵀ + b[1] (parallel over rows of W[1]); the rest of each
    example's forward and backward pass, in order, on one thread; dW[1] = dZ[1]ᵀ X_b
    (parallel over rows); the step bound (sums in a fixed order); the update.  Every
    row's arithmetic is the same whatever thread runs it, so the result is
    bit-identical for any number of threads.  Returns ``(total cost, resume)``.
    """
    w_off, b_off, u_off = offsets(sizes)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n_units = u_off[L - 1] + sizes[L]
    z = np.empty(n_units, params.dtype)
    a = np.empty(n_units, params.dtype)
    dz = np.empty(n_units, params.dtype)
    grad = np.zeros_like(params)
    sa = np.empty(L, np.float64)
    wb = np.empty(L, np.float64)
    bb = np.empty(L, np.float64)
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    lr64 = np.float64(lr)
    n0 = sizes[0]
    n1 = sizes[1]
    B = min(batch_size, order.shape[0])
    Xb = np.empty((B, n0), params.dtype)
    Z1 = np.empty((B, n1), params.dtype)
    D1 = np.empty((B, n1), params.dtype)
    rowsum = np.empty(n1, np.float64)
    b1 = params[b_off[0] : b_off[0] + n1]
    n_tasks = (n1 + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        nb = stop - start
        scale = T(1) / T(nb)
        for t in range(nb):
            xs = X[order[start + t]]
            for k in range(n0):
                Xb[t, k] = xs[k]
        for task in prange(n_tasks):
            j0 = task * ROWS_PER_TASK
            _rows_times_inputs(params, n0, j0, min(j0 + ROWS_PER_TASK, n1), Xb, nb, b1, Z1)
        batch_cost = 0.0
        for t in range(nb):
            i = order[start + t]
            for j in range(n1):
                z[j] = Z1[t, j]
            batch_cost += _batch_example(
                params, grad, sizes, w_off, b_off, u_off, X[i], Y[i], z, a, dz, sa, scale, act, out
            )
            for j in range(n1):
                D1[t, j] = scale * dz[j]
        for task in prange(n_tasks):
            j0 = task * ROWS_PER_TASK
            _grad_rows(grad, n0, j0, min(j0 + ROWS_PER_TASK, n1), Xb, nb, D1, rowsum)
        # Step bound (sums in a fixed order): max|W − α dW| ≤ max|W| + α Σ|dW| per layer.
        safe = np.isfinite(batch_cost)
        for l in range(L):
            nw = sizes[l + 1] * sizes[l]
            if l == 0:
                gw = 0.0
                for j in range(n1):
                    gw += rowsum[j]
            else:
                gw = _abs_sum(grad[w_off[l] : w_off[l] + nw], nw)
            gb = _abs_sum(grad[b_off[l] : b_off[l] + sizes[l + 1]], sizes[l + 1])
            safe = safe and (wb[l] + lr64 * gw <= limit) and (bb[l] + lr64 * gb <= limit)
            wb[l] += lr64 * gw
            bb[l] += lr64 * gb
        if not safe:
            return total, start
        # W −= α dW; dW[l ≥ 2] and all db back to zero (dW[1] is overwritten each batch)
        for task in prange(n_tasks):
            j0 = task * ROWS_PER_TASK
            Wt = params[j0 * n0 : min(j0 + ROWS_PER_TASK, n1) * n0]
            Gt = grad[j0 * n0 : min(j0 + ROWS_PER_TASK, n1) * n0]
            for k in range(Wt.shape[0]):
                Wt[k] -= lr * Gt[k]
        for p in range(n0 * n1, params.shape[0]):
            params[p] -= lr * grad[p]
            grad[p] = T(0)
        total += batch_cost
    return total, -1


# ========================================================================= wrapper

#: Per-example SGD defers W[1]'s updates over blocks (:func:`_sgd_epoch_blocked`),
#: and mini-batches handle W[1] four examples per pass, when W[1] has at least this
#: many weights (below, the block bookkeeping costs more than the saved passes).
BLOCKED_MIN_WEIGHTS = 1024


#: Mini-batches of at least this many examples, on nets whose W[1] has at least
#: :data:`THREADED_MIN_WEIGHTS` weights, use :func:`_batch_epoch_threads` when Numba has
#: more than one thread (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``); smaller
#: problems do not gain from a second thread (measured: 33-37-3 at batch 64, 1.0x).
THREADED_MIN_BATCH = 64
THREADED_MIN_WEIGHTS = 16384


def train_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, threads=None) -> tuple[float, int]:
    """One epoch with the fast kernels; the same arguments and result as
    :func:`fastbp.kernels._train_epoch` (``(J, failed)``), for built-in activations.

    If the fast kernel stops before a step it cannot prove safe, the rest of the
    epoch runs in the reference kernel, which checks that step exactly.
    ``threads``: ``True`` runs mini-batches in :func:`_batch_epoch_threads` (its
    result is bit-identical whatever the number of threads), ``False`` never;
    ``None`` (default) when Numba has more than one thread and the batch and W[1]
    are large enough (:data:`THREADED_MIN_BATCH`, :data:`THREADED_MIN_WEIGHTS`).
    """
    m = order.shape[0]
    limit = float(np.finfo(params.dtype).max) / 4.0
    if threads is None:
        import numba

        threads = (
            numba.get_num_threads() > 1
            and batch_size >= THREADED_MIN_BATCH
            and sizes[0] * sizes[1] >= THREADED_MIN_WEIGHTS
        )
    if batch_size == 1 and sizes[0] * sizes[1] >= BLOCKED_MIN_WEIGHTS and sizes[0] >= BLOCK:
        total, resume = _sgd_epoch_blocked(params, sizes, X, Y, order, lr, act, out, limit)
    elif batch_size == 1:
        total, resume = _sgd_epoch(params, sizes, X, Y, order, lr, act, out, limit)
    elif threads and batch_size > 1:
        total, resume = _batch_epoch_threads(params, sizes, X, Y, order, batch_size, lr, act, out, limit)
    else:
        blocked = sizes[0] * sizes[1] >= BLOCKED_MIN_WEIGHTS
        total, resume = _batch_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blocked)
    if resume < 0:
        return total / m, -1
    from .kernels import BUILTIN

    rest = np.ascontiguousarray(order[resume:])
    J_rest, failed = BUILTIN._train_epoch(params, sizes, X, Y, rest, batch_size, lr, act, out)
    total += J_rest * rest.shape[0]
    return total / m, (-1 if failed < 0 else resume // batch_size + failed)
