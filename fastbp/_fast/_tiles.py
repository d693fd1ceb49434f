"""Register-tiled matrix products for the column kernels (:mod:`._columns`), and for W[1]'s
products in the deferred kernels (:mod:`.deferred_tiles`, :mod:`.blocked_tiles`), whose strips run
across hidden units over a packed W[1]ᵀ (:func:`_pack_transposed`) instead of across examples.

The column kernels hold a chunk of a batch as matrices with one column per example, and each of
a layer's three products is a sum of scaled rows ("axpy" form):

    Z[l]    = W[l] A[l−1] + b[l]     Z row j  = b_j + Σ_k W_jk · A[l−1] row k
    dA[l−1] = W[l]ᵀ dZ[l]            dA row k =       Σ_j W_jk · dZ[l] row j
    dW[l]  += dZ[l] A[l−1]ᵀ          dW row j += Σ_t dZ_jt · A[l−1]ᵀ row t   (t: the chunk's examples)

Written as plain loops (``_affine_rows``, ``_back_rows``, ``_grad_rows`` in :mod:`._columns`, the
reference these are tested against), every term of the sum loads and stores the output row: at best one FMA per
store, 11-49 GFLOP/s on this project's Zen 4.  :func:`_axpy_strips` keeps a *tile* of the output,
R rows by one strip of 64 bytes of columns (16 float32 or 8 float64 values), in vector registers
for the whole sum: per term one load of a strip of the summed row, R broadcasts of a weight, R
FMAs.  That is the shape of a BLAS micro-kernel, without BLAS's packing and per-call cost, which
on the mid nets' short products (64 × 64 by 32 examples) is much of BLAS's time: 112-117 GFLOP/s
float32 and 47-58 float64 against OpenBLAS's 75-95 and 40-50 (``python tools/tile_speed.py``).

* R = 8 rows where the target has AVX-512 (32 vector registers: 8 accumulators of one zmm), 6
  where it does not (AVX2's 16 registers: 6 accumulators of two ymm; 8 spilled and ran at half
  speed), then tiles of 4, 2 and 1 for the remaining rows.  R changes the speed, never the bits.
* On Intel's AVX-512 cores a float32 tile spans two strips (16 accumulators): two 512-bit FMA
  ports need more chains than eight (:func:`tile_strips`).  Also only the speed.
* The arithmetic of each output element is the plain loop's, in its order: start at b_j, 0 or the
  element itself, add w · s for s = 0, 1, …, fused into an FMA as the plain loop's ``contract``
  fastmath fuses it, so Z and dA are the plain loops' bits (``tests/test_columns.py``).
* :func:`_transpose8` transposes an 8 × 8 block in registers, for the A[l−1]ᵀ that dW's tiles read.
* Nothing outside the arrays is touched as long as the caller keeps its offsets in range; these
  are internal helpers called only by :mod:`._columns`, :mod:`.deferred_tiles` and
  :mod:`.blocked_tiles` on their own workspaces (the last two on a packed copy of W[1]ᵀ,
  :func:`_pack_transposed`, whose tiles run across hidden units instead of examples).

Measurements: docs/performance-kernels.md, "Register tiles for the column products" and "An Intel
Xeon (Emerald Rapids): two strips a tile".
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numpy import intp

from .._jit import jit_inline, jit_inner
from ._bounds import check_span, raise_if

#: Bytes of columns in one tile: one AVX-512 vector, two AVX2 vectors (LLVM splits the vector
#: type for the target).  16 float32 or 8 float64 examples; the column kernels pad a chunk's
#: columns to whole strips (:func:`._columns._tile_padding`).
STRIP_BYTES = 64

# CPUs whose LLVM name implies AVX-512 (used only when Numba's target features string is empty,
# i.e. NUMBA_CPU_NAME set with NUMBA_CPU_FEATURES="": the features then follow the name)
_AVX512_NAMES = frozenset(
    {
        "skylake-avx512",
        "cascadelake",
        "cooperlake",
        "cannonlake",
        "icelake-client",
        "icelake-server",
        "tigerlake",
        "rocketlake",
        "sapphirerapids",
        "emeraldrapids",
        "graniterapids",
        "graniterapids-d",
        "znver4",
        "znver5",
        "x86-64-v4",
    }
)


def tile_rows(codegen) -> int:
    """Rows per register tile for Numba's compile target (``codegen``: a Numba codegen): 8 with
    AVX-512, else 6.  Only the speed depends on it, never the bits."""
    # Numba keeps its target's features and CPU name in private attributes; if a Numba release
    # renames them, the tiles fall back to 6 rows (correct everywhere, slower with AVX-512)
    features = getattr(codegen, "_tm_features", "") or ""
    if features:
        avx512 = "+avx512f" in features.split(",")
    else:
        cpu_name = getattr(codegen, "_get_host_cpu_name", lambda: "")
        avx512 = cpu_name() in _AVX512_NAMES
    return 8 if avx512 else 6


# Intel's AVX-512 server cores (LLVM names), with two 512-bit FMA ports (some Skylake-SP and
# Cascade Lake parts have one: the name cannot tell), where a tile of two strips pays
# (:func:`tile_strips`; measured on an Emerald Rapids).  The client cores (Cannon Lake, Ice Lake
# client, Tiger Lake, Rocket Lake) have one port, Zen 4 runs a 512-bit FMA as two 256-bit halves:
# they keep one strip, as do Zen 5 and the generic x86-64-v4, not measured.
_INTEL_AVX512_NAMES = frozenset(
    {
        "skylake-avx512",
        "cascadelake",
        "cooperlake",
        "icelake-server",
        "sapphirerapids",
        "emeraldrapids",
        "graniterapids",
        "graniterapids-d",
    }
)


def tile_strips(codegen, itemsize: int = 4) -> int:
    """Strips of 64 bytes per register tile for Numba's compile target and a dtype of ``itemsize``
    bytes: 2 for float32 on Intel's AVX-512 server cores (:data:`_INTEL_AVX512_NAMES`; R = 8 rows by
    two strips, 16 accumulators), else 1.  Only the speed depends on it, never the bits.

    Measured on an Intel Xeon (Emerald Rapids, one core of a 16-core VM; docs/performance-kernels.md,
    "An Intel Xeon (Emerald Rapids): two strips a tile"): the products ran 1.1-2.4x as fast in
    both dtypes, 27 of 28 cells (one 0.82; ``taskset -c 2 python tools/tile_speed.py``, the
    one-strip tree against this one, two rounds), and whole float32 epochs 1.01-1.28x (0.96-1.13x
    with three other jobs running; ``fastbp bench --sizes 64-32-1 64-64-10 784-128-10 256-256-10
    --batch-sizes 1 32 256``), but float64 epochs 0.78-1.05x on the big nets in two runs, so
    float64 keeps one strip.  On Zen 4 two strips ran the products 0.92-0.96x (``taskset -c 1
    python tools/tile_speed.py``), so AMD keeps one; AVX2's R = 6 rows by two ymm already hold 12
    of its 16 registers."""
    if tile_rows(codegen) != 8 or itemsize != 4:
        return 1
    cpu_name = getattr(codegen, "_get_host_cpu_name", lambda: "")
    return 2 if cpu_name() in _INTEL_AVX512_NAMES else 1


@intrinsic
def _axpy_strips(typingctx, Z, z0, ldz, zs, W, w0, wr, ws, S, s0, lds, ss, n_sum, n_rows, B, b0, init, n_strips):
    """``n_strips`` strips of 64 bytes of columns (V examples each) of an axpy-form product, side by
    side, tile by tile; strip i:

        Z[z0 + i·zs + r·ldz + v] = start + Σ_{s < n_sum} W[w0 + r·wr + s·ws] · S[s0 + i·ss + s·lds + v]

    for r < n_rows, v < V, the sum in the order s = 0, 1, …, with start = 0 (``init`` 0),
    B[b0 + r] (1) or Z's own element (2: Z += the sum).  Flat element offsets into the C-contiguous
    arrays Z, W, S, B, all of one float dtype.  Forward: W = W[l] (wr = n_in, ws = 1), S = A[l−1],
    B = b[l], init 1; dA[l−1]: wr = 1, ws = n_in, S = dZ[l], init 0; dW[l] (Z = dW[l], its rows
    in strips of 64 bytes of *its* columns): W = dZ[l] (wr = its row length, ws = 1), S = A[l−1]ᵀ
    (one row per example), init 0 or 2.  The deferred kernels' W[1] x_t: Z = the examples' rows
    (a strip of hidden units), W = the inputs (wr = n_0, ws = 1), S = packed W[1]ᵀ; their update
    W[1]ᵀ += Σ_s x_s c_sᵀ: Z = packed W[1]ᵀ (rows k), W = the inputs (wr = 1, ws = n_0), S = the
    c_s, init 2.

    On Intel's AVX-512 cores a float32 tile spans two strips (:func:`tile_strips`), R = 8 rows by
    2 × 64 bytes (16 accumulators, one broadcast of a weight for two FMAs; an odd last strip
    alone): such a core issues two 512-bit FMAs a cycle with 4 cycles' latency, so one strip's 8
    accumulators leave it waiting on the chains.  Elsewhere one strip (Zen 4: one 512-bit FMA a
    cycle; AVX2: R = 6 by two ymm, 12 of the 16 registers).  The pairing, like R, changes the
    speed, never the bits: each element's sum is the same, in the same order.  Under Numba's
    bounds checking the call first checks that every element of Z, W, S and B it will touch lies
    inside its array (:func:`._bounds.check_span`; ``IndexError`` otherwise)."""
    arrays = (Z, W, S, B)
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
        return None
    dtype = Z.dtype
    if dtype not in (types.float32, types.float64) or any(a.dtype != dtype for a in arrays):
        return None
    sig = types.void(
        Z, types.intp, types.intp, types.intp, W, types.intp, types.intp, types.intp, S, types.intp, types.intp,
        types.intp, types.intp, types.intp, B, types.intp, types.intp, types.intp,
    )  # fmt: skip

    def codegen(context, builder, signature, args):
        Zv, zo, ldz_, zs_, Wv, wo, wr_, ws_, Sv, so, lds_, ss_, nsum, nrows, Bv, bo, init, nstrips = args
        T = context.get_value_type(dtype)
        itemsize = context.get_abi_sizeof(T)
        lanes = STRIP_BYTES // itemsize
        vec = ir.VectorType(T, lanes)
        vptr = vec.as_pointer()
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)

        def data(k, value):
            return context.make_array(signature.args[k])(context, builder, value).data

        zd, wd, sd, bd = data(0, Zv), data(4, Wv), data(8, Sv), data(14, Bv)

        def const(k):
            return ir.Constant(intp, k)

        if context.enable_boundscheck:  # under Numba's bounds checking: every element touched, inside its array
            # a negative count is refused, not taken as empty: the row tiles below would still run
            # (n_rows = −1 leaves n_rows − n_main with its 4, 2 and 1 bits set)
            negative = builder.or_(
                builder.or_(builder.icmp_signed("<", nrows, const(0)), builder.icmp_signed("<", nstrips, const(0))),
                builder.icmp_signed("<", nsum, const(0)),
            )
            raise_if(context, builder, negative, "fastbp: a register tile with a negative count")
            some_rows = builder.icmp_signed(">", nrows, const(0))
            some_strips = builder.icmp_signed(">", nstrips, const(0))
            with_bias = builder.and_(some_strips, builder.icmp_signed("==", init, const(1)))
            for name, k, value, base, terms, width, touched in (
                ("Z", 0, Zv, zo, [(nstrips, zs_), (nrows, ldz_)], lanes, None),
                ("W", 4, Wv, wo, [(nrows, wr_), (nsum, ws_)], 1, some_strips),
                ("S", 8, Sv, so, [(nstrips, ss_), (nsum, lds_)], lanes, some_rows),
                ("B", 14, Bv, bo, [(nrows, 1)], 1, with_bias),
            ):
                what = f"fastbp: a register tile outside its array {name}"
                check_span(context, builder, signature.args[k], value, base, terms, width, touched, what)

        def broadcast(x):
            v = builder.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(i32, 0))
            return builder.shuffle_vector(
                v, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
            )

        zero = ir.Constant(vec, [ir.Constant(T, 0.0)] * lanes)
        has_bias = builder.icmp_signed("==", init, const(1))
        accumulate = builder.icmp_signed("==", init, const(2))
        # the accumulators: stack slots LLVM promotes to registers (their address never escapes)
        acc = [[cgutils.alloca_once(builder, vec) for _ in range(8)] for _ in range(2)]

        def tile(R, j, z_strip, s_strip, P):
            """Rows j … j+R−1 of the P strips from Z offset ``z_strip`` and S offset ``s_strip``."""
            z_p = [z_strip, builder.add(z_strip, zs_)][:P]
            s_p = [s_strip, builder.add(s_strip, ss_)][:P]
            dst = [
                [
                    builder.bitcast(
                        builder.gep(zd, [builder.add(z_p[p], builder.mul(builder.add(j, const(r)), ldz_))]), vptr
                    )
                    for r in range(R)
                ]
                for p in range(P)
            ]
            for p in range(P):
                for r in range(R):
                    builder.store(zero, acc[p][r])
            with builder.if_else(has_bias) as (then, other):
                with then:
                    for r in range(R):
                        b = broadcast(builder.load(builder.gep(bd, [builder.add(bo, builder.add(j, const(r)))])))
                        for p in range(P):
                            builder.store(b, acc[p][r])
                with other:
                    with builder.if_then(accumulate):
                        for p in range(P):
                            for r in range(R):
                                builder.store(builder.load(dst[p][r], align=itemsize), acc[p][r])
            w_row = builder.add(wo, builder.mul(j, wr_))
            with cgutils.for_range(builder, nsum) as loop:
                s = loop.index
                x = [
                    builder.load(
                        builder.bitcast(builder.gep(sd, [builder.add(s_p[p], builder.mul(s, lds_))]), vptr),
                        align=itemsize,
                    )
                    for p in range(P)
                ]
                w_s = builder.add(w_row, builder.mul(s, ws_))
                for r in range(R):
                    w = broadcast(builder.load(builder.gep(wd, [builder.add(w_s, builder.mul(const(r), wr_))])))
                    for p in range(P):
                        prod = builder.fmul(w, x[p], flags=("contract",))
                        builder.store(builder.fadd(builder.load(acc[p][r]), prod, flags=("contract",)), acc[p][r])
            for p in range(P):
                for r in range(R):
                    builder.store(builder.load(acc[p][r]), dst[p][r], align=itemsize)

        R = tile_rows(context.codegen())

        def strip_rows(z_strip, s_strip, P):
            """Every row of P strips: tiles of R rows, then the remaining rows (< R) as tiles of 4, 2, 1."""
            n_main = builder.mul(builder.sdiv(nrows, const(R)), const(R))
            with cgutils.for_range_slice(builder, const(0), n_main, const(R)) as (j, _):
                tile(R, j, z_strip, s_strip, P)
            j_slot = cgutils.alloca_once_value(builder, n_main)
            for size in (4, 2, 1):
                if size >= R:
                    continue
                with builder.if_then(
                    builder.icmp_signed("!=", builder.and_(builder.sub(nrows, n_main), const(size)), const(0))
                ):
                    j = builder.load(j_slot)
                    tile(size, j, z_strip, s_strip, P)
                    builder.store(builder.add(j, const(size)), j_slot)

        P = tile_strips(context.codegen(), itemsize)  # strips per tile (docstring)
        n_groups = builder.sdiv(nstrips, const(P))
        with cgutils.for_range(builder, n_groups) as loop:
            first = builder.mul(loop.index, const(P))
            strip_rows(builder.add(zo, builder.mul(first, zs_)), builder.add(so, builder.mul(first, ss_)), P)
        if P == 2:  # an odd last strip alone
            odd = builder.icmp_signed("!=", builder.and_(nstrips, const(1)), const(0))
            with builder.if_then(builder.and_(odd, builder.icmp_signed(">", nstrips, const(0)))):
                last = builder.sub(nstrips, const(1))
                strip_rows(builder.add(zo, builder.mul(last, zs_)), builder.add(so, builder.mul(last, ss_)), 1)
        return context.get_dummy_value()

    return sig, codegen


@jit_inner
def _strips_compiled(Z, z0, ldz, zs, W, w0, wr, ws, S, s0, lds, ss, n_sum, n_rows, B, b0, init, n_strips):
    """:func:`_axpy_strips` as a function of its own, called (not inlined) through :func:`_strips`."""
    _axpy_strips(Z, z0, ldz, zs, W, w0, wr, ws, S, s0, lds, ss, n_sum, n_rows, B, b0, init, n_strips)


@jit_inline
def _strips(Z, z0, ldz, zs, W, w0, wr, ws, S, s0, lds, ss, n_sum, n_rows, B, b0, init, n_strips):
    """``n_strips`` strips of a product side by side (:func:`_axpy_strips`), for every product of the
    column kernels and the deferred kernels on their flat 1-D arrays: one call of
    :func:`_strips_compiled` with every integer argument as ``intp``, so that the tiles' code is
    compiled once per dtype.  Called with a constant offset or stride (``0``, ``1``, ``init`` 2) it
    was compiled once per pattern of constants, Numba typing each as a literal: three copies for a
    first ``fastbp train``, 0.30 + 0.11 + 0.06 s of its compile (docs/performance-kernels.md, "A first
    fastbp train's compile: what repeats")."""
    _strips_compiled(
        Z, intp(z0), intp(ldz), intp(zs), W, intp(w0), intp(wr), intp(ws), S, intp(s0), intp(lds), intp(ss),
        intp(n_sum), intp(n_rows), B, intp(b0), intp(init), intp(n_strips),
    )  # fmt: skip


def _transpose_masks(h: int, lanes: int = 8) -> tuple[list[int], list[int]]:
    """The two shuffles of one step of the 8 × 8 block transpose: rows i and i+h (i // h even) swap
    the off-diagonal h × h blocks of every 2h × 2h block; after h = 4, 2, 1 the block is transposed."""
    top, bottom = [], []
    for start in range(0, lanes, 2 * h):
        top += [start + u for u in range(h)] + [lanes + start + u for u in range(h)]
        bottom += [start + h + u for u in range(h)] + [lanes + start + h + u for u in range(h)]
    return top, bottom


@intrinsic
def _transpose8(typingctx, M, m0, ldm, MT, t0, ldt):
    """MT[t0 + v·ldt + u] = M[m0 + u·ldm + v] for u, v < 8: an 8 × 8 block transposed in registers
    (eight vector loads, three steps of eight shuffles, eight vector stores; flat element offsets
    into C-contiguous arrays of one float dtype; under Numba's bounds checking, ``IndexError`` if
    either block reaches outside its array: :func:`._bounds.check_span`)."""
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in (M, MT)) or M.dtype != MT.dtype:
        return None
    if M.dtype not in (types.float32, types.float64):
        return None
    sig = types.void(M, types.intp, types.intp, MT, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        Mv, mo, ldm_, Tv, to, ldt_ = args
        T = context.get_value_type(M.dtype)
        itemsize = context.get_abi_sizeof(T)
        vec = ir.VectorType(T, 8)
        vptr = vec.as_pointer()
        intp = context.get_value_type(types.intp)
        i32 = ir.IntType(32)
        md = context.make_array(signature.args[0])(context, builder, Mv).data
        td = context.make_array(signature.args[3])(context, builder, Tv).data
        what = "fastbp: an 8 x 8 transposed block outside its array"  # under bounds checking
        check_span(context, builder, signature.args[0], Mv, mo, [(8, ldm_)], 8, None, what)
        check_span(context, builder, signature.args[3], Tv, to, [(8, ldt_)], 8, None, what)
        rows = []
        for u in range(8):
            src = builder.gep(md, [builder.add(mo, builder.mul(ir.Constant(intp, u), ldm_))])
            rows.append(builder.load(builder.bitcast(src, vptr), align=itemsize))
        for h in (4, 2, 1):
            top, bottom = _transpose_masks(h)
            new = list(rows)
            for i in range(8):
                if (i // h) % 2 == 0:
                    mt = ir.Constant(ir.VectorType(i32, 8), top)
                    mb = ir.Constant(ir.VectorType(i32, 8), bottom)
                    new[i] = builder.shuffle_vector(rows[i], rows[i + h], mt)
                    new[i + h] = builder.shuffle_vector(rows[i], rows[i + h], mb)
            rows = new
        for v in range(8):
            dst = builder.gep(td, [builder.add(to, builder.mul(ir.Constant(intp, v), ldt_))])
            builder.store(rows[v], builder.bitcast(dst, vptr), align=itemsize)
        return context.get_dummy_value()

    return sig, codegen


# The packed W[1]ᵀ of the deferred kernels on the tiles (:mod:`.deferred_tiles`, :mod:`.blocked_tiles`):
# strip i holds the columns i·V … i·V + V − 1 of W[1]ᵀ (rows of W[1]), n_0 rows of V values,
# contiguous, so that a tile streams it; the padding after the last row of W[1] stays zero.  All
# arrays flat (1-D, C-contiguous): the one signature of :func:`_strips` the column kernels compile.
@jit_inline
def _packed_width(n1, itemsize):
    """``(V, n1p)``: values per strip (16 float32, 8 float64) and n_1 padded to whole strips."""
    V = STRIP_BYTES // itemsize
    return V, (n1 + V - 1) // V * V


@jit_inline
def _pack_transposed(params, WT, n0, n1, V):
    """WT = W[1] (the first n_1 × n_0 elements of ``params``, row-major) as its packed transpose."""
    for j in range(n1):
        W = params[j * n0 : (j + 1) * n0]
        Wp = WT[(j // V) * n0 * V + j % V :]
        for k in range(n0):
            Wp[k * V] = W[k]


@jit_inline
def _unpack_transposed(params, WT, n0, n1, V):
    """W[1] = the packed transpose WT, unpacked (the inverse of :func:`_pack_transposed`)."""
    for j in range(n1):
        W = params[j * n0 : (j + 1) * n0]
        Wp = WT[(j // V) * n0 * V + j % V :]
        for k in range(n0):
            W[k] = Wp[k * V]


@jit_inline
def _packed_update(WT, n0, n1p, P, C, n_terms):
    """W[1]ᵀ += Σ_{s < n_terms} x_s c_sᵀ on the packed WT: row k of each strip += Σ_s P[s·n_0 + k] ·
    (C's row s, that strip's V values), as tiles of rows k; P holds the inputs x_s (rows of n_0),
    C the c_s (rows of n1p, zero past n_1)."""
    V = STRIP_BYTES // WT.itemsize
    _strips(WT, 0, V, n0 * V, P, 0, 1, n0, C, 0, n1p, V, n_terms, n0, WT, 0, 2, n1p // V)


@jit_inline
def _packed_product(Zp, n1p, Q, n0, WT, n_rows):
    """Row t of Zp (n1p values) = W[1] x_t for t < n_rows, x_t row t of Q (n_0 values): Σ_k x_t[k] ·
    row k of the packed WT, one tile of up to :func:`tile_rows` examples per strip."""
    V = STRIP_BYTES // WT.itemsize
    _strips(Zp, 0, n1p, V, Q, 0, n0, 1, WT, 0, V, n0 * V, n0, n_rows, Zp, 0, 0, n1p // V)


@jit_inline
def _start_block(X, order, t0, n, Q, P_prev, C_prev, n_prev, WT, Zp, n0, n1p, n_rows):
    """The start of a block (per-example SGD) or batch (mini-batches) of the deferred kernels: Q's
    first n rows = the inputs X[order[t0 + t]]; W[1] −= the previous one's n_prev pending updates
    (:func:`_packed_update` with its inputs P_prev and −α dZ[1] rows C_prev); then rows t < n_rows of
    Zp = W[1] x_t (:func:`_packed_product`), from W[1] with those updates applied."""
    for t in range(n):
        xs = X[order[t0 + t]]
        xt = Q[t * n0 : (t + 1) * n0]
        for k in range(n0):
            xt[k] = xs[k]
    if n_prev > 0:
        _packed_update(WT, n0, n1p, P_prev, C_prev, n_prev)
    _packed_product(Zp, n1p, Q, n0, WT, n_rows)
