"""Forward passes over many examples, as column matrices: what the public ``predict``,
``forward`` and ``loss`` run for the built-in activations (:func:`_predict_fast`,
:func:`_forward_fast`, :func:`_loss_fast`).

The plain :func:`fastbp._plain.loops._output_batch`, ``_forward_batch`` and ``_loss_batch``
stay the scalar-loop references (one example at a time); these run the forward pass of the
column mini-batch kernels (:func:`fastbp._fast._columns._forward_chunk`: chunks of 256
examples, one column per example, BLAS for wide layers; the ``_tiles`` twins every product as
register tiles) and copy out what is asked for.
Nothing is updated, so no divergence bound is needed: non-finite values come out as they are.
"""

from __future__ import annotations

import numpy as np

from .._jit import JIT_INNER, JIT_VEC, compile_as, jit_inline
from ..params import offsets
from ._columns import (
    _block,
    _borrow_workspace,
    _chunk_inputs,
    _columns_workspace,
    _copies_inputs,
    _forward_chunk,
    _output_only,
    _output_rows,
    _padding,
    _tile_padding,
    _transpose,
    _view_width,
)
from ._common import _alive, _holds_non_finite, _matrix_view

#: Whether this compiled copy of a kernel below runs the register tiles (and no BLAS): ``False``
#: in :func:`_predict_fast`, :func:`_forward_fast`, :func:`_loss_fast` and the chunk pass they call
#: (:data:`_chunk_forward`), ``True`` in their ``_tiles`` twins and :data:`_chunk_forward_tiles`, the
#: same source with this global re-bound (as ``fastbp._fast._columns._TILES``: each copy compiles
#: only its own products).
_TILES = False


@jit_inline
def _zero_columns(M, n, lo, hi):
    """M[:, lo:hi] = 0 for the first ``n`` rows (a short chunk's padding columns)."""
    T = M.dtype.type
    for k in range(n):
        mr = M[k]
        for t in range(lo, hi):
            mr[t] = T(0)


@jit_inline
def _forward_setup(params, sizes, X, blas_min, tiles):
    """What the three kernels below share: the offsets, the visiting order 0 … m−1 (so a first
    layer on BLAS reads X's own rows), the workspace (owned: keep it alive), the chunk width c and
    the column padding; the blocks' row stride ld is the workspace's (:func:`._columns._lead`).
    With ``tiles`` no layer is on BLAS, whatever ``blas_min``."""
    L = sizes.shape[0] - 1
    w_off, b_off, u_off = offsets(sizes)
    order = np.arange(X.shape[0])
    copy_x = tiles or _copies_inputs(sizes, order, blas_min)
    ws_own = _columns_workspace(params, sizes, u_off, max(X.shape[0], 1), copy_x, tiles)
    c = ws_own[5].shape[0] // 3  # examples a chunk
    ld = ws_own[2].shape[0] // (u_off[L - 1] + sizes[L])  # the blocks' row stride (c without tiles)
    # np.int64: else Numba's type inference could give the padding as a constant, Literal[int](16),
    # and the chunk pass was compiled a second time for that literal (whichever kernel compiled first)
    pad = _tile_padding(params.itemsize) if tiles else _padding(sizes, blas_min)
    return w_off, b_off, u_off, order, ws_own, c, ld, np.int64(pad)


def _chunk_forward_body(params, sizes, w_off, b_off, u_off, X, order, t0, c, ld, pad, act, blas_min, XTf, Zf, Af):
    """The forward pass of the chunk of rows from ``t0`` (through Z[L]); returns its row count,
    its padded column count, the row length of its blocks' views (:func:`._columns._block`) and
    whether its rows of X hold NaN or ±inf (:func:`._common._holds_non_finite`, looked at after
    the pass has read them; the kernels' callers refuse such an X).

    Compiled once per dtype as a function of its own (:data:`_chunk_forward`, and
    :data:`_chunk_forward_tiles` with :data:`_TILES` re-bound), which the three kernels below
    call once per chunk of up to 256 rows: inlined into each of them, as it was, every kernel
    typed and compiled the whole pass again, and the six forward kernels were the test suite's
    largest compile after the threaded epochs (docs/performance-kernels.md, "One forward pass
    compiled for predict, forward and loss")."""
    nr = min(c, X.shape[0] - t0)
    nc = (nr + pad - 1) // pad * pad
    w = _view_width(nc, ld, _TILES)
    blas_first = not _TILES and sizes[0] * sizes[1] >= blas_min
    if _TILES:  # Xᵀ straight from X's rows (``order`` is 0 … m−1 and no dW needs the rows' copy)
        n0 = X.shape[1]
        XT = _block(XTf, 0, ld, n0, w)
        _transpose(_matrix_view(X, t0 * n0, nr, n0), XT, nr, n0)
        _zero_columns(XT, n0, nr, nc)
        Xr = XT
    else:
        XT, Xr = _chunk_inputs(X, order, t0, nr, nc, ld, blas_first, XTf, _TILES)
    _forward_chunk(params, sizes, w_off, b_off, u_off, XT, Xr, XTf, nc, ld, act, blas_min, Zf, Af, _TILES)
    n0 = X.shape[1]
    return nr, nc, w, _holds_non_finite(X.reshape(X.size)[t0 * n0 : (t0 + nr) * n0])


