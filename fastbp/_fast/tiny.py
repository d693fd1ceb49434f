"""Per-example SGD for nets with one small hidden layer (n_0-n_1-n_2).

Which nets (measured: where these kernels beat :func:`fastbp._fast.sgd._sgd_epoch`): the
two rows of :data:`fastbp._dispatch.FAST_EPOCHS` for them, i.e. :func:`_tiny4_epoch` for
n_1 ≤ 4, one σ or identity output and n_0·n_1 ≤ 512, :func:`_tiny_epoch` for
n_1 ≤ :data:`LANES` and n_0 ≤ 16.  Each is compiled only when such a net trains.

At 2-4-1 an example is a few dozen flops; what decides the speed is the chain of
*latencies* from one example's update to the next example's forward pass:
W[1] ← update → Z[1] → g → Z[2] → σ → dZ[2] → dZ[1] → W[1] ← … .
These kernels shorten that chain (measured: ``tools/tiny_chain.py``,
``docs/performance.md``):

* **Registers, not the parameter buffer**: the parameters are copied once into
  small zero-padded local arrays and written back at the end.  :func:`_tiny_epoch`
  keeps W[1]ᵀ (n_0 × H), b[1] and W[2] (n_2 × H) in H lanes (n_1 rounded up to 4
  in float32, to 16 in float64) and runs every per-unit loop over the H lanes, a
  trip count LLVM does not know at compile time, so that it vectorises the loops
  (with a known one it unrolls them and leaves g scalar, a division per lane);
  :func:`_tiny4_epoch` keeps the four units, W[2] and b[2] in scalars.  Padded
  units stay exactly 0 (their rows of W[1], b[1] and columns of W[2] are 0 and
  their A[1] is masked off where g(0) ≠ 0).
* **The next Z[1] off the chain**: with x' the next example,
  W[1]' x' + b[1]' = (W[1] x' + b[1]) − α dZ[1] (xᵀx' + 1): the bracket and xᵀx' + 1
  are computed from the old weights while the current example is still in
  flight (the pending update is applied in the same pass); only the correction
  waits for dZ[1] (the blocked kernel uses the same identity, exact in real
  arithmetic).  In :func:`_tiny4_epoch` the correction is one FMA,
  Z[1] = P − dZ[2]·u with u = (W[2] ∗ α g'(Z[1]))(xᵀx' + 1) prepared before dZ[2] is
  known.
* **Shorter activations, as accurate as the plain kernel's**: :func:`ttanh` and
  :func:`tsigmoid` are :mod:`fastbp.vmath`'s forms (range reduction, a few ulp, relative
  accuracy on the tails, where g′ = 1 − tanh² or σ(1 − σ) is itself a few ulp of 1) with the
  range reduced to [−ln 2/2, ln 2/2] and the polynomial by Estrin's scheme (float32 degree 6-7,
  float64 16: depth 3 or 5, not 8 or 16 dependent FMAs).  The straight-line scalar code of the
  four-unit kernels calls :func:`ttanh_scalar`, :func:`tsigmoid_scalar`: the float32 rational
  tanh of XLA and Eigen (one division, no range reduction: about half the latency) where it is
  accurate enough for g′ (|x| < 3), and the accurate form beyond, behind a branch marked
  unlikely (:func:`_unlikely`; without the mark LLVM computed both arms and selected, and the
  2-4-1 chain lost the rational's gain: ``python tools/tiny_chain.py``, 2-4-1 relu 19.9 ns per
  link against 17.4 ns with it).
* **Cheap bookkeeping**: the divergence bounds are four float64 scalars (Σ|A[1]|
  bounded by n_1 for tanh and σ units instead of summed), the costs are queued
  and summed in chunks, as in :func:`fastbp._fast.sgd._sgd_epoch`.

The divergence contract of :func:`fastbp._plain.loops._train_epoch` holds exactly as in
the other fast kernels (:mod:`fastbp._fast`: the same per-layer bounds, checked before every step, the
same stop-before-the-step and hand-over to the exact kernel): a step whose loss or new
parameters would not be finite is never applied.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload, register_jitable

from .._jit import OVERLOAD_OPTIONS, jit_inline, jit_inner, jit_vec
from ..activations import ACT_IDENTITY, ACT_LEAKY_RELU, ACT_RELU, ACT_SIGMOID, ACT_TANH, LEAKY_SLOPE
from ..losses import OUT_EXP, OUT_IDENTITY, OUT_SIGMOID, OUT_SOFTMAX, cost_loop, flush_costs, output_loop
from ..vmath import _as_float, vexp, vsigmoid
from ._common import COST_CHUNK, COST_SAFE, _abs_max, _abs_sum, _alive, _borrowed, _zeros

__all__ = ["LANES", "ttanh", "tsigmoid"]

#: The most hidden units :func:`_tiny_epoch` takes (the dispatch's ``TINY_MAX_HIDDEN`` is this).
LANES = 16

# tanh(x) ≈ x·p(x²)/q(x²) below TANH_SPLIT, x itself below TANH_TINY: Eigen's and XLA's float32
# rational tanh (no range reduction: about half the latency of ttanh's form), in ttanh_scalar only.
# Its absolute error (up to ~5 ulp of 1) is harmless where tanh′ = 1 − tanh² is large, but not near
# saturation: there g′ is itself a few ulp of 1, and the rational's g′ was off by up to 11x on
# 7 ≤ |x| < 9 against the correctly rounded tanh (it was used on the whole line until 2026-11-29),
# which times raw-scale inputs (|x| ~ 1e4) moved W[1] where the plain kernel's saturated units
# barely move.  Below TANH_SPLIT its g′ is within 6e-5 of the correctly rounded tanh's
# (tests/test_fast_tiny.py, test_float32_tails_are_within_a_few_ulp).
TANH_SPLIT = 3.0
TANH_TINY = 0.0004
# From here on the correctly rounded float32 tanh is exactly ±1 (1 − tanh x ≈ 2e^(−2x) < 2^−25),
# and the kernel returns exactly ±1 (so g′ = 0 exactly, as NumPy's).
TANH_ONE = 9.010913848876953  # the least float32 whose tanh rounds to 1
# e^v = 2^n e^r below 0 (float32 σ): n = round(v / ln 2), r = v − n ln 2 in
# [−ln 2 / 2, ln 2 / 2] (Cody–Waite, vmath's split of ln 2), e^r by its Taylor polynomial of
# degree 7 (truncation error 5e-9) evaluated by Estrin's scheme (depth 3, not 7 dependent FMAs).
# Below EXP_FLUSH e^v is not a normal float32 and is flushed to 0 (vmath's exp flushes from √2
# times higher, below 1.7e-38).
EXP_FLUSH = -87.33654
_E7 = tuple(1.0 / math.factorial(k) for k in range(8))  # e^r
_C6 = tuple(1.0 / math.factorial(k + 1) for k in range(7))  # (e^r − 1)/r
_P = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
_Q = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


def _tanh32(x):
    # tanh|x| = e/(e + 2), e = expm1(2|x|) = 2^n (e^r − 1) + (2^n − 1), r = 2|x| − n ln 2 in
    # [−ln 2 / 2, ln 2 / 2], e^r − 1 = r Σ_k r^k/(k+1)! to degree 6 by Estrin (vmath's form)
    T = np.float32
    ax = abs(x)
    y = T(2) * (ax if ax < T(TANH_ONE) else T(TANH_ONE))
    n = np.floor(y * T(1.4426950408889634) + T(0.5))
    r = (y - n * T(0.693359375)) - n * T(-2.12194440e-4)
    r2 = r * r
    q = ((T(_C6[0]) + T(_C6[1]) * r) + r2 * (T(_C6[2]) + T(_C6[3]) * r)) + (r2 * r2) * (
        (T(_C6[4]) + T(_C6[5]) * r) + r2 * T(_C6[6])
    )
    s = _as_float(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
    e = s * (q * r) + (s - T(1))
    t = e / (e + T(2))
    t = t if ax < T(TANH_ONE) else T(1)
    t = t if x > T(0) else -t
    return t if ax >= T(TANH_TINY) else x  # x below TANH_TINY (keeps −0.0), and NaN


def _sigmoid32(x):
    # sign-split σ with e = e^(−|x|) ∈ (0, 1]: σ(x) = 1/(1 + e) for x ≥ 0, e/(1 + e) below (relative
    # error ~1e-7 on both tails, where ½ tanh(x/2) + ½ was off by 1 ulp of ½: σ(−18) came out 0).
    # e^v = 2^n e^r, n = round(v / ln 2), e^r = Σ_k r^k/k! to degree 7 by Estrin; below EXP_FLUSH
    # e^v is not a normal float32 and is flushed to 0 (vmath: below √2 times that).
    T = np.float32
    v = -abs(x)
    vc = v if v > T(EXP_FLUSH) else T(EXP_FLUSH)
    n = np.floor(vc * T(1.4426950408889634) + T(0.5))
    r = (vc - n * T(0.693359375)) - n * T(-2.12194440e-4)
    r2 = r * r
    p = ((T(_E7[0]) + T(_E7[1]) * r) + r2 * (T(_E7[2]) + T(_E7[3]) * r)) + (r2 * r2) * (
        (T(_E7[4]) + T(_E7[5]) * r) + r2 * (T(_E7[6]) + T(_E7[7]) * r)
    )
    e = p * _as_float(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
    e = e if v >= T(EXP_FLUSH) else T(0)
    e = e if x == x else x  # NaN in, NaN out
    return (T(1) if x >= T(0) else e) / (T(1) + e)


@intrinsic
def _unlikely(typingctx, cond):
    """``cond``, marked as rarely true (``llvm.expect``): LLVM then keeps a branch on it rather
    than computing both arms and selecting (the scalar forms' accurate tails stay off the chain)."""
    if cond != types.boolean:
        return None

    def codegen(context, builder, signature, args):
        bit = builder.trunc(args[0], ir.IntType(1)) if args[0].type != ir.IntType(1) else args[0]
        i1 = ir.IntType(1)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i1, [i1, i1]), "llvm.expect.i1")
        out = builder.call(fn, [bit, ir.Constant(ir.IntType(1), 0)])
        return builder.zext(out, args[0].type) if args[0].type != ir.IntType(1) else out

    return types.boolean(cond), codegen


