"""The passes of the column mini-batch kernels (:mod:`fastbp._fast.columns`, and the
full-batch objective :mod:`fastbp._fast.fullbatch`): one batch's summed gradient with the
batch held as matrices, one column per example, SIMD across the batch's examples.

The other mini-batch passes (:mod:`._passes`) walk a batch one example at a time, so their
inner loops run over one layer's units: on a narrow net (2-4-1, 64-32-1) a loop of 2-64
iterations per unit, and the batch was slower than per-example SGD.  Here a chunk of a batch
is held as matrices with one *column* per example, every matrix C-contiguous:

    Xᵀ (n_0 × c), Yᵀ (n_L × c), Z[l], A[l], dZ[l] (n_l × c)      (c ≤ :data:`CHUNK` examples)

so that the innermost loop of every pass runs along a row, over the chunk's examples:
contiguous, the same operation on every lane, the vector width of the machine whatever the
layer's width.  The passes, with the derivation's equations (per chunk):

    Z[l]   = W[l] A[l−1] + b[l]          row j: b_j, then += W[l]_jk · A[l−1] row k   (axpy)
    A[l]   = g(Z[l]);  A[L] = out(Z[L])  rowwise (softmax too: passes along the rows, _softmax_columns)
    dZ[L]  = A[L] − Yᵀ
    dA[l−1] = W[l]ᵀ dZ[l]                row k: += W[l]_jk · dZ[l] row j              (axpy)
    dZ[l−1] = dA[l−1] ∗ g′(Z[l−1])
    dW[l]  += dZ[l] A[l−1]ᵀ              entry jk: row j · row k (a dot over examples)
    db[l]  += dZ[l] 1

with dZ[L] scaled by 1/n_b (so every product is already a mean), and after the batch's
last chunk ``grad`` holds the batch's mean gradient.  A batch of any size runs in chunks,
so the workspace is n_0 (2 n_0 for the tiles) + 3 Σ n_l rows of :data:`CHUNK` numbers whatever
the batch (full-batch training included); in the tiled copy each row is ld = :func:`_lead` (c)
numbers long, a strip longer where c numbers are an even number of cache lines.

The gradient is compiled twice from one source (:data:`_TILES`), and the dispatcher picks:

* :func:`_columns_gradient`: the loops above (``_affine_rows``, ``_back_rows``, ``_grad_rows``),
  and BLAS for a layer with at least ``blas_min`` weights (Numba's ``np.dot``: SciPy's BLAS,
  held to one thread by the caller, :mod:`fastbp._blas`), where the loops' per-term load and
  store of the output row cost more than BLAS's per-call overhead
  (``fastbp._dispatch.BLAS_MIN_WEIGHTS``).  For a first layer on BLAS the chunk's inputs are
  copied as rows (X_b, nc × n_0) and BLAS reads them transposed, so Z[1] = W[1] X_bᵀ and
  dW[1] = dZ[1] X_b need no transposing pass.  Nets with no layer for the tiles (2-4-1),
  batches the tiles do not take (under ``TILES_MIN_BATCH``, but for 16 and 28-31: ``fastbp._dispatch._tiles_batch``)
  and nets of more than ``TILES_MAX_INPUTS`` inputs run it.
* :func:`_columns_gradient_tiled`: every product of every layer as register tiles
  (:mod:`._tiles`: R rows by 64 bytes of columns of the output held in vector registers for the
  whole sum, the shape of a BLAS micro-kernel; ``_affine_tiles``, ``_back_tiles``,
  ``_grad_tiles``), no BLAS.  Z and dA are the loops' sums in their order (their bits);
  dW[l] runs as the axpy ``dW row j += dZ[l]_jt · A[l−1]ᵀ row t`` over A[l−1]ᵀ, one row per
  example: for the first layer the chunk's rows of X as copied (Xᵀ is their transpose), for
  the others A[l−1] transposed in 8 × 8 blocks (:func:`_transpose`); its columns after the
  last whole strip by ``_grad_rows``.

The scalar-loop reference both are tested against is :func:`fastbp._plain.loops._train_epoch`
(``tests/test_dispatch.py``, ``tests/test_columns.py``); the tiles are held to the loops in
``tests/test_columns.py``.
"""

from __future__ import annotations

import numpy as np

from .._jit import JIT_INNER, compile_as, jit_inline, jit_inner
from ..activations import activate_loop, times_derivative_loop
from ..losses import OUT_SIGMOID, OUT_SOFTMAX, cost_loop, output_loop
from ..vmath import vexp, vlog1p_unit
from ._common import _borrowed, _matrix_view, _zeros
from ._tiles import STRIP_BYTES, _strips, _transpose8

#: Examples per chunk: the columns of every workspace matrix.  256 keeps a chunk's A[l−1]
#: of a 64-unit layer (64 KB in float32) in L2 for the W[l] passes; re-measure with
#: ``python tools/perf_matrix.py --batch``.
CHUNK = 256

#: A net whose every layer runs the loops (no layer on BLAS) pads a chunk's columns to a
#: multiple of this many with zero examples: a short batch (8 examples) then still fills
#: whole vectors (LLVM's vector loops step 16-64 elements; fewer run as scalar code).
#: The padded columns' dZ is zero, so they add exact zeros to every gradient sum.  The tiled
#: copy pads to whole strips of 64 bytes instead (:func:`_tile_padding`), which its Z and dA
#: tiles rely on.
PAD = 16

#: The tiled copy's workspace rows (the blocks' leading dimension, :func:`_lead`) get one strip of
#: 64 bytes more where a chunk's row is an even number of cache lines from this many bytes up.
LEAD_MIN_BYTES = 512


