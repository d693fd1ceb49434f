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
so the workspace is n_0 + 3 Σ n_l rows of :data:`CHUNK` numbers whatever the batch
(full-batch training included).

A layer with at least ``blas_min`` weights has its three products done by BLAS instead
(Numba's ``np.dot``: SciPy's BLAS, held to one thread by the caller, :mod:`fastbp._blas`);
the loops above stay the path for narrow layers, where BLAS's per-call cost is more than
the product (``fastbp._dispatch.BLAS_MIN_WEIGHTS``).  The scalar-loop reference these are
tested against is :func:`fastbp._plain.loops._train_epoch` (``tests/test_dispatch.py``).
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_inline, jit_inner
from ..activations import activate_loop, times_derivative_loop
from ..losses import OUT_SOFTMAX, cost_loop, output_loop
from ..vmath import vexp
from ._common import _borrowed, _matrix_view

#: Examples per chunk: the columns of every workspace matrix.  256 keeps a chunk's A[l−1]
#: of a 64-unit layer (64 KB in float32) in L2 for the W[l] passes; re-measure with
#: ``python tools/perf_matrix.py --batch``.
CHUNK = 256

#: A net whose every layer runs the loops (no layer on BLAS) pads a chunk's columns to a
#: multiple of this many with zero examples: a short batch (8 examples) then still fills
#: whole vectors (LLVM's vector loops step 16-64 elements; fewer run as scalar code).
#: The padded columns' dZ is zero, so they add exact zeros to every gradient sum.
PAD = 16


