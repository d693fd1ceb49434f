"""Numba kernels: backpropagation as explicit scalar loops, one example at a time.

This module is fastbp's *scalar-loop reference*: every loop reads like the
equation in its comment (notation of ``docs/derivation.md``: W[l], b[l], Z[l],
A[l], g, σ, α; layer l maps n_{l−1} inputs to n_l units).  Its twin
:mod:`fastbp.reference` computes the same things with NumPy, vectorised over a
batch, and the tests hold the two to agree.

Two levels:

* Private ``@njit`` kernels (``_forward_example``, ``_backward_example``,
  ``_train_epoch`` …) work on the flat parameter buffer of :mod:`fastbp.params`
  and trust their inputs.  They allocate only their workspaces, once per call,
  never per example.
* Public wrappers (:func:`forward`, :func:`backward`, :func:`gradients`,
  :func:`loss`, :func:`update`, :func:`train_epoch`) take lists of W[l] and b[l]
  like any user holds them, validate and convert once, and call the kernels.
  :mod:`fastbp.reference` has the same names and arguments.

Where to find a loop:

* Z[l] = W[l] A[l−1] + b[l] and A[l] = g(Z[l]) ....... :func:`_forward_example`
* dZ[L] = A[L] − Y .................................... :func:`_backward_example`
* dW[l] = dZ[l] A[l−1]ᵀ, db[l] = dZ[l] ................ :func:`_backward_example`
* dZ[l−1] = (W[l]ᵀ dZ[l]) ∗ g'(Z[l−1]) ................ :func:`_backward_example`
* W −= α dW, b −= α db ................................ :func:`_sgd_update`
* per-example SGD, mini-batches, full batch ........... :func:`_train_epoch`
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace
from typing import Sequence

import numpy as np
from numba import njit
from numba.core import config as numba_config

from . import _validation as v
from ._jit import JIT_OPTIONS, jit, recompile_with
from .errors import DivergenceError
from .activations import Activation, get_activation, hidden_activation, hidden_derivative
from .losses import example_cost, get_output, output_activation
from .params import Layout, offsets

__all__ = ["forward", "predict", "backward", "gradients", "loss", "update", "train_epoch", "kernels_for"]


# =========================================================================== kernels


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


@jit
def _sgd_update(p, g, lr):
    """W −= α dW (and b −= α db): one step of gradient descent on a flat array."""
    for i in range(p.shape[0]):
        p[i] -= lr * g[i]


@jit
def _step_is_finite(p, g, lr):
    """Whether every W − α dW would be finite (read-only: nothing changes if not).

    ``x * 0`` is 0 for a finite x and NaN for ±inf or NaN, so one sum tells.
    """
    s = p.dtype.type(0)
    for i in range(p.shape[0]):
        s += (p[i] - lr * g[i]) * p.dtype.type(0)
    return s == 0


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
def _mean_gradient(params, sizes, w_off, b_off, u_off, X, Y, order, start, stop, z, a, dz, grad, act, out):
    """grad = the mean gradient of the costs of the examples ``order[start:stop]`` (one batch),
    each example's forward pass, cost and backward pass in turn; returns the sum of their
    costs (float64).  ``z``, ``a``, ``dz`` are n_units workspaces.  The batch step of
    :func:`_train_epoch` and of :func:`fastbp.optimizers._train_epoch_opt`."""
    T = params.dtype.type
    scale = T(1) / T(stop - start)
    top = u_off[-1]
    grad[:] = 0
    batch_cost = 0.0
    for t in range(start, stop):
        i = order[t]
        _forward_example(params, sizes, w_off, b_off, u_off, X[i], z, a, act, out)
        batch_cost += example_cost(z[top:], Y[i], out)  # cost before the batch's update
        _backward_example(params, sizes, w_off, b_off, u_off, X[i], Y[i], z, a, dz, grad, scale, act)
    return batch_cost


@jit
def _train_epoch(params, sizes, X, Y, order, batch_size, lr, act, out):
    """One epoch of gradient descent over the examples in ``order``.

    Batches are consecutive runs of ``batch_size`` indices of ``order`` (the last
    one may be short and is used).  For each batch: the mean gradient of its
    examples, then W −= α dW, b −= α db.  ``batch_size = 1`` is the seed's
    per-example update; ``batch_size = m`` is full-batch gradient descent.

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
            params, sizes, w_off, b_off, u_off, X, Y, order, start, stop, z, a, dz, grad, act, out
        )
        # Divergence guard: a non-finite loss or step stops the epoch before the update.
        if not (np.isfinite(batch_cost) and _step_is_finite(params, grad, lr)):
            return total / m, start // batch_size
        _sgd_update(params, grad, lr)
        total += batch_cost
    return total / m, -1