_chunk_forward = compile_as(_chunk_forward_body, "_chunk_forward", JIT_INNER)
_chunk_forward_tiles = compile_as(_chunk_forward_body, "_chunk_forward_tiles", JIT_INNER, {"_TILES": True})


def _predict_body(params, sizes, X, act, out, AL, blas_min):
    """AL (m × n_L) = A[L] of every row of X; returns whether X holds NaN or ±inf (the caller
    refuses X)."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    w_off, b_off, u_off, order, ws_own, c, ld, pad = _forward_setup(params, sizes, X, blas_min, _TILES)
    XTf, YTf, Zf, Af, Df, col, gtmp = _borrow_workspace(ws_own)
    n_L = sizes[L]
    top = u_off[L - 1]
    non_finite = False
    for t0 in range(0, m, c):
        nr, nc, w, bad = _chunk_forward(
            params, sizes, w_off, b_off, u_off, X, order, t0, c, ld, pad, act, blas_min, XTf, Zf, Af
        )
        non_finite |= bad
        Al = _block(Af, top, ld, n_L, w)
        _output_only(_block(Zf, top, ld, n_L, w), Al, n_L, nc, out, col)
        for t in range(nr):
            row = AL[t0 + t]
            for j in range(n_L):
                row[j] = Al[j, t]
    _alive(ws_own, order)
    return non_finite


def _forward_body(params, sizes, X, act, out, ZT, AT, blas_min):
    """ZT, AT (n_units × m) = Z[l], A[l] of every layer for every row of X, units-major: layer l
    in rows u_off[l] … u_off[l] + n_l (:func:`fastbp.params.offsets`), one column per example, so
    each chunk's blocks copy out row by row, contiguously (``ZT[u:u+n].T`` is Z[l], m × n_l).
    Returns whether X holds NaN or ±inf (the caller refuses X)."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    w_off, b_off, u_off, order, ws_own, c, ld, pad = _forward_setup(params, sizes, X, blas_min, _TILES)
    XTf, YTf, Zf, Af, Df, col, gtmp = _borrow_workspace(ws_own)
    n_L = sizes[L]
    top = u_off[L - 1]
    non_finite = False
    for t0 in range(0, m, c):
        nr, nc, w, bad = _chunk_forward(
            params, sizes, w_off, b_off, u_off, X, order, t0, c, ld, pad, act, blas_min, XTf, Zf, Af
        )
        non_finite |= bad
        _output_only(_block(Zf, top, ld, n_L, w), _block(Af, top, ld, n_L, w), n_L, nc, out, col)
        for l in range(L):  # layer by layer: a short chunk's blocks are not one matrix
            n = sizes[l + 1]
            u = u_off[l]
            Zc = _block(Zf, u, ld, n, w)
            Ac = _block(Af, u, ld, n, w)
            for j in range(n):
                # views of the destination, indexed from 0: ``ZT[u + j][t0 + t]`` in the loop
                # did not vectorise, 5x slower (a 64-32-1 forward pass of 4,096 rows: 113 us of
                # its 383; python tools/public_ops_speed.py --nets 64-32-1)
                zs, zd = Zc[j], ZT[u + j][t0 : t0 + nr]
                as_, ad = Ac[j], AT[u + j][t0 : t0 + nr]
                for t in range(nr):
                    zd[t] = zs[t]
                for t in range(nr):
                    ad[t] = as_[t]
    _alive(ws_own, order)
    return non_finite


def _loss_body(params, sizes, X, Y, act, out, blas_min):
    """``(J, non_finite)``: the mean over the rows of X of the per-example cost (float64), and
    whether X holds NaN or ±inf (the caller refuses X)."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    w_off, b_off, u_off, order, ws_own, c, ld, pad = _forward_setup(params, sizes, X, blas_min, _TILES)
    XTf, YTf, Zf, Af, Df, col, gtmp = _borrow_workspace(ws_own)
    n_L = sizes[L]
    top = u_off[L - 1]
    total = 0.0
    non_finite = False
    for t0 in range(0, m, c):
        nr, nc, w, bad = _chunk_forward(
            params, sizes, w_off, b_off, u_off, X, order, t0, c, ld, pad, act, blas_min, XTf, Zf, Af
        )
        non_finite |= bad
        YT = _block(YTf, 0, ld, n_L, w)
        for t in range(nr):
            y = Y[t0 + t]
            for j in range(n_L):
                YT[j, t] = y[j]
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
            params.dtype.type(1),
        )
    _alive(ws_own, order)
    return total / m, non_finite


#: The kernels with BLAS for layers from ``blas_min`` weights, and their ``_tiles`` twins with the
#: register tiles instead (``fastbp._dispatch`` picks: ``uses_tiles``).
_predict_fast = compile_as(_predict_body, "_predict_fast", JIT_VEC)
_forward_fast = compile_as(_forward_body, "_forward_fast", JIT_VEC)
_loss_fast = compile_as(_loss_body, "_loss_fast", JIT_VEC)
_TILED = {"_TILES": True, "_chunk_forward": _chunk_forward_tiles}
_predict_fast_tiles = compile_as(_predict_body, "_predict_fast_tiles", JIT_VEC, _TILED)
_forward_fast_tiles = compile_as(_forward_body, "_forward_fast_tiles", JIT_VEC, _TILED)
_loss_fast_tiles = compile_as(_loss_body, "_loss_fast_tiles", JIT_VEC, _TILED)