@jit_inner
def _columns_workspace(params, sizes, u_off, batch_size, copy_x):
    """The workspaces of :func:`_columns_gradient`: ``(XT, YT, Z, A, D, col, gtmp)``, flat:
    room for Xᵀ (n_0 × c; none if not ``copy_x``), Yᵀ (n_L × c), Z, A, dZ of every unit
    (layer l's block n_l × c from element u_off[l−1]·c), three float64 rows of c for a softmax
    output (:func:`_softmax_columns`), and the largest W[l] (a chunk's dW[l] before it is added); c =
    min(batch_size, :data:`CHUNK`) rounded up to :data:`PAD` (``batch_size`` 0: a workspace
    never used, all of it empty).  A chunk of nc ≤ c examples
    views each block as a C-contiguous n × nc matrix (:func:`_block`)."""
    L = sizes.shape[0] - 1
    n_units = u_off[L - 1] + sizes[L]
    c = (min(batch_size, CHUNK) + PAD - 1) // PAD * PAD
    w_max = 0
    for l in range(L):
        w_max = max(w_max, sizes[l] * sizes[l + 1]) if batch_size > 0 else 0
    return (
        np.zeros(sizes[0] * c if copy_x else 0, params.dtype),
        np.zeros(sizes[L] * c, params.dtype),
        np.zeros(n_units * c, params.dtype),
        np.zeros(n_units * c, params.dtype),
        np.zeros(n_units * c, params.dtype),
        np.zeros(3 * c, np.float64),
        np.zeros(w_max, params.dtype),
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
def _block(flat, row0, c, n, nc):
    """Rows row0 … row0+n of a flat workspace of c-column blocks, as a C-contiguous n × nc matrix."""
    return _matrix_view(flat, row0 * c, n, nc)


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
def _grad_rows(grad, wo, n_in, n_out, Ain, Dl, nc, first):
    """dW[l] += dZ[l] A[l−1]ᵀ over the chunk (a sum over its examples; ``first``:
    = instead of +=, a batch's first chunk): entry jk is the dot of dZ row j with A row k,
    two rows of A per pass."""
    T = grad.dtype.type
    for j in range(n_out):
        G = grad[wo + j * n_in : wo + (j + 1) * n_in]
        dz = Dl[j]
        for k in range(0, n_in - 1, 2):
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
        if n_in % 2 == 1:
            a0 = Ain[n_in - 1]
            s0 = T(0)
            for t in range(nc):
                s0 += dz[t] * a0[t]
            G[n_in - 1] = s0 if first else G[n_in - 1] + s0


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
    order j = 0 … n_L−1.  ``col`` (float64, 3 rows of ≥ nc) keeps max_t in row 0 (for
    :func:`_softmax_cost_columns`) and s_t, then 1/s_t, in row 1 (values of the block's dtype)."""
    T = Zl.dtype.type
    mx = col[:nc]
    s = col[nc : 2 * nc]
    z0 = Zl[0]
    for t in range(nc):
        mx[t] = z0[t]
        s[t] = 0.0
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
    for t in range(nc):
        s[t] = T(1) / T(s[t])  # 1/s_t, then A = e · (1/s_t), as output_loop
    for j in range(n_L):
        ar = Al[j]
        for t in range(nc):
            ar[t] *= T(s[t])


@jit_inner
def _softmax_cost_columns(Zl, YT, n_L, nc, col):
    """The summed softmax cross-entropy of the block's first ``nc`` columns, Σ_t Σ_j Y[j, t]
    (lse_t − Z[j, t]) with lse_t = max_t + log Σ_j e^(Z[j, t] − max_t), in float64 as
    :func:`fastbp.losses.cost_loop`, by passes along the rows; reads max_t from ``col`` row 0
    (:func:`_softmax_columns` first), uses row 2."""
    mx = col[:nc]
    lse = col[2 * nc : 3 * nc]
    for t in range(nc):
        lse[t] = 0.0
    for j in range(n_L):
        zr = Zl[j]
        for t in range(nc):
            lse[t] += vexp(np.float64(zr[t]) - mx[t])
    for t in range(nc):
        lse[t] = mx[t] + np.log(lse[t])
    total = 0.0
    for j in range(n_L):
        zr = Zl[j]
        yr = YT[j]
        for t in range(nc):
            total += np.float64(yr[t]) * (lse[t] - np.float64(zr[t]))
    return total


@jit_inline
def _output_rows(Zl, Al, Dl, YT, n_L, nc, ncp, out, col, scale):
    """A[L] = out(Z[L]), the chunk's summed cost (float64) over its ``nc`` examples, and
    ``scale`` · dZ[L] = scale · (A[L] − Yᵀ) (zero in the padding columns nc … ncp): with scale
    = 1/n_b every product downstream is already the batch's mean, and no sum of n_b large
    terms can overflow where the mean does not.  σ, identity and e^z act
    elementwise, so each row is one vectorised call over the examples; softmax couples an
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
def _chunk_inputs(X, order, t0, nr, nc, c, blas_first, XTf):
    """The chunk's inputs, ``(XT, Xr)``: for a first layer on the loops, Xᵀ (n_0 × nc) gathered
    into ``XTf`` (the padding columns zero); for one on BLAS, the rows X_b (nc × n_0): X's own
    rows if ``XTf`` is empty (the caller's ``order`` is the rows as stored), else gathered into
    it.  The view not used aliases the other."""
    n0 = X.shape[1]
    if blas_first and XTf.shape[0] == 0:
        Xr = _matrix_view(X, order[t0] * n0, nc, n0)
        return Xr, Xr
    XT = _block(XTf, 0, c, n0, nc)
    Xr = _matrix_view(XTf, 0, nc, n0)
    if blas_first:
        _gather_rows(X, order, t0, nr, Xr)
    else:
        _gather_columns(X, order, t0, nr, XT)
    return XT, Xr


@jit_inline
def _forward_chunk(params, sizes, w_off, b_off, u_off, XT, Xr, nc, c, act, blas_min, Zf, Af):
    """The forward pass of a chunk from its inputs (:func:`_chunk_inputs`): Z[l] = W[l] A[l−1]
    + b[l] and A[l] = g(Z[l]) for the hidden layers, and Z[L] (the caller applies the output
    layer)."""
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    n1 = sizes[1]
    Z1 = _block(Zf, 0, c, n1, nc)
    if n0 * n1 >= blas_min:
        np.dot(_matrix_view(params, 0, n1, n0), Xr.T, Z1)
        _add_bias_rows(params, b_off[0], n1, Z1, nc)
    else:
        _affine_rows(params, 0, b_off[0], n0, n1, XT, Z1, nc)
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        uo = u_off[l]
        Zl = _block(Zf, uo, c, n_out, nc)
        if l > 0:
            Ain = _block(Af, u_off[l - 1], c, n_in, nc)
            if n_in * n_out >= blas_min:
                np.dot(_matrix_view(params, w_off[l], n_out, n_in), Ain, Zl)
                _add_bias_rows(params, b_off[l], n_out, Zl, nc)
            else:
                _affine_rows(params, w_off[l], b_off[l], n_in, n_out, Ain, Zl, nc)
        if l < L - 1:
            Al = _block(Af, uo, c, n_out, nc)
            for j in range(n_out):
                activate_loop(Zl[j], Al[j], nc, act)


@jit_inner
def _columns_gradient(
    params, grad, sizes, w_off, b_off, u_off, X, Y, order, start, stop, n_mean, act, out, ws, blas_min
):
    """grad = the gradient of the costs of the examples ``order[start:stop]`` summed and
    divided by ``n_mean`` (overwritten; dZ[L] carries the 1/n_mean, :func:`_output_rows`):
    their mean for ``n_mean = stop − start``, a part of a batch's mean for a batch split
    into parts (:func:`fastbp._fast.columns._split_gradient`); returns the sum of their
    costs (float64).  ``ws``: the tuple of
    :func:`_columns_workspace` (borrowed views).  The batch runs in chunks of
    :data:`CHUNK` examples, each through the passes in the module docstring.

    The products of a layer with at least ``blas_min`` weights go to BLAS (``np.dot``,
    which Numba hands to SciPy's BLAS; the caller holds BLAS to one thread), the others
    run the loops above.  For a first layer on BLAS the chunk's inputs are copied as rows
    (X_b, nc × n_0: one contiguous copy per example) and BLAS reads them transposed, so
    Z[1] = W[1] X_bᵀ and dW[1] = dZ[1] X_b need no transposing pass."""
    XTf, YTf, Zf, Af, Df, col, gtmp = ws
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    n1 = sizes[1]
    n_L = sizes[L]
    c = Zf.shape[0] // (u_off[L - 1] + n_L)
    blas_first = n0 * n1 >= blas_min
    pad = _padding(sizes, blas_min)
    scale = params.dtype.type(1) / params.dtype.type(n_mean)
    total = 0.0
    for t0 in range(start, stop, c):
        nr = min(c, stop - t0)  # the chunk's examples; nc ≥ nr columns with the padding
        nc = (nr + pad - 1) // pad * pad
        first = t0 == start
        XT, Xr = _chunk_inputs(X, order, t0, nr, nc, c, blas_first, XTf)
        YT = _block(YTf, 0, c, n_L, nc)
        _gather_columns(Y, order, t0, nr, YT)
        _forward_chunk(params, sizes, w_off, b_off, u_off, XT, Xr, nc, c, act, blas_min, Zf, Af)
        # ---- the cost and dZ[L] = A[L] − Yᵀ
        top = u_off[L - 1]
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
            scale,
        )
        # ---- backward, layers L … 2: dW[l], db[l]; dZ[l−1] = (W[l]ᵀ dZ[l]) ∗ g′(Z[l−1])
        for l in range(L - 1, 0, -1):
            n_in = sizes[l]
            n_out = sizes[l + 1]
            wo = w_off[l]
            up = u_off[l - 1]
            Dl = _block(Df, u_off[l], c, n_out, nc)
            Ain = _block(Af, up, c, n_in, nc)
            Dp = _block(Df, up, c, n_in, nc)
            if n_in * n_out >= blas_min:
                np.dot(_matrix_view(params, wo, n_out, n_in).T, Dl, Dp)
                _dw_blas(grad, gtmp, wo, n_in, n_out, Dl, Ain.T, first)
            else:
                _back_rows(params, wo, n_in, n_out, Dl, Dp, nc)
                _grad_rows(grad, wo, n_in, n_out, Ain, Dl, nc, first)
            _bias_rows(grad, b_off[l], n_out, Dl, nc, first)
            Zp = _block(Zf, up, c, n_in, nc)
            Ap = _block(Af, up, c, n_in, nc)
            for k in range(n_in):
                times_derivative_loop(Dp[k], Zp[k], Ap[k], nc, act)
        # ---- layer 1: dW[1], db[1] (no dA[0] is needed)
        D1 = _block(Df, 0, c, n1, nc)
        if blas_first:
            _dw_blas(grad, gtmp, 0, n0, n1, D1, Xr, first)
        else:
            _grad_rows(grad, 0, n0, n1, XT, D1, nc, first)
        _bias_rows(grad, b_off[0], n1, D1, nc, first)
    return total