_KERNEL_NAMES = (
    "_forward_example",
    "_backward_example",
    "_forward_batch",
    "_output_batch",
    "_backward_batch",
    "_loss_batch",
    "_gradients_batch",
    "_mean_gradient",
    "_train_epoch",
)

#: The kernels for every built-in activation (selected at run time by an integer code).
BUILTIN = SimpleNamespace(**{name: globals()[name] for name in _KERNEL_NAMES})

_custom_kernels: "weakref.WeakKeyDictionary[Activation, SimpleNamespace]" = weakref.WeakKeyDictionary()


def kernels_for(activation: Activation) -> SimpleNamespace:
    """The kernel set for ``activation``.

    Built-ins share :data:`BUILTIN`, compiled once and cached on disk.  A custom
    activation gets the *same* kernel source re-compiled with ``hidden_activation``
    and ``hidden_derivative`` bound to the user's functions, so the user's g is
    inlined into the loops (never called through a function pointer per unit).
    These are compiled once per custom activation and process (not cached on
    disk, since they depend on the user's functions).
    """
    if not activation.is_custom:
        return BUILTIN
    if activation in _custom_kernels:
        return _custom_kernels[activation]
    user_g, user_g_prime = activation.g, activation.g_prime
    options = {k: val for k, val in JIT_OPTIONS.items() if k != "cache"}

    def custom_g(z, act):
        return type(z)(user_g(z))

    def custom_g_prime(z, a, act):
        return type(z)(user_g_prime(z))

    rebound = recompile_with(
        {name: globals()[name] for name in _KERNEL_NAMES},
        globals(),
        {"hidden_activation": njit(**options)(custom_g), "hidden_derivative": njit(**options)(custom_g_prime)},
    )
    kset = SimpleNamespace(**rebound)
    _custom_kernels[activation] = kset
    return kset


# ==================================================================== public wrappers


class _Problem:
    """What every public wrapper settles first: sizes, dtype, the flat buffer, codes."""

    def __init__(self, weights, biases, activation, output):
        self.sizes, self.dtype = v.check_params(weights, biases)
        self.activation = get_activation(activation)
        self.out = get_output(output)
        self.layout = Layout(self.sizes)
        self.k = kernels_for(self.activation)
        self.act = self.activation.code
        self.weights, self.biases = weights, biases
        found = self.layout.buffer_of(weights, biases)
        self.in_place = found is not None
        self.params = found if found is not None else self.layout.pack(weights, biases, self.dtype)

    def X(self, X):
        return v.check_X(X, self.sizes[0], self.dtype)

    def Y(self, Y, m):
        return v.check_Y(Y, m, self.sizes[-1], self.out, self.dtype)

    def write_back(self):
        """Copy a packed buffer back into the caller's arrays (only when it was a copy)."""
        if not self.in_place:
            W, b = self.layout.views(self.params)
            for dst, src in zip(list(self.weights) + list(self.biases), W + b):
                dst[...] = src


def forward(weights, biases, X, activation="tanh", output="sigmoid"):
    """Forward pass: ``(Z, A)``, lists of Z[l] and A[l] (m × n_l) for l = 1 … L.

    ``weights[l-1]`` is W[l] (n_l × n_{l−1}), ``biases[l-1]`` is b[l] (n_l,), X is
    m × n_0 with one example per row; ``A[-1]`` is the network's output.
    """
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Z = np.empty((X.shape[0], p.layout.n_units), p.dtype)
    A = np.empty_like(Z)
    p.k._forward_batch(p.params, p.layout.sizes, X, p.act, p.out, Z, A)
    return p.layout.unit_views(Z), p.layout.unit_views(A)


