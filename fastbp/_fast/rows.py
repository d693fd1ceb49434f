"""Forward passes over fewer rows, and fewer multiply-adds, than the column pass pays for
(:data:`fastbp._dispatch.FAST_FORWARD_MIN_ROWS`, :data:`fastbp._dispatch.FAST_FORWARD_MIN_MACS`), in
blocks of :data:`ROWS_BLOCK` examples: what the public
``predict``, ``forward`` and ``loss`` run there for the built-in activations
(:func:`_predict_rows`, :func:`_forward_rows`, :func:`_loss_rows`).

Why kernels of their own, when the plain :func:`fastbp._plain.loops._output_batch`,
``_forward_batch`` and ``_loss_batch`` compute the same things:

* **Compile time** (issue 12, goal 7).  A first ``fastbp train`` or ``MLP.fit`` + ``predict``
  compiles the training kernel and then predict's; the plain kernels compile scalar activation,
  output and cost functions of their own (``hidden_activation``, ``output_activation``,
  ``example_cost``) around their loops.  These apply g, the output and the cost through the
  vectorised loops the fast training kernels have already compiled
  (:func:`fastbp.activations.activate_loop`, :func:`fastbp.losses.output_loop`,
  :func:`fastbp.losses.cost_loop`), and form the products with the training kernels' register
  tiles (:func:`fastbp._fast._tiles._strips`): all called, not inlined, so their own compile is
  only the loops below (Numba still links each callee's code into a kernel's module and emits it
  again there; the column pass's :mod:`fastbp._fast.forward` compiles its chunking, BLAS and
  transposes besides, about 4.9 s).
* **Speed.**  Z[l] = W[l] A[l−1] + b[l] for the block's examples as columns (Xᵀ of the block
  first): register tiles of W[l]'s rows by strips of 64 bytes of examples, every weight loaded
  once a strip and no reduction across a vector (the four-example dot products these replaced
  reduced four accumulators per row of W[l]: predict, forward and loss at 1,000 rows now 1.03-1.38x
  as fast; docs/performance-kernels.md, "The public operations' Python, and fewer rows on the
  register tiles"); g applied to a layer's whole block in one call, as are an
  elementwise output and its cost (σ, identity, e^z; softmax per example, on Z[L] copied back to
  one row per example).

``python tools/startup_profile.py profile --sizes 64,32,10 --batch-size 1 --examples 1347``
measures the compile, ``python tools/public_ops_speed.py --m 1000`` the speed
(docs/performance-kernels.md, "Fewer rows: predict, forward and loss on the training kernels'
loops").

Each element of Z[l] is b + Σ_k w·a in the order of k (the tiles' sums, with FMA), the plain
kernel's sum as LLVM compiles it (fastmath) may be reassociated, so the values agree with it to the
dtype's tolerance, not bit for bit.  Nothing is updated, so no divergence bound is needed:
non-finite values come out as they are.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_inline, jit_vec
from ..activations import activate_loop
from ..losses import OUT_SOFTMAX, cost_loop, output_loop
from ..params import offsets
from ._common import _matrix_view, _zeros
from ._tiles import STRIP_BYTES, _strips

#: Examples per block: whole strips of 64 bytes of examples (four of 8 float64, two of 16 float32),
#: one column per example, each layer's product as register tiles (:func:`._tiles._strips`).
ROWS_BLOCK = 32


@jit_inline
def _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xt, zL, aL):
    """Z[l], A[l] of examples i0 … i0 + nb − 1 (nb ≤ :data:`ROWS_BLOCK`) as columns: layer l's
    n_l rows of ``ROWS_BLOCK`` values from ``ROWS_BLOCK · u_off[l]`` of z and a, example e in
    column e; Xᵀ of the block in ``xt`` (n_0 rows).  Then Z[L] and A[L] again example by
    example in ``zL``, ``aL`` (ROWS_BLOCK × n_L, example e's row from e · n_L), where the output
    is applied.  The products run over the strips holding the block's examples only, g over the
    layer's whole block; a short block's columns past its examples hold the previous block's
    values (zero at first), which each column's products, g and nothing else read: no output
    reads them."""
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    ld = ROWS_BLOCK
    strip = STRIP_BYTES // params.itemsize
    n_strips = (nb + strip - 1) // strip
    for e in range(nb):  # Xᵀ of the block
        xe = X[i0 + e]
        for k in range(n0):
            xt[k * ld + e] = xe[k]
    src = xt
    s0 = 0
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        lo = ld * u_off[l]
        # Z[l] = W[l] A[l−1] + b[l] over the block's columns: tiles of W[l]'s rows by strips of examples
        _strips(
            z, lo, ld, strip, params, w_off[l], n_in, 1, src, s0, ld, strip, n_in, n_out, params, b_off[l], 1, n_strips
        )
        if l < L - 1:  # A[l] = g(Z[l]), the layer's whole block
            activate_loop(z[lo : lo + n_out * ld], a[lo : lo + n_out * ld], n_out * ld, act)
        src = a
        s0 = lo
    n_L = sizes[L]
    top = ld * u_off[L - 1]
    for e in range(nb):  # Z[L] example by example
        for j in range(n_L):
            zL[e * n_L + j] = z[top + j * ld + e]
    if out == OUT_SOFTMAX:
        for e in range(nb):  # A[L] = softmax(Z[L]), example by example
            output_loop(zL[e * n_L : (e + 1) * n_L], aL[e * n_L : (e + 1) * n_L], out)
    else:
        output_loop(zL[: nb * n_L], aL[: nb * n_L], out)  # A[L] = σ, identity or e^z, elementwise


@jit_inline
def _rows_workspace(params, sizes):
    """The offsets and the block workspaces of :func:`_rows_forward`: z, a, Xᵀ (zero), Z[L], A[L]."""
    w_off, b_off, u_off = offsets(sizes)
    L = sizes.shape[0] - 1
    n = ROWS_BLOCK * (u_off[L - 1] + sizes[L])
    z = _zeros(n, params.dtype)
    a = _zeros(n, params.dtype)
    xt = _zeros(ROWS_BLOCK * sizes[0], params.dtype)
    zL = np.empty(ROWS_BLOCK * sizes[L], params.dtype)
    aL = np.empty(ROWS_BLOCK * sizes[L], params.dtype)
    return w_off, b_off, u_off, z, a, xt, zL, aL


@jit_vec
def _predict_rows(params, sizes, X, act, out, AL):
    """AL (m × n_L) = A[L] of every row of X."""
    w_off, b_off, u_off, z, a, xt, zL, aL = _rows_workspace(params, sizes)
    L = sizes.shape[0] - 1
    n_L = sizes[L]
    m = X.shape[0]
    for i0 in range(0, m, ROWS_BLOCK):
        nb = min(ROWS_BLOCK, m - i0)
        _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xt, zL, aL)
        for e in range(nb):
            row = AL[i0 + e]
            for j in range(n_L):
                row[j] = aL[e * n_L + j]


@jit_vec
def _forward_rows(params, sizes, X, act, out, Z, A):
    """Z, A (m × n_units, example-major, as the plain ``_forward_batch``) = Z[l], A[l] of every
    layer for every row of X: layer l in columns u_off[l] … u_off[l] + n_l."""
    w_off, b_off, u_off, z, a, xt, zL, aL = _rows_workspace(params, sizes)
    L = sizes.shape[0] - 1
    m = X.shape[0]
    n_L = sizes[L]
    top = u_off[L - 1]
    for i0 in range(0, m, ROWS_BLOCK):
        nb = min(ROWS_BLOCK, m - i0)
        _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xt, zL, aL)
        for e in range(nb):
            Zr = Z[i0 + e]
            Ar = A[i0 + e]
            for l in range(L - 1):  # the hidden layers: column e of each layer's rows
                n = sizes[l + 1]
                u = u_off[l]
                src = ROWS_BLOCK * u + e
                for j in range(n):
                    Zr[u + j] = z[src + j * ROWS_BLOCK]
                    Ar[u + j] = a[src + j * ROWS_BLOCK]
            for j in range(n_L):  # the output layer: example e's row
                Zr[top + j] = zL[e * n_L + j]
                Ar[top + j] = aL[e * n_L + j]


@jit_vec
def _loss_rows(params, sizes, X, Y, act, out):
    """J = (1/m) Σ_i cost(x_i, y_i), each example's cost by :func:`fastbp.losses.cost_loop`,
    summed in float64."""
    w_off, b_off, u_off, z, a, xt, zL, aL = _rows_workspace(params, sizes)
    L = sizes.shape[0] - 1
    n_L = sizes[L]
    m = X.shape[0]
    total = 0.0
    for i0 in range(0, m, ROWS_BLOCK):
        nb = min(ROWS_BLOCK, m - i0)
        _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xt, zL, aL)
        if out == OUT_SOFTMAX:  # a sum over each example's outputs
            for e in range(nb):
                total += cost_loop(zL[e * n_L : (e + 1) * n_L], Y[i0 + e], out)
        else:  # elementwise costs: the block's nb examples in one call (their rows of Y are contiguous)
            total += cost_loop(zL[: nb * n_L], _matrix_view(Y, i0 * n_L, 1, nb * n_L)[0], out)
    return total / m