def _rational_tanh32(x):
    # |x| < TANH_SPLIT: the rational (Estrin: p = (p0 + p1 s) + s²(p2 + p3 s) + s⁴((p4 + p5 s) + s² p6))
    T = np.float32
    s = x * x
    s2 = s * s
    s4 = s2 * s2
    p = ((T(_P[0]) + T(_P[1]) * s) + s2 * (T(_P[2]) + T(_P[3]) * s)) + s4 * ((T(_P[4]) + T(_P[5]) * s) + s2 * T(_P[6]))
    q = (T(_Q[0]) + T(_Q[1]) * s) + s2 * (T(_Q[2]) + T(_Q[3]) * s)
    t = (x * p) / q
    return t if abs(x) >= T(TANH_TINY) else x


_rational_tanh32_jit = register_jitable(_rational_tanh32)
_tanh32_jit = register_jitable(_tanh32)
_sigmoid32_jit = register_jitable(_sigmoid32)


def _tanh32_scalar(x):
    if _unlikely(not (abs(x) < np.float32(TANH_SPLIT))):  # (NaN too)
        return _tanh32_jit(x)
    return _rational_tanh32_jit(x)


def _sigmoid32_scalar(x):
    if _unlikely(not (abs(x) < np.float32(2 * TANH_SPLIT))):  # (NaN too)
        return _sigmoid32_jit(x)
    return np.float32(0.5) * _rational_tanh32_jit(np.float32(0.5) * x) + np.float32(0.5)


def ttanh_scalar(x):
    """tanh for straight-line scalar code (NumPy's outside Numba; float32: the rational below
    TANH_SPLIT, ttanh's form beyond, behind a branch; float64: ttanh's)."""
    return np.tanh(x)


def tsigmoid_scalar(x):
    """σ for straight-line scalar code (NumPy semantics outside Numba; float32: ½ tanh(x/2) + ½ by
    the rational below 2 TANH_SPLIT, tsigmoid's form beyond, behind a branch; float64: tsigmoid's)."""
    return vsigmoid(x)


def ttanh(x):
    """tanh for the tiny kernels (NumPy's outside Numba; inside, vtanh's form with the range reduced
    to [−ln 2/2, ln 2/2] and an Estrin polynomial)."""
    return np.tanh(x)


def tsigmoid(x):
    """σ for the tiny kernels (NumPy semantics outside Numba; inside, vsigmoid's sign-split form
    with an Estrin polynomial)."""
    return vsigmoid(x)


# float64: vmath's range reductions (r ∈ [−ln 2/2, ln 2/2]), with vmath's polynomials (degree 12
# for (e^r − 1)/r, 13 for 2 e^r) evaluated by Estrin's scheme (depth 4 instead of Horner's 12-13
# dependent FMAs: the latency of tanh and σ, not their throughput, sets a tiny net's speed).
_C = tuple(1.0 / math.factorial(k + 1) for k in range(13))  # e^r − 1 = r Σ_k r^k / (k+1)!
_E2 = tuple(2.0 / math.factorial(k) for k in range(14))  # 2 e^r = Σ_k 2 r^k / k!
_LN2_HI, _LN2_LO, _LOG2E = 0.693145751953125, 1.4286068203094172e-06, 1.4426950408889634


@register_jitable
def _estrin(c, r):
    """Σ_k c[k] r^k for 13 or 14 coefficients, by Estrin's scheme (float64)."""
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    f0 = (c[0] + c[1] * r) + r2 * (c[2] + c[3] * r)
    f1 = (c[4] + c[5] * r) + r2 * (c[6] + c[7] * r)
    f2 = (c[8] + c[9] * r) + r2 * (c[10] + c[11] * r)
    f3 = c[12] + c[13] * r if len(c) == 14 else c[12]
    return (f0 + r4 * f1) + r8 * (f2 + r4 * f3)


def _tanh64(x):
    # tanh|x| = e/(e + 2), e = expm1(2|x|) = 2^n (e^r − 1) + (2^n − 1): as fastbp.vmath.vtanh, but n
    # rounded by floor and a conversion (vmath rounds by the shifter: the same n but at exact ties)
    ax = abs(x)
    y2 = 2.0 * (ax if ax < 20.0 else 20.0)
    nf = np.floor(y2 * _LOG2E + 0.5)
    r = (y2 - nf * _LN2_HI) - nf * _LN2_LO
    s = _as_float(np.int64((np.int64(nf) + np.int64(1023)) << np.int64(52)))
    e = s * (_estrin(_C, r) * r) + (s - 1.0)
    t = e / (e + 2.0)
    t = t if x > 0.0 else -t
    return t if ax >= 1e-9 else x  # tanh x = x below 1e-9 (keeps −0.0); NaN too