def predict(weights, biases, X, activation="tanh", output="sigmoid"):
    """A[L] alone (m × n_L): the forward pass without keeping every layer's Z and A."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    AL = np.empty((X.shape[0], p.sizes[-1]), p.dtype)
    p.k._output_batch(p.params, p.layout.sizes, X, p.act, p.out, AL)
    return AL


def backward(weights, biases, X, Y, Z, A, activation="tanh", output="sigmoid"):
    """Backward pass from a stored forward pass: ``(dZ, dW, db)``.

    ``dZ[l-1]`` is ∂cost_i/∂Z[l] for every example i (m × n_l, not divided by m);
    ``dW``/``db`` are the mean gradients of J, shaped like ``weights``/``biases``.
    """
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    m = X.shape[0]
    widths = [n_out for n_out, _ in p.layout.shapes]
    Zb = np.ascontiguousarray(np.concatenate(v.check_units(Z, "Z", m, widths, p.dtype), axis=1))
    Ab = np.ascontiguousarray(np.concatenate(v.check_units(A, "A", m, widths, p.dtype), axis=1))
    dZ = np.empty((m, p.layout.n_units), p.dtype)
    grad = np.empty(p.layout.n_params, p.dtype)
    p.k._backward_batch(p.params, p.layout.sizes, X, Y, Zb, Ab, p.act, dZ, grad)
    dW, db = p.layout.views(grad)
    return p.layout.unit_views(dZ), dW, db


def gradients(weights, biases, X, Y, activation="tanh", output="sigmoid"):
    """Mean gradients of J over the rows of X: ``(dW, db)`` shaped like the parameters."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    grad = np.empty(p.layout.n_params, p.dtype)
    p.k._gradients_batch(p.params, p.layout.sizes, X, Y, p.act, p.out, grad)
    return p.layout.views(grad)


def loss(weights, biases, X, Y, activation="tanh", output="sigmoid") -> float:
    """J: the mean over the rows of X of the per-example cost (see :mod:`fastbp.losses`)."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    return float(p.k._loss_batch(p.params, p.layout.sizes, X, Y, p.act, p.out))


def update(weights, biases, dW, db, learning_rate) -> None:
    """Gradient descent in place: W[l] −= α dW[l], b[l] −= α db[l].

    Raises :class:`fastbp.DivergenceError` (and changes nothing) if a new
    parameter would not be finite.
    """
    sizes, dtype = v.check_params(weights, biases)
    lr = dtype.type(v.check_positive_float(learning_rate, "learning_rate"))
    grads = v.check_grads(weights, biases, dW, db, dtype)
    v.check_writeable(weights, biases)
    flats = [np.ascontiguousarray(P).reshape(-1) for P in list(weights) + list(biases)]
    if not all(_step_is_finite(F, G, lr) for F, G in zip(flats, grads)):
        raise DivergenceError(0, detail="update")
    for P, F, G in zip(list(weights) + list(biases), flats, grads):
        if np.shares_memory(P, F):  # P was C-contiguous: F is a view of it
            _sgd_update(F, G, lr)
        else:
            F = F.copy()
            _sgd_update(F, G, lr)
            P[...] = F.reshape(P.shape)


def run_epoch(params, sizes, X, Y, order, batch_size, lr, activation: Activation, out: int):
    """One epoch on inputs already checked and converted: returns ``(J, failed_batch)``.

    Built-in activations run the fast kernels (:mod:`fastbp.fast_kernels`: fused
    and blocked loops, vectorised activations), held to agree with the plain
    :func:`_train_epoch` by the tests; custom activations run the plain kernel
    compiled for them, and so does everything under ``NUMBA_DISABLE_JIT=1``.  Same
    contract either way (see :func:`_train_epoch`).
    """
    if activation.is_custom or numba_config.DISABLE_JIT:
        # (the fast kernels use Numba intrinsics that have no pure-Python form)
        return kernels_for(activation)._train_epoch(params, sizes, X, Y, order, batch_size, lr, activation.code, out)
    from .fast_kernels import train_epoch as fast_train_epoch

    return fast_train_epoch(params, sizes, X, Y, order, batch_size, lr, activation.code, out)


def train_epoch(
    weights,
    biases,
    X,
    Y,
    learning_rate,
    batch_size: int | None = 1,
    order: Sequence[int] | None = None,
    activation="tanh",
    output="sigmoid",
) -> float:
    """One epoch of gradient descent, in place; returns the epoch's mean cost.

    Examples are visited in ``order`` (default: as given) in batches of
    ``batch_size`` (``None``: the full batch; the last short batch is used).
    Each batch applies W −= α · mean dW over its examples.  Raises
    :class:`fastbp.DivergenceError` if a step would make the loss or a parameter
    non-finite; the parameters are then those from just before that step.
    """
    p = _Problem(weights, biases, activation, output)
    X, Y, lr, bs, idx = v.check_train_args(
        p.sizes, p.dtype, p.out, weights, biases, X, Y, learning_rate, batch_size, order
    )
    J, failed = run_epoch(p.params, p.layout.sizes, X, Y, idx, bs, lr, p.activation, p.out)
    p.write_back()
    if failed >= 0:
        raise DivergenceError(failed)
    return float(J)


#: Kept importable from here (it moved to :mod:`fastbp._validation`).
check_order = v.check_order
