"""NumPy reference: the equations as written, vectorised over a batch.

The readable oracle that :mod:`fastbp.kernels` is tested against.  Same function
names and arguments as the kernels; rows are examples (X is m × n_0), so the
derivation's column form Z[l] = W[l] A[l−1] + b[l] reads here as
Z[l] = A[l−1] W[l]ᵀ + b[l].

Everything stays in the parameters' dtype (float32 in, float32 arithmetic);
only the reported costs are summed in float64, as in the kernels.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import _validation as v
from .activations import get_activation
from .errors import DivergenceError
from .losses import example_costs_array, get_output, output_activation_array
from .params import atomic_commit

__all__ = ["forward", "predict", "backward", "gradients", "loss", "update", "train_epoch"]


class _Problem:
    """Sizes, dtype, activation and output of a call; ``writes``: whether the call updates the
    parameters (``train_epoch``), the only case where the arrays must not share memory (the
    read-only operations accept, say, one array passed as two layers, as the kernels do)."""

    def __init__(self, weights, biases, activation, output, writes: bool = False):
        self.sizes, self.dtype = v.check_params(weights, biases, overlap=writes)
        self.g = get_activation(activation)
        self.out = get_output(output)

    def X(self, X):
        return v.check_X(X, self.sizes[0], self.dtype)

    def Y(self, Y, m):
        return v.check_Y(Y, m, self.sizes[-1], self.out, self.dtype)


def _forward(weights, biases, X, g, out):
    Z, A = [], []
    a = X  # A[0] = X
    L = len(weights)
    for l, (W, b) in enumerate(zip(weights, biases)):
        z = a @ W.T + b  # Z[l] = W[l] A[l−1] + b[l]   (rows: A[l−1] W[l]ᵀ + b[l])
        a = g(z) if l < L - 1 else output_activation_array(z, out)  # A[l] = g(Z[l]); A[L] = σ(Z[L]) …
        Z.append(z)
        A.append(a)
    return Z, A


def _example_scale(X, sw):
    """Each example's share of a batch's mean: 1/m, or with weights w_i / Σ w (a column)."""
    if sw is None:
        return X.dtype.type(1) / X.dtype.type(X.shape[0])
    w = sw.astype(np.float64)
    return (w / w.sum()).astype(X.dtype)[:, None]


def _backward(weights, X, Y, Z, A, g, sw=None):
    L = len(weights)
    dZ = [None] * L
    dW = [None] * L
    db = [None] * L
    dZ[L - 1] = A[L - 1] - Y  # dZ[L] = A[L] − Y
    scale = _example_scale(X, sw)  # 1/m, or w_i / Σw (weights ``sw`` of the rows of X)
    for l in range(L - 1, -1, -1):
        A_prev = X if l == 0 else A[l - 1]
        # Scale by 1/m before summing over examples (as the kernels do): a sum of m
        # large dZ could overflow where their mean does not.
        dZm = dZ[l] * scale
        dW[l] = dZm.T @ A_prev  # dW[l] = (1/m) dZ[l] A[l−1]ᵀ   (Σ_i (w_i/Σw) dZ_i A_iᵀ with weights)
        db[l] = dZm.sum(axis=0)  # db[l] = (1/m) Σ_i dZ[l]
        if l > 0:
            dA_prev = dZ[l] @ weights[l]  # dA[l−1] = W[l]ᵀ dZ[l]
            dZ[l - 1] = dA_prev * g.derivative(Z[l - 1], A[l - 1])  # dZ[l−1] = dA[l−1] ∗ g'(Z[l−1])
    return dZ, dW, db


def _batch_cost(costs, sw=None) -> float:
    """A batch's summed cost, float64: Σ c_i, or with weights n · Σ w_i c_i / Σ w_i (n times the
    weighted mean, as the sum is n times the mean)."""
    if sw is None:
        return float(costs.sum())
    w = sw.astype(np.float64)
    return float(costs.shape[0] * (w @ costs.astype(np.float64)) / w.sum())


def forward(weights, biases, X, activation="tanh", output="sigmoid"):
    """Forward pass: ``(Z, A)``, lists of Z[l] and A[l] (m × n_l) for l = 1 … L."""
    p = _Problem(weights, biases, activation, output)
    return _forward(weights, biases, p.X(X), p.g, p.out)


def predict(weights, biases, X, activation="tanh", output="sigmoid"):
    """A[L] alone (m × n_L): the last layer of :func:`forward`."""
    p = _Problem(weights, biases, activation, output)
    return _forward(weights, biases, p.X(X), p.g, p.out)[1][-1]


def backward(weights, biases, X, Y, Z, A, activation="tanh", output="sigmoid"):
    """Backward pass from a stored forward pass: ``(dZ, dW, db)`` (dW, db are means over examples)."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    widths = p.sizes[1:]
    Z = v.check_units(Z, "Z", X.shape[0], widths, p.dtype)
    A = v.check_units(A, "A", X.shape[0], widths, p.dtype)
    return _backward(weights, X, Y, Z, A, p.g)


