"""The plain kernels: backpropagation as explicit scalar loops, one example at a time.

This module is fastbp's *scalar-loop reference*: every loop reads like the
equation in its comment (notation of ``docs/derivation.md``: W[l], b[l], Z[l],
A[l], g, σ, α; layer l maps n_{l−1} inputs to n_l units).  Its NumPy twin is
:mod:`fastbp.reference`; every fast kernel in :mod:`fastbp._fast` is tested against
the kernels here.  They work on the flat parameter buffer of :mod:`fastbp.params`,
trust their inputs (the public wrappers of :mod:`fastbp.kernels` check them) and
allocate only their workspaces, once per call, never per example.

Where to find a loop:

* Z[l] = W[l] A[l−1] + b[l] and A[l] = g(Z[l]) ....... :func:`_forward_example`
* dZ[L] = A[L] − Y .................................... :func:`_backward_example`
* dW[l] = dZ[l] A[l−1]ᵀ, db[l] = dZ[l] ................ :func:`_backward_example`
* dZ[l−1] = (W[l]ᵀ dZ[l]) ∗ g'(Z[l−1]) ................ :func:`_backward_example`
* the mean gradient of one batch ...................... :func:`_mean_gradient`
* with weights w_i: the weighted mean, w_i / Σ w ....... :func:`_mean_gradient`
* the full-batch objective and gradient (L-BFGS) ...... :func:`_loss_and_gradient`
* W −= α dW, b −= α db ................................ :func:`fastbp.steps._sgd_update`
* per-example SGD, mini-batches, full batch ........... :func:`_train_epoch`
* an epoch with momentum, Adam and L2 ................. :func:`_train_epoch_opt`

Every kernel here names its g through :func:`fastbp.activations.hidden_activation`
and :func:`fastbp.activations.hidden_derivative`; :func:`fastbp._plain.kernels_for`
re-compiles the whole set with those two names bound to a user's custom g.
"""

from __future__ import annotations

import numpy as np

from .._jit import jit
from ..activations import hidden_activation, hidden_derivative
from ..losses import batch_weight, example_cost, output_activation
from ..params import offsets
from ..steps import _add_l2, _optimizer_step, _sgd_update, _step_is_finite

# ===================================================================== one example


@jit
def _forward_example(params, sizes, w_off, b_off, u_off, x, z, a, act, out):
    """Forward pass of one example x, filling the unit workspaces z (Z[l]) and a (A[l])."""
    L = sizes.shape[0] - 1
    a_prev = x  # A[0] = x
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        W = params[w_off[l] : w_off[l] + n_out * n_in].reshape((n_out, n_in))  # W[l+1]
        b = params[b_off[l] : b_off[l] + n_out]
        zl = z[u_off[l] : u_off[l] + n_out]
        al = a[u_off[l] : u_off[l] + n_out]
        # Z[l] = W[l] A[l−1] + b[l]
        for j in range(n_out):
            s = b[j]
            for k in range(n_in):
                s += W[j, k] * a_prev[k]
            zl[j] = s
        if l < L - 1:
            # A[l] = g(Z[l])  (hidden layers)
            for j in range(n_out):
                al[j] = hidden_activation(zl[j], act)
        else:
            # A[L] = σ(Z[L]), softmax(Z[L]) or Z[L]  (the output layer)
            output_activation(zl, al, out)
        a_prev = al


