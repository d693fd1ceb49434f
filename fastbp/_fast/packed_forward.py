"""Forward passes over many examples with the examples as rows, on packed copies of W[l]ᵀ: what
the public ``predict``, ``forward`` and ``loss`` run for the built-in activations from
:data:`fastbp._dispatch.FAST_FORWARD_MIN_ROWS` rows (:func:`_predict_packed`,
:func:`_forward_packed`, :func:`_loss_packed`).

The plain :func:`fastbp._plain.loops._output_batch`, ``_forward_batch`` and ``_loss_batch`` stay the
scalar-loop references (one example at a time).  Here, block by block of :data:`PACKED_BLOCK`
examples, each layer is

    Z[l] = A[l−1] W[l]ᵀ + b[l]    (A[0] = X; one row per example, as the user holds X)

as the register tiles of :func:`._tiles._strips` with the *examples* as a tile's rows and a strip
of 64 bytes of *units* (16 float32, 8 float64) as its columns: each tile streams one strip of a
packed W[l]ᵀ (:func:`_pack_layers`: W[l]ᵀ's n_in rows strip by strip, the last strip padded with
zero weights) and broadcasts the examples' values, every weight loaded once per tile of examples.
Why not the columns (:mod:`.forward`'s chunks, one column per example, as the training kernels hold
a batch): those transpose every chunk of X first (the first layer's sums run down the examples'
columns) and copy each chunk's Z and A out to the caller again; here the first layer reads X's
rows where they lie and ``forward``'s Z[l], A[l] are the kernel's own blocks, no copy.  A layer of
one unit (a binary classifier's output) runs a dot product per example instead (a strip of one
unit would compute 15 padding lanes for every float32 value).

Memory: layer l's values of the block's examples are a row-major block of ``pads[l]`` values an
example (n_l rounded up to a strip; n_l itself for one unit), the padding lanes zero weights'
results, never read by the next layer's sums (they stop at n_l).  ``forward`` returns each
layer's block as an m × pads[l] matrix sliced to its n_l columns (C-contiguous where n_l fills
whole strips).

Each element of Z[l] starts at b_j and adds w·a in the order of the inputs with FMA (the tiles'
order, as the column tiles and the plain loops compute it); the one-unit dot products and the
plain kernel's fastmath loops may reassociate, so the values agree with the plain kernel to the
dtype's tolerance, not bit for bit (``tests/test_packed_forward.py``).  Nothing is updated, so no
divergence bound is needed: non-finite values come out as they are.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_inline, jit_inner, jit_vec
from ..activations import activate_loop
from ..losses import OUT_SOFTMAX, cost_loop, output_loop
from ..params import offsets
from ._columns import _softmax_columns, _softmax_cost_columns, _transpose
from ._common import _holds_non_finite, _matrix_view, _zeros
from ._tiles import STRIP_BYTES, _strips

#: Examples per block: the block's values of every layer stay in the L1/L2 caches between one
#: layer's product and the next's.
PACKED_BLOCK = 128


@jit_inline
def _layer_pads(sizes, itemsize):
    """``(pads, q_off, wt_off)``: each layer's values per example (n_l rounded up to a strip of
    64 bytes, or 1 for a layer of one unit), their running sums (layer l's block starts at
    ``rows · q_off[l]``), and where each layer's packed W[l]ᵀ starts (none for one unit)."""
    L = sizes.shape[0] - 1
    V = STRIP_BYTES // itemsize
    pads = np.empty(L, np.int64)
    q_off = np.empty(L + 1, np.int64)
    wt_off = np.empty(L + 1, np.int64)
    q_off[0] = 0
    wt_off[0] = 0
    for l in range(L):
        n_out = sizes[l + 1]
        pads[l] = 1 if n_out == 1 else (n_out + V - 1) // V * V
        q_off[l + 1] = q_off[l] + pads[l]
        wt_off[l + 1] = wt_off[l] + (0 if n_out == 1 else sizes[l] * pads[l])
    return pads, q_off, wt_off


