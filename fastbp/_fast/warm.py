"""Compile into Numba's cache, from a second process, the helpers a training kernel compiles last:
:func:`compile_late_helpers` (per-example kernels), :func:`compile_late_column_helpers` (the column
kernels of mini-batches).

Why: Numba compiles on one thread.  A cold ``fastbp train`` (per-example SGD on the digits) first
compiles its training kernel's helpers, one after the other as type inference meets them, then the
kernel itself; the second core is idle.  ``fastbp._compile_beside.CompileBeside`` runs this in a second process
meanwhile, **in the reverse order** of the kernel's first calls (recorded from the ``numba:compile``
events of a cold run: ``activate_loop``, ``output_loop``, ``cost_loop``, ``times_derivative_loop``,
``defer_cost``, ``flush_costs``), so the two processes meet in the middle: each helper the second
process has saved by the time the kernel's compile reaches it is loaded from the cache instead of
compiled again.  The argument types are those of the kernels' calls (1-D C-contiguous arrays of the
network's dtype, ``int64`` sizes and codes), so the cache entries are the ones the kernels look up;
``tests/test_cli_compile_beside.py`` compiles a training kernel after this and checks that none of
these helpers is compiled again.

The column kernels (``fastbp train --batch-size 32``: ``_columns_epoch_tiles``) compile their
gradient's helpers as its body meets them: the chunk's inputs (``_rows_and_transpose``), the
output rows (``_softmax_columns``, ``_softmax_cost_columns``, ``_sigmoid_cost_row``, ``output_loop``,
``cost_loop``), then
``times_derivative_loop`` and ``_abs_sum``.  :func:`_call_late_column_helpers` reaches them through
the same inlined passes (:func:`fastbp._fast._columns._chunk_inputs`, ``_output_rows``, ``_whole``)
on a workspace made as the kernels make theirs, so with the kernels' argument types, last first.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..activations import activate_loop, times_derivative_loop
from ..losses import cost_loop, defer_cost, flush_costs, output_loop
from ..params import Layout
from ._columns import (
    _block,
    _borrow_workspace,
    _chunk_inputs,
    _lead,
    _output_rows,
    _rows_and_transpose,
    _sigmoid_cost_row,
    _softmax_columns,
    _softmax_cost_columns,
    _whole,
)
from ._common import _abs_sum

#: The helpers :func:`compile_late_helpers` compiles, in the order it compiles them.
LATE_HELPERS = (flush_costs, defer_cost, times_derivative_loop, cost_loop, output_loop, activate_loop)


@njit(cache=False)  # its own compile is a few calls; the helpers it calls are cached (JIT_INNER)
def _call_late_helpers(z, a, d, y, Zc, Yc, cnt, n, act, out):
    """Each helper of :data:`LATE_HELPERS` once, in that order (type inference compiles them in it)."""
    total = flush_costs(Zc, Yc, cnt, n, out)
    defer_cost(z, y, Zc, Yc, cnt)
    times_derivative_loop(d, z, a, n, act)
    total += cost_loop(z, y, out)
    output_loop(z, a, out)
    activate_loop(z, a, n, act)
    return total


def compile_late_helpers(dtype, act: int, out: int) -> None:
    """Compile (or load) :data:`LATE_HELPERS` for networks of ``dtype`` into Numba's cache: one call of
    each on one-element arrays, with a built-in activation's code ``act`` and an output's code ``out``
    (the codes are run-time values: any valid pair compiles the same machine code)."""
    dtype = np.dtype(dtype)
    z, a, d, y, Zc, Yc = (np.zeros(1, dtype) for _ in range(6))
    _call_late_helpers(z, a, d, y, Zc, Yc, np.zeros(1, np.int64), 1, int(act), int(out))


#: The helpers :func:`compile_late_column_helpers` compiles, in the order it compiles them.
LATE_COLUMN_HELPERS = (
    _abs_sum,
    times_derivative_loop,
    _softmax_columns,
    _softmax_cost_columns,
    _sigmoid_cost_row,
    output_loop,
    cost_loop,
    _rows_and_transpose,
)


@njit(cache=False)  # as _call_late_helpers
def _call_late_column_helpers(params, X, order, ws, t0, n0, n1, n_L, top, ld, act, out):
    """The column gradient's helpers (:data:`LATE_COLUMN_HELPERS`) through the passes that call them
    in :func:`fastbp._fast._columns._columns_gradient_body` (its tiled copy), last first, on one
    chunk of X's rows and a workspace ``ws`` laid out as the column epochs lay out theirs
    (:func:`fastbp._fast._columns._new_columns_workspace`, here made in Python: compiling that
    function is early work the first process does itself)."""
    XTf, YTf, Zf, Af, Df, col, gtmp = _borrow_workspace(ws)
    nr = order.shape[0]
    nc = col.shape[0] // 3
    w = ld
    total = _abs_sum(params, params.shape[0])  # the step bound's sums (the epoch's, after each batch)
    # dZ[l−1] = (W[l]ᵀ dZ[l]) ∗ g′(Z[l−1]): the backward pass's elementwise part
    times_derivative_loop(_whole(Df, 0, ld, n1, w), _whole(Zf, 0, ld, n1, w), _whole(Af, 0, ld, n1, w), n1 * w, act)
    scale = params.dtype.type(1) / params.dtype.type(nr)
    total += _output_rows(  # (the arguments as the gradient passes them: the same types, the same entries)
        _block(Zf, top, ld, n_L, w),
        _block(Af, top, ld, n_L, w),
        _block(Df, top, ld, n_L, w),
        _block(YTf, 0, ld, n_L, w),
        n_L,
        nr,
        nc,
        out,
        col,
        scale,
    )
    XT, Xr = _chunk_inputs(X, order, t0, nr, nc, ld, n0 < 0, XTf, True)  # t0: a run-time 0, as the kernel's
    return total + XT.shape[0] + Xr.shape[0]


def compile_late_column_helpers(n_inputs: int, n_hidden: int, n_outputs: int, dtype, act: int, out: int) -> None:
    """Compile (or load) :data:`LATE_COLUMN_HELPERS` for networks of ``dtype`` into Numba's cache: one
    call of :func:`_call_late_column_helpers` on a chunk of 8 examples of an ``n_inputs``-``n_hidden``-
    ``n_outputs`` network (the sizes are run-time values: any compiles the same machine code)."""
    dtype = np.dtype(dtype)
    c = ld = 8  # a chunk (a multiple of PAD) and its rows' stride
    n_units = n_hidden + n_outputs
    lead = _lead.py_func  # X_b's and A[1]ᵀ's rows, as the workspace spaces them
    ws = (
        np.zeros(n_inputs * ld + c * lead(n_inputs, dtype.itemsize), dtype),  # Xᵀ, then X_b
        np.zeros(n_outputs * ld, dtype),  # Yᵀ
        np.zeros(n_units * ld, dtype),  # Z
        np.zeros(n_units * ld, dtype),  # A
        np.zeros(n_units * ld, dtype),  # dZ
        np.zeros(3 * c, np.float64),  # softmax's rows
        np.zeros(c * lead(n_hidden, dtype.itemsize), dtype),  # A[1]ᵀ
    )
    n_params = Layout([n_inputs, n_hidden, n_outputs]).n_params
    X = np.zeros((c, n_inputs), dtype)
    order = np.arange(c, dtype=np.int64)
    args = (0, n_inputs, n_hidden, n_outputs, n_hidden, ld, int(act), int(out))
    _call_late_column_helpers(np.zeros(n_params, dtype), X, order, ws, *args)
