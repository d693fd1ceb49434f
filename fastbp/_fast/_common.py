"""What every fast kernel shares: borrowed views, the cost queue's size, the step bound.

* :func:`_borrowed` / :func:`_borrow_epoch` / :func:`_alive`: views with no reference
  counting, and the use that keeps their owners alive (per-row views otherwise cost an
  atomic ``NRT_incref``/``NRT_decref`` pair per example).
* :data:`COST_CHUNK`, :data:`COST_SAFE`, :func:`_queue_cost`: per-example costs are queued and
  summed in chunks (:func:`fastbp.losses.defer_cost`, :func:`fastbp.losses.flush_costs`) when
  provably finite.
* :func:`_abs_sum`, :func:`_abs_max`, :func:`_layer_bounds`: the per-layer bounds on
  max|W[l]|, max|b[l]| that prove a step's new parameters finite (the divergence contract,
  :mod:`fastbp._fast`).
"""

from __future__ import annotations

import numpy as np
from numba.core import cgutils
from numba.extending import intrinsic

from .._jit import jit_inline, jit_inner
from ..losses import defer_cost, flush_costs
from ..params import offsets
from ..vmath import _as_int
from ._bounds import check_span, raise_if


@jit_inline
def _zeros(shape, dtype):
    """``np.zeros(shape, dtype)`` as ``np.empty`` and a loop (LLVM makes it a memset).  Numba's own
    ``np.zeros`` compiles an ``np.empty`` and a fill of its own under other options than the
    kernels' (one more set of allocation functions for every shape and dtype, 0.46 s of a first
    ``fastbp train``: docs/performance-kernels.md, "A first fastbp train's compile: what repeats");
    this one's ``np.empty`` is the kernels' own, compiled once per signature."""
    a = np.empty(shape, dtype)
    flat = a.reshape(a.size)
    for i in range(flat.shape[0]):
        flat[i] = 0
    return a


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


@intrinsic
def _matrix_view(typingctx, flat, start, n, nc):
    """Elements ``start … start + n·nc`` of the C-contiguous ``flat`` (1-D, or 2-D read as its
    elements in order) as a C-contiguous n × nc matrix, borrowed like :func:`_borrowed` (no
    owner, no reference counting).

    What ``flat[start : start + n * nc].reshape((n, nc))`` gives, without its cost: Numba's
    reshape runs a general stride search per call, which at a few dozen views per batch
    was most of a small batch's time (:func:`fastbp._fast._columns._columns_gradient`:
    2-4-1 at batch 8).  The caller keeps ``start + n·nc ≤ len(flat)``."""
    from numba.core import types as nbtypes

    if not (isinstance(flat, nbtypes.Array) and flat.ndim in (1, 2) and flat.layout == "C"):
        return None
    ret = nbtypes.Array(flat.dtype, 2, "C")

    def codegen(context, builder, signature, args):
        src = context.make_array(signature.args[0])(context, builder, args[0])
        out = context.make_array(ret)(context, builder)
        intp = context.get_value_type(nbtypes.intp)
        start_v = context.cast(builder, args[1], signature.args[1], nbtypes.intp)
        n_v = context.cast(builder, args[2], signature.args[2], nbtypes.intp)
        nc_v = context.cast(builder, args[3], signature.args[3], nbtypes.intp)
        if context.enable_boundscheck:  # under Numba's bounds checking (._bounds)
            what = "fastbp: a matrix view outside its flat buffer"
            check_span(context, builder, signature.args[0], args[0], start_v, [(n_v, nc_v)], nc_v, None, what)
            zero = n_v.type(0)
            negative = builder.or_(builder.icmp_signed("<", n_v, zero), builder.icmp_signed("<", nc_v, zero))
            raise_if(context, builder, negative, what)
        itemsize = src.itemsize
        data = builder.gep(src.data, [start_v])
        shape = cgutils.pack_array(builder, [n_v, nc_v])
        strides = cgutils.pack_array(builder, [builder.mul(nc_v, itemsize), itemsize])
        context.populate_array(
            out,
            data=data,
            shape=shape,
            strides=strides,
            itemsize=itemsize,
            meminfo=cgutils.get_null_value(out.meminfo.type),
            parent=cgutils.get_null_value(out.parent.type),
        )
        del intp
        return out._getvalue()

    return ret(flat, start, n, nc), codegen


# inlined at Numba-IR level: LLVM then sees the views' NULL meminfo in the caller and drops
# their reference counting altogether (called, it keeps a null-checked call per view:
# per-example SGD on 5-8-3 measured 0.93x in two runs)
@jit_inline
def _borrow_epoch(params, sizes, X, Y, order):
    """An epoch kernel's arguments as borrowed views (:func:`_borrowed`), and the layer
    offsets: ``(params, sizes, X, Y, order, offs, w_off, b_off, u_off)``.  ``offs`` is
    the offsets' owner: the caller keeps it alive to each exit (:func:`_alive`)."""
    offs = offsets(sizes)
    return (
        _borrowed(params),
        _borrowed(sizes),
        _borrowed(X),
        _borrowed(Y),
        _borrowed(order),
        offs,
        _borrowed(offs[0]),
        _borrowed(offs[1]),
        _borrowed(offs[2]),
    )


#: Per-example costs are computed in chunks of this many examples (vectorised),
#: not one by one, whenever they are provably finite (see :data:`COST_SAFE`).
COST_CHUNK = 256


@jit_inline
def _queue_cost(zL, y, Zc, Yc, cnt, n_L, out):
    """Queue one example's logits ``zL`` and targets ``y`` (:func:`fastbp.losses.defer_cost`);
    returns the queue's summed costs once it holds :data:`COST_CHUNK` examples (emptying it), else 0."""
    defer_cost(zL, y, Zc, Yc, cnt)
    if cnt[0] == COST_CHUNK:
        return flush_costs(Zc, Yc, cnt, n_L, out)
    return 0.0


#: Σ|Z[L]| + Σ|Y| up to this bound proves an example's cost finite in float64
#: (|Z − Y| ≤ 2e150, so ½(Z − Y)² and the cross-entropies stay far below 1.8e308).
COST_SAFE = 1e150


@jit_inner
def _abs_sum(v, n):
    """Σ|v[:n]| in float64 (NaN and inf propagate)."""
    s = 0.0
    for k in range(n):
        s += abs(np.float64(v[k]))
    return s


@jit_inline
def _holds_non_finite(v):
    """Whether any entry of the float array ``v`` (1-D) is NaN or ±inf: an entry is exactly when
    its exponent field is all ones, the bits of +inf, so this is the largest of the entries'
    exponent fields, an integer maximum that LLVM vectorises (a float reduction would need
    reassociation).  The public ``predict``, ``forward`` and ``loss`` refuse a non-finite X this
    way inside the fast forward kernels (:mod:`fastbp._fast.packed_forward`'s blocks,
    :mod:`fastbp._fast.forward`'s chunks), where X's rows are being read anyway, instead of in a
    NumPy pass over X before the kernel (``fastbp._dispatch.forward_refuses_non_finite``)."""
    inf_bits = _as_int(v.dtype.type(np.inf))
    # np.bitwise_and and max keep int32 in int32 (Numba types ``&`` of two int32 as int64: the
    # float32 loop then widened every entry, half the lanes)
    top = np.bitwise_xor(inf_bits, inf_bits)  # 0, an integer of v's width
    for k in range(v.shape[0]):
        top = max(top, np.bitwise_and(_as_int(v[k]), inf_bits))
    return top == inf_bits


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
