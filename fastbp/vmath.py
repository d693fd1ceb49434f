"""Vectorisable elementary functions for the fast kernels: exp, tanh, σ, log1p on [0, 1].

``np.exp``/``np.tanh`` inside a Numba loop are scalar libm calls (~20 ns each;
the PyPI llvmlite has no SVML), and at small widths they, not the matrix work,
decide the speed.  The functions here are pure arithmetic (a range reduction,
a polynomial, a bit-built power of two), so a loop calling them is vectorised
by LLVM like any other arithmetic loop.

Accuracy and the edges (tested against NumPy on millions of points in
``tests/test_vmath.py``):

* float64 to a few ulp, float32 to a few ulp of float32 (well inside
  :data:`fastbp.testing.TOLERANCE`), over the whole real line;
* ``exp``: overflow gives ``inf``, underflow ``0`` (results below the normal
  range are flushed smoothly through two scalings, so subnormals come out
  right too); ``exp(-inf) = 0``, ``exp(inf) = inf``;
* ``tanh``: ``±1`` for large ``|x|``, exact sign (``tanh(-0.0) = -0.0``);
* ``σ``: the sign-split form, never overflows;
* NaN in gives NaN out, as NumPy does.

Each function is a Python function (NumPy semantics, for reference and tests)
with a Numba :func:`numba.extending.overload` that picks the float32 or float64
body at compile time, so float32 loops stay float32.  ``*_array`` helpers apply
them to a whole array (what the tests and micro-benchmarks call).
"""

from __future__ import annotations

import warnings

import numpy as np
from llvmlite import ir
from numba import types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import intrinsic, overload, register_jitable

from numba import njit

from ._jit import JIT_OPTIONS

# Inlining these functions at Numba-IR level trips a pedantic internal check about
# the phi variables of their conditional expressions ("variable '_exp64_v…' is not
# in scope"); the compiled code is right (tests/test_vmath.py), so silence exactly that.
warnings.filterwarnings(
    "ignore",
    message=r"variable '_(exp|tanh|expm1|log1p)[\w.]*' is not in scope",
    category=NumbaIRAssumptionWarning,
)

__all__ = ["vexp", "vtanh", "vsigmoid", "vlog1p_unit", "exp_array", "tanh_array", "sigmoid_array", "log1p_unit_array"]

#: Everything here is inlined at Numba-IR level into the calling loop (LLVM's own
#: inliner gives up on functions this size, and a call per element would stop
#: vectorisation), so it is compiled with the *caller's* options: the project's
#: fastmath set, and ``error_model="numpy"`` (a division must not carry a
#: ZeroDivisionError check, which also stops vectorisation): see :data:`JIT_VEC`.
JIT_VEC: dict = {**JIT_OPTIONS, "error_model": "numpy"}


def jit_vec(func):
    """Compile ``func`` with :data:`JIT_VEC` (the project's options, NumPy error model)."""
    return njit(**JIT_VEC)(func)


@intrinsic
def _as_float(typingctx, bits):
    """Reinterpret the bits of an int64 (int32) as a float64 (float32)."""
    if bits == types.int64:
        sig, llty = types.float64(bits), ir.DoubleType()
    elif bits == types.int32:
        sig, llty = types.float32(bits), ir.FloatType()
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llty)

    return sig, codegen


# --------------------------------------------------------------------------- exp
#
# exp(x) = 2^n · e^r with n = round(x / ln 2), r = x − n ln 2 (Cody–Waite, ln 2 split
# in a high part with trailing zero bits and a low part), |r| ≤ ln2/2, e^r by its
# Taylor polynomial.  2^n is applied as two factors 2^(n//2) · 2^(n − n//2), each a
# normal number built from its bits, so overflow to inf and gradual underflow to
# subnormals and 0 happen in the final multiplications exactly as they should.
# x is clamped first so n stays small; NaN is put back at the end.

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 with its low bits zero: n · _LN2_HI is exact
_LN2_LO = 1.4286068203094172e-06


def vexp(x):
    """e^x (NumPy semantics outside Numba; the vectorisable form inside)."""
    return np.exp(x)


