"""Forward passes over many examples, as column matrices: what the public ``predict``,
``forward`` and ``loss`` run for the built-in activations (:func:`_predict_fast`,
:func:`_forward_fast`, :func:`_loss_fast`).

The plain :func:`fastbp._plain.loops._output_batch`, ``_forward_batch`` and ``_loss_batch``
stay the scalar-loop references (one example at a time); these run the forward pass of the
column mini-batch kernels (:func:`fastbp._fast._columns._forward_chunk`: chunks of 256
examples, one column per example, BLAS for wide layers) and copy out what is asked for.
Nothing is updated, so no divergence bound is needed: non-finite values come out as they are.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_inline, jit_vec
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
)
from ._common import _alive


@jit_inline
def _forward_setup(params, sizes, X, blas_min):
    """What the three kernels below share: the offsets, the visiting order 0 … m−1 (so a first
    layer on BLAS reads X's own rows), the workspace (owned: keep it alive), the chunk width c and
    the column padding."""
    L = sizes.shape[0] - 1
    w_off, b_off, u_off = offsets(sizes)
    order = np.arange(X.shape[0])
    ws_own = _columns_workspace(params, sizes, u_off, max(X.shape[0], 1), _copies_inputs(sizes, order, blas_min))
    c = ws_own[2].shape[0] // (u_off[L - 1] + sizes[L])
    return w_off, b_off, u_off, order, ws_own, c, _padding(sizes, blas_min)


@jit_inline
def _forward_rows(params, sizes, w_off, b_off, u_off, X, order, t0, c, pad, act, blas_min, XTf, Zf, Af):
    """The forward pass of the chunk of rows from ``t0`` (through Z[L]); returns its row count
    and its padded column count."""
    nr = min(c, X.shape[0] - t0)
    nc = (nr + pad - 1) // pad * pad
    XT, Xr = _chunk_inputs(X, order, t0, nr, nc, c, sizes[0] * sizes[1] >= blas_min, XTf)
    _forward_chunk(params, sizes, w_off, b_off, u_off, XT, Xr, nc, c, act, blas_min, Zf, Af)
    return nr, nc


@jit_vec
def _predict_fast(params, sizes, X, act, out, AL, blas_min):
    """AL (m × n_L) = A[L] of every row of X."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    w_off, b_off, u_off, order, ws_own, c, pad = _forward_setup(params, sizes, X, blas_min)
    XTf, YTf, Zf, Af, Df, col, gtmp = _borrow_workspace(ws_own)
    n_L = sizes[L]
    top = u_off[L - 1]
    for t0 in range(0, m, c):
        nr, nc = _forward_rows(params, sizes, w_off, b_off, u_off, X, order, t0, c, pad, act, blas_min, XTf, Zf, Af)
        Al = _block(Af, top, c, n_L, nc)
        _output_only(_block(Zf, top, c, n_L, nc), Al, n_L, nc, out, col)
        for t in range(nr):
            row = AL[t0 + t]
            for j in range(n_L):
                row[j] = Al[j, t]
    _alive(ws_own, order)


@jit_vec
def _forward_fast(params, sizes, X, act, out, Z, A, blas_min):
    """Z, A (m × n_units) = Z[l], A[l] of every layer for every row of X (layer l in the
    columns of the units workspace, :func:`fastbp.params.offsets`)."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    w_off, b_off, u_off, order, ws_own, c, pad = _forward_setup(params, sizes, X, blas_min)
    XTf, YTf, Zf, Af, Df, col, gtmp = _borrow_workspace(ws_own)
    n_L = sizes[L]
    top = u_off[L - 1]
    for t0 in range(0, m, c):
        nr, nc = _forward_rows(params, sizes, w_off, b_off, u_off, X, order, t0, c, pad, act, blas_min, XTf, Zf, Af)
        _output_only(_block(Zf, top, c, n_L, nc), _block(Af, top, c, n_L, nc), n_L, nc, out, col)
        for l in range(L):  # layer by layer: a short chunk's blocks are not one matrix
            n = sizes[l + 1]
            u = u_off[l]
            Zc = _block(Zf, u, c, n, nc)
            Ac = _block(Af, u, c, n, nc)
            for t in range(nr):
                zr = Z[t0 + t]
                ar = A[t0 + t]
                for j in range(n):
                    zr[u + j] = Zc[j, t]
                    ar[u + j] = Ac[j, t]
    _alive(ws_own, order)


@jit_vec
def _loss_fast(params, sizes, X, Y, act, out, blas_min):
    """J: the mean over the rows of X of the per-example cost (float64)."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    w_off, b_off, u_off, order, ws_own, c, pad = _forward_setup(params, sizes, X, blas_min)
    XTf, YTf, Zf, Af, Df, col, gtmp = _borrow_workspace(ws_own)
    n_L = sizes[L]
    top = u_off[L - 1]
    total = 0.0
    for t0 in range(0, m, c):
        nr, nc = _forward_rows(params, sizes, w_off, b_off, u_off, X, order, t0, c, pad, act, blas_min, XTf, Zf, Af)
        YT = _block(YTf, 0, c, n_L, nc)
        for t in range(nr):
            y = Y[t0 + t]
            for j in range(n_L):
                YT[j, t] = y[j]
        total += _output_rows(
            _block(Zf, top, c, n_L, nc),
            _block(Af, top, c, n_L, nc),
            _block(Df, top, c, n_L, nc),
            YT,
            n_L,
            nr,
            nc,
            out,
            col,
            params.dtype.type(1),
        )
    _alive(ws_own, order)
    return total / m