def _sigmoid64(x):
    # sign-split σ with e = e^(−|x|) = (2 e^r) 2^(n−1) ∈ (0, 1]: as fastbp.vmath.vsigmoid (n by
    # floor and a conversion, as _tanh64)
    nx = -abs(x)
    xc = nx if nx > -1080.0 else -1080.0
    nf = np.floor(xc * _LOG2E + 0.5)
    r = (xc - nf * _LN2_HI) - nf * _LN2_LO
    nc = nf if nf > -1021.0 else -1021.0
    e = _estrin(_E2, r) * _as_float(np.int64((np.int64(nc) + np.int64(1022)) << np.int64(52)))
    e = e if nf >= -1021.0 else 0.0  # e^(−|x|) below √2 · 2^−1022 flushed to 0, as vmath does
    e = e if x == x else x
    d = 1.0 / (1.0 + e)
    return d if x >= 0.0 else e * d


_sigmoid64_jit = register_jitable(_sigmoid64)


@overload(ttanh, jit_options=OVERLOAD_OPTIONS)
def _ov_ttanh(x):
    if x == types.float32:
        return _tanh32
    if x == types.float64:
        return _tanh64
    return None


@overload(ttanh_scalar, jit_options=OVERLOAD_OPTIONS)
def _ov_ttanh_scalar(x):
    if x == types.float32:
        return _tanh32_scalar
    if x == types.float64:
        return _tanh64
    return None


@overload(tsigmoid_scalar, jit_options=OVERLOAD_OPTIONS)
def _ov_tsigmoid_scalar(x):
    if x == types.float32:
        return _sigmoid32_scalar
    if x == types.float64:
        return _sigmoid64
    return None


@overload(tsigmoid, jit_options=OVERLOAD_OPTIONS)
def _ov_tsigmoid(x):
    if x == types.float32:
        return _sigmoid32
    if x == types.float64:
        return _sigmoid64
    return None


# ============================================================================ kernel


@jit_inline
def _lanes_from_params(params, n0, n1, n2, W1T, b1, mask, W2, b2):
    """The parameters into the lane layout of :func:`_tiny_epoch` and :func:`_tiny_batch_epoch`:
    W1T[k, j] = W[1]_jk, b1[j], W2[o, j] = W[2]_oj, b2, and mask[j] = 1 for the n_1 real units
    (the padded lanes, zero on entry, stay zero)."""
    T = params.dtype.type
    w2 = n1 * n0 + n1
    b2o = w2 + n2 * n1
    for j in range(n1):
        mask[j] = T(1)
        b1[j] = params[n1 * n0 + j]
        for k in range(n0):
            W1T[k, j] = params[j * n0 + k]
        for o in range(n2):
            W2[o, j] = params[w2 + o * n1 + j]
    for o in range(n2):
        b2[o] = params[b2o + o]


@jit_inline
def _lanes_to_params(params, n0, n1, n2, W1T, b1, W2, b2):
    """The lane layout back into the parameter buffer (:func:`_lanes_from_params`'s inverse)."""
    w2 = n1 * n0 + n1
    b2o = w2 + n2 * n1
    for j in range(n1):
        params[n1 * n0 + j] = b1[j]
        for k in range(n0):
            params[j * n0 + k] = W1T[k, j]
        for o in range(n2):
            params[w2 + o * n1 + j] = W2[o, j]
    for o in range(n2):
        params[b2o + o] = b2[o]