@register_jitable(inline="always")
def _exp64(x):
    xc = x if x > -1080.0 else -1080.0
    xc = xc if xc < 1080.0 else 1080.0
    nf = np.floor(xc * _LOG2E)
    r = (xc - nf * _LN2_HI) - nf * _LN2_LO
    # e^r for r in [0, ln 2), Taylor to degree 17 (truncation < 1e-17 relative)
    p = 1.0 / 355687428096000.0
    p = p * r + 1.0 / 20922789888000.0
    p = p * r + 1.0 / 1307674368000.0
    p = p * r + 1.0 / 87178291200.0
    p = p * r + 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    nc = nf if nf > -1022.0 else -1022.0
    y = p * _as_float((np.int64(nc) + np.int64(1023)) << np.int64(52))
    y = y if nf >= -1022.0 else 0.0  # below the normal range: flushed to 0
    y = y if x < 709.782712893384 else np.inf
    return x if x != x else y


@register_jitable(inline="always")
def _exp32(x):
    T = np.float32
    xc = x if x > T(-110.0) else T(-110.0)
    xc = xc if xc < T(110.0) else T(110.0)
    nf = np.floor(xc * T(_LOG2E))
    r = (xc - nf * T(0.693359375)) - nf * T(-2.12194440e-4)
    # e^r for r in [0, ln 2), Taylor to degree 9 (truncation < 1e-9 relative)
    p = T(1.0 / 362880.0)
    p = p * r + T(1.0 / 40320.0)
    p = p * r + T(1.0 / 5040.0)
    p = p * r + T(1.0 / 720.0)
    p = p * r + T(1.0 / 120.0)
    p = p * r + T(1.0 / 24.0)
    p = p * r + T(1.0 / 6.0)
    p = p * r + T(0.5)
    p = p * r + T(1.0)
    p = p * r + T(1.0)
    nc = nf if nf > T(-126.0) else T(-126.0)
    y = p * _as_float(np.int32((np.int32(nc) + np.int32(127)) << np.int32(23)))
    y = y if nf >= T(-126.0) else T(0.0)  # below the normal range: flushed to 0
    y = y if x < T(88.72283) else T(np.inf)
    return x if x != x else y


@overload(vexp, inline="always")
def _ov_vexp(x):
    if x == types.float64:
        return _exp64
    if x == types.float32:
        return _exp32
    return None


# -------------------------------------------------------------------------- expm1
#
# Only for tanh, on y = 2|x| ∈ [0, 40]: the Taylor series below 0.5 (no cancellation
# for small y), e^y − 1 above (relative error ≤ 1.6 ulp there).


@register_jitable(inline="always")
def _expm1_pos64(y):
    # Taylor to degree 14 on [0, 0.5]: truncation < 1e-16 relative
    p = 1.0 / 87178291200.0
    p = p * y + 1.0 / 6227020800.0
    p = p * y + 1.0 / 479001600.0
    p = p * y + 1.0 / 39916800.0
    p = p * y + 1.0 / 3628800.0
    p = p * y + 1.0 / 362880.0
    p = p * y + 1.0 / 40320.0
    p = p * y + 1.0 / 5040.0
    p = p * y + 1.0 / 720.0
    p = p * y + 1.0 / 120.0
    p = p * y + 1.0 / 24.0
    p = p * y + 1.0 / 6.0
    p = p * y + 0.5
    p = p * y + 1.0
    small = p * y
    big = _exp64(y) - 1.0
    return small if y < 0.5 else big


@register_jitable(inline="always")
def _expm1_pos32(y):
    T = np.float32
    p = T(1.0 / 40320.0)
    p = p * y + T(1.0 / 5040.0)
    p = p * y + T(1.0 / 720.0)
    p = p * y + T(1.0 / 120.0)
    p = p * y + T(1.0 / 24.0)
    p = p * y + T(1.0 / 6.0)
    p = p * y + T(0.5)
    p = p * y + T(1.0)
    small = p * y
    big = _exp32(y) - T(1.0)
    return small if y < T(0.5) else big


# --------------------------------------------------------------------------- tanh


def vtanh(x):
    """tanh(x) (NumPy semantics outside Numba; the vectorisable form inside)."""
    return np.tanh(x)


@register_jitable(inline="always")
def _tanh64(x):
    # tanh|x| = e/(e + 2) with e = expm1(2|x|); |x| ≥ 20 rounds to 1 anyway
    ax = abs(x)
    y = 2.0 * (ax if ax < 20.0 else 20.0)
    e = _expm1_pos64(y)
    t = e / (e + 2.0)
    t = t if x > 0.0 else -t
    # tanh x = x to the last bit below 1e-9 (keeps −0.0); NaN falls through too
    return t if ax >= 1e-9 else x