@jit_inline
def _tile_padding(itemsize):
    """The tiled copy pads a chunk's columns to a multiple of this: one strip of
    :data:`._tiles.STRIP_BYTES` (16 float32 or 8 float64 columns), the tiles' unit of work.  A
    float64 half of scikit-learn's batch of 200 so runs 104 columns, not :data:`PAD`'s 112 (whole
    epochs 1.05-1.25x on one thread; docs/performance-kernels.md, "Float64 tiles on a Zen 3").  The
    padding adds exact zeros (dZ is zero there), but the sums over the examples that LLVM
    vectorises by the column count (the bias, dW's columns after its last strip) group their
    terms by it: float64's bits differ from a padding of 16, and are the same for any thread count."""
    return STRIP_BYTES // itemsize


@jit_inline
def _lead(c, itemsize):
    """The row stride, in elements, of the tiled copy's blocks for chunks of ``c`` columns of
    ``itemsize`` bytes: c, or c plus one strip (:data:`._tiles.STRIP_BYTES`) where c·itemsize is a
    multiple of 128 bytes of at least :data:`LEAD_MIN_BYTES`.

    A tile's sum reads one strip of each of n_in rows of A[l−1] (or dZ[l]).  At 256 float64
    columns those rows lie 2 KB apart, so they share 1/32 of the L2's sets (its 512 KB, eight
    ways, on a Zen 3: 256 lines for a strip of 784) and are evicted before the next tile reads
    them again; an odd number of lines between rows spreads them over every set.  The columns
    between c and the stride are never read by a sum (the tiles and loops stop at the chunk's
    columns); the elementwise passes (g, g′, the output) run over them along with the chunk's, on
    whatever they hold (zeros at first, then values those passes made), and nothing reads what
    they write there (a short last chunk's passes so cover whole rows of ld, not its nc columns:
    one chunk a batch at most, against the whole chunks' work).  Only the speed changes, never
    the bits.  Measured on a Zen 3, whole float64 epochs at batch 256
    1.05-1.28x (784-128-10, 256-256-10), float32 1.08-1.14x, the rest within the noise
    (docs/performance-kernels.md, "The tiled workspace's rows padded off the power of two"; the products alone:
    ``taskset -c 1 python tools/tile_speed.py --lead``)."""
    nbytes = c * itemsize
    if nbytes >= LEAD_MIN_BYTES and nbytes % 128 == 0:
        return c + STRIP_BYTES // itemsize
    return c


@jit_inline
def _columns_workspace(params, sizes, u_off, batch_size, copy_x, tiles):
    """:func:`_new_columns_workspace`, its flags and size passed on as run-time values: callers pass
    constants (``0``, ``False``, the ``_TILES`` global), which Numba types as literals, and a
    compiled function called with literals is compiled again for each set of them (eight copies of
    this one in a cold test suite, 1.8 s each, where two do: one a dtype)."""
    return _new_columns_workspace(params, sizes, u_off, np.int64(batch_size), bool(copy_x), bool(tiles))


@jit_inner
def _new_columns_workspace(params, sizes, u_off, batch_size, copy_x, tiles):
    """The workspaces of :func:`_columns_gradient` (``tiles``: of :func:`_columns_gradient_tiled`):
    ``(XT, YT, Z, A, D, col, gtmp)``, flat: room for the chunk's inputs (Xᵀ or X_b, n_0 × c; none
    if not ``copy_x``; with ``tiles`` always both, Xᵀ then X_b), Yᵀ (n_L × c), Z, A, dZ of every
    unit (layer l's block n_l × c from element u_off[l−1]·c; ld for c with ``tiles``), three float64 rows of c for a
    softmax output (:func:`_softmax_columns`), and ``gtmp``: the largest W[l] (a chunk's dW[l]
    from BLAS before it is added) or, with ``tiles``, the largest A[l]ᵀ for l ≥ 1 (what
    :func:`_grad_tiles` reads); c = min(batch_size, :data:`CHUNK`) rounded up to :data:`PAD`
    examples a chunk (``col``'s length is 3c; ``batch_size`` 0: a workspace never used, all of it
    empty).  Without ``tiles`` a chunk of nc ≤ c examples views each block as a C-contiguous n × nc
    matrix (:func:`_block`); with ``tiles`` the blocks' rows are ld = :func:`_lead` (c) elements
    long, Xᵀ's too (the rows of X after it keep n_0), and a chunk views each block as n × ld, its
    first nc columns the chunk's."""
    L = sizes.shape[0] - 1
    n_units = u_off[L - 1] + sizes[L]
    c = (min(batch_size, CHUNK) + PAD - 1) // PAD * PAD
    ld = _lead(c, params.itemsize) if tiles else c
    w_max = 0
    for l in range(L):  # tiles: A[l]ᵀ for dW[l+1] from l = 1 (dW[1] reads the copied rows of X)
        size = (c * _lead(sizes[l], params.itemsize) if l > 0 else 0) if tiles else sizes[l] * sizes[l + 1]
        w_max = max(w_max, size) if batch_size > 0 else 0
    x_size = sizes[0] * ld + c * _lead(sizes[0], params.itemsize) if tiles else (sizes[0] * c if copy_x else 0)
    return (
        _zeros(x_size, params.dtype),
        _zeros(sizes[L] * ld, params.dtype),
        _zeros(n_units * ld, params.dtype),
        _zeros(n_units * ld, params.dtype),
        _zeros(n_units * ld, params.dtype),
        _zeros(3 * c, np.float64),
        _zeros(w_max, params.dtype),
    )


@jit_inline
def _copies_inputs(sizes, order, blas_min):
    """Whether the column kernels copy the batch's rows of X into their workspace: always for
    a first layer on the loops (they read Xᵀ); for one on BLAS only if ``order`` is not the
    rows as stored, 0, 1, 2, … (BLAS then reads X's own rows: no copy, no workspace; the
    estimators' sparse path hands over each densified batch that way)."""
    if sizes[0] * sizes[1] < blas_min:
        return True
    for i in range(order.shape[0]):
        if order[i] != i:
            return True
    return False