@jit_vec
def _tiny_epoch(params, sizes, X, Y, order, lr, act, out, limit):
    """Per-example SGD over ``order`` for an n_0-n_1-n_2 net (n_1 ≤ LANES); returns
    ``(total cost, resume)`` as :func:`fastbp._fast.sgd._sgd_epoch` does."""
    T = params.dtype.type
    n0, n1, n2 = sizes[0], sizes[1], sizes[2]
    # Lanes per hidden layer: n_1 rounded up to a multiple of q (4 in float32, 16 in float64:
    # measured fastest at 2-4-1).  Not a compile-time constant, so LLVM vectorises the lane
    # loops as loops (a constant trip count gets them unrolled, leaving e.g. one scalar
    # division per lane in g).
    q = 4 if params.itemsize == 4 else 16
    H = (n1 + q - 1) // q * q
    Hc = H
    X = _borrowed(X)
    Y = _borrowed(Y)
    order = _borrowed(order)
    w1, b1o = 0, n1 * n0
    w2 = b1o + n1
    b2o = w2 + n2 * n1
    # ---- the exact bounds of the divergence guard (see fastbp._fast), from the parameters
    wb0 = _abs_max(params[w1 : w1 + n1 * n0])
    bb0 = _abs_max(params[b1o : b1o + n1])
    wb1 = _abs_max(params[w2 : w2 + n2 * n1])
    bb1 = _abs_max(params[b2o : b2o + n2])
    lr64 = np.float64(lr)
    # ---- the parameters, padded to H lanes: W1T[k, j] = W[1]_jk, W2[o, j] = W[2]_oj, and the
    # per-example vectors; four allocations per call (rows of one array each), none per example
    lanes_own = _zeros((n0 + n2 + 6, H), params.dtype)
    lanes = _borrowed(lanes_own)
    W1T = lanes[:n0]
    W2 = lanes[n0 : n0 + n2]
    r = n0 + n2
    b1, mask, z1, a1, gp, c = lanes[r], lanes[r + 1], lanes[r + 2], lanes[r + 3], lanes[r + 4], lanes[r + 5]
    # (gp = α g'(Z[1]); c = the pending α dZ[1] of the previous example)
    outs_own = _zeros((4, n2), params.dtype)
    outs = _borrowed(outs_own)
    b2, z2, a2, d2 = outs[0], outs[1], outs[2], outs[3]
    queue_own = np.empty((2, COST_CHUNK * n2), params.dtype)
    queue = _borrowed(queue_own)
    Zc, Yc = queue[0], queue[1]
    cnt_own = _zeros(1, np.int64)
    cnt = _borrowed(cnt_own)
    _lanes_from_params(params, n0, n1, n2, W1T, b1, mask, W2, b2)
    m = order.shape[0]
    total = 0.0
    resume = -1
    nq = 0  # examples whose cost is queued in Zc, Yc
    # sa1 = Σ|A[1]|: tanh and σ units are bounded by 1, others are summed per example
    bounded = act == ACT_TANH or act == ACT_SIGMOID  # the bounded codes (|g| ≤ 1), written out: see below
    xp = X[order[0]]  # the previous example (c = 0: no pending update yet)
    for t in range(m):
        i = order[t]
        x = X[i]
        y = Y[i]
        # ---- Z[1] = (W[1] x + b[1]) − c (x_prevᵀ x + 1), the bracket from the weights before the
        # previous example's pending update c x_prevᵀ, which is applied in the same passes
        G = T(1)
        sa0 = 0.0
        for k in range(n0):
            G += xp[k] * x[k]
            sa0 += abs(np.float64(x[k]))
        for j in range(Hc):
            z1[j] = b1[j]
            b1[j] -= c[j]
        for k in range(n0):
            Wk = W1T[k]
            xk = x[k]
            xpk = xp[k]
            for j in range(Hc):
                w = Wk[j]
                z1[j] += w * xk
                Wk[j] = w - c[j] * xpk
        # ---- A[1] = g(Z[1]) (padded lanes masked to 0), α g'(Z[1])
        if act == ACT_TANH:
            for j in range(H):
                a = ttanh(z1[j] - c[j] * G)
                a1[j] = a
                gp[j] = lr * (T(1) - a * a)
        elif act == ACT_SIGMOID:
            for j in range(H):
                a = tsigmoid(z1[j] - c[j] * G)
                a1[j] = a * mask[j]
                gp[j] = lr * (a * (T(1) - a))
        elif act == ACT_RELU:
            for j in range(H):
                zj = z1[j] - c[j] * G
                a1[j] = zj if zj > T(0) else T(0)
                gp[j] = lr if zj > T(0) else T(0)
        elif act == ACT_LEAKY_RELU:
            for j in range(H):
                zj = z1[j] - c[j] * G
                a1[j] = zj if zj > T(0) else zj * T(LEAKY_SLOPE)
                gp[j] = lr if zj > T(0) else lr * T(LEAKY_SLOPE)
        elif act == ACT_IDENTITY:
            for j in range(H):
                a1[j] = z1[j] - c[j] * G
                gp[j] = lr
        else:
            raise ValueError("_tiny_epoch: unknown activation code")
        if bounded:
            sa1 = np.float64(n1)
        else:
            sT = T(0)
            for j in range(Hc):
                sT += abs(a1[j])
            sa1 = np.float64(sT)  # (an overflow to inf makes the step unsafe)
        # ---- Z[2] = W[2] A[1] + b[2], A[2]
        for o in range(n2):
            W2o = W2[o]
            s = b2[o]
            for j in range(Hc):
                s += W2o[j] * a1[j]
            z2[o] = s
        if out == OUT_SIGMOID:
            for o in range(n2):
                a2[o] = tsigmoid(z2[o])
        elif out == OUT_SOFTMAX:
            zmax = z2[0]
            for o in range(1, n2):
                zmax = z2[o] if z2[o] > zmax else zmax
            tot = T(0)
            for o in range(n2):
                e = vexp(z2[o] - zmax)
                a2[o] = e
                tot += e
            inv = T(1) / tot
            for o in range(n2):
                a2[o] *= inv
        elif out == OUT_IDENTITY:
            for o in range(n2):
                a2[o] = z2[o]
        elif out == OUT_EXP:
            for o in range(n2):
                a2[o] = vexp(z2[o])
        else:
            raise ValueError("_tiny_epoch: unknown output code")
        # ---- the cost (provably finite: queued; else now), dZ[2] = A[2] − Y, the step bound
        sz = 0.0
        s2 = 0.0
        for o in range(n2):
            sz += abs(np.float64(z2[o])) + abs(np.float64(y[o]))
            d = a2[o] - y[o]
            d2[o] = d
            s2 += abs(np.float64(d))
        deferred = sz <= COST_SAFE
        cost = 0.0 if deferred else cost_loop(z2, y, out)
        u1 = lr64 * s2
        u0 = u1 * wb1 * n1  # α Σ|dZ[1]| ≤ α n_1 max|W[2]| Σ|dZ[2]|  (|g'| ≤ 1)
        nwb1 = wb1 + u1 * sa1
        nbb1 = bb1 + u1
        nwb0 = wb0 + u0 * sa0
        nbb0 = bb0 + u0
        if not (np.isfinite(cost) and nwb1 <= limit and nbb1 <= limit and nwb0 <= limit and nbb0 <= limit):
            # not provably safe: undo this pass's application of the pending update? No: it
            # belongs to the previous (safe) example and stays applied; stop before this step
            resume = t
            for j in range(H):
                c[j] = T(0)
            break
        wb1, bb1, wb0, bb0 = nwb1, nbb1, nwb0, nbb0
        if deferred:
            base = nq * n2
            for o in range(n2):
                Zc[base + o] = z2[o]
                Yc[base + o] = y[o]
            nq += 1
            if nq == COST_CHUNK:
                cnt[0] = nq
                total += flush_costs(Zc, Yc, cnt, n2, out)
                nq = 0
        else:
            total += cost
        # ---- backward: c = α dZ[1] = (W[2]ᵀ dZ[2]) ∗ α g'(Z[1]) from the old W[2]; W[2], b[2] updated
        W20 = W2[0]
        d = d2[0]
        cd = lr * d
        for j in range(Hc):
            w = W20[j]
            c[j] = d * (w * gp[j])
            W20[j] = w - cd * a1[j]
        b2[0] -= cd
        for o in range(1, n2):
            W2o = W2[o]
            d = d2[o]
            cd = lr * d
            for j in range(Hc):
                w = W2o[j]
                c[j] += d * (w * gp[j])
                W2o[j] = w - cd * a1[j]
            b2[o] -= cd
        xp = x
    # ---- the pending W[1], b[1] update (c = 0 after a stop), then everything back into params
    for k in range(n0):
        Wk = W1T[k]
        xk = xp[k]
        for j in range(Hc):
            Wk[j] -= c[j] * xk
    for j in range(Hc):
        b1[j] -= c[j]
    _lanes_to_params(params, n0, n1, n2, W1T, b1, W2, b2)
    cnt[0] = nq
    total += flush_costs(Zc, Yc, cnt, n2, out)
    _alive(lanes_own, outs_own, queue_own, cnt_own)
    return total, resume


# ==================================================== n_1 ≤ 4 units, one output: all in registers


@jit_inline
def _four_bounds(params, n0, n1):
    """For the four-unit kernels: b[2]'s offset in ``params`` and the step bound's starting
    max|W[1]|, max|b[1]|, max|W[2]|, |b[2]| (float64; inf for a non-finite b[2])."""
    b1o = n1 * n0
    w2 = b1o + n1
    b2o = w2 + n1
    wb0 = _abs_max(params[:b1o])
    bb0 = _abs_max(params[b1o:w2])
    wb1 = _abs_max(params[w2:b2o])
    bb1 = np.float64(abs(params[b2o])) if np.isfinite(params[b2o]) else np.inf
    return b2o, wb0, bb0, wb1, bb1


@jit_inline
def _four_from_params(params, n0, n1, W1T, v):
    """The parameters into the layout of :func:`_tiny4_epoch` and :func:`_tiny4_batch_epoch`:
    W1T[k, j] = W[1]_jk, v[0:4] = b[1], v[4:8] = W[2], v[8:12] = 1 for the n_1 real units
    (padded units, zero on entry, stay zero); b[2] is read by the caller."""
    T = params.dtype.type
    for j in range(n1):
        v[j] = params[n1 * n0 + j]
        v[4 + j] = params[n1 * n0 + n1 + j]
        v[8 + j] = T(1)
        for k in range(n0):
            W1T[k, j] = params[j * n0 + k]


@jit_inline
def _four_to_params(params, n0, n1, W1T, v):
    """W[1], b[1], W[2] back from that layout (:func:`_four_from_params`'s inverse)."""
    for j in range(n1):
        params[n1 * n0 + j] = v[j]
        params[n1 * n0 + n1 + j] = v[4 + j]
        for k in range(n0):
            params[j * n0 + k] = W1T[k, j]