@register_jitable(inline="always")
def _tanh32(x):
    T = np.float32
    ax = abs(x)
    y = T(2.0) * (ax if ax < T(10.0) else T(10.0))
    e = _expm1_pos32(y)
    t = e / (e + T(2.0))
    t = t if x > T(0.0) else -t
    # tanh x = x to the last bit below 1e-4 (keeps −0.0); NaN falls through too
    return t if ax >= T(1e-4) else x


@overload(vtanh, inline="always")
def _ov_vtanh(x):
    if x == types.float64:
        return _tanh64
    if x == types.float32:
        return _tanh32
    return None


# ------------------------------------------------------------------------ sigmoid


def vsigmoid(x):
    """σ(x) = 1/(1 + e^(−x)) (NumPy semantics outside Numba; vectorisable inside)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.result_type(x), copy=False)


@overload(vsigmoid, inline="always")
def _ov_vsigmoid(x):
    if not isinstance(x, types.Float):
        return None

    def impl(x):
        T = type(x)
        e = vexp(-abs(x))  # in (0, 1]: never overflows; NaN stays NaN
        d = T(1) / (T(1) + e)
        ed = e * d
        return d if x >= T(0) else ed

    return impl


# ----------------------------------------------------------------- log1p on [0, 1]
#
# For the binary cross-entropy from the logit, log1p(e^(−|z|)) with e^(−|z|) ∈ [0, 1].
# log(1 + t) = 2 atanh(s), s = t/(2 + t) ∈ [0, 1/3]; above t = √2 − 1 use
# log(1 + t) = ln √2 + 2 atanh(s') with s' = (1 + t − √2)/(1 + t + √2) ∈ [0, 0.172],
# so s² ≤ 0.03 and the odd series converges to < 1e-17 in 11 terms.


def vlog1p_unit(t):
    """log(1 + t) for t in [0, 1] (NaN in, NaN out)."""
    return np.log1p(t)


@register_jitable(inline="always")
def _log1p_unit64(t):
    lo = t < 0.41421356237309503
    s_lo = t / (2.0 + t)
    s_hi = (t - 0.41421356237309503) / (t + 2.414213562373095)
    s = s_lo if lo else s_hi
    s2 = s * s
    p = 1.0 / 23.0
    p = p * s2 + 1.0 / 21.0
    p = p * s2 + 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    r = 2.0 * s * p
    return r if lo else r + 0.34657359027997264


@register_jitable(inline="always")
def _log1p_unit32(t):
    T = np.float32
    lo = t < T(0.41421356)
    s_lo = t / (T(2.0) + t)
    s_hi = (t - T(0.41421356)) / (t + T(2.4142135))
    s = s_lo if lo else s_hi
    s2 = s * s
    p = T(1.0 / 9.0)
    p = p * s2 + T(1.0 / 7.0)
    p = p * s2 + T(1.0 / 5.0)
    p = p * s2 + T(1.0 / 3.0)
    p = p * s2 + T(1.0)
    r = T(2.0) * s * p
    return r if lo else r + T(0.34657359)


@overload(vlog1p_unit, inline="always")
def _ov_vlog1p_unit(t):
    if t == types.float64:
        return _log1p_unit64
    if t == types.float32:
        return _log1p_unit32
    return None


# -------------------------------------------------------------- whole-array forms


@jit_vec
def exp_array(x, out):
    """out[i] = vexp(x[i]) over 1-D arrays (the vectorised loop the kernels use)."""
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


@jit_vec
def tanh_array(x, out):
    """out[i] = vtanh(x[i]) over 1-D arrays."""
    for i in range(x.shape[0]):
        out[i] = vtanh(x[i])


@jit_vec
def sigmoid_array(x, out):
    """out[i] = vsigmoid(x[i]) over 1-D arrays."""
    for i in range(x.shape[0]):
        out[i] = vsigmoid(x[i])


@jit_vec
def log1p_unit_array(x, out):
    """out[i] = vlog1p_unit(x[i]) over 1-D arrays, x in [0, 1]."""
    for i in range(x.shape[0]):
        out[i] = vlog1p_unit(x[i])