# inlined: the caller's views of the borrowed workspace then carry no reference counting
@jit_inline
def _borrow_workspace(ws):
    """The tuple of :func:`_columns_workspace` as borrowed views (:func:`._common._borrowed`);
    the caller keeps ``ws`` alive to each exit (:func:`._common._alive`)."""
    return (
        _borrowed(ws[0]),
        _borrowed(ws[1]),
        _borrowed(ws[2]),
        _borrowed(ws[3]),
        _borrowed(ws[4]),
        _borrowed(ws[5]),
        _borrowed(ws[6]),
    )


@jit_inline
def _block(flat, row0, ld, n, w):
    """Rows row0 … row0+n of a flat workspace whose rows are ``ld`` elements apart, as a
    C-contiguous n × w matrix (w = ld, or a short chunk's nc ≤ ld columns packed closer)."""
    return _matrix_view(flat, row0 * ld, n, w)


@jit_inline
def _whole(flat, row0, ld, n, w):
    """:func:`_block`'s n × w elements as one flat view, for the elementwise passes (g, g′): one
    call over the block, not one per row.  At a chunk of 32 columns a call per row of 32 cost
    more than its arithmetic (perf, ``python tools/hotspots.py --net 64-64-10 --batch 32 --output sigmoid``:
    ``times_derivative_loop`` 6.2 %, ``activate_loop`` 10.6 % of the epoch)."""
    return flat[row0 * ld : row0 * ld + n * w]


@jit_inline
def _view_width(nc, ld, tiles):
    """The row length of a chunk's block views (:func:`_block`, :func:`_whole`): the tiled copy's
    rows are ``ld`` long whatever the chunk (:func:`_lead`); the plain copy packs a chunk of ``nc``
    columns closer (its rows nc apart, as BLAS reads them)."""
    return ld if tiles else nc


@jit_inline
def _gather_columns(M, order, t0, nc, MT):
    """MT[:, t] = M[order[t0 + t]] for the chunk's ``nc`` examples (rows of M become columns);
    the padding columns after them zero."""
    T = MT.dtype.type
    n = M.shape[1]
    for t in range(nc):
        row = M[order[t0 + t]]
        for k in range(n):
            MT[k, t] = row[k]
    for k in range(n):
        mr = MT[k]
        for t in range(nc, MT.shape[1]):
            mr[t] = T(0)


@jit_inline
def _affine_rows(params, wo, bo, n_in, n_out, Ain, Zl, nc):
    """Z[l] = W[l] A[l−1] + b[l] over the chunk (Ain: A[l−1], n_in × nc; Zl: n_out × nc).
    Row j starts at b_j; then, for each k, += W_jk · A row k (the examples inner:
    contiguous, vectorised); two rows of Z share each load of a row of A."""
    b = params[bo : bo + n_out]
    j = 0
    while j + 1 < n_out:
        W0 = params[wo + j * n_in : wo + (j + 1) * n_in]
        W1 = params[wo + (j + 1) * n_in : wo + (j + 2) * n_in]
        z0 = Zl[j]
        z1 = Zl[j + 1]
        b0 = b[j]
        b1 = b[j + 1]
        for t in range(nc):
            z0[t] = b0
            z1[t] = b1
        for k in range(n_in):
            ar = Ain[k]
            w0 = W0[k]
            w1 = W1[k]
            for t in range(nc):
                v = ar[t]
                z0[t] += w0 * v
                z1[t] += w1 * v
        j += 2
    if j < n_out:  # an odd last row
        W0 = params[wo + j * n_in : wo + (j + 1) * n_in]
        z0 = Zl[j]
        b0 = b[j]
        for t in range(nc):
            z0[t] = b0
        for k in range(n_in):
            ar = Ain[k]
            w0 = W0[k]
            for t in range(nc):
                z0[t] += w0 * ar[t]


@jit_inline
def _back_rows(params, wo, n_in, n_out, Dl, Dp, nc):
    """dA[l−1] = W[l]ᵀ dZ[l] over the chunk (Dl: dZ[l], n_out × nc; into Dp: n_in × nc):
    row k starts at 0; then, for each j, += W_jk · dZ row j (examples inner); two rows of dA
    share each load of a row of dZ."""
    T = params.dtype.type
    k = 0
    while k + 1 < n_in:
        d0 = Dp[k]
        d1 = Dp[k + 1]
        for t in range(nc):
            d0[t] = T(0)
            d1[t] = T(0)
        for j in range(n_out):
            dz = Dl[j]
            w0 = params[wo + j * n_in + k]
            w1 = params[wo + j * n_in + k + 1]
            for t in range(nc):
                v = dz[t]
                d0[t] += w0 * v
                d1[t] += w1 * v
        k += 2
    if k < n_in:  # an odd last row
        d0 = Dp[k]
        for t in range(nc):
            d0[t] = T(0)
        for j in range(n_out):
            dz = Dl[j]
            w0 = params[wo + j * n_in + k]
            for t in range(nc):
                d0[t] += w0 * dz[t]


@jit_inline
def _grad_rows(grad, wo, n_in, n_out, Ain, Dl, nc, first, k_lo):
    """Columns k_lo … n_in of dW[l] += dZ[l] A[l−1]ᵀ over the chunk (a sum over its examples;
    ``first``: = instead of +=, a batch's first chunk): entry jk is the dot of dZ row j with A
    row k, two rows of A per pass."""
    T = grad.dtype.type
    for j in range(n_out):
        G = grad[wo + j * n_in : wo + (j + 1) * n_in]
        dz = Dl[j]
        for k in range(k_lo, n_in - 1, 2):
            a0 = Ain[k]
            a1 = Ain[k + 1]
            s0 = T(0)
            s1 = T(0)
            for t in range(nc):
                v = dz[t]
                s0 += v * a0[t]
                s1 += v * a1[t]
            G[k] = s0 if first else G[k] + s0
            G[k + 1] = s1 if first else G[k + 1] + s1
        if (n_in - k_lo) % 2 == 1:  # an odd last column
            a0 = Ain[n_in - 1]
            s0 = T(0)
            for t in range(nc):
                s0 += dz[t] * a0[t]
            G[n_in - 1] = s0 if first else G[n_in - 1] + s0


