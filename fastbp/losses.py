"""Output layers and their costs: the scalar loop and its vectorised twin, side by side.

The output layer fixes the cost (one example, summed over the output units):

=============  =================  ============================================
``output``     A[L]               cost per example
=============  =================  ============================================
``sigmoid``    σ(Z[L])            binary cross-entropy  −Y log A − (1−Y) log(1−A)
``softmax``    softmax(Z[L])      categorical cross-entropy  −Σ Y log A
``identity``   Z[L]               ½ Σ (A − Y)²
=============  =================  ============================================

Each pair is matched so that ∂J/∂Z[L] = A[L] − Y (per example) for all three.
Costs are computed from the logit Z[L], never from A[L], so they stay finite for
logits of any size:

* BCE:      max(z, 0) − y z + log1p(e^(−|z|))
* softmax:  Σ_k y_k (logsumexp(z) − z_k), logsumexp with the max subtracted
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .activations import sigmoid, sigmoid_array

SIGMOID, SOFTMAX, IDENTITY = range(3)

NAMES: dict[str, int] = {"sigmoid": SIGMOID, "logistic": SIGMOID, "softmax": SOFTMAX, "identity": IDENTITY}


def get_output(output: str) -> int:
    """The integer code of an output layer name; ``ValueError`` if unknown."""
    if not isinstance(output, str):
        raise TypeError(f"output must be a string such as 'sigmoid', got {type(output).__name__}")
    key = output.lower()
    if key not in NAMES:
        raise ValueError(f"output must be one of ['identity', 'sigmoid', 'softmax']; got {output!r}")
    return NAMES[key]


# --------------------------------------------------------------------------- scalar


@jit
def output_activation(z, a, out):
    """A[L] = σ(Z[L]), softmax(Z[L]) or Z[L] for one example (vectors z → a)."""
    n = z.shape[0]
    if out == SIGMOID:
        for j in range(n):
            a[j] = sigmoid(z[j])
    elif out == SOFTMAX:
        zmax = z[0]
        for j in range(1, n):
            if z[j] > zmax:
                zmax = z[j]
        for j in range(n):
            a[j] = np.exp(z[j] - zmax)  # every exponent ≤ 0: no overflow
        # The sum in a loop of its own, which only reads: a loop that also stored into a
        # would be vectorised behind a run-time check that a and z are far apart in
        # memory, and the (reassociated) sum would then depend on where they were.
        total = z[0] - z[0]  # zero of z's dtype
        for j in range(n):
            total += a[j]
        for j in range(n):
            a[j] /= total
    else:
        for j in range(n):
            a[j] = z[j]


@jit
def example_cost(z, y, out):
    """The cost of one example from its logits z = Z[L] and target y (returns float64)."""
    n = z.shape[0]
    cost = 0.0
    if out == SIGMOID:
        for j in range(n):
            zj = np.float64(z[j])
            # −y log σ(z) − (1−y) log(1−σ(z)) = max(z,0) − y z + log1p(e^(−|z|))
            cost += max(zj, 0.0) - np.float64(y[j]) * zj + np.log1p(np.exp(-abs(zj)))
    elif out == SOFTMAX:
        zmax = np.float64(z[0])
        for j in range(1, n):
            if z[j] > zmax:
                zmax = np.float64(z[j])
        total = 0.0
        for j in range(n):
            total += np.exp(np.float64(z[j]) - zmax)
        lse = zmax + np.log(total)
        for j in range(n):
            # −Σ y log softmax(z) = Σ y (logsumexp(z) − z)
            cost += np.float64(y[j]) * (lse - np.float64(z[j]))
    else:
        for j in range(n):
            d = np.float64(z[j]) - np.float64(y[j])
            cost += 0.5 * d * d
    return cost


# ------------------------------------------------------------------------ vectorised


def output_activation_array(Z: np.ndarray, out: int) -> np.ndarray:
    """A[L] for a batch of logits Z[L] (m × n_L)."""
    if out == SIGMOID:
        return sigmoid_array(Z)
    if out == SOFTMAX:
        E = np.exp(Z - Z.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)
    return Z.copy()


def example_costs_array(Z: np.ndarray, Y: np.ndarray, out: int) -> np.ndarray:
    """The cost of each example (a float64 vector of length m) from logits Z[L] and targets Y."""
    Z = Z.astype(np.float64)
    Y = Y.astype(np.float64)
    if out == SIGMOID:
        return (np.maximum(Z, 0) - Y * Z + np.log1p(np.exp(-np.abs(Z)))).sum(axis=1)
    if out == SOFTMAX:
        zmax = Z.max(axis=1, keepdims=True)
        lse = zmax + np.log(np.exp(Z - zmax).sum(axis=1, keepdims=True))
        return (Y * (lse - Z)).sum(axis=1)
    return 0.5 * ((Z - Y) ** 2).sum(axis=1)
