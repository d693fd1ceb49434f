"""Training: both backends end at the same weights, and batch_size=1 is per-example SGD, the derivation's update."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp import reference
from fastbp.testing import EXP_LEARNING_RATE_SCALE, make_targets, tolerance


def _data(n_x, n_y, m, output, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n_x)), make_targets(rng, m, n_y, output)


@pytest.mark.parametrize("batch_size", [1, 5, None], ids=["sgd", "minibatch", "full"])
def test_fit_on_both_backends_ends_at_the_same_weights(batch_size, dtype, activation, output):
    X, Y = _data(4, 3, 23, output)
    nets = {b: fastbp.MLP([4, 6, 3], activation, output, dtype=dtype, seed=7) for b in ("numba", "numpy")}
    lr = 0.05 * (EXP_LEARNING_RATE_SCALE if output == "exp" else 1.0)  # (e^z grows with the logit)
    hist = {b: net.fit(X, Y, epochs=4, learning_rate=lr, batch_size=batch_size, backend=b) for b, net in nets.items()}
    np.testing.assert_allclose(nets["numba"].params, nets["numpy"].params, **tolerance(dtype))
    np.testing.assert_allclose(hist["numba"].loss, hist["numpy"].loss, **tolerance(dtype))
    assert len(hist["numba"]) == 4


def test_per_example_fit_equals_the_seeds_update_applied_example_by_example(dtype):
    X, Y = _data(3, 1, 9, "sigmoid", seed=1)
    net = fastbp.MLP([3, 4, 1], "tanh", "sigmoid", dtype=dtype, seed=2)
    W, b = [w.copy() for w in net.weights], [c.copy() for c in net.biases]
    net.fit(X, Y, epochs=2, learning_rate=0.3, batch_size=1, shuffle=False)
    for _ in range(2):
        for i in range(len(X)):  # W −= α dW with dW from one example at a time, in order
            dW, db = reference.gradients(W, b, X[i : i + 1], Y[i : i + 1], "tanh", "sigmoid")
            reference.update(W, b, dW, db, 0.3)
    for got, want in zip(net.weights + net.biases, W + b):
        np.testing.assert_allclose(got, want, **tolerance(dtype))


def test_full_batch_fit_is_gradient_descent_on_the_mean_gradient():
    X, Y = _data(3, 2, 10, "softmax", seed=4)
    net = fastbp.MLP([3, 5, 2], "relu", "softmax", seed=3)
    W, b = [w.copy() for w in net.weights], [c.copy() for c in net.biases]
    net.fit(X, Y, epochs=3, learning_rate=0.2, batch_size=None)
    for _ in range(3):
        dW, db = reference.gradients(W, b, X, Y, "relu", "softmax")
        reference.update(W, b, dW, db, 0.2)
    for got, want in zip(net.weights + net.biases, W + b):
        np.testing.assert_allclose(got, want, **tolerance(np.float64))


@pytest.mark.parametrize(
    "train_epoch", [fastbp.kernels.train_epoch, reference.train_epoch], ids=["kernels", "reference"]
)
@pytest.mark.parametrize("batch_size", [None, 20, 12])
def test_a_batch_spans_an_order_longer_than_x(train_epoch, batch_size):
    """``order`` may visit rows again: the batch size (the full batch for ``None``) counts the
    visits, not X's rows, as training on the rows X[order] in order."""
    X, Y = _data(3, 2, 5, "sigmoid", seed=6)
    order = np.tile(np.arange(5), 4)
    net = fastbp.MLP([3, 4, 2], seed=1)
    W, b = [w.copy() for w in net.weights], [c.copy() for c in net.biases]
    W2, b2 = [w.copy() for w in W], [c.copy() for c in b]
    J = train_epoch(W, b, X, Y, 0.1, batch_size, order)
    J2 = train_epoch(W2, b2, X[order], Y[order], 0.1, batch_size)
    assert J == pytest.approx(J2, rel=1e-12)
    for got, want in zip(W + b, W2 + b2):
        np.testing.assert_allclose(got, want, **tolerance(np.float64))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_the_last_short_batch_is_used_with_its_own_mean(backend):
    X, Y = _data(2, 1, 5, "identity", seed=5)
    net = fastbp.MLP([2, 3, 1], output="identity", seed=0)
    W, b = [w.copy() for w in net.weights], [c.copy() for c in net.biases]
    net.fit(X, Y, epochs=1, batch_size=4, shuffle=False, backend=backend)  # batches of 4, then 1
    for rows in (slice(0, 4), slice(4, 5)):  # each update is the mean over its own batch
        dW, db = reference.gradients(W, b, X[rows], Y[rows], "tanh", "identity")
        reference.update(W, b, dW, db, 0.1)
    for got, want in zip(net.weights + net.biases, W + b):
        np.testing.assert_allclose(got, want, **tolerance(np.float64))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_same_seed_same_training_bit_for_bit(backend):
    X, Y = _data(5, 2, 30, "sigmoid", seed=6)
    runs = []
    for _ in range(2):
        net = fastbp.MLP([5, 8, 2], seed=11)
        hist = net.fit(X, Y, epochs=3, batch_size=4, shuffle=True, backend=backend)
        runs.append((net.params.copy(), hist.loss))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_training_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(float)
    net = fastbp.MLP([2, 8, 1], seed=0)
    hist = net.fit(X, y, epochs=20, learning_rate=0.1)
    assert hist.loss[-1] < 0.5 * hist.loss[0]
    assert (net.predict(X) == y).mean() > 0.95