# The register tiles (the tiled copy of the gradient, :data:`_TILES`, and of the forward kernels).
# Each product is one call of :func:`._tiles._strips` on the flat workspace arrays and element
# offsets, so one compiled function per dtype holds the tiles' code for every product of every
# kernel (three functions of their own cost a cold fit 4.3 s: ``python tools/startup_profile.py
# profile --sizes 64,100,10 --batch-size 200 --examples 400``).  Z and dA run in whole strips of
# 64 bytes of columns: a workspace's chunk of c columns (a multiple of PAD) holds whole strips of either
# dtype, and the tiled copy pads each chunk's columns to whole strips (_tile_padding).
assert PAD * 4 % STRIP_BYTES == 0, "a padded chunk is a whole number of float32 (and float64) strips"


#: The forward tiles sum over a W[l] of more than this many bytes in blocks of :data:`K_BLOCK` terms,
#: for chunks of at least :data:`K_BLOCK_MIN_STRIPS` strips of examples (:func:`_affine_tiles`).
K_BLOCK_MIN_BYTES = 512 * 1024
K_BLOCK = 128
K_BLOCK_MIN_STRIPS = 8


@jit_inline
def _affine_tiles(params, wo, bo, n_in, n_out, Af, a0, Zf, z0, nc, ld):
    """Z[l] = W[l] A[l−1] + b[l] over the chunk's ``nc`` columns as register tiles: A[l−1] the
    n_in rows of ``ld`` elements at element a0 of the flat ``Af``, Z[l] the n_out rows of ``ld`` at
    z0 of ``Zf``.  Each element is :func:`_affine_rows`' sum in its order (its bits).

    A W[l] larger than :data:`K_BLOCK_MIN_BYTES` (784-128 in float64: 784 KB; a Zen 3 core has 512 KB
    of L2) is summed in blocks of :data:`K_BLOCK` of its columns, every strip of examples through one
    block before the next block starts from the sums the last one stored (``init`` 2: the same
    terms in the same order, the same bits): each strip otherwise streamed the whole of W from
    the L3.  One core of a Zen 3, float64 128 × 784 by 64, 128 and 256 examples: 34.7-35.0 →
    40.6-41.0 GFLOP/s (BLAS 38.4-41.7); by 32 (four strips, each block reused less) 37.8 → 35.6, so
    chunks of fewer than :data:`K_BLOCK_MIN_STRIPS` strips are not blocked; 256 × 256 (512 KB, not
    blocked): 45.0 unblocked, 42.6 in blocks (a scratch loop over ``_strips``, nine alternated
    rounds; the tiles against BLAS: ``taskset -c 1 python tools/tile_speed.py --dtypes float64
    --shapes 128x784x128 256x256x128``; docs/performance-kernels.md, "Float64 tiles on a Zen 3")."""
    strip = STRIP_BYTES // params.itemsize
    big = n_in * n_out * params.itemsize > K_BLOCK_MIN_BYTES and nc // strip >= K_BLOCK_MIN_STRIPS
    kb = K_BLOCK if big else n_in
    for k0 in range(0, n_in, kb):
        init = 1 if k0 == 0 else 2
        nk = min(kb, n_in - k0)
        _strips(
            Zf, z0, ld, strip, params, wo + k0, n_in, 1, Af, a0 + k0 * ld, ld, strip, nk, n_out, params, bo, init,
            nc // strip,
        )  # fmt: skip