@jit
def _backward_example(params, sizes, w_off, b_off, u_off, x, y, z, a, dz, grad, scale, act):
    """Backward pass of one example; adds ``scale`` × its dW[l], db[l] into ``grad``.

    ``z`` and ``a`` hold the example's forward pass; ``dz`` receives dZ[l] for every
    layer (per example, unscaled).  With ``scale = 1/m`` summed over m examples,
    ``grad`` ends as the mean gradient of J.
    """
    L = sizes.shape[0] - 1
    n_L = sizes[L]
    top = u_off[L - 1]
    # dZ[L] = A[L] − Y: σ + binary cross-entropy, softmax + cross-entropy and
    # identity + ½ squared error all give this same form.
    for j in range(n_L):
        dz[top + j] = a[top + j] - y[j]
    for l in range(L - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        dzl = dz[u_off[l] : u_off[l] + n_out]
        if l == 0:
            a_prev = x
        else:
            a_prev = a[u_off[l - 1] : u_off[l - 1] + n_in]
        dW = grad[w_off[l] : w_off[l] + n_out * n_in].reshape((n_out, n_in))
        db = grad[b_off[l] : b_off[l] + n_out]
        # dW[l] += scale · dZ[l] A[l−1]ᵀ ;  db[l] += scale · dZ[l]
        for j in range(n_out):
            d = scale * dzl[j]
            db[j] += d
            for k in range(n_in):
                dW[j, k] += d * a_prev[k]
        if l > 0:
            W = params[w_off[l] : w_off[l] + n_out * n_in].reshape((n_out, n_in))
            dprev = dz[u_off[l - 1] : u_off[l - 1] + n_in]
            # dA[l−1] = W[l]ᵀ dZ[l]  (row j of W[l] scaled by dZ[l]_j: contiguous inner loop)
            for k in range(n_in):
                dprev[k] = 0
            for j in range(n_out):
                d = dzl[j]
                for k in range(n_in):
                    dprev[k] += W[j, k] * d
            # dZ[l−1] = dA[l−1] ∗ g'(Z[l−1])
            zp = z[u_off[l - 1] : u_off[l - 1] + n_in]
            ap = a[u_off[l - 1] : u_off[l - 1] + n_in]
            for k in range(n_in):
                dprev[k] *= hidden_derivative(zp[k], ap[k], act)


# ===================================================================== many examples


@jit
def _forward_batch(params, sizes, X, act, out, Z, A):
    """Forward pass of every row of X into Z, A (m × n_units); returns nothing."""
    w_off, b_off, u_off = offsets(sizes)
    for i in range(X.shape[0]):
        _forward_example(params, sizes, w_off, b_off, u_off, X[i], Z[i], A[i], act, out)


@jit
def _output_batch(params, sizes, X, act, out, AL):
    """A[L] of every row of X into AL (m × n_L); one example's workspace, not m × n_units."""
    w_off, b_off, u_off = offsets(sizes)
    n_units = u_off[-1] + sizes[-1]
    z = np.empty(n_units, params.dtype)
    a = np.empty(n_units, params.dtype)
    top = u_off[-1]
    for i in range(X.shape[0]):
        _forward_example(params, sizes, w_off, b_off, u_off, X[i], z, a, act, out)
        # (an element loop, not ``AL[i] = a[top:]``: a slice assignment compiles
        # Numba's shape-mismatch error message, about 2 s of a cold first predict)
        for j in range(AL.shape[1]):
            AL[i, j] = a[top + j]


@jit
def _backward_batch(params, sizes, X, Y, Z, A, act, dZ, grad):
    """dZ[l] of every example into dZ, and the mean dW, db into grad (zeroed here)."""
    w_off, b_off, u_off = offsets(sizes)
    m = X.shape[0]
    scale = params.dtype.type(1) / params.dtype.type(m)
    grad[:] = 0
    for i in range(m):
        _backward_example(params, sizes, w_off, b_off, u_off, X[i], Y[i], Z[i], A[i], dZ[i], grad, scale, act)


@jit
def _loss_batch(params, sizes, X, Y, act, out):
    """J = (1/m) Σ_i cost(x_i, y_i), accumulated in float64."""
    w_off, b_off, u_off = offsets(sizes)
    n_units = u_off[-1] + sizes[-1]
    z = np.empty(n_units, params.dtype)
    a = np.empty(n_units, params.dtype)
    top = u_off[-1]
    total = 0.0
    for i in range(X.shape[0]):
        _forward_example(params, sizes, w_off, b_off, u_off, X[i], z, a, act, out)
        total += example_cost(z[top:], Y[i], out)
    return total / X.shape[0]


@jit
def _gradients_batch(params, sizes, X, Y, act, out, grad):
    """Mean dW, db over the rows of X into grad (zeroed here); returns J."""
    w_off, b_off, u_off = offsets(sizes)
    n_units = u_off[-1] + sizes[-1]
    z = np.empty(n_units, params.dtype)
    a = np.empty(n_units, params.dtype)
    dz = np.empty(n_units, params.dtype)
    top = u_off[-1]
    m = X.shape[0]
    scale = params.dtype.type(1) / params.dtype.type(m)
    grad[:] = 0
    total = 0.0
    for i in range(m):
        _forward_example(params, sizes, w_off, b_off, u_off, X[i], z, a, act, out)
        total += example_cost(z[top:], Y[i], out)
        _backward_example(params, sizes, w_off, b_off, u_off, X[i], Y[i], z, a, dz, grad, scale, act)
    return total / m


@jit
def _loss_and_gradient(params, sizes, X, Y, act, out, grad, alpha, cost_scale, sw):
    """scikit-learn's full-batch objective and its gradient, the function L-BFGS minimises.

    grad = the mean dW, db over the rows of X plus (alpha / m) W on the weights; returns
    cost_scale · J + ½ alpha ‖W‖² / m (float64), J the mean cost (:func:`_gradients_batch`;
    ``cost_scale`` as in :func:`_train_epoch_opt`).  With weights ``sw`` (one per row of X;
    empty: none) the means are weighted and m becomes Σ w (scikit-learn's ``sw_sum``):
    grad = Σ_i (w_i / Σw) dW_i + (alpha / Σw) W, J = Σ_i w_i cost_i / Σw.
    """
    m = X.shape[0]
    w_off, b_off, u_off = offsets(sizes)
    if sw.shape[0] == 0:
        J = _gradients_batch(params, sizes, X, Y, act, out, grad)
        D = np.float64(m)
    else:
        n_units = u_off[-1] + sizes[-1]
        z = np.empty(n_units, params.dtype)
        a = np.empty(n_units, params.dtype)
        dz = np.empty(n_units, params.dtype)
        order = np.arange(m)
        # m · the weighted mean cost (see _mean_gradient), back to the mean
        start = np.int64(0)  # not the literal 0: Numba would compile _mean_gradient again for it
        J = _mean_gradient(params, sizes, w_off, b_off, u_off, X, Y, order, start, m, z, a, dz, grad, act, out, sw) / m
        D = batch_weight(sw, order, start, m)
    loss = cost_scale * J
    if alpha > 0.0:
        loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / D) / D
    return loss


