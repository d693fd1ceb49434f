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
* **Mini-batches as matrices** (W[1] ≥ :data:`TILED_MIN_WEIGHTS` weights),
  :func:`_batch_epoch_tiled`: Z[1] = X_b W[1]ᵀ and dW[1] = dZ[1]ᵀ X_b by 4 × 4
  register tiles (rows of W[1] × examples), the rest per example.
* **Threads**, :func:`_batch_epoch_threads`: the same function as
  :func:`_batch_epoch_tiled` compiled with ``parallel=True``: its loops over tiles of
  examples, over rows of dW[l] and over the update are spread over threads; every
  element is computed the same way by whichever thread, so the result is
  bit-identical for any number of threads.
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

import types

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


# inlined at Numba-IR level: LLVM then sees the views' NULL meminfo in the caller and drops
# their reference counting altogether (called, it keeps a null-checked call per view:
# per-example SGD on 5-8-3 measured 0.93x in two runs)
@njit(**JIT_VEC, inline="always")
def _borrow_epoch(params, sizes, X, Y, order):
    """An epoch kernel's arguments as borrowed views (:func:`_borrowed`), and the layer
    offsets: ``(params, sizes, X, Y, order, offs, w_off, b_off, u_off)``.  ``offs`` is
    the offsets' owner: the caller keeps it alive to each exit (:func:`_alive`)."""
    offs = offsets(sizes)
    return (_borrowed(params), _borrowed(sizes), _borrowed(X), _borrowed(Y), _borrowed(order), offs,
            _borrowed(offs[0]), _borrowed(offs[1]), _borrowed(offs[2]))


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


# inlined at Numba-IR level into both callers (the same machine code as before it was shared)
@njit(**JIT_VEC, inline="always")
def _forward_and_output_delta(params, sizes, w_off, b_off, u_off, y, z, a, dz, sa, act, out):
    """One example of a mini-batch, given its Z[1] in ``z``: the rest of the forward pass
    (A[1] = g(Z[1]) … A[L]) and dZ[L] = A[L] − Y into ``dz``.  Returns the example's cost."""
    L = sizes.shape[0] - 1
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
    return cost


@jit_inner
def _batch_example(params, grad, sizes, w_off, b_off, u_off, x, y, z, a, dz, sa, scale, act, out):
    """One example of a mini-batch, given its Z[1] in ``z``: the rest of the forward
    pass, and dW[l] += scale · dZ[l] A[l−1]ᵀ, db[l] += scale · dZ[l] into ``grad`` for
    l ≥ 2, db[1] too; dZ[1] is left in ``dz[:n_1]`` (dW[1] is the caller's).
    Returns the example's cost."""
    L = sizes.shape[0] - 1
    T = params.dtype.type
    n1 = sizes[1]
    cost = _forward_and_output_delta(params, sizes, w_off, b_off, u_off, y, z, a, dz, sa, act, out)
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
        np.zeros_like(params),
        np.empty(L, np.float64),
        np.zeros((BLOCK, n0), params.dtype),
        np.zeros((BLOCK, n0), params.dtype),
        np.zeros((BLOCK, n1), params.dtype),
        np.empty((BLOCK, n1), params.dtype),
    )