@jit_inline
def _back_tiles(params, wo, n_in, n_out, Df, dl0, dp0, nc, ld):
    """dA[l−1] = W[l]ᵀ dZ[l] over the chunk's ``nc`` columns as register tiles: dZ[l] the n_out rows
    of ``ld`` elements at element dl0 of the flat ``Df``, dA[l−1] the n_in rows at dp0 (a row of dA
    reads a column of W[l]: stride 1 between rows, n_in between terms).  :func:`_back_rows`' bits."""
    strip = STRIP_BYTES // params.itemsize
    _strips(Df, dp0, ld, strip, params, wo, 1, n_in, Df, dl0, ld, strip, n_out, n_in, params, 0, 0, nc // strip)


@jit_inline
def _grad_tiles(grad, wo, n_in, n_out, Ain, Df, dl0, Tf, t0, nc, ld, first, transpose):
    """dW[l] += dZ[l] A[l−1]ᵀ over the chunk's ``nc`` columns (``first``: = instead of +=): dW's
    rows in strips of 64 bytes of *its* columns as register tiles (dW row j += Σ_t dZ_jt · A[l−1]ᵀ
    row t, t over the chunk's examples) on A[l−1]ᵀ, the nc × n_in matrix at element t0 of the flat
    ``Tf`` with rows :func:`_lead` (n_in) elements apart (the chunk's rows of X for the first
    layer, :func:`_chunk_inputs`; a tile reads a strip down all nc rows, and rows 2 KB apart fell
    in two of a Zen 3's 64 L1 sets: float64 256 × 256 by 128 examples 33.8 → 42.4 GFLOP/s, 64 ×
    512 31.1 → 45.4, docs/performance-kernels.md, "Float64 tiles on a Zen 3"), which ``transpose``
    first fills from
    ``Ain`` (A[l−1], n_in rows, the chunk's first nc columns; :func:`_transpose`); dZ[l] the n_out
    rows of ``ld`` elements at dl0 of ``Df``.  The columns after the last whole strip by
    :func:`_grad_rows`.  The sum over the examples runs in another order than :func:`_grad_rows`'
    (the dtype's tolerance, not its bits).

    A layer of one unit (a single output) runs :func:`_grad_rows` alone, on A[l−1] as it is, with
    no transpose: its dots over the examples beat a tile of one row and the transpose it reads
    (one core of a Zen 3, 1 × 32 by 256 examples: float32 2.06 → 0.41 µs, float64 3.88 → 0.87; by
    32: 0.19 → 0.12, 0.29 → 0.14; docs/performance-kernels.md, "The output layer's passes").  With
    ten units the tiles stay ahead (10 × 64 by 256: 5.7 against 9.8 µs float32)."""
    strip = STRIP_BYTES // grad.itemsize
    kt = n_in // strip * strip if n_out > 1 else 0
    if kt > 0:
        ldt = _lead(n_in, grad.itemsize)
        if transpose:
            _transpose(Ain, _matrix_view(Tf, t0, nc, ldt), n_in, nc)
        init = 0 if first else 2
        _strips(grad, wo, n_in, strip, Df, dl0, ld, 1, Tf, t0, ldt, strip, nc, n_out, grad, 0, init, kt // strip)
    if kt < n_in:
        _grad_rows(grad, wo, n_in, n_out, Ain, _matrix_view(Df, dl0, n_out, ld), nc, first, kt)


@jit_inline
def _transpose(M, MT, n, nc):
    """MT[:, :n] = Mᵀ (M: n rows, C-contiguous, its first nc columns; MT: nc rows of ldt ≥ n
    elements, C-contiguous, ldt its row length): 8 × 8 blocks in registers
    (:func:`._tiles._transpose8`), the edges element by element."""
    n8 = n // 8 * 8
    c8 = nc // 8 * 8
    ldm = M.shape[1]
    ldt = MT.shape[1]
    if ldt >= 128:
        # MT's rows far apart (Xᵀ of a chunk of 256 examples, A[l]ᵀ of 128 units or more): finish
        # each band of 8 rows of MT before the next, else the many rows written at once share a
        # few cache sets and are evicted between their halves.  The other order wins for MT's rows
        # close together.  Same bits either way; 1.2-2.6x faster where it is taken, re-measured by
        # ``taskset -c 1 python tools/tile_speed.py --transposes`` (docs/performance-kernels.md)
        for t in range(0, c8, 8):
            for k in range(0, n8, 8):
                _transpose8(M, k * ldm + t, ldm, MT, t * ldt + k, ldt)
    else:
        for k in range(0, n8, 8):
            for t in range(0, c8, 8):
                _transpose8(M, k * ldm + t, ldm, MT, t * ldt + k, ldt)
    for k in range(n):
        mr = M[k]
        for t in range(c8 if k < n8 else 0, nc):
            MT[t, k] = mr[t]


@jit_inline
def _bias_rows(grad, bo, n_out, Dl, nc, first):
    """db[l] += dZ[l] 1 over the chunk (``first``: = instead of +=)."""
    T = grad.dtype.type
    gb = grad[bo : bo + n_out]
    for j in range(n_out):
        dz = Dl[j]
        s = T(0)
        for t in range(nc):
            s += dz[t]
        gb[j] = s if first else gb[j] + s


# called, not inlined: compiled once per dtype for the four kernels that use it (inlined,
# each kernel's cold compile paid for its own copy: a first fit + predict about 2-4 s more)
@jit_inner
def _softmax_columns(Zl, Al, n_L, nc, col):
    """A[L] = softmax(Z[L]) for each of the block's first ``nc`` columns (one per example),
    SIMD across the examples: a softmax couples the n_L outputs of one column, so rather than
    a short loop per column (n_L numbers, scalar code), each step is a pass along the rows:

        max_t = max_j Z[j, t];   A[j, t] = e^(Z[j, t] − max_t),  s_t = Σ_j A[j, t];   A[j, t] /= s_t

    the arithmetic of :func:`fastbp.losses.output_loop` in the block's dtype, the sum in the
    order j = 0 … n_L−1.  ``col`` (float64, 3 rows of ≥ nc) keeps max_t in row 0 and s_t, then
    1/s_t, in row 1 (values of the block's dtype), and in row 2 the same exponentials summed in
    float64, Σ_j e^(Z[j, t] − max_t), for :func:`_softmax_cost_columns` (its sum, in the
    order and precision of :func:`fastbp.losses.cost_loop`, the same bits): the cost then takes
    no exponential of its own.  Its second pass of them was 2.5 % of a 64-100-10 float64 epoch
    at batch 200, 0.3 % without (``python tools/hotspots.py --net 64-100-10 --dtype float64
    --batch 200 --output softmax --activation relu``, one core of a Zen 3)."""
    T = Zl.dtype.type
    mx = col[:nc]
    s = col[nc : 2 * nc]
    s64 = col[2 * nc : 3 * nc]
    z0 = Zl[0]
    for t in range(nc):
        mx[t] = z0[t]
        s[t] = 0.0
        s64[t] = 0.0
    for j in range(1, n_L):
        zr = Zl[j]
        for t in range(nc):
            v = np.float64(zr[t])
            mx[t] = v if v > mx[t] else mx[t]
    for j in range(n_L):
        zr = Zl[j]
        ar = Al[j]
        for t in range(nc):
            e = vexp(zr[t] - T(mx[t]))
            ar[t] = e
            s[t] = T(s[t]) + e
            s64[t] += np.float64(e)
    for t in range(nc):
        s[t] = T(1) / T(s[t])  # 1/s_t, then A = e · (1/s_t), as output_loop
    for j in range(n_L):
        ar = Al[j]
        for t in range(nc):
            ar[t] *= T(s[t])


@jit_inner
def _softmax_cost_columns(Zl, YT, n_L, nc, col):
    """The summed softmax cross-entropy of the block's first ``nc`` columns, Σ_t Σ_j Y[j, t]
    (lse_t − Z[j, t]) with lse_t = max_t + log Σ_j e^(Z[j, t] − max_t), as
    :func:`fastbp.losses.cost_loop` (the exponentials in the block's dtype, the rest in float64), by
    passes along the rows; reads max_t from ``col`` row 0 and the sum of the exponentials from row 2,
    where :func:`_softmax_columns` (first) left them, and leaves lse_t in row 2."""
    mx = col[:nc]
    lse = col[2 * nc : 3 * nc]
    for t in range(nc):
        lse[t] = mx[t] + np.log(lse[t])
    total = 0.0
    for j in range(n_L):
        zr = Zl[j]
        yr = YT[j]
        for t in range(nc):
            total += np.float64(yr[t]) * (lse[t] - np.float64(zr[t]))
    return total


# called, not inlined, as _softmax_columns: one copy per dtype, its cost sum always in the same order
@jit_inner
def _sigmoid_cost_row(zr, ar, dr, yr, nc, scale):
    """One σ output unit's row over the chunk's first ``nc`` examples: A = σ(Z), the summed cost
    Σ_t max(z, 0) − y·z + log1p(e^(−|z|)) (float64) and dZ = scale · (A − Y).  σ and the cost's
    tail both start from e = e^(−|z|) in the row's dtype (:func:`fastbp.vmath.vsigmoid` is
    1/(1 + e), or e · (1/(1 + e)) below zero; :func:`fastbp.losses._softplus_tail` is
    log1p(e)), taken here once, not once by :func:`fastbp.losses.output_loop` and again by
    :func:`fastbp.losses.cost_loop`.  A and dZ are their bits; the cost the same terms, summed in
    this loop's own order (one compiled copy: the same order in every kernel).

    Three passes, dZ's row holding e, then log1p(e), until the last: the first two in the row's
    dtype alone, so a float32 row runs 8 lanes to a 256-bit vector (one loop with the float64 sum
    ran 4), and float64's exp and log1p apart (in one loop the two took 4.9 ns a value, apart 3.5:
    ``vexp`` 1.95, ``vlog1p_unit`` 1.52).  On one core of
    a Zen 3, 10 × 256 outputs, ns a value: float32 3.5-3.9 one loop, 2.4 three, 4.7 as
    output_loop + cost_loop; float64 5.3-6.1, 4.9, 7.5.  Those two were 11 % of a 64-64-10
    float32 epoch at batch 256 (tanh, σ output; ``python tools/hotspots.py --net 64-64-10 --dtype
    float32 --batch 256 --output sigmoid``)."""
    T = zr.dtype.type
    for t in range(nc):  # A = σ(z) from e = e^(−|z|); e kept in dZ's row
        z = zr[t]
        e = vexp(-abs(z))
        e = e if z == z else z  # a NaN logit's own NaN, as vsigmoid (vexp(−|NaN|) flips its sign)
        d = T(1) / (T(1) + e)
        ar[t] = d if z >= T(0) else e * d
        dr[t] = e
    for t in range(nc):  # log1p(e), the cost's tail
        dr[t] = vlog1p_unit(dr[t])
    total = 0.0
    for t in range(nc):  # the cost's sum, then dZ = scale · (A − Y) in its place
        zd = np.float64(zr[t])
        total += (zd if zd > 0.0 else 0.0) - np.float64(yr[t]) * zd + np.float64(dr[t])
        dr[t] = (ar[t] - yr[t]) * scale
    return total


@jit_inline
def _output_rows(Zl, Al, Dl, YT, n_L, nc, ncp, out, col, scale):
    """A[L] = out(Z[L]), the chunk's summed cost (float64) over its ``nc`` examples, and
    ``scale`` · dZ[L] = scale · (A[L] − Yᵀ) (zero in the padding columns nc … ncp): with scale
    = 1/n_b every product downstream is already the batch's mean, and no sum of n_b large
    terms can overflow where the mean does not.  σ, identity and e^z act
    elementwise, so each row is one vectorised call over the examples (σ's with its cost and
    dZ: :func:`_sigmoid_cost_row`); softmax couples an
    example's outputs, and runs as passes along the rows too (:func:`_softmax_columns`)."""
    T = Zl.dtype.type
    total = 0.0
    if out == OUT_SOFTMAX:
        _softmax_columns(Zl, Al, n_L, nc, col)
        total += _softmax_cost_columns(Zl, YT, n_L, nc, col)
        for j in range(n_L):
            ar = Al[j]
            dr = Dl[j]
            yr = YT[j]
            for t in range(nc):
                dr[t] = (ar[t] - yr[t]) * scale
            for t in range(nc, ncp):
                dr[t] = T(0)
    elif out == OUT_SIGMOID:
        for j in range(n_L):
            zr = Zl[j]
            ar = Al[j]
            dr = Dl[j]
            total += _sigmoid_cost_row(zr, ar, dr, YT[j], nc, scale)
            output_loop(zr[nc:], ar[nc:], out)  # the columns after the chunk's, as the rest do
            for t in range(nc, ncp):
                dr[t] = T(0)
    else:
        for j in range(n_L):
            zr = Zl[j]
            ar = Al[j]
            dr = Dl[j]
            yr = YT[j]
            output_loop(zr, ar, out)
            total += cost_loop(zr[:nc], yr[:nc], out)
            for t in range(nc):
                dr[t] = (ar[t] - yr[t]) * scale
            for t in range(nc, ncp):
                dr[t] = T(0)
    return total


@jit_inline
def _output_only(Zl, Al, n_L, nc, out, col):
    """A[L] = out(Z[L]) over a chunk (no targets, no cost): rowwise for the elementwise outputs
    and for softmax (:func:`_softmax_columns`)."""
    if out == OUT_SOFTMAX:
        _softmax_columns(Zl, Al, n_L, nc, col)
    else:
        for j in range(n_L):
            output_loop(Zl[j], Al[j], out)


@jit_inline
def _gather_rows(M, order, t0, nc, Mr):
    """Mr[t] = M[order[t0 + t]] for the chunk's ``nc`` examples (a row copy per example)."""
    n = M.shape[1]
    for t in range(nc):
        row = M[order[t0 + t]]
        dst = Mr[t]
        for k in range(n):
            dst[k] = row[k]


@jit_inline
def _add_bias_rows(params, bo, n_out, Zl, nc):
    """Z[l] row j += b_j (after a BLAS product)."""
    b = params[bo : bo + n_out]
    for j in range(n_out):
        zr = Zl[j]
        bj = b[j]
        for t in range(nc):
            zr[t] += bj


@jit_inline
def _dw_blas(grad, gtmp, wo, n_in, n_out, Dl, AinT, first):
    """dW[l] += dZ[l] A[l−1]ᵀ by BLAS (``AinT``: A[l−1]ᵀ, nc × n_in): straight into ``grad``
    for a batch's first chunk (``first``: overwritten), else through ``gtmp``."""
    G = grad[wo : wo + n_out * n_in]
    if first:
        np.dot(Dl, AinT, _matrix_view(grad, wo, n_out, n_in))
    else:
        np.dot(Dl, AinT, _matrix_view(gtmp, 0, n_out, n_in))
        for p in range(n_out * n_in):
            G[p] += gtmp[p]


@jit_inline
def _padding(sizes, blas_min):
    """Columns per chunk are padded to a multiple of this: :data:`PAD` if every layer runs the
    loops, else 1 (BLAS would multiply the padding too)."""
    pad = PAD
    for l in range(sizes.shape[0] - 1):
        if sizes[l] * sizes[l + 1] >= blas_min:
            pad = 1
    return pad


@jit_inline
def _chunk_inputs(X, order, t0, nr, nc, ld, blas_first, XTf, tiles):
    """The chunk's inputs, ``(XT, Xr)``: for a first layer on the loops, Xᵀ (n_0 × nc) gathered
    column by column into ``XTf``; with ``tiles`` (the tiled copy, whose workspace holds both;
    Xᵀ n_0 rows of ``ld``), for a strip of inputs or more, the rows X_b (nc × n_0, contiguous
    copies, the padding rows zero) after it and Xᵀ as their transpose, for dW[1]'s tiles; for a
    first layer on BLAS, X_b alone (both views): X's own rows if ``XTf`` is empty (the caller's
    ``order`` is the rows as stored), else gathered into it."""
    n0 = X.shape[1]
    if blas_first and XTf.shape[0] == 0:
        Xr = _matrix_view(X, order[t0] * n0, nc, n0)
        return Xr, Xr
    XT = _block(XTf, 0, ld, n0, _view_width(nc, ld, tiles))
    if tiles:  # the tiles' X_b: after Xᵀ, its rows _lead(n_0) apart (_grad_tiles)
        Xr = _matrix_view(XTf, n0 * ld, nc, _lead(n0, X.itemsize))
    else:
        Xr = _matrix_view(XTf, 0, nc, n0)
    if blas_first:
        _gather_rows(X, order, t0, nr, Xr)
    elif not tiles or n0 * X.itemsize < STRIP_BYTES:  # the loops read Xᵀ alone
        _gather_columns(X, order, t0, nr, XT)
    else:
        _rows_and_transpose(X, order, t0, nr, nc, Xr, XT)
    return XT, Xr


# called, not inlined: compiled once per dtype for every kernel, as _strips
@jit_inner
def _rows_and_transpose(X, order, t0, nr, nc, Xr, XT):
    """Xr = the chunk's ``nr`` rows of X (the padding rows after them zero), XT = Xrᵀ."""
    _gather_rows(X, order, t0, nr, Xr)
    T = X.dtype.type
    for t in range(nr, nc):
        Xr[t, :] = T(0)
    _transpose(Xr, XT, nc, X.shape[1])


@jit_inline
def _forward_chunk(params, sizes, w_off, b_off, u_off, XT, Xr, XTf, nc, ld, act, blas_min, Zf, Af, tiles):
    """The forward pass of a chunk of ``nc`` columns from its inputs (:func:`_chunk_inputs`):
    Z[l] = W[l] A[l−1] + b[l] and A[l] = g(Z[l]) for the hidden layers, and Z[L] (the caller
    applies the output layer); the blocks' rows ``ld`` elements apart (:func:`_lead`)."""
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    n1 = sizes[1]
    w = _view_width(nc, ld, tiles)
    Z1 = _block(Zf, 0, ld, n1, w)
    if not tiles and n0 * n1 >= blas_min:
        np.dot(_matrix_view(params, 0, n1, n0), Xr.T, Z1)
        _add_bias_rows(params, b_off[0], n1, Z1, nc)
    elif tiles:  # Xᵀ: the block at element 0 of XTf
        _affine_tiles(params, 0, b_off[0], n0, n1, XTf, 0, Zf, 0, nc, ld)
    else:
        _affine_rows(params, 0, b_off[0], n0, n1, XT, Z1, nc)
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        uo = u_off[l]
        Zl = _block(Zf, uo, ld, n_out, w)
        if l > 0:
            Ain = _block(Af, u_off[l - 1], ld, n_in, w)
            if not tiles and n_in * n_out >= blas_min:
                np.dot(_matrix_view(params, w_off[l], n_out, n_in), Ain, Zl)
                _add_bias_rows(params, b_off[l], n_out, Zl, nc)
            elif tiles:
                _affine_tiles(params, w_off[l], b_off[l], n_in, n_out, Af, u_off[l - 1] * ld, Zf, uo * ld, nc, ld)
            else:
                _affine_rows(params, w_off[l], b_off[l], n_in, n_out, Ain, Zl, nc)
        if l < L - 1:  # A[l] = g(Z[l]): the block's n_out × w elements in one call (_whole)
            activate_loop(_whole(Zf, uo, ld, n_out, w), _whole(Af, uo, ld, n_out, w), n_out * w, act)


#: Whether this compiled copy of the gradient has the register tiles: ``False`` in
#: :func:`_columns_gradient`, ``True`` in :func:`_columns_gradient_tiled`, the same source compiled
#: with this global re-bound (:func:`fastbp._jit.compile_as`).  A Numba global is a compile-time
#: constant and Numba prunes the branches it makes dead (through the inlined helpers it is passed
#: to as ``tiles``), so each copy holds, and compiles, only its own products: the plain copy no
#: call to the tiles (their mere presence in the chunk pass made LLVM compile 2-4-1's loops
#: 0.62-0.78x as fast, bisected: docs/performance-kernels.md), the tiled copy no BLAS.  The
#: dispatcher picks the copy, through the epoch kernels' ``_tiles`` twins
#: (``fastbp._dispatch.uses_tiles``).
_TILES = False


def _columns_gradient_body(
    params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, n_mean, act, out, ws, blas_min
):
    """grad = the gradient of the costs of the examples ``order[start:stop]`` summed and
    divided by ``n_mean`` (overwritten; dZ[L] carries the 1/n_mean, :func:`_output_rows`):
    their mean for ``n_mean = stop − start``, a part of a batch's mean for a batch split
    into parts (:func:`fastbp._fast.columns._split_gradient`); returns the sum of their
    costs (float64).  ``ws``: the tuple of
    :func:`_columns_workspace` (borrowed views).  The batch runs in chunks of
    :data:`CHUNK` examples, each through the passes in the module docstring.

    In :func:`_columns_gradient` the products of a layer with at least ``blas_min`` weights go
    to BLAS and the others run the loops; :func:`_columns_gradient_tiled` runs every product as
    register tiles whatever ``blas_min`` says, on a workspace made with ``tiles`` (module
    docstring)."""
    XTf, YTf, Zf, Af, Df, col, gtmp = ws
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    n1 = sizes[1]
    n_L = sizes[L]
    c = col.shape[0] // 3  # examples a chunk (_columns_workspace)
    ld = Zf.shape[0] // (u_off[L - 1] + n_L)  # the blocks' row stride: c, or _lead(c) with the tiles
    blas_first = not _TILES and n0 * n1 >= blas_min
    pad = _tile_padding(params.itemsize) if _TILES else _padding(sizes, blas_min)  # the tiles: whole strips
    scale = params.dtype.type(1) / params.dtype.type(n_mean)
    total = 0.0
    for t0 in range(start, stop, c):
        nr = min(c, stop - t0)  # the chunk's examples; nc ≥ nr columns with the padding
        nc = (nr + pad - 1) // pad * pad
        w = _view_width(nc, ld, _TILES)  # the blocks' views: n × w
        first = t0 == start
        XT, Xr = _chunk_inputs(X, order, t0, nr, nc, ld, blas_first, XTf, _TILES)
        YT = _block(YTf, 0, ld, n_L, w)
        _gather_columns(Y, order, t0, nr, YT)
        _forward_chunk(params, sizes, w_off, b_off, u_off, XT, Xr, XTf, nc, ld, act, blas_min, Zf, Af, _TILES)
        # ---- the cost and dZ[L] = A[L] − Yᵀ
        top = u_off[L - 1]
        total += _output_rows(
            _block(Zf, top, ld, n_L, w),
            _block(Af, top, ld, n_L, w),
            _block(Df, top, ld, n_L, w),
            YT,
            n_L,
            nr,
            nc,
            out,
            col,
            scale,
        )
        # ---- backward, layers L … 1: dW[l], db[l]; for l ≥ 2 also dZ[l−1] = (W[l]ᵀ dZ[l]) ∗ g′(Z[l−1]).
        # Layer 1 in the same loop (its A[0] is the chunk's inputs; no dA[0] is needed), so that each
        # product below is one call site, one inlined copy: with layer 1 apart, the tiles' dW pass and
        # the bias pass were compiled twice per copy of the gradient.
        for l in range(L - 1, -1, -1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            wo = w_off[l]
            Dl = _block(Df, u_off[l], ld, n_out, w)
            if l > 0:
                up = u_off[l - 1]
                Ain = _block(Af, up, ld, n_in, w)
            else:
                up = 0
                Ain = XT
            if not _TILES and n_in * n_out >= blas_min:
                if l > 0:
                    np.dot(_matrix_view(params, wo, n_out, n_in).T, Dl, _block(Df, up, ld, n_in, w))
                    _dw_blas(grad, gtmp, wo, n_in, n_out, Dl, Ain.T, first)
                else:  # X_b, the chunk's rows
                    _dw_blas(grad, gtmp, 0, n0, n1, Dl, Xr, first)
            elif _TILES:  # A[l−1]ᵀ transposed into gtmp; for layer 1, X_b: after Xᵀ in XTf
                if l > 0:
                    _back_tiles(params, wo, n_in, n_out, Df, u_off[l] * ld, up * ld, nc, ld)
                Tf = gtmp if l > 0 else XTf
                _grad_tiles(
                    grad, wo, n_in, n_out, Ain, Df, u_off[l] * ld, Tf, 0 if l > 0 else n0 * ld, nc, ld, first, l > 0
                )
            else:
                if l > 0:
                    _back_rows(params, wo, n_in, n_out, Dl, _block(Df, up, ld, n_in, w), nc)
                _grad_rows(grad, wo, n_in, n_out, Ain, Dl, nc, first, 0)
            _bias_rows(grad, b_off[l], n_out, Dl, nc, first)
            if l > 0:
                times_derivative_loop(
                    _whole(Df, up, ld, n_in, w), _whole(Zf, up, ld, n_in, w), _whole(Af, up, ld, n_in, w), n_in * w, act
                )
    return total


#: The gradient with BLAS for layers from ``blas_min`` weights and the loops for the others.
_columns_gradient = compile_as(_columns_gradient_body, "_columns_gradient", JIT_INNER)
#: The gradient with every product as register tiles, no BLAS (``fastbp._dispatch.uses_tiles``).
_columns_gradient_tiled = compile_as(_columns_gradient_body, "_columns_gradient_tiled", JIT_INNER, {"_TILES": True})