@jit
def _mean_gradient(params, sizes, w_off, b_off, u_off, X, Y, order, start, stop, z, a, dz, grad, act, out, sw):
    """grad = the mean gradient of the costs of the examples ``order[start:stop]`` (one batch),
    each example's forward pass, cost and backward pass in turn; returns the sum of their
    costs (float64).  ``z``, ``a``, ``dz`` are n_units workspaces.  The batch step of
    :func:`_train_epoch` and of :func:`_train_epoch_opt`.

    With per-example weights ``sw`` (indexed like X's rows; empty: unweighted) the mean is
    scikit-learn's weighted one: example i's dW, db are scaled by w_i / Σ_batch w instead of
    1/n, and the returned cost is n · Σ w_i cost_i / Σ_batch w (n times the weighted mean,
    as the sum is n times the mean: callers add batches up the same way either way).
    """
    T = params.dtype.type
    n = stop - start
    scale = T(1) / T(n)
    weighted = sw.shape[0] > 0
    D = batch_weight(sw, order, start, stop)  # Σ_batch w_i (n when unweighted)
    top = u_off[-1]
    grad[:] = 0
    batch_cost = 0.0
    for t in range(start, stop):
        i = order[t]
        _forward_example(params, sizes, w_off, b_off, u_off, X[i], z, a, act, out)
        cost = example_cost(z[top:], Y[i], out)  # cost before the batch's update
        if weighted:
            # dW += (w_i / Σw) dZ[l] A[l−1]ᵀ: example i's share of the weighted mean
            scale = T(np.float64(sw[i]) / D)
            cost *= np.float64(sw[i])
        batch_cost += cost
        _backward_example(params, sizes, w_off, b_off, u_off, X[i], Y[i], z, a, dz, grad, scale, act)
    if weighted:
        batch_cost *= n / D
    return batch_cost