@jit_inline
def _pack_layers(params, sizes, w_off, pads, wt_off, WT):
    """WT = every layer's W[l]ᵀ packed from ``wt_off[l]``: strip i holds W[l]ᵀ's columns
    i·V … i·V + V − 1 (rows i·V … of W[l]) as n_in rows of V, contiguous; zero past n_l."""
    V = STRIP_BYTES // params.itemsize
    T = params.dtype.type
    for l in range(sizes.shape[0] - 1):
        if pads[l] == 1:
            continue
        n_in = sizes[l]
        n_out = sizes[l + 1]
        Wl = WT[wt_off[l] : wt_off[l + 1]]
        for i in range(Wl.shape[0]):
            Wl[i] = T(0)
        for j in range(n_out):
            W = params[w_off[l] + j * n_in : w_off[l] + (j + 1) * n_in]
            Wp = Wl[(j // V) * n_in * V + j % V :]
            for k in range(n_in):
                Wp[k * V] = W[k]


@jit_inline
def _softmax_block(Zf, Af, zo, p, nr, n_L, ZT, AT, col):
    """A[L] = softmax(Z[L]) for the block's nr examples (Z[L], A[L] rows of ``p`` from element
    ``zo`` of ``Zf``, ``Af``) across the examples: Z[L]ᵀ into ``ZT`` (n_L × :data:`PACKED_BLOCK`),
    the column kernels' passes (:func:`._columns._softmax_columns`: each a vectorised pass along a
    row of ZT, where an example's softmax alone is a short loop of n_L numbers), A[L]ᵀ back.  ZT
    and ``col`` keep Z[L]ᵀ, the maxima and the sums for :func:`._columns._softmax_cost_columns`."""
    _transpose(_matrix_view(Zf, zo, nr, p), ZT, nr, n_L)
    _softmax_columns(ZT, AT, n_L, nr, col)
    _transpose(AT, _matrix_view(Af, zo, nr, p), n_L, nr)


# called, not inlined: compiled once per dtype for the three kernels below (inlined, each kernel
# typed and compiled the whole pass again: a cold predict, forward and loss of 64-32-1 float64
# compiled in 14.9-16.5 s in all, against 12.8-12.9 for the column pass's, which shares one chunk
# pass the same way; ``python tools/startup_profile.py`` lists a cold compile)
@jit_inner
def _packed_block(
    params, sizes, w_off, b_off, pads, q_off, wt_off, WT, X, r0, nr, rows, first, act, out, Zf, Af, ZT, AT, col
):
    """Z[l], A[l] of every layer for examples r0 … r0 + nr − 1 (X's rows): layer l's block of
    those examples (nr × pads[l], row-major) from element ``rows · q_off[l] + first · pads[l]`` of
    the flat ``Zf``, ``Af`` (``forward``: the m × pads[l] blocks, rows = m and first = r0; a
    workspace of blocks: rows = :data:`PACKED_BLOCK`, first = 0).  A[L] = the output of Z[L]
    (a softmax by :func:`_softmax_block`, on the workspaces ``ZT``, ``AT``, ``col``).

    Returns whether those rows of X hold NaN or ±inf (:func:`._common._holds_non_finite`: a pass
    over the block's rows just after the first layer's products have read them into the caches;
    before them, that pass waited on memory for what the products' loads fetch while they
    compute, and cost as much as NumPy's pass over X; the caller refuses such an X)."""
    L = sizes.shape[0] - 1
    V = STRIP_BYTES // params.itemsize
    T = params.dtype.type
    n0 = sizes[0]
    non_finite = False
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        p = pads[l]
        zo = rows * q_off[l] + first * p
        b = params[b_off[l] : b_off[l] + n_out]
        # the layer's input: X's rows r0 … (n_0 apart), or the previous layer's block
        src = X.reshape(X.size) if l == 0 else Af
        s0 = r0 * n0 if l == 0 else rows * q_off[l - 1] + first * pads[l - 1]
        ls = n0 if l == 0 else pads[l - 1]
        if p == 1:  # one unit: z_t = b + Σ_k A[l−1]_tk w_k, a dot product per example
            w = params[w_off[l] : w_off[l] + n_in]
            zr = Zf[zo : zo + nr]
            for t in range(nr):
                x = src[s0 + t * ls : s0 + t * ls + n_in]
                s = T(0)
                for k in range(n_in):
                    s += x[k] * w[k]
                zr[t] = b[0] + s
        else:  # Z[l] = b[l], then += A[l−1] W[l]ᵀ as tiles (examples × a strip of units)
            for t in range(nr):
                zr = Zf[zo + t * p : zo + (t + 1) * p]
                for j in range(n_out):
                    zr[j] = b[j]
                for j in range(n_out, p):
                    zr[j] = T(0)
            _strips(Zf, zo, p, V, src, s0, ls, 1, WT, wt_off[l], V, n_in * V, n_in, nr, Zf, 0, 2, p // V)
        if l == 0:  # X's rows of the block, in the caches now
            non_finite = _holds_non_finite(X.reshape(X.size)[r0 * n0 : (r0 + nr) * n0])
        if l < L - 1:  # A[l] = g(Z[l]) over the whole block (its padding lanes too: never read)
            activate_loop(Zf[zo : zo + nr * p], Af[zo : zo + nr * p], nr * p, act)
        elif out == OUT_SOFTMAX:  # couples an example's outputs: across the examples, transposed
            _softmax_block(Zf, Af, zo, p, nr, n_out, ZT, AT, col)
        else:  # σ, identity, e^z: elementwise, the whole block in one call
            output_loop(Zf[zo : zo + nr * p], Af[zo : zo + nr * p], out)
    return non_finite


@jit_inline
def _packed_setup(params, sizes):
    """The offsets, the layers' pads, the packed W[l]ᵀ and the softmax's workspaces
    (:func:`_softmax_block`: Z[L]ᵀ, A[L]ᵀ, then the transposed targets' room, and ``col``)."""
    L = sizes.shape[0] - 1
    w_off, b_off, u_off = offsets(sizes)
    pads, q_off, wt_off = _layer_pads(sizes, params.itemsize)
    WT = np.empty(wt_off[L], params.dtype)
    _pack_layers(params, sizes, w_off, pads, wt_off, WT)
    T3 = _zeros((3, sizes[L], PACKED_BLOCK), params.dtype)
    col = _zeros(3 * PACKED_BLOCK, np.float64)
    return w_off, b_off, pads, q_off, wt_off, WT, T3, col


@jit_vec
def _forward_packed(params, sizes, X, act, out, Zf, Af):
    """Zf, Af (flat, m · Σ pads) = Z[l], A[l] of every layer for every row of X: layer l the
    m × pads[l] row-major block from element m · q_off[l] (:func:`_layer_pads`).  Returns whether
    X holds NaN or ±inf (Zf, Af then hold what they hold: the caller refuses X)."""
    w_off, b_off, pads, q_off, wt_off, WT, T3, col = _packed_setup(params, sizes)
    m = X.shape[0]
    non_finite = False
    for r0 in range(0, m, PACKED_BLOCK):
        nr = min(PACKED_BLOCK, m - r0)
        non_finite |= _packed_block(
            params, sizes, w_off, b_off, pads, q_off, wt_off, WT, X, r0, nr, m, r0, act, out, Zf, Af, T3[0], T3[1], col
        )
    return non_finite


@jit_inline
def _block_workspace(params, q_off, L):
    """Z and A of one block of every layer (:data:`PACKED_BLOCK` examples), zero."""
    n = PACKED_BLOCK * q_off[L]
    return _zeros(n, params.dtype), _zeros(n, params.dtype)


@jit_inline
def _scoring_setup(params, sizes):
    """What :func:`_predict_packed` and :func:`_loss_packed` share: ``(ws, p, top)``, the setup and
    one block's workspaces as a tuple ``(w_off, b_off, pads, q_off, wt_off, WT, T3, col, Zf, Af)``
    for :func:`_score_block`, the output layer's values per example and where its block starts."""
    w_off, b_off, pads, q_off, wt_off, WT, T3, col = _packed_setup(params, sizes)
    L = sizes.shape[0] - 1
    Zf, Af = _block_workspace(params, q_off, L)
    return (w_off, b_off, pads, q_off, wt_off, WT, T3, col, Zf, Af), pads[L - 1], PACKED_BLOCK * q_off[L - 1]


@jit_inline
def _score_block(params, sizes, ws, X, r0, act, out):
    """The block pass of X's rows from r0 into the one block's workspaces of ``ws``
    (:func:`_scoring_setup`); returns the block's row count and whether its rows of X hold NaN
    or ±inf.  Its row counts go in as int64, not literals: the pass is compiled for one signature."""
    w_off, b_off, pads, q_off, wt_off, WT, T3, col, Zf, Af = ws
    nr = min(PACKED_BLOCK, X.shape[0] - r0)
    block = np.int64(PACKED_BLOCK)
    non_finite = _packed_block(
        params,
        sizes,
        w_off,
        b_off,
        pads,
        q_off,
        wt_off,
        WT,
        X,
        r0,
        nr,
        block,
        np.int64(0),
        act,
        out,
        Zf,
        Af,
        T3[0],
        T3[1],
        col,
    )
    return nr, non_finite


@jit_vec
def _predict_packed(params, sizes, X, act, out, AL):
    """AL (m × n_L) = A[L] of every row of X.  Returns whether X holds NaN or ±inf (the caller
    refuses X)."""
    ws, p, top = _scoring_setup(params, sizes)
    Af = ws[9]
    n_L = AL.shape[1]
    non_finite = False
    for r0 in range(0, X.shape[0], PACKED_BLOCK):
        nr, bad = _score_block(params, sizes, ws, X, r0, act, out)
        non_finite |= bad
        for t in range(nr):
            row = AL[r0 + t]
            a = Af[top + t * p : top + t * p + n_L]
            for j in range(n_L):
                row[j] = a[j]
    return non_finite


@jit_vec
def _loss_packed(params, sizes, X, Y, act, out):
    """``(J, non_finite)``: J = (1/m) Σ_i cost(x_i, y_i), each example's cost by
    :func:`fastbp.losses.cost_loop`, summed in float64, and whether X holds NaN or ±inf (the
    caller then refuses X)."""
    ws, p, top = _scoring_setup(params, sizes)
    T3, col, Zf = ws[6], ws[7], ws[8]
    n_L = Y.shape[1]
    m = X.shape[0]
    total = 0.0
    non_finite = False
    for r0 in range(0, m, PACKED_BLOCK):
        nr, bad = _score_block(params, sizes, ws, X, r0, act, out)
        non_finite |= bad
        if out == OUT_SOFTMAX:  # across the examples: Yᵀ beside Z[L]ᵀ (_softmax_block)
            _transpose(_matrix_view(Y, r0 * n_L, nr, n_L), T3[2], nr, n_L)
            total += _softmax_cost_columns(T3[0], T3[2], n_L, nr, col)
        elif p == n_L:  # elementwise costs, the block's rows end to end
            total += cost_loop(Zf[top : top + nr * n_L], Y.reshape(Y.size)[r0 * n_L : (r0 + nr) * n_L], out)
        else:  # rows with padding lanes
            for t in range(nr):
                total += cost_loop(Zf[top + t * p : top + t * p + n_L], Y[r0 + t], out)
    return total / m, non_finite
