"""Forward passes over fewer rows, and fewer multiply-adds, than the column pass pays for
(:data:`fastbp._dispatch.FAST_FORWARD_MIN_ROWS`, :data:`fastbp._dispatch.FAST_FORWARD_MIN_MACS`), four
examples at a time: what the public
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
  :func:`fastbp.losses.cost_loop`: called, not inlined), so their own compile is only the loops
  below.
* **Speed.**  Z[l] = W[l] A[l−1] + b[l] for :data:`ROWS_BLOCK` examples at once: four dot
  products per row of W[l] in one loop, each weight loaded once for the four (LLVM vectorises the
  loop over the inputs with four accumulators), and g applied to a layer's whole block in one
  call, as are an elementwise output and its cost (σ, identity, e^z; softmax per example).

``python tools/startup_profile.py profile --sizes 64,32,10 --batch-size 1 --examples 1347``
measures the compile, ``python tools/public_ops_speed.py --m 1000`` the speed
(docs/performance-kernels.md, "Fewer rows: predict, forward and loss on the training kernels'
loops").

The sums are the plain kernel's, reassociated by LLVM (fastmath), so the values agree with it to
the dtype's tolerance, not bit for bit.  Nothing is updated, so no divergence bound is needed:
non-finite values come out as they are.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_inline, jit_vec
from ..activations import activate_loop
from ..losses import OUT_SOFTMAX, cost_loop, output_loop
from ..params import offsets
from ._common import _matrix_view

#: Examples per block: four accumulators a row of W[l], each weight loaded once for the four.  The
#: dot-product loop of :func:`_rows_forward` is written out for exactly four (``p0`` … ``p3``).
#: Eight ran predict and loss 1.0-1.3x as fast on 2-4-1 and 64-32-1 at m = 1000 and level on the
#: other nets (``tools/public_ops_speed.py --m 1000``, alternated, AVX-512 and AVX2 code on Zen 4)
#: but made a first ``fastbp train``'s predict compile 0.25 s longer (1.26-1.32 s against
#: 1.00-1.06 s, alternated): not kept, the compile being why these kernels exist.
ROWS_BLOCK = 4


@jit_inline
def _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xpad):
    """Z[l], A[l] of examples i0 … i0 + nb − 1 (nb ≤ :data:`ROWS_BLOCK`) into the block
    workspaces z, a: layer l's values from ``ROWS_BLOCK · u_off[l]``, example e's at
    ``+ e · n_l`` (so a layer's block is contiguous, and each example's row of it).  A short
    last block runs as a whole one: its rows of X copied into ``xpad`` (ROWS_BLOCK × n_0, the
    rows past them zero), its missing examples computed and ignored."""
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    if nb == ROWS_BLOCK:
        P = _matrix_view(X, i0 * n0, ROWS_BLOCK, n0)  # A[0]: the block's rows of X
    else:
        for e in range(nb):
            xe = X[i0 + e]
            for k in range(n0):
                xpad[e * n0 + k] = xe[k]
        P = _matrix_view(xpad, 0, ROWS_BLOCK, n0)
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        W = _matrix_view(params, w_off[l], n_out, n_in)  # W[l], n_l × n_{l−1}
        b = params[b_off[l] : b_off[l] + n_out]
        lo = ROWS_BLOCK * u_off[l]
        if l > 0:
            P = _matrix_view(a, ROWS_BLOCK * u_off[l - 1], ROWS_BLOCK, n_in)  # A[l−1] of the block
        # Z[l] = W[l] A[l−1] + b[l] for the four examples: row j of W[l] once, four dot products
        p0 = P[0]
        p1 = P[1]
        p2 = P[2]
        p3 = P[3]
        for j in range(n_out):
            Wj = W[j]
            s0 = b[j]
            s1 = b[j]
            s2 = b[j]
            s3 = b[j]
            for k in range(n_in):
                w = Wj[k]
                s0 += w * p0[k]
                s1 += w * p1[k]
                s2 += w * p2[k]
                s3 += w * p3[k]
            z[lo + j] = s0
            z[lo + n_out + j] = s1
            z[lo + 2 * n_out + j] = s2
            z[lo + 3 * n_out + j] = s3
        zl = z[lo : lo + ROWS_BLOCK * n_out]
        al = a[lo : lo + ROWS_BLOCK * n_out]
        if l < L - 1:
            activate_loop(zl, al, ROWS_BLOCK * n_out, act)  # A[l] = g(Z[l]), the whole block
        elif out == OUT_SOFTMAX:
            for e in range(nb):  # A[L] = softmax(Z[L]), example by example
                output_loop(zl[e * n_out : (e + 1) * n_out], al[e * n_out : (e + 1) * n_out], out)
        else:
            output_loop(zl, al, out)  # A[L] = σ, identity or e^z of Z[L], elementwise: the whole block


@jit_inline
def _rows_workspace(params, sizes):
    """The offsets and the block workspaces of :func:`_rows_forward`: z, a and the padded rows
    of X (zero)."""
    w_off, b_off, u_off = offsets(sizes)
    L = sizes.shape[0] - 1
    n = ROWS_BLOCK * (u_off[L - 1] + sizes[L])
    xpad = np.zeros(ROWS_BLOCK * sizes[0], params.dtype)
    return w_off, b_off, u_off, np.empty(n, params.dtype), np.empty(n, params.dtype), xpad


@jit_vec
def _predict_rows(params, sizes, X, act, out, AL):
    """AL (m × n_L) = A[L] of every row of X."""
    w_off, b_off, u_off, z, a, xpad = _rows_workspace(params, sizes)
    L = sizes.shape[0] - 1
    n_L = sizes[L]
    top = ROWS_BLOCK * u_off[L - 1]
    m = X.shape[0]
    for i0 in range(0, m, ROWS_BLOCK):
        nb = min(ROWS_BLOCK, m - i0)
        _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xpad)
        for e in range(nb):
            row = AL[i0 + e]
            for j in range(n_L):
                row[j] = a[top + e * n_L + j]


@jit_vec
def _forward_rows(params, sizes, X, act, out, Z, A):
    """Z, A (m × n_units, example-major, as the plain ``_forward_batch``) = Z[l], A[l] of every
    layer for every row of X: layer l in columns u_off[l] … u_off[l] + n_l."""
    w_off, b_off, u_off, z, a, xpad = _rows_workspace(params, sizes)
    L = sizes.shape[0] - 1
    m = X.shape[0]
    for i0 in range(0, m, ROWS_BLOCK):
        nb = min(ROWS_BLOCK, m - i0)
        _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xpad)
        for l in range(L):
            n = sizes[l + 1]
            u = u_off[l]
            for e in range(nb):
                src = ROWS_BLOCK * u + e * n
                Zr = Z[i0 + e]
                Ar = A[i0 + e]
                for j in range(n):
                    Zr[u + j] = z[src + j]
                    Ar[u + j] = a[src + j]


@jit_vec
def _loss_rows(params, sizes, X, Y, act, out):
    """J = (1/m) Σ_i cost(x_i, y_i), each example's cost by :func:`fastbp.losses.cost_loop`,
    summed in float64."""
    w_off, b_off, u_off, z, a, xpad = _rows_workspace(params, sizes)
    L = sizes.shape[0] - 1
    n_L = sizes[L]
    top = ROWS_BLOCK * u_off[L - 1]
    m = X.shape[0]
    total = 0.0
    for i0 in range(0, m, ROWS_BLOCK):
        nb = min(ROWS_BLOCK, m - i0)
        _rows_forward(params, sizes, w_off, b_off, u_off, X, i0, nb, act, out, z, a, xpad)
        if out == OUT_SOFTMAX:  # a sum over each example's outputs
            for e in range(nb):
                s = top + e * n_L
                total += cost_loop(z[s : s + n_L], Y[i0 + e], out)
        else:  # elementwise costs: the block's nb examples in one call (their rows of Y are contiguous)
            total += cost_loop(z[top : top + nb * n_L], _matrix_view(Y, i0 * n_L, 1, nb * n_L)[0], out)
    return total / m
