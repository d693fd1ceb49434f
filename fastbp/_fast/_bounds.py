"""Bounds checks for the fast kernels' own intrinsics, under Numba's bounds-checking switch.

Numba checks every indexed array access when bounds checking is on (``NUMBA_BOUNDSCHECK=1``, or
``boundscheck=True``), but three intrinsics address flat arrays by offsets the kernels compute, as
raw pointer arithmetic Numba never sees: :func:`._common._matrix_view` (a matrix view of a flat
buffer), :func:`._tiles._axpy_strips` (the register tiles of every product) and
:func:`._tiles._transpose8` (8 × 8 blocks of a transpose).  With the switch on, each checks once
per call, before it touches anything, that every element it will read or write lies inside its
array, and raises ``IndexError`` otherwise; with it off (the default) :func:`check_span` emits
nothing, so the kernels' machine code is what it was.  ``tests/test_boundscheck.py`` runs the
kernels that use them so checked.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils


def check_span(context, builder, array_type, array, start, terms, width, touched, what: str) -> None:
    """If bounds checking is on, raise ``IndexError(what)`` unless every element offset
    ``start + Σ_k i_k·stride_k + v`` (``i_k < n_k`` for ``(n_k, stride_k)`` in ``terms``,
    ``v < width``) lies in ``[0, len)``, ``len`` the flat array's element count; ``touched`` (an
    LLVM i1, or ``None`` for always) says whether the call touches the array at all.  An empty
    set of offsets (some ``n_k ≤ 0``, or ``width ≤ 0``) touches nothing and passes.  Strides may be
    negative: each term moves the lowest or the highest offset by ``(n_k − 1)·stride_k``.
    LLVM values are intp; ``width`` may be a Python int."""
    if not context.enable_boundscheck:
        return
    intp = start.type
    zero = ir.Constant(intp, 0)
    one = ir.Constant(intp, 1)
    width = ir.Constant(intp, width) if isinstance(width, int) else width
    lo, hi = start, builder.add(start, builder.sub(width, one))
    empty = builder.icmp_signed("<=", width, zero)
    for n, stride in terms:
        n = ir.Constant(intp, n) if isinstance(n, int) else n
        stride = ir.Constant(intp, stride) if isinstance(stride, int) else stride
        empty = builder.or_(empty, builder.icmp_signed("<=", n, zero))
        reach = builder.mul(builder.sub(n, one), stride)
        below = builder.icmp_signed("<", reach, zero)
        lo = builder.add(lo, builder.select(below, reach, zero))
        hi = builder.add(hi, builder.select(below, zero, reach))
    length = context.make_array(array_type)(context, builder, array).nitems
    outside = builder.or_(builder.icmp_signed("<", lo, zero), builder.icmp_signed(">=", hi, length))
    bad = builder.and_(builder.not_(empty), outside)
    raise_if(context, builder, bad if touched is None else builder.and_(bad, touched), what)


def raise_if(context, builder, condition, what: str) -> None:
    """If bounds checking is on, raise ``IndexError(what)`` where ``condition`` (an LLVM i1)
    holds."""
    if not context.enable_boundscheck:
        return
    with cgutils.if_unlikely(builder, condition):
        context.call_conv.return_user_exc(builder, IndexError, (what,))
