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
* ``exp``: overflow gives ``inf``; results below √2 times the smallest normal number
  (subnormals, and the normal numbers just above them) are flushed to ``0`` (an absolute
  error below 3.2e-308, resp. 1.7e-38);
  ``exp(-inf) = 0``, ``exp(inf) = inf``;
* ``tanh``: ``±1`` for large ``|x|``, exact sign (``tanh(-0.0) = -0.0``);
* ``σ``: the sign-split form, never overflows;
* NaN in gives NaN out, as NumPy does.

Each function is a Python function (NumPy semantics, for reference and tests)
with a Numba :func:`numba.extending.overload` that picks the float32 or float64
body at compile time, so float32 loops stay float32.  ``*_array`` helpers apply
them to a whole array (what the tests and micro-benchmarks call).
"""

from __future__ import annotations

import re

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from ._jit import OVERLOAD_OPTIONS, jit_vec

__all__ = ["vexp", "vtanh", "vsigmoid", "vlog1p_unit", "exp_array", "tanh_array", "sigmoid_array", "log1p_unit_array"]


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


@intrinsic
def _as_int(typingctx, x):
    """Reinterpret the bits of a float64 (float32) as an int64 (int32)."""
    if x == types.float64:
        sig, llty = types.int64(x), ir.IntType(64)
    elif x == types.float32:
        sig, llty = types.int32(x), ir.IntType(32)
    else:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llty)

    return sig, codegen


# ------------------------------------------------------------- the generated bodies
#
# LLVM inlines a small function into the calling loop (and then vectorises the
# loop), but gives up on nested calls of this size; Numba's own IR inlining works
# but multiplies compile time.  So each function is written *flat*, one per dtype:
# its source is assembled below from the shared pieces (the exp body appears in
# exp, tanh and σ) and compiled on first use.  Of the fastmath flags only FMA
# contraction (``fastbp._jit.OVERLOAD_OPTIONS``: the range reductions rely on the
# order written, which ``reassoc`` would undo; vectorising a loop needs none) and
# the NumPy error model (no ZeroDivisionError branch).
#
# exp(x) = 2^n · e^r with n = round(x / ln 2), r = x − n ln 2 ∈ [−ln 2 / 2, ln 2 / 2]
# (Cody–Waite: ln 2 split in a high part with trailing zero bits and a low part), e^r by
# its Taylor polynomial (centred r: 13 terms in float64 where r ∈ [0, ln 2) took 17),
# 2^n built from its bits.  Results below about √2 times the smallest normal number are
# flushed to 0 (|error| < 3.2e-308, resp. 1.7e-38), above the range give inf; x is clamped
# first so n stays small, and NaN is put back at the end.
#
# n is rounded by the shifter: k = x / ln 2 + 1.5·2^52 (1.5·2^23 in float32) is a float whose ulp
# is 1, so the addition rounds x / ln 2 to the nearest integer and k's low mantissa bits hold
# 2^51 + n: k − 1.5·2^52 is n exactly, and so is bits(k) − bits(1.5·2^52), whose n + bias − 1
# shifted by 52 is the bits of 2^(n−1).  No floor and no float-to-integer
# conversion (AVX2 has none for 64-bit lanes: LLVM emitted it element by element), only an
# integer subtract and shift.  Same worst ulp; with AVX2 code the float64 tanh, exp and σ ran
# 1.30x, 1.22x and 1.21x as fast (2.36 -> 1.81 ns per value for tanh), float32 and AVX-512 code
# as before, on a Zen 4: ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= taskset -c 1 python
# tools/vmath_accuracy.py`` (a fresh NUMBA_CACHE_DIR each).

_DT = {
    # name: (T, int, bias, mantissa bits, clamp, overflow above, Taylor degree of e^r,
    #        ln2 hi, ln2 lo, tanh cap, tanh tiny, Taylor degree of (e^r − 1)/r)
    # The degrees: the first term left out, |r|^(d+1)/(d+1)! at |r| = ln 2 / 2, is below
    # 1/8 ulp (float64: 4e-18 for e^r at 13, 1.2e-17 for (e^r − 1)/r at 12; float32:
    # 5e-9 at 7, 1.5e-8 at 6).
    "64": (
        "np.float64",
        "np.int64",
        1023,
        52,
        1080.0,
        709.782712893384,
        13,
        0.693145751953125,
        1.4286068203094172e-06,
        20.0,
        1e-9,
        12,
    ),
    "32": ("np.float32", "np.int32", 127, 23, 110.0, 88.72283, 7, 0.693359375, -2.12194440e-4, 10.0, 1e-4, 6),
}


def _horner(var: str, arg: str, degree: int, T: str, shift: int = 0, scale: float = 1.0) -> list[str]:
    """Lines computing var = scale · Σ_{k=0..degree} arg^k / (k + shift)!  (Horner, highest first)."""
    from math import factorial

    lines = [f"{var} = {T}({scale / factorial(degree + shift)!r})"]
    for k in range(degree - 1, -1, -1):
        lines.append(f"{var} = {var} * {arg} + {T}({scale / factorial(k + shift)!r})")
    return lines


def _exp_lines(x: str, y: str, b: str) -> list[str]:
    """Lines computing y = e^x for a non-NaN x (NaN is the caller's to restore)."""
    T, I, bias, mant, clamp, over, deg, hi, lo = _DT[b][:9]
    sh = 1.5 * 2.0**mant  # the shifter (above)
    # n = round(x / ln 2), so r ∈ [−ln 2 / 2, ln 2 / 2]; y = (2 e^r) · 2^(n−1): the polynomial's
    # coefficients doubled (exact), so that 2^(n−1) is a normal number from n = 2 − bias (the
    # smallest n not flushed) up to n = bias + 1 (x just below the overflow threshold)
    return [
        f"xc_ = {x} if {x} > {T}({-clamp!r}) else {T}({-clamp!r})",
        f"xc_ = xc_ if xc_ < {T}({clamp!r}) else {T}({clamp!r})",
        f"kf_ = xc_ * {T}({1.4426950408889634!r}) + {T}({sh!r})",
        f"nf_ = kf_ - {T}({sh!r})",
        f"r_ = (xc_ - nf_ * {T}({hi!r})) - nf_ * {T}({lo!r})",
        *_horner("p_", "r_", deg, T, scale=2.0),
        f"kc_ = kf_ if kf_ > {T}({sh + 2 - bias!r}) else {T}({sh + 2 - bias!r})",
        f"{y} = p_ * _as_float({I}(({I}(_as_int(kc_) - _as_int({T}({sh!r}))) + {I}({bias - 1})) << {I}({mant})))",
        f"{y} = {y} if nf_ >= {T}({float(2 - bias)!r}) else {T}(0.0)",
        f"{y} = {y} if {x} <= {T}({over!r}) else {T}(np.inf)",
    ]


def _source(name: str, b: str) -> str:
    T = _DT[b][0]
    cap, tiny = _DT[b][9:11]
    if name == "exp":
        body = [*_exp_lines("x", "y", b), "return x if x != x else y"]
    elif name == "tanh":
        # tanh|x| = e/(e + 2) with e = expm1(y), y = 2|x| ≤ 2·cap: with y = n ln 2 + r,
        # n = round(y / ln 2), expm1(y) = 2^n (e^r − 1) + (2^n − 1), e^r − 1 = r Σ r^k/(k+1)!
        # (n = 0 for y < ln 2 / 2: expm1 itself, no cancellation; above, 2^n e^r − 1 ≥ 0.41)
        _, I, bias, mant, _, _, _, hi, lo = _DT[b][:9]
        deg = _DT[b][11]
        sh = 1.5 * 2.0**mant  # the shifter (see the exp body)
        body = [
            "ax = abs(x)",
            f"y2 = {T}(2.0) * (ax if ax < {T}({cap!r}) else {T}({cap!r}))",
            f"kf = y2 * {T}({1.4426950408889634!r}) + {T}({sh!r})",
            f"nf = kf - {T}({sh!r})",
            f"r = (y2 - nf * {T}({hi!r})) - nf * {T}({lo!r})",
            *_horner("q", "r", deg, T, shift=1),
            f"s = _as_float({I}(({I}(_as_int(kf) - _as_int({T}({sh!r}))) + {I}({bias})) << {I}({mant})))",
            f"e = s * (q * r) + (s - {T}(1.0))",
            f"t = e / (e + {T}(2.0))",
            f"t = t if x > {T}(0.0) else -t",
            f"return t if ax >= {T}({tiny!r}) else x  # tanh x = x below tiny (keeps -0.0); NaN too",
        ]
    elif name == "sigmoid":
        # sign-split σ: e = e^(−|x|) ∈ (0, 1] never overflows
        body = [
            "nx = -abs(x)",
            *_exp_lines("nx", "e", b),
            "e = e if x == x else x",
            f"d = {T}(1.0) / ({T}(1.0) + e)",
            "ed = e * d",
            f"return d if x >= {T}(0.0) else ed",
        ]
    elif name == "log1p_unit":
        # log(1 + t) = 2 atanh(s), s = t/(2 + t); above √2 − 1 around √2 instead:
        # ln √2 + 2 atanh(s'), s' = (t + 1 − √2)/(t + 1 + √2), so s² ≤ 0.03
        nterms = 12 if b == "64" else 5
        body = [
            f"lo = x < {T}(0.41421356237309503)",
            f"s_lo = x / ({T}(2.0) + x)",
            f"s_hi = (x - {T}(0.41421356237309503)) / (x + {T}(2.414213562373095))",
            "s = s_lo if lo else s_hi",
            "s2 = s * s",
            f"p = {T}({1.0 / (2 * nterms - 1)!r})",
            *[f"p = p * s2 + {T}({1.0 / (2 * k - 1)!r})" for k in range(nterms - 1, 0, -1)],
            f"r = {T}(2.0) * s * p",
            f"return r if lo else r + {T}(0.34657359027997264)",
        ]
    else:
        raise KeyError(name)
    return f"def _{name}{b}(x):\n" + "".join(f"    {ln}\n" for ln in body)


#: ``np.float64(0.5)``, ``np.int32(127)``, ``np.float32(np.inf)``: a typed literal in a body.
_TYPED_LITERAL = re.compile(r"np\.(float32|float64|int32|int64)\((-?[0-9][0-9.e+-]*|np\.inf)\)")


def _hoist_constants(source: str) -> tuple[str, dict]:
    """Replace every typed literal ``np.float32(c)`` of ``source`` by a global constant.

    Numba types a global NumPy scalar as a constant of its own dtype, so the body
    stays float32 in float32, but it no longer types and lowers a call for every
    literal (half the cold compile time of these flat bodies).
    """
    consts: dict = {}
    names: dict = {}

    def repl(match):
        key = match.group(0)
        if key not in names:
            names[key] = f"_K{len(names)}"
            value = np.inf if match.group(2) == "np.inf" else float(match.group(2))
            consts[names[key]] = getattr(np, match.group(1))(value)
        return names[key]

    return _TYPED_LITERAL.sub(repl, source), consts


def _build(name: str) -> dict:
    """The float64 and float32 bodies of ``name`` as plain Python functions."""
    out = {}
    for b in _DT:
        source, consts = _hoist_constants(_source(name, b))
        ns = {"np": np, "_as_float": _as_float, "_as_int": _as_int, **consts}
        exec(compile(source, f"<fastbp.vmath _{name}{b}>", "exec"), ns)
        out[b] = ns[f"_{name}{b}"]
    return out


def _register(pyfunc, name: str):
    """Overload ``pyfunc`` in Numba with the flat float64/float32 bodies of ``name``."""
    bodies = _build(name)

    @overload(pyfunc, jit_options=OVERLOAD_OPTIONS)
    def _ov(x):
        if x == types.float64:
            return bodies["64"]
        if x == types.float32:
            return bodies["32"]
        return None

    return pyfunc


def vexp(x):
    """e^x (NumPy semantics outside Numba; the vectorisable form inside)."""
    return np.exp(x)


def vtanh(x):
    """tanh(x) (NumPy semantics outside Numba; the vectorisable form inside)."""
    return np.tanh(x)


def vsigmoid(x):
    """σ(x) = 1/(1 + e^(−x)) (NumPy semantics outside Numba; vectorisable inside)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.result_type(x), copy=False)


def vlog1p_unit(t):
    """log(1 + t) for t in [0, 1] (NaN in, NaN out)."""
    return np.log1p(t)


for _f, _name in ((vexp, "exp"), (vtanh, "tanh"), (vsigmoid, "sigmoid"), (vlog1p_unit, "log1p_unit")):
    _register(_f, _name)


# -------------------------------------------------------------- whole-array forms


@jit_vec
def _exp_array(x, out):
    """out[i] = vexp(x[i]) over 1-D arrays (the vectorised loop the kernels use)."""
    for i in range(x.shape[0]):
        out[i] = vexp(x[i])


@jit_vec
def _tanh_array(x, out):
    """out[i] = vtanh(x[i]) over 1-D arrays."""
    for i in range(x.shape[0]):
        out[i] = vtanh(x[i])


@jit_vec
def _sigmoid_array(x, out):
    """out[i] = vsigmoid(x[i]) over 1-D arrays."""
    for i in range(x.shape[0]):
        out[i] = vsigmoid(x[i])


@jit_vec
def _log1p_unit_array(x, out):
    """out[i] = vlog1p_unit(x[i]) over 1-D arrays, x in [0, 1]."""
    for i in range(x.shape[0]):
        out[i] = vlog1p_unit(x[i])


def _check_pair(name: str, x, out) -> None:
    """The whole-array forms are compiled loops that write ``out[i]`` for every i of ``x``: called from
    Python, they first check that ``out`` has room (no write past its end), one dtype, and is writeable."""
    for arg, a in (("x", x), ("out", out)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name}: {arg} must be a NumPy array, got {type(a).__name__}")
        if a.ndim != 1:
            raise ValueError(f"{name}: {arg} must be 1-dimensional, got shape {a.shape}")
    if x.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name}: x must be float32 or float64, got {x.dtype}")
    if out.dtype != x.dtype:
        raise TypeError(f"{name}: out must have x's dtype {x.dtype}, got {out.dtype}")
    if out.shape != x.shape:
        raise ValueError(f"{name}: out must have x's shape {x.shape}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: out is read-only")


def _public(kernel, name: str, low: float | None = None, high: float | None = None):
    """The checked Python form of a whole-array kernel: :func:`_check_pair`; x's values held to
    [low, high] where the function has a domain (NaN passes, as NumPy's functions pass it); and
    an ``out`` that overlaps x other than exactly (``y[::-1]`` for ``y``) gets x's copy first,
    as NumPy's ufuncs do, since the loop reads x[i] after writing out[j] for j < i."""

    def checked(x, out):
        _check_pair(name, x, out)
        if low is not None and x.size:
            inside = (x >= low) & (x <= high)
            if not (inside | np.isnan(x)).all():
                raise ValueError(f"{name}: x must lie in [{low:g}, {high:g}] (its domain); got values outside it")
        if np.may_share_memory(x, out) and not (
            x.__array_interface__["data"][0] == out.__array_interface__["data"][0] and x.strides == out.strides
        ):
            x = x.copy()
        kernel(x, out)

    checked.__name__ = checked.__qualname__ = name
    checked.__doc__ = kernel.__doc__
    checked.py_func = getattr(kernel, "py_func", kernel)  # the plain-Python loop (NUMBA_DISABLE_JIT: kernel itself)
    checked.kernel = kernel
    return checked


exp_array = _public(_exp_array, "exp_array")
tanh_array = _public(_tanh_array, "tanh_array")
sigmoid_array = _public(_sigmoid_array, "sigmoid_array")
log1p_unit_array = _public(_log1p_unit_array, "log1p_unit_array", 0.0, 1.0)