@jit_inner
def _act4(z, act, lr):
    """(g(z), α g'(z)) for one hidden unit (the caller's branch on ``act`` is loop-invariant)."""
    T = type(z)
    if act == ACT_TANH:
        a = ttanh(z)
        return a, lr * (T(1) - a * a)
    if act == ACT_SIGMOID:
        a = tsigmoid(z)
        return a, lr * (a * (T(1) - a))
    if act == ACT_RELU:
        return (z, lr) if z > T(0) else (T(0), T(0))
    if act == ACT_LEAKY_RELU:
        return (z, lr) if z > T(0) else (z * T(LEAKY_SLOPE), lr * T(LEAKY_SLOPE))
    if act == ACT_IDENTITY:
        return z, lr
    raise ValueError("_act4: unknown activation code")


@jit_vec
def _tiny4_epoch(params, sizes, X, Y, order, lr, act, out, limit):
    """:func:`_tiny_epoch` for n_1 ≤ 4 hidden units and one output (σ or identity): the four
    units, W[2] and b[2] are scalars (registers), W[1]ᵀ is an n_0 × 4 array; same results
    and contract."""
    T = params.dtype.type
    n0, n1 = sizes[0], sizes[1]
    X = _borrowed(X)
    Y = _borrowed(Y)
    order = _borrowed(order)
    b2o, wb0, bb0, wb1, bb1 = _four_bounds(params, n0, n1)
    lr64 = np.float64(lr)
    W1T_own = _zeros((n0, 4), params.dtype)
    W1T = _borrowed(W1T_own)
    v_own = _zeros(14, params.dtype)  # b[1], W[2] padded to 4 lanes, then the lane mask
    v = _borrowed(v_own)
    queue_own = np.empty((2, COST_CHUNK), params.dtype)
    queue = _borrowed(queue_own)
    Zc, Yc = queue[0], queue[1]
    cnt_own = _zeros(1, np.int64)
    cnt = _borrowed(cnt_own)
    _four_from_params(params, n0, n1, W1T, v)
    b10, b11, b12, b13 = v[0], v[1], v[2], v[3]
    w20, w21, w22, w23 = v[4], v[5], v[6], v[7]
    m0, m1, m2, m3 = v[8], v[9], v[10], v[11]
    b2 = params[b2o]
    # The chain from one example to the next, shortened: the next Z[1]'s correction is one FMA,
    # Z[1] = P − dZ[2]·u with u = (W[2] ∗ α g'(Z[1]))·(xᵀx' + 1) computed before dZ[2] is known.
    if out != OUT_SIGMOID and out != OUT_IDENTITY:  # (the dispatch never sends a softmax net here)
        raise ValueError("_tiny4_epoch: only a sigmoid or identity output")
    c0 = c1 = c2 = c3 = T(0)  # the pending α dZ[1] of the previous example
    u0 = u1 = u2 = u3 = T(0)  # c·(x_prevᵀ x + 1) / dZ[2] of the previous example
    dp = T(0)  # dZ[2] of the previous example
    bounded = act == ACT_TANH or act == ACT_SIGMOID  # the bounded codes (|g| ≤ 1), written out: see below
    m = order.shape[0]
    total = 0.0
    resume = -1
    nq = 0
    xp = X[order[0]]
    for t in range(m):
        i = order[t]
        x = X[i]
        y = Y[i, 0]
        xn = X[order[t + 1]] if t + 1 < m else x
        # ---- Z[1] = (W[1] x + b[1]) − c (x_prevᵀ x + 1); the pending update applied in the same pass
        Gn = T(1)  # x_nextᵀ x + 1, for the next example's correction
        sa0 = 0.0
        p0, p1, p2, p3 = b10, b11, b12, b13
        for k in range(n0):
            xk = x[k]
            xpk = xp[k]
            Gn += xn[k] * xk
            sa0 += abs(np.float64(xk))
            Wk = W1T[k]
            q0, q1, q2, q3 = Wk[0], Wk[1], Wk[2], Wk[3]
            p0 += q0 * xk
            p1 += q1 * xk
            p2 += q2 * xk
            p3 += q3 * xk
            Wk[0] = q0 - c0 * xpk
            Wk[1] = q1 - c1 * xpk
            Wk[2] = q2 - c2 * xpk
            Wk[3] = q3 - c3 * xpk
        b10 -= c0
        b11 -= c1
        b12 -= c2
        b13 -= c3
        z0, z1, z2_, z3 = p0 - dp * u0, p1 - dp * u1, p2 - dp * u2, p3 - dp * u3
        if act == ACT_TANH:  # one branch for the four units: straight-line code LLVM can vectorise (SLP)
            a0, a1, a2, a3 = ttanh_scalar(z0), ttanh_scalar(z1), ttanh_scalar(z2_), ttanh_scalar(z3)
            g0, g1, g2, g3 = lr * (T(1) - a0 * a0), lr * (T(1) - a1 * a1), lr * (T(1) - a2 * a2), lr * (T(1) - a3 * a3)
        elif act == ACT_SIGMOID:
            a0, a1, a2, a3 = tsigmoid_scalar(z0), tsigmoid_scalar(z1), tsigmoid_scalar(z2_), tsigmoid_scalar(z3)
            g0, g1 = lr * (a0 * (T(1) - a0)), lr * (a1 * (T(1) - a1))
            g2, g3 = lr * (a2 * (T(1) - a2)), lr * (a3 * (T(1) - a3))
        elif act == ACT_RELU:
            a0, a1 = (z0 if z0 > T(0) else T(0)), (z1 if z1 > T(0) else T(0))
            a2, a3 = (z2_ if z2_ > T(0) else T(0)), (z3 if z3 > T(0) else T(0))
            g0, g1 = (lr if z0 > T(0) else T(0)), (lr if z1 > T(0) else T(0))
            g2, g3 = (lr if z2_ > T(0) else T(0)), (lr if z3 > T(0) else T(0))
        else:
            a0, g0 = _act4(z0, act, lr)
            a1, g1 = _act4(z1, act, lr)
            a2, g2 = _act4(z2_, act, lr)
            a3, g3 = _act4(z3, act, lr)
        if bounded:
            sa1 = np.float64(n1)
        else:
            sa1 = np.float64((abs(a0) + abs(a1)) + (abs(a2) + abs(a3)))
        # ---- Z[2], A[2], dZ[2] = A[2] − Y  (padded lanes: W[2] = 0)
        z2 = b2 + ((w20 * a0 + w21 * a1) + (w22 * a2 + w23 * a3))
        d = (tsigmoid_scalar(z2) if out == OUT_SIGMOID else z2) - y
        # ---- the cost (queued when provably finite), the step bound
        deferred = abs(np.float64(z2)) + abs(np.float64(y)) <= COST_SAFE
        cost = 0.0
        if not deferred:
            Zc[COST_CHUNK - 1] = z2
            Yc[COST_CHUNK - 1] = y
            cost = cost_loop(Zc[COST_CHUNK - 1 :], Yc[COST_CHUNK - 1 :], out)
        e1 = lr64 * abs(np.float64(d))
        e0 = e1 * wb1 * n1
        nwb1 = wb1 + e1 * sa1
        nbb1 = bb1 + e1
        nwb0 = wb0 + e0 * sa0
        nbb0 = bb0 + e0
        if not (np.isfinite(cost) and nwb1 <= limit and nbb1 <= limit and nwb0 <= limit and nbb0 <= limit):
            resume = t
            c0 = c1 = c2 = c3 = T(0)
            break
        wb1, bb1, wb0, bb0 = nwb1, nbb1, nwb0, nbb0
        if deferred:
            Zc[nq] = z2
            Yc[nq] = y
            nq += 1
            if nq == COST_CHUNK:
                cnt[0] = nq
                total += flush_costs(Zc, Yc, cnt, 1, out)
                nq = 0
        else:
            total += cost
        # ---- backward: c = α dZ[1] = dZ[2] (W[2] ∗ α g'(Z[1])) from the old W[2]; then W[2], b[2]
        v0, v1, v2, v3 = w20 * g0, w21 * g1, w22 * g2, w23 * g3
        c0, c1, c2, c3 = d * v0, d * v1, d * v2, d * v3
        u0, u1, u2, u3 = v0 * Gn, v1 * Gn, v2 * Gn, v3 * Gn
        dp = d
        cd = lr * d
        w20 -= cd * (a0 * m0)  # (padded lanes: A[1] masked, W[2] stays 0)
        w21 -= cd * (a1 * m1)
        w22 -= cd * (a2 * m2)
        w23 -= cd * (a3 * m3)
        b2 -= cd
        xp = x
    # ---- the pending W[1], b[1] update (c = 0 after a stop), then everything back into params
    for k in range(n0):
        Wk = W1T[k]
        xk = xp[k]
        Wk[0] -= c0 * xk
        Wk[1] -= c1 * xk
        Wk[2] -= c2 * xk
        Wk[3] -= c3 * xk
    v[0], v[1], v[2], v[3] = b10 - c0, b11 - c1, b12 - c2, b13 - c3
    v[4], v[5], v[6], v[7] = w20, w21, w22, w23
    _four_to_params(params, n0, n1, W1T, v)
    params[b2o] = b2
    cnt[0] = nq
    total += flush_costs(Zc, Yc, cnt, 1, out)
    _alive(W1T_own, v_own, queue_own, cnt_own)
    return total, resume


