"""Oracles neither implementation wrote: finite differences and the derivation's equations by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastbp import kernels, reference
from fastbp.testing import OUTPUTS, make_problem

from .conftest import ACTIVATION_IDS, ACTIVATIONS


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=ACTIVATION_IDS)
@pytest.mark.parametrize("layer_sizes", [(3, 4, 2), (2, 3, 3, 2)], ids=["2-layer", "3-layer"])
def test_gradients_match_central_finite_differences(layer_sizes, activation, output):
    """∂J/∂θ ≈ (J(θ + ε) − J(θ − ε)) / 2ε for every parameter, on the float64 reference."""
    prob = make_problem(layer_sizes, np.float64, activation, output, m=5, seed=3)
    W, b = prob.copy_params()
    dW, db = reference.gradients(W, b, prob.X, prob.Y, activation, output)
    eps = 1e-6
    for params, grads in ((W, dW), (b, db)):
        for P, G in zip(params, grads):
            numeric = np.empty_like(P)
            for idx in np.ndindex(P.shape):
                keep = P[idx]
                P[idx] = keep + eps
                up = reference.loss(W, b, prob.X, prob.Y, activation, output)
                P[idx] = keep - eps
                down = reference.loss(W, b, prob.X, prob.Y, activation, output)
                P[idx] = keep
                numeric[idx] = (up - down) / (2 * eps)
            np.testing.assert_allclose(G, numeric, rtol=1e-5, atol=1e-8)


def _seed_network_by_hand(x, y, W1, b1, W2, b2, alpha):
    """The derivation's 2-layer network, g = tanh, σ output, BCE, one example, in scalar Python.

    Z1 = W1 x + b1; A1 = tanh(Z1); Z2 = W2 A1 + b2; A2 = σ(Z2);
    J = −y log A2 − (1−y) log(1−A2);
    dZ2 = A2 − y; dW2 = dZ2 A1ᵀ; db2 = dZ2;
    dZ1 = (W2ᵀ dZ2) ∗ (1 − A1²); dW1 = dZ1 xᵀ; db1 = dZ1;  W −= α dW.
    """
    n_h = len(b1)
    Z1 = [sum(W1[j][k] * x[k] for k in range(len(x))) + b1[j] for j in range(n_h)]
    A1 = [math.tanh(z) for z in Z1]
    Z2 = sum(W2[0][j] * A1[j] for j in range(n_h)) + b2[0]
    A2 = 1 / (1 + math.exp(-Z2))
    J = -y * math.log(A2) - (1 - y) * math.log(1 - A2)
    dZ2 = A2 - y
    dW2 = [[dZ2 * A1[j] for j in range(n_h)]]
    db2 = [dZ2]
    dZ1 = [W2[0][j] * dZ2 * (1 - A1[j] ** 2) for j in range(n_h)]
    dW1 = [[dZ1[j] * x[k] for k in range(len(x))] for j in range(n_h)]
    db1 = dZ1
    new = (
        [[W1[j][k] - alpha * dW1[j][k] for k in range(len(x))] for j in range(n_h)],
        [b1[j] - alpha * db1[j] for j in range(n_h)],
        [[W2[0][j] - alpha * dW2[0][j] for j in range(n_h)]],
        [b2[0] - alpha * db2[0]],
    )
    return J, (dW1, dW2), (db1, db2), new


@pytest.mark.parametrize("impl", [kernels, reference], ids=["kernels", "reference"])
def test_seed_two_layer_network_worked_by_hand(impl):
    x, y = [0.5, -1.0], 1.0
    W1, b1 = [[0.1, -0.2], [0.4, 0.3], [-0.5, 0.2]], [0.01, -0.02, 0.03]
    W2, b2 = [[0.7, -0.6, 0.2]], [0.05]
    J, dW, db, new = _seed_network_by_hand(x, y, W1, b1, W2, b2, alpha=0.5)
    weights = [np.array(W1), np.array(W2)]
    biases = [np.array(b1), np.array(b2)]
    X, Y = np.array([x]), np.array([[y]])
    assert impl.loss(weights, biases, X, Y, "tanh", "sigmoid") == pytest.approx(J, rel=1e-14)
    gW, gb = impl.gradients(weights, biases, X, Y, "tanh", "sigmoid")
    for got, want in zip(gW + gb, list(dW) + list(db)):
        np.testing.assert_allclose(got, np.array(want), rtol=1e-13, atol=1e-16)
    impl.train_epoch(weights, biases, X, Y, 0.5, 1, None, "tanh", "sigmoid")
    for got, want in zip([weights[0], biases[0], weights[1], biases[1]], new):
        np.testing.assert_allclose(got, np.array(want), rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("impl", [kernels, reference], ids=["kernels", "reference"])
def test_zero_weights_give_log_two_and_the_closed_form_gradient(impl):
    """With W = 0, b = 0: A[2] = σ(0) = ½, so J = log 2 and db[2] = ½ − y exactly; dW = 0."""
    weights = [np.zeros((3, 2)), np.zeros((1, 3))]
    biases = [np.zeros(3), np.zeros(1)]
    X = np.array([[1.0, 2.0], [-3.0, 0.5]])
    Y = np.array([[1.0], [0.0]])
    assert impl.loss(weights, biases, X, Y, "tanh", "sigmoid") == pytest.approx(math.log(2), rel=1e-15)
    dW, db = impl.gradients(weights, biases, X, Y, "tanh", "sigmoid")
    assert all((d == 0).all() for d in dW + [db[0]])
    assert db[1][0] == pytest.approx(np.mean(0.5 - Y), abs=1e-16)
