"""The user-level contract of fastbp.MLP."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import fastbp
from fastbp import reference
from fastbp.testing import make_targets, tolerance


def test_weights_and_biases_are_views_writing_in_place_changes_the_network():
    net = fastbp.MLP([3, 4, 2], seed=0)
    X = np.ones((2, 3))
    before = net.forward(X)
    net.weights[1][...] = 0
    net.biases[1][:] = [2.0, -2.0]
    after = net.forward(X)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.tile(1 / (1 + np.exp([-2.0, 2.0])), (2, 1)))
    assert np.shares_memory(net.weights[0], net.params)
    copied = copy.deepcopy(net.weights)  # plain arrays, no longer the network's
    assert type(copied) is list and not np.shares_memory(copied[0], net.params)
    assert [b.shape for b in pickle.loads(pickle.dumps(net.biases))] == [(4,), (2,)]


def test_a_network_loaded_from_read_only_memory_maps_predicts_and_trains_as_the_original(tmp_path):
    """joblib's ``mmap_mode="r"`` hands the buffer back as a read-only memory map: the loaded network
    takes a writable copy (it was refused, "a pickled MLP ... needs 21 float64"), predicts and trains
    as the original does, and no kernel compiles again for a read-only argument."""
    import joblib

    from fastbp._fast.rows import _predict_rows

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(10, 3)), rng.random((10, 1))
    net = fastbp.MLP([3, 4, 1], seed=0)
    net.fit(X, Y, epochs=1)
    expected = net.predict(X)
    compiled = set(_predict_rows.signatures)
    assert compiled, "predict ran another kernel: this test checks none"
    joblib.dump(net, tmp_path / "net.pkl")
    loaded = joblib.load(tmp_path / "net.pkl", mmap_mode="r")
    assert type(loaded._params) is np.ndarray and loaded._params.flags.writeable
    np.testing.assert_array_equal(loaded.predict(X), expected)
    assert set(_predict_rows.signatures) == compiled
    net.fit(X, Y, epochs=1)
    loaded.fit(X, Y, epochs=1)
    assert loaded.params.tobytes() == net.params.tobytes()


def test_shapes_follow_the_derivation():
    net = fastbp.MLP([5, 7, 3, 2], seed=0)
    assert [w.shape for w in net.weights] == [(7, 5), (3, 7), (2, 3)]
    assert [b.shape for b in net.biases] == [(7,), (3,), (2,)]
    assert net.forward(np.zeros((4, 5))).shape == (4, 2)
    assert net.n_layers == 3


@pytest.mark.parametrize(
    "activation, scheme", [("tanh", "glorot"), ("sigmoid", "glorot"), ("relu", "he"), ("leaky_relu", "he")]
)
def test_initialisation_is_scaled_to_the_activation(activation, scheme):
    net = fastbp.MLP([400, 300, 1], activation=activation, seed=0)
    W = net.weights[0]
    if scheme == "glorot":
        limit = np.sqrt(6 / 700)
        assert np.abs(W).max() <= limit and np.abs(W).max() > 0.95 * limit
        assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    else:
        assert W.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    assert all((b == 0).all() for b in net.biases)


def test_same_seed_same_initial_weights_and_float32_is_the_rounded_float64():
    a = fastbp.MLP([4, 5, 1], seed=3)
    b = fastbp.MLP([4, 5, 1], seed=3)
    c = fastbp.MLP([4, 5, 1], seed=3, dtype=np.float32)
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(c.params, a.params.astype(np.float32))
    assert not np.array_equal(a.params, fastbp.MLP([4, 5, 1], seed=4).params)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_forward_loss_gradients_match_the_reference_functions(backend, dtype, output):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    Y = make_targets(rng, 6, 2, output)
    net = fastbp.MLP([3, 4, 2], output=output, dtype=dtype, seed=1)
    Xd, Yd = X.astype(dtype), Y.astype(dtype)
    _, A = reference.forward(net.weights, net.biases, Xd, "tanh", output)
    np.testing.assert_allclose(net.forward(X, backend), A[-1], **tolerance(dtype))
    assert net.loss(X, Y, backend) == pytest.approx(
        reference.loss(net.weights, net.biases, Xd, Yd, "tanh", output), rel=1e-5
    )
    dW, db = net.gradients(X, Y, backend)
    rW, rb = reference.gradients(net.weights, net.biases, Xd, Yd, "tanh", output)
    for got, want in zip(dW + db, rW + rb):
        np.testing.assert_allclose(got, want, **tolerance(dtype))
        assert got.dtype == dtype
    assert not np.shares_memory(dW[0], net.params)


def test_fit_returns_a_history_and_zero_epochs_change_nothing():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 2)), rng.integers(0, 2, 10)
    net = fastbp.MLP([2, 3, 1], seed=0)
    before = net.params.copy()
    hist = net.fit(X, y, epochs=0)
    assert len(hist) == 0 and np.array_equal(net.params, before)
    seen = []
    hist = net.fit(X, y, epochs=3, callback=lambda h: seen.append(len(h)))
    assert seen == [1, 2, 3] and len(hist.loss) == len(hist.seconds) == 3
    assert hist.examples_per_second > 0


def test_predict_gives_labels():
    net = fastbp.MLP([2, 3, 3], output="softmax", seed=0)
    X = np.random.default_rng(0).normal(size=(5, 2))
    assert np.array_equal(net.predict(X), net.forward(X).argmax(axis=1))
    binary = fastbp.MLP([2, 3, 1], seed=0)
    assert set(np.unique(binary.predict(X))) <= {0, 1}


def test_repr_names_the_network():
    assert (
        repr(fastbp.MLP([2, 3, 1], seed=5))
        == "MLP([2, 3, 1], activation='tanh', output='sigmoid', dtype=float64, seed=5)"
    )


def test_custom_activation_trains_through_mlp():
    from .conftest import SOFTSIGN

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2)), rng.integers(0, 2, 20)
    nets = [fastbp.MLP([2, 3, 1], activation=SOFTSIGN, seed=0) for _ in range(2)]
    nets[0].fit(X, y, epochs=2, backend="numba")
    nets[1].fit(X, y, epochs=2, backend="numpy")
    np.testing.assert_allclose(nets[0].params, nets[1].params, **tolerance(np.float64))
    pair = fastbp.MLP([2, 3, 1], activation=(SOFTSIGN.g, SOFTSIGN.g_prime), seed=0)
    assert pair.activation.is_custom