def gradients(weights, biases, X, Y, activation="tanh", output="sigmoid"):
    """Mean gradients of J over the rows of X: ``(dW, db)``."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    Z, A = _forward(weights, biases, X, p.g, p.out)
    _, dW, db = _backward(weights, X, Y, Z, A, p.g)
    return dW, db


def loss(weights, biases, X, Y, activation="tanh", output="sigmoid") -> float:
    """J = (1/m) Σ_i cost_i, computed from the logits Z[L] (stable for any size)."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    Z, _ = _forward(weights, biases, X, p.g, p.out)
    return float(example_costs_array(Z[-1], Y, p.out).mean())


def update(weights, biases, dW, db, learning_rate) -> None:
    """Gradient descent in place: W[l] −= α dW[l], b[l] −= α db[l]."""
    _, dtype = v.check_params(weights, biases)
    alpha = dtype.type(v.check_positive_float(learning_rate, "learning_rate", dtype))
    grads = v.check_grads(weights, biases, dW, db, dtype)
    v.check_writeable(weights, biases)
    params = list(weights) + list(biases)
    with np.errstate(over="ignore", invalid="ignore"):  # reported by DivergenceError below
        new = [P - alpha * G.reshape(P.shape) for P, G in zip(params, grads)]
    if not all(np.isfinite(N).all() for N in new):
        raise DivergenceError(0, detail="update")
    with atomic_commit():  # every parameter from the same step, even under Ctrl-C
        for P, N in zip(params, new):
            P[...] = N


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
    sample_weight=None,
) -> float:
    """One epoch of gradient descent in place (same contract as :func:`fastbp.kernels.train_epoch`).

    Raises :class:`fastbp.DivergenceError` before applying a step whose loss or
    new parameters are not finite.
    """
    p = _Problem(weights, biases, activation, output, writes=True)
    X, Y, alpha, bs, idx = v.check_train_args(
        p.sizes, p.dtype, p.out, weights, biases, X, Y, learning_rate, batch_size, order
    )
    sw = v.check_sample_weight(sample_weight, X.shape[0], p.dtype)
    if sw is not None:
        v.check_batch_weights(sw, idx, bs)
    params = list(weights) + list(biases)
    X, Y = v.unshared(X, params), v.unshared(Y, params)  # read as they were while the parameters change
    m = idx.shape[0]  # examples visited (the kernels' J is a mean over order, too)
    total = 0.0
    for start in range(0, m, bs):
        batch = idx[start : start + bs]
        Xb, Yb = X[batch], Y[batch]
        swb = None if sw is None else sw[batch]
        # A diverging network overflows on its way to inf/NaN: that is reported by
        # DivergenceError below, not by NumPy's RuntimeWarnings.
        with np.errstate(over="ignore", invalid="ignore"):
            Z, A = _forward(weights, biases, Xb, p.g, p.out)
            batch_cost = _batch_cost(example_costs_array(Z[-1], Yb, p.out), swb)
            _, dW, db = _backward(weights, Xb, Yb, Z, A, p.g, swb)
            new_W = [W - alpha * d for W, d in zip(weights, dW)]  # W[l] − α dW[l]
            new_b = [b - alpha * d for b, d in zip(biases, db)]  # b[l] − α db[l]
        if not (np.isfinite(batch_cost) and all(np.isfinite(P).all() for P in new_W + new_b)):
            raise DivergenceError(start // bs)  # the step is not applied
        with atomic_commit():  # W[l] and b[l] of one step, all of them, even under Ctrl-C
            for l in range(len(weights)):
                weights[l][...] = new_W[l]
                biases[l][...] = new_b[l]
        total += batch_cost
    return total / m
