"""The backward pass of a stored forward pass over many examples, as matrices: what the public
``kernels.backward`` runs for the built-in activations (:func:`_backward_fast`).

The plain :func:`fastbp._plain.loops._backward_batch` stays the scalar-loop reference (one example
at a time, ``dZ`` example-major); this one holds every layer units-major, one column per example
(Z[l], A[l] and dZ[l] as n_l × m blocks of ``ZT``, ``AT``, ``dZT``: what
:func:`fastbp._fast.forward._forward_fast` fills), so that each of a layer's two products is one
BLAS call (``np.dot`` in nopython mode, on one thread: the caller holds it) over all the examples:

    dZ[L]   = A[L] − Y                      (σ + cross-entropy, softmax + cross-entropy, identity + ½ squared error)
    dW[l]   = (1/m) dZ[l] A[l−1]ᵀ           (A[0] = X)
    db[l]   = (1/m) dZ[l] 1                 (a matrix-vector product too)
    dZ[l−1] = (W[l]ᵀ dZ[l]) ∗ g′(Z[l−1])

:func:`_backward_fast_rows` computes the same with the examples as rows (each layer an m × n_l
matrix, the orientation of X and of the NumPy reference): what runs when the stored pass is not
Fortran-ordered (:func:`fastbp._fast.packed_forward._forward_packed`'s row blocks), whose
transpose into units-major blocks would cost more than the products.  Its layer blocks are the
same flat buffers' (layer l's m × n_l from element m · u_off[l]), products

    dW[l] = (1/m) dZ[l]ᵀ A[l−1],   db[l] = (1/m) dZ[l]ᵀ 1,   dA[l−1] = dZ[l] W[l]

The sums run in BLAS's order, not the plain kernel's, so the two agree to the tolerances of
``fastbp.testing`` rather than bit for bit (``tests/test_columns.py``).  Nothing is updated.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit_vec
from ..activations import times_derivative_loop
from ..params import offsets


@jit_vec
def _backward_fast(params, sizes, X, YT, ZT, AT, act, dZT, grad):
    """dZT (n_units × m) = dZ[l] of every layer for every example, units-major (unscaled, as the
    plain kernel's dZ); ``grad`` = the mean dW[l], db[l] (overwritten).  ``YT``: Yᵀ (n_L × m)."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    T = params.dtype.type
    scale = T(1) / T(m)
    w_off, b_off, u_off = offsets(sizes)
    top = u_off[L - 1]
    ones = np.ones(m, params.dtype)
    for j in range(sizes[L]):  # dZ[L] = A[L] − Y
        d, a, y = dZT[top + j], AT[top + j], YT[j]
        for i in range(m):
            d[i] = a[i] - y[i]
    for l in range(L - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        dZl = dZT[u_off[l] : u_off[l] + n_out]
        dW = grad[w_off[l] : w_off[l] + n_out * n_in].reshape((n_out, n_in))
        if l == 0:  # dW[1] = dZ[1] X: X holds A[0]ᵀ's columns as its rows
            np.dot(dZl, X, dW)
        else:
            np.dot(dZl, AT[u_off[l - 1] : u_off[l - 1] + n_in].T, dW)
        db = grad[b_off[l] : b_off[l] + n_out]
        np.dot(dZl, ones, db)  # db[l] = dZ[l] 1 (a loop's sum would run one add at a time: no reassociation)
        for j in range(n_out):  # the means: dW[l], db[l] ·= 1/m
            wr = dW[j]
            for k in range(n_in):
                wr[k] *= scale
            db[j] *= scale
        if l > 0:  # dZ[l−1] = W[l]ᵀ dZ[l] ∗ g′(Z[l−1])
            lo = u_off[l - 1]
            W = params[w_off[l] : w_off[l] + n_out * n_in].reshape((n_out, n_in))
            dprev = dZT[lo : lo + n_in]
            np.dot(W.T, dZl, dprev)
            times_derivative_loop(
                dprev.reshape(n_in * m),
                ZT[lo : lo + n_in].reshape(n_in * m),
                AT[lo : lo + n_in].reshape(n_in * m),
                n_in * m,
                act,
            )


@jit_vec
def _backward_fast_rows(params, sizes, X, Y, Zf, Af, act, dZf, grad):
    """:func:`_backward_fast` with the examples as rows: ``Zf``, ``Af``, ``dZf`` flat, layer l's
    m × n_l block (row-major, one row per example) from element m · u_off[l]; dZ unscaled, as the
    plain kernel's; ``grad`` = the mean dW[l], db[l] (overwritten)."""
    L = sizes.shape[0] - 1
    m = X.shape[0]
    T = params.dtype.type
    scale = T(1) / T(m)
    w_off, b_off, u_off = offsets(sizes)
    ones = np.ones(m, params.dtype)
    n_L = sizes[L]
    top = m * u_off[L - 1]
    dZL = dZf[top : top + m * n_L]
    AL = Af[top : top + m * n_L]
    YL = Y.reshape(m * n_L)
    for i in range(m * n_L):  # dZ[L] = A[L] − Y
        dZL[i] = AL[i] - YL[i]
    for l in range(L - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        dZl = dZf[m * u_off[l] : m * (u_off[l] + n_out)].reshape((m, n_out))
        dW = grad[w_off[l] : w_off[l] + n_out * n_in].reshape((n_out, n_in))
        if l == 0:  # dW[1] = dZ[1]ᵀ X
            np.dot(dZl.T, X, dW)
        else:
            np.dot(dZl.T, Af[m * u_off[l - 1] : m * (u_off[l - 1] + n_in)].reshape((m, n_in)), dW)
        db = grad[b_off[l] : b_off[l] + n_out]
        np.dot(dZl.T, ones, db)  # db[l] = dZ[l]ᵀ 1
        for j in range(n_out):  # the means: dW[l], db[l] ·= 1/m
            wr = dW[j]
            for k in range(n_in):
                wr[k] *= scale
            db[j] *= scale
        if l > 0:  # dZ[l−1] = dZ[l] W[l] ∗ g′(Z[l−1])
            lo = m * u_off[l - 1]
            W = params[w_off[l] : w_off[l] + n_out * n_in].reshape((n_out, n_in))
            dprev = dZf[lo : lo + m * n_in]
            np.dot(dZl, W, dprev.reshape((m, n_in)))
            times_derivative_loop(dprev, Zf[lo : lo + m * n_in], Af[lo : lo + m * n_in], m * n_in, act)