@jit
def _train_epoch(params, sizes, X, Y, order, batch_size, lr, act, out, sw):
    """One epoch of gradient descent over the examples in ``order``.

    Batches are consecutive runs of ``batch_size`` indices of ``order`` (the last
    one may be short and is used).  For each batch: the mean gradient of its
    examples, then W −= α dW, b −= α db.  ``batch_size = 1`` is the derivation's
    per-example update; ``batch_size = m`` is full-batch gradient descent.
    With per-example weights ``sw`` (one per row of X; empty: none) each batch's mean
    gradient and cost are weighted, w_i / Σ_batch w instead of 1/n (:func:`_mean_gradient`).

    Returns ``(J, failed)``: J is the mean of the per-example costs, each measured
    in the forward pass before its batch's update (what scikit-learn's
    ``loss_curve_`` records); ``failed`` is −1, or the index of the first batch
    whose loss or updated parameters would not be finite.  That step is not
    applied: the parameters stay as they were before it, and the epoch stops.
    """
    w_off, b_off, u_off = offsets(sizes)
    n_units = u_off[-1] + sizes[-1]
    z = np.empty(n_units, params.dtype)
    a = np.empty(n_units, params.dtype)
    dz = np.empty(n_units, params.dtype)
    grad = np.empty_like(params)
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch_cost = _mean_gradient(
            params, sizes, w_off, b_off, u_off, X, Y, order, start, stop, z, a, dz, grad, act, out, sw
        )
        # Divergence guard: a non-finite loss or step stops the epoch before the update.
        if not (np.isfinite(batch_cost) and _step_is_finite(params, grad, lr)):
            return total / m, start // batch_size
        _sgd_update(params, grad, lr)
        total += batch_cost
    return total / m, -1


@jit
def _train_epoch_opt(
    params, sizes, X, Y, order, batch_size, act, out, kind, hyper, state, counter, alpha, cost_scale, sw
):
    """One epoch over the examples in ``order`` with an optimizer and L2; no allocation per batch.

    For each batch of n examples (consecutive runs of ``batch_size`` entries of
    ``order``, the last one may be short): the mean gradient of the per-example
    costs, plus (alpha / n) W on the weights, then one optimizer step.

    Returns ``(J, failed)`` like :func:`_train_epoch`.  J is
    scikit-learn's epoch loss: Σ_batches n · (cost_scale · mean cost + ½ alpha ‖W‖² / n),
    divided by the number of examples, each batch measured before its update
    (``cost_scale`` = 1 / n_outputs turns fastbp's ½ Σ (A−Y)² into scikit-learn's
    squared loss, a mean over outputs).  ``failed`` is −1, or the index of the
    first batch whose loss, new parameters or new optimizer state would not be
    finite; that step is not applied and the epoch stops there.

    With per-example weights ``sw`` (one per row of X; empty: none), scikit-learn's
    weighted batch: the gradient and cost are means weighted by w_i / Σ_batch w, the L2
    term is (alpha / Σ_batch w) W and ½ alpha ‖W‖² / Σ_batch w, and the batch still
    counts n times in J (scikit-learn's ``accumulated_loss += batch_loss * n``).
    """
    w_off, b_off, u_off = offsets(sizes)
    n_units = u_off[-1] + sizes[-1]
    z = np.empty(n_units, params.dtype)
    a = np.empty(n_units, params.dtype)
    dz = np.empty(n_units, params.dtype)
    grad = np.empty_like(params)
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        n = stop - start
        batch_cost = _mean_gradient(
            params, sizes, w_off, b_off, u_off, X, Y, order, start, stop, z, a, dz, grad, act, out, sw
        )
        batch_loss = cost_scale * batch_cost
        if alpha > 0.0:
            D = batch_weight(sw, order, start, stop)  # Σ_batch w_i, or n
            # dW += (alpha / Σw) W; the batch's loss gains n · ½ alpha ‖W‖² / Σw (½ alpha ‖W‖² unweighted)
            if sw.shape[0] > 0:
                batch_loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / D) * (n / D)
            else:
                batch_loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / D)
        if not np.isfinite(batch_loss):
            return total / m, start // batch_size
        if not _optimizer_step(params, grad, state, counter, kind, hyper):
            return total / m, start // batch_size
        total += batch_loss
    return total / m, -1


#: Every kernel of this module, in the order they call each other (a re-compiled set for a
#: custom activation must hold them all, so that calls stay inside the set).
KERNEL_NAMES = (
    "_forward_example",
    "_backward_example",
    "_forward_batch",
    "_output_batch",
    "_backward_batch",
    "_loss_batch",
    "_gradients_batch",
    "_loss_and_gradient",
    "_mean_gradient",
    "_train_epoch",
    "_train_epoch_opt",
)