# ==================================================== mini-batches: the hidden units in lanes


@jit_vec
def _tiny_batch_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    """Mini-batch gradient descent over ``order`` for an n_0-n_1-n_2 net (n_1 ≤ LANES), the
    hidden units in lanes as in :func:`_tiny_epoch`; returns ``(total cost, resume)`` as
    :func:`fastbp._fast.batch._batch_epoch` does (``resume``: −1, or the position in ``order``
    of the batch whose step the bound could not prove safe, not applied).

    Why: on a tiny net a short batch is mostly fixed cost in the column kernels (2-4-1, batch 8:
    about 0.8 µs per batch whatever its size, 0.4-0.6x the per-example path; ``taskset -c 1
    python tools/columns_sweep.py --nets 2-4-1 --batches 8``).  Here each example is a few
    dozen flops on lanes, and, unlike per-example SGD, no example waits for the previous one's
    update (the weights are fixed within a batch), so the examples of a batch overlap in the
    core.  Per example, with the derivation's equations:

        Z[1] = W[1] x + b[1],  A[1] = g(Z[1]),  Z[2] = W[2] A[1] + b[2],  A[2] = out(Z[2])
        dZ[2] = A[2] − y
        dW[2] += dZ[2] A[1]ᵀ / n_b,  db[2] += dZ[2] / n_b
        dZ[1] = (W[2]ᵀ dZ[2]) ∗ g′(Z[1])
        dW[1] += dZ[1] xᵀ / n_b,  db[1] += dZ[1] / n_b

    then per batch the step bound of :func:`fastbp._fast.batch._batch_epoch` (per layer
    max|W| + α Σ|dW| below ``limit``) and W −= α dW.  Costs that are provably finite are
    queued and computed :data:`COST_CHUNK` at a time, the queue flushed only between batches
    (a failing batch's queued costs are dropped).  tanh and σ are :func:`ttanh` and
    :func:`tsigmoid`, as accurate as the plain kernel's on the tails (where g′ is a few ulp of 1:
    the float32 rational tanh alone moved W[1] there, times raw-scale inputs, where the plain
    kernel's did not; ``tests/test_fast_kernels.py``, saturated units)."""
    T = params.dtype.type
    n0, n1, n2 = sizes[0], sizes[1], sizes[2]
    q = 4 if params.itemsize == 4 else 16  # lanes as in _tiny_epoch
    H = (n1 + q - 1) // q * q
    X = _borrowed(X)
    Y = _borrowed(Y)
    order = _borrowed(order)
    w1, b1o = 0, n1 * n0
    w2 = b1o + n1
    b2o = w2 + n2 * n1
    # ---- the exact bounds of the divergence guard (see fastbp._fast), from the parameters
    wb0 = _abs_max(params[w1 : w1 + n1 * n0])
    bb0 = _abs_max(params[b1o : b1o + n1])
    wb1 = _abs_max(params[w2 : w2 + n2 * n1])
    bb1 = _abs_max(params[b2o : b2o + n2])
    lr64 = np.float64(lr)
    # ---- the parameters and their gradients, padded to H lanes: W1T[k, j] = W[1]_jk,
    # W2[o, j] = W[2]_oj (G1T, G2 the same for dW); padded lanes stay exactly 0
    lanes_own = _zeros((2 * (n0 + n2) + 6, H), params.dtype)
    lanes = _borrowed(lanes_own)
    W1T = lanes[:n0]
    G1T = lanes[n0 : 2 * n0]
    W2 = lanes[2 * n0 : 2 * n0 + n2]
    G2 = lanes[2 * n0 + n2 : 2 * (n0 + n2)]
    r = 2 * (n0 + n2)
    b1, gb1, mask, z1, a1, d1 = lanes[r], lanes[r + 1], lanes[r + 2], lanes[r + 3], lanes[r + 4], lanes[r + 5]
    outs_own = _zeros((5, n2), params.dtype)
    outs = _borrowed(outs_own)
    b2, gb2, z2, a2, d2 = outs[0], outs[1], outs[2], outs[3], outs[4]
    queue_own = np.empty((2, COST_CHUNK * n2), params.dtype)
    queue = _borrowed(queue_own)
    Zc, Yc = queue[0], queue[1]
    cnt_own = _zeros(1, np.int64)
    cnt = _borrowed(cnt_own)
    _lanes_from_params(params, n0, n1, n2, W1T, b1, mask, W2, b2)
    m = order.shape[0]
    total = 0.0
    resume = -1
    nq = 0  # examples whose cost is queued in Zc, Yc
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        scale = T(1) / T(stop - start)
        if nq + (stop - start) > COST_CHUNK:  # room for the batch's costs (a longer one computes the rest now)
            cnt[0] = nq
            total += flush_costs(Zc, Yc, cnt, n2, out)
            nq = 0
        nq_batch = nq
        for k in range(n0):
            G1k = G1T[k]
            for j in range(H):
                G1k[j] = T(0)
        for o in range(n2):
            G2o = G2[o]
            for j in range(H):
                G2o[j] = T(0)
            gb2[o] = T(0)
        for j in range(H):
            gb1[j] = T(0)
        batch_cost = 0.0
        da = 0.0  # Σ|dA[1]| in float64: infinite if W[2]ᵀ dZ[2] overflowed (the plain kernel's NaN)
        for t in range(start, stop):
            i = order[t]
            x = X[i]
            y = Y[i]
            # ---- Z[1] = W[1] x + b[1]; A[1] = g(Z[1]) (padded lanes masked to 0); d1 = g′(Z[1])
            for j in range(H):
                z1[j] = b1[j]
            for k in range(n0):
                Wk = W1T[k]
                xk = x[k]
                for j in range(H):
                    z1[j] += Wk[j] * xk
            if act == ACT_TANH:
                for j in range(H):
                    a = ttanh(z1[j])
                    a1[j] = a
                    d1[j] = T(1) - a * a
            elif act == ACT_SIGMOID:
                for j in range(H):
                    a = tsigmoid(z1[j])
                    a1[j] = a * mask[j]
                    d1[j] = a * (T(1) - a)
            elif act == ACT_RELU:
                for j in range(H):
                    zj = z1[j]
                    a1[j] = zj if zj > T(0) else T(0)
                    d1[j] = T(1) if zj > T(0) else T(0)
            elif act == ACT_LEAKY_RELU:
                for j in range(H):
                    zj = z1[j]
                    a1[j] = zj if zj > T(0) else zj * T(LEAKY_SLOPE)
                    d1[j] = T(1) if zj > T(0) else T(LEAKY_SLOPE)
            elif act == ACT_IDENTITY:
                for j in range(H):
                    a1[j] = z1[j]
                    d1[j] = T(1)
            else:
                raise ValueError("_tiny_batch_epoch: unknown activation code")
            # ---- Z[2] = W[2] A[1] + b[2], A[2]
            for o in range(n2):
                W2o = W2[o]
                s = b2[o]
                for j in range(H):
                    s += W2o[j] * a1[j]
                z2[o] = s
            output_loop(z2, a2, out)  # σ, softmax, identity or e^z, as the plain kernel's
            # ---- the cost (provably finite: queued; else now); dZ[2] = A[2] − Y
            sz = 0.0
            for o in range(n2):
                sz += abs(np.float64(z2[o])) + abs(np.float64(y[o]))
                d2[o] = a2[o] - y[o]
            if sz <= COST_SAFE and nq < COST_CHUNK:
                base = nq * n2
                for o in range(n2):
                    Zc[base + o] = z2[o]
                    Yc[base + o] = y[o]
                nq += 1
            else:
                batch_cost += cost_loop(z2, y, out)
            # ---- dW[2] += dZ[2] A[1]ᵀ / n_b, db[2] += dZ[2] / n_b; dZ[1] = (W[2]ᵀ dZ[2]) ∗ g′, then
            # d1 = dZ[1] / n_b (each example's terms unscaled until its gradient, as in the plain
            # kernel, so that an overflow happens, or not, where it does there)
            W20 = W2[0]
            G20 = G2[0]
            d = d2[0]
            ds = scale * d
            for j in range(H):
                s = W20[j] * d
                G20[j] += ds * a1[j]
                for o in range(1, n2):
                    s += W2[o, j] * d2[o]
                da += abs(np.float64(s))  # dA[1]_j finite? (see _tiny4_batch_epoch)
                d1[j] = scale * (s * d1[j])
            for o in range(1, n2):
                G2o = G2[o]
                ds = scale * d2[o]
                for j in range(H):
                    G2o[j] += ds * a1[j]
            for o in range(n2):
                gb2[o] += scale * d2[o]
            # ---- dW[1] += dZ[1] xᵀ / n_b, db[1] += dZ[1] / n_b
            for j in range(H):
                gb1[j] += d1[j]
            for k in range(n0):
                G1k = G1T[k]
                xk = x[k]
                for j in range(H):
                    G1k[j] += d1[j] * xk
        # ---- step bound: max|W − α dW| ≤ max|W| + α Σ|dW| per layer (padded lanes are 0)
        s0 = 0.0
        for k in range(n0):
            s0 += _abs_sum(G1T[k], H)
        s1 = 0.0
        for o in range(n2):
            s1 += _abs_sum(G2[o], H)
        nwb0 = wb0 + lr64 * s0
        nbb0 = bb0 + lr64 * _abs_sum(gb1, H)
        nwb1 = wb1 + lr64 * s1
        nbb1 = bb1 + lr64 * _abs_sum(gb2, n2)
        ok = np.isfinite(batch_cost) and np.isfinite(da)
        if not (ok and nwb0 <= limit and nbb0 <= limit and nwb1 <= limit and nbb1 <= limit):
            nq = nq_batch  # this batch's queued costs dropped
            resume = start
            break
        wb0, bb0, wb1, bb1 = nwb0, nbb0, nwb1, nbb1
        # ---- W −= α dW, b −= α db
        for k in range(n0):
            Wk = W1T[k]
            G1k = G1T[k]
            for j in range(H):
                Wk[j] -= lr * G1k[j]
        for j in range(H):
            b1[j] -= lr * gb1[j]
        for o in range(n2):
            W2o = W2[o]
            G2o = G2[o]
            for j in range(H):
                W2o[j] -= lr * G2o[j]
            b2[o] -= lr * gb2[o]
        total += batch_cost
    _lanes_to_params(params, n0, n1, n2, W1T, b1, W2, b2)
    cnt[0] = nq
    total += flush_costs(Zc, Yc, cnt, n2, out)
    _alive(lanes_own, outs_own, queue_own, cnt_own)
    return total, resume