# inlined at Numba-IR level into the epoch kernels, so that calling it per batch costs
# nothing on tiny nets (its own callees stay calls)
@njit(**JIT_VEC, inline="always")
def _batch_gradient(params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, act, out, blocked,
                    z, a, dz, sa, P, Q, C, Zp):
    """grad += the mean gradient of the costs of the examples ``order[start:stop]``; returns
    the sum of their costs (float64).

    The building block of every mini-batch epoch (:func:`_batch_epoch`, and the
    optimizers' :func:`fastbp.fast_optimizers._batch_epoch_opt`): ``grad`` is the flat
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
    scale = T(1) / T(stop - start)
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
    return batch_cost


@jit_vec
def _batch_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blocked):
    """Mini-batch gradient descent over ``order``; returns ``(total cost, resume)``.

    ``resume`` is −1, or the position in ``order`` where the batch starts whose
    step this kernel could not prove safe (not applied).  Each batch's gradient is
    :func:`_batch_gradient` (``blocked``: W[1] four examples per pass).
    """
    params, sizes, X, Y, order, offs, w_off, b_off, u_off = _borrow_epoch(params, sizes, X, Y, order)
    L = sizes.shape[0] - 1
    T = params.dtype.type
    ws = _batch_workspace(params, sizes, u_off)
    z, a, dz, grad, sa = _borrowed(ws[0]), _borrowed(ws[1]), _borrowed(ws[2]), _borrowed(ws[3]), _borrowed(ws[4])
    P, Q, C, Zp = _borrowed(ws[5]), _borrowed(ws[6]), _borrowed(ws[7]), _borrowed(ws[8])
    wb_own = np.empty(L, np.float64)
    wb = _borrowed(wb_own)
    bb_own = np.empty(L, np.float64)
    bb = _borrowed(bb_own)
    _layer_bounds(params, sizes, w_off, b_off, wb, bb)
    lr64 = np.float64(lr)
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_cost = _batch_gradient(
            params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, act, out, blocked,
            z, a, dz, sa, P, Q, C, Zp,
        )
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
            _alive(offs[0], offs[1], offs[2], ws, wb_own, bb_own)
            return total, start
        # W −= α dW, b −= α db; dW, db back to zero for the next batch
        for p in range(params.shape[0]):
            params[p] -= lr * grad[p]
            grad[p] = T(0)
        total += batch_cost
    _alive(offs[0], offs[1], offs[2], ws, wb_own, bb_own)
    return total, -1


# ================================================== mini-batch as matrices (one or more threads)

#: The W[1] products of :func:`_batch_epoch_tiled` work on register tiles of this many
#: rows of W[1] × this many examples (16 accumulators, which LLVM keeps in vector registers).
TILE = 4

#: Rows of dW[1] per task of the threaded kernel (a multiple of :data:`TILE`; the split
#: never changes a result: every row is computed the same way by whichever thread).
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
    n1 = sizes[1]
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
        _times_derivative(dp, z[up : up + n_in], a[up : up + n_in], n_in, act)
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
                costs[s] = _example_pass(cur, sizes, w_off, b_off, u_off, Y[order[start + s]], Zs[s], As[s], dzs,
                                         SA[s], act, out)
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


def _twin(body, name: str, options: dict):
    """``body`` compiled with ``options`` under its own name (and so its own on-disk cache
    entry: Numba's cache is keyed by the function's qualified name, not its options)."""
    fn = types.FunctionType(body.__code__, body.__globals__, name, body.__defaults__, body.__closure__)
    fn.__qualname__ = name
    fn.__doc__ = body.__doc__
    return njit(**options)(fn)


#: One thread (``prange`` runs as ``range``).
_batch_epoch_tiled = _twin(_batch_epoch_tiled_body, "_batch_epoch_tiled", JIT_VEC)
#: The same epoch with its ``prange`` loops spread over Numba's threads.
_batch_epoch_threads = _twin(_batch_epoch_tiled_body, "_batch_epoch_threads", JIT_PARALLEL)


# ========================================================================= wrapper

#: Per-example SGD defers W[1]'s updates over blocks (:func:`_sgd_epoch_blocked`),
#: and mini-batches handle W[1] four examples per pass, when W[1] has at least this
#: many weights (below, the block bookkeeping costs more than the saved passes).
BLOCKED_MIN_WEIGHTS = 1024


#: Per-example SGD on nets with one hidden layer runs :mod:`fastbp.fast_tiny` (hidden units
#: in registers, a short dependency chain from one example's update to the next one's
#: forward pass) where measured faster: :func:`fastbp.fast_tiny._tiny4_epoch` for ≤ 4 hidden
#: units, one σ or identity output and n_0·n_1 ≤ TINY4_MAX_WEIGHTS; else
#: :func:`fastbp.fast_tiny._tiny_epoch` for ≤ TINY_MAX_HIDDEN units and ≤ TINY_MAX_INPUTS
#: inputs (at 32-8-1 or 60-16-3 its per-input lane loops cost more than they save: 0.7-0.9×).
TINY_MAX_HIDDEN = 16
TINY_MAX_INPUTS = 16
TINY4_MAX_WEIGHTS = 512


def tiny_kernel(sizes, out) -> int:
    """4 for :func:`fastbp.fast_tiny._tiny4_epoch`, 1 for ``_tiny_epoch``, 0 for neither."""
    if len(sizes) != 3:
        return 0
    if sizes[1] <= 4 and sizes[2] == 1 and out != OUT_SOFTMAX and sizes[0] * sizes[1] <= TINY4_MAX_WEIGHTS:
        return 4
    return 1 if sizes[1] <= TINY_MAX_HIDDEN and sizes[0] <= TINY_MAX_INPUTS else 0


#: Mini-batches of at least this many examples, on nets whose W[1] has at least
#: :data:`THREADED_MIN_WEIGHTS` weights, use :func:`_batch_epoch_threads` when Numba has
#: more than one thread (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``); smaller
#: problems do not gain from a second thread (measured: 33-37-3 at batch 64, 1.0x).
THREADED_MIN_BATCH = 64
THREADED_MIN_WEIGHTS = 16384

#: Mini-batches on nets whose W[1] has at least this many weights run, on one thread,
#: in :func:`_batch_epoch_tiled` (the batch as matrices, 4 × 4 register tiles).
TILED_MIN_WEIGHTS = 16384

#: The tiled and threaded mini-batch kernels keep a workspace of batch × (n_0 + 3 Σ n_l)
#: numbers (the packed inputs and every example's Z, A, dZ); batches larger than this
#: (full-batch training on a large data set) run :func:`_batch_epoch` instead, whose
#: workspace does not grow with the batch, so an epoch's memory stays the data plus a
#: small multiple of the parameters whatever m is.
TILED_MAX_BATCH = 1024


def train_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, threads=None) -> tuple[float, int]:
    """One epoch with the fast kernels; the same arguments and result as
    :func:`fastbp.kernels._train_epoch` (``(J, failed)``), for built-in activations.

    If the fast kernel stops before a step it cannot prove safe, the rest of the
    epoch runs in the reference kernel, which checks that step exactly.
    ``threads``: ``True`` runs mini-batches in :func:`_batch_epoch_threads` (its
    result is bit-identical whatever the number of threads), ``False`` never;
    ``None`` (default) when Numba has more than one thread and the batch and W[1]
    are large enough (:data:`THREADED_MIN_BATCH`, :data:`THREADED_MIN_WEIGHTS`).
    Batches over :data:`TILED_MAX_BATCH` examples always run :func:`_batch_epoch`
    (bounded memory).
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
    elif batch_size == 1 and tiny_kernel(sizes, out):
        from .fast_tiny import tiny_epoch  # compiled only when a tiny net trains

        total, resume = tiny_epoch(params, sizes, X, Y, order, lr, act, out, limit)
    elif batch_size == 1:
        total, resume = _sgd_epoch(params, sizes, X, Y, order, lr, act, out, limit)
    elif batch_size > TILED_MAX_BATCH:
        blocked = sizes[0] * sizes[1] >= BLOCKED_MIN_WEIGHTS
        total, resume = _batch_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit, blocked)
    elif threads:
        # (Numba's default static split of each loop; dynamic scheduling with
        # numba.parallel_chunksize(1) measured 4-8x slower on this shared machine.)
        total, resume = _batch_epoch_threads(params, sizes, X, Y, order, batch_size, lr, act, out, limit)
    elif sizes[0] * sizes[1] >= TILED_MIN_WEIGHTS:
        total, resume = _batch_epoch_tiled(params, sizes, X, Y, order, batch_size, lr, act, out, limit)
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