@jit_vec
def _tiny4_batch_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, limit):
    """:func:`_tiny_batch_epoch` for n_1 ≤ 4 hidden units and one output (σ or identity), as
    :func:`_tiny4_epoch` is for per-example SGD: the four units, W[2], b[2] and their
    gradients are scalars (registers), W[1]ᵀ and dW[1]ᵀ n_0 × 4 arrays; same results and
    contract.  Within a batch the examples depend on each other only through the gradient
    sums, so the core overlaps them (per-example SGD waits for each update).  tanh and σ are
    :func:`ttanh_scalar` and :func:`tsigmoid_scalar`.  W[2]_j dZ[2] is checked finite for
    every example: the plain kernel forms dA[1] = W[2]ᵀ dZ[2] first, so an overflow there times a
    saturated unit's g′ = 0 is NaN and refuses the batch, while the product
    α (W[2]_j dZ[2]) g′_j / n_b, reassociated (fastmath), could give 0."""
    T = params.dtype.type
    n0, n1 = sizes[0], sizes[1]
    X = _borrowed(X)
    Y = _borrowed(Y)
    order = _borrowed(order)
    b2o, wb0, bb0, wb1, bb1 = _four_bounds(params, n0, n1)
    lr64 = np.float64(lr)
    W_own = _zeros((2, n0, 4), params.dtype)  # W[1]ᵀ and dW[1]ᵀ, padded to 4 units
    W1T = _borrowed(W_own[0])
    G1T = _borrowed(W_own[1])
    v_own = _zeros(14, params.dtype)  # b[1], W[2] padded to 4 lanes, the lane mask, one cost's (z, y)
    v = _borrowed(v_own)
    one = v[12:]
    queue_own = np.empty((2, COST_CHUNK), params.dtype)
    queue = _borrowed(queue_own)
    Zc, Yc = queue[0], queue[1]
    cnt_own = _zeros(1, np.int64)
    cnt = _borrowed(cnt_own)
    _four_from_params(params, n0, n1, W1T, v)
    b10, b11, b12, b13 = v[0], v[1], v[2], v[3]
    w20, w21, w22, w23 = v[4], v[5], v[6], v[7]
    m0, m1, m2, m3 = v[8], v[9], v[10], v[11]
    b2 = params[b2o]
    if out != OUT_SIGMOID and out != OUT_IDENTITY:  # (the dispatch never sends a softmax net here)
        raise ValueError("_tiny4_batch_epoch: only a sigmoid or identity output")
    m = order.shape[0]
    total = 0.0
    resume = -1
    nq = 0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        scale = T(1) / T(stop - start)
        if nq + (stop - start) > COST_CHUNK:  # room for the batch's costs (a longer one computes the rest now)
            cnt[0] = nq
            total += flush_costs(Zc, Yc, cnt, 1, out)
            nq = 0
        nq_batch = nq
        for k in range(n0):
            Gk = G1T[k]
            Gk[0] = Gk[1] = Gk[2] = Gk[3] = T(0)
        gb10 = gb11 = gb12 = gb13 = T(0)
        gw20 = gw21 = gw22 = gw23 = T(0)
        gb2 = T(0)
        batch_cost = 0.0
        da = 0.0  # Σ|dA[1]| in float64: infinite if some W[2]_j dZ[2] overflowed (the plain kernel's NaN)
        for t in range(start, stop):
            i = order[t]
            x = X[i]
            y = Y[i, 0]
            # ---- Z[1] = W[1] x + b[1]; A[1] = g(Z[1]), g′(Z[1])
            z0, z1, z2_, z3 = b10, b11, b12, b13
            for k in range(n0):
                xk = x[k]
                Wk = W1T[k]
                z0 += Wk[0] * xk
                z1 += Wk[1] * xk
                z2_ += Wk[2] * xk
                z3 += Wk[3] * xk
            if act == ACT_TANH:  # one branch for the four units: straight-line code LLVM can vectorise (SLP)
                a0, a1, a2, a3 = ttanh_scalar(z0), ttanh_scalar(z1), ttanh_scalar(z2_), ttanh_scalar(z3)
                g0, g1, g2, g3 = T(1) - a0 * a0, T(1) - a1 * a1, T(1) - a2 * a2, T(1) - a3 * a3
            elif act == ACT_SIGMOID:
                a0, a1, a2, a3 = tsigmoid_scalar(z0), tsigmoid_scalar(z1), tsigmoid_scalar(z2_), tsigmoid_scalar(z3)
                g0, g1, g2, g3 = a0 * (T(1) - a0), a1 * (T(1) - a1), a2 * (T(1) - a2), a3 * (T(1) - a3)
            elif act == ACT_RELU:
                a0, a1 = (z0 if z0 > T(0) else T(0)), (z1 if z1 > T(0) else T(0))
                a2, a3 = (z2_ if z2_ > T(0) else T(0)), (z3 if z3 > T(0) else T(0))
                g0, g1 = (T(1) if z0 > T(0) else T(0)), (T(1) if z1 > T(0) else T(0))
                g2, g3 = (T(1) if z2_ > T(0) else T(0)), (T(1) if z3 > T(0) else T(0))
            else:
                a0, g0 = _act4(z0, act, T(1))
                a1, g1 = _act4(z1, act, T(1))
                a2, g2 = _act4(z2_, act, T(1))
                a3, g3 = _act4(z3, act, T(1))
            a0, a1, a2, a3 = a0 * m0, a1 * m1, a2 * m2, a3 * m3  # padded units: A[1] = 0
            # ---- Z[2] = W[2] A[1] + b[2], A[2]; the cost (queued if provably finite)
            zo = b2 + ((w20 * a0 + w21 * a1) + (w22 * a2 + w23 * a3))
            ao = tsigmoid_scalar(zo) if out == OUT_SIGMOID else zo
            if abs(np.float64(zo)) + abs(np.float64(y)) <= COST_SAFE and nq < COST_CHUNK:
                Zc[nq] = zo
                Yc[nq] = y
                nq += 1
            else:
                one[0] = zo
                one[1] = y
                batch_cost += cost_loop(one[:1], one[1:], out)
            # ---- dZ[2] = A[2] − y; dW[2], db[2] (/ n_b); dZ[1] = W[2]ᵀ dZ[2] ∗ g′; dW[1], db[1] (/ n_b),
            # unscaled until the gradient as in the plain kernel (the same overflows)
            d = ao - y
            ds = scale * d
            gw20 += ds * a0
            gw21 += ds * a1
            gw22 += ds * a2
            gw23 += ds * a3
            gb2 += ds
            h0, h1, h2, h3 = w20 * d, w21 * d, w22 * d, w23 * d  # dA[1] = W[2]ᵀ dZ[2]
            da = da + (abs(np.float64(h0)) + abs(np.float64(h1))) + (abs(np.float64(h2)) + abs(np.float64(h3)))
            e0, e1 = scale * (h0 * g0), scale * (h1 * g1)
            e2, e3 = scale * (h2 * g2), scale * (h3 * g3)
            gb10 += e0
            gb11 += e1
            gb12 += e2
            gb13 += e3
            for k in range(n0):
                xk = x[k]
                Gk = G1T[k]
                Gk[0] += e0 * xk
                Gk[1] += e1 * xk
                Gk[2] += e2 * xk
                Gk[3] += e3 * xk
        # ---- step bound: max|W − α dW| ≤ max|W| + α Σ|dW| per layer (padded units are 0)
        s0 = 0.0
        for k in range(n0):
            s0 += _abs_sum(G1T[k], 4)
        sb0 = abs(np.float64(gb10)) + abs(np.float64(gb11)) + abs(np.float64(gb12)) + abs(np.float64(gb13))
        s1 = abs(np.float64(gw20)) + abs(np.float64(gw21)) + abs(np.float64(gw22)) + abs(np.float64(gw23))
        nwb0 = wb0 + lr64 * s0
        nbb0 = bb0 + lr64 * sb0
        nwb1 = wb1 + lr64 * s1
        nbb1 = bb1 + lr64 * abs(np.float64(gb2))
        ok = np.isfinite(batch_cost) and np.isfinite(da)
        if not (ok and nwb0 <= limit and nbb0 <= limit and nwb1 <= limit and nbb1 <= limit):
            nq = nq_batch  # this batch's queued costs dropped
            resume = start
            break
        wb0, bb0, wb1, bb1 = nwb0, nbb0, nwb1, nbb1
        # ---- W −= α dW, b −= α db
        for k in range(n0):
            Wk = W1T[k]
            Gk = G1T[k]
            Wk[0] -= lr * Gk[0]
            Wk[1] -= lr * Gk[1]
            Wk[2] -= lr * Gk[2]
            Wk[3] -= lr * Gk[3]
        b10, b11, b12, b13 = b10 - lr * gb10, b11 - lr * gb11, b12 - lr * gb12, b13 - lr * gb13
        w20, w21, w22, w23 = w20 - lr * gw20, w21 - lr * gw21, w22 - lr * gw22, w23 - lr * gw23
        b2 -= lr * gb2
        total += batch_cost
    v[0], v[1], v[2], v[3] = b10, b11, b12, b13
    v[4], v[5], v[6], v[7] = w20, w21, w22, w23
    _four_to_params(params, n0, n1, W1T, v)
    params[b2o] = b2
    cnt[0] = nq
    total += flush_costs(Zc, Yc, cnt, 1, out)
    _alive(W_own, v_own, queue_own, cnt_own)
    return total, resume
