"""Divergence: training stops at the first step that would go non-finite, before applying it.

``fit`` raises :class:`fastbp.DivergenceError` (a ``FloatingPointError``) naming the
epoch and batch; the network keeps, bit for bit, the parameters it had before
that step.  The proof replays the same number of good steps on a twin network
(same seed) and compares the bits, then checks that the next step on the twin
is indeed the one that diverges.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastbp
from fastbp import kernels, reference

IMPLS = {"numba": kernels, "numpy": reference}
DTYPES = [np.float32, np.float64]

#: Linear regression on inputs of size ~10 with α too large for them: the steps grow
#: geometrically and overflow in the second epoch (not in a first batch), in both
#: dtypes.  α per batch size (a batch's mean gradient is gentler than one example's).
LR = {1: 0.015, 3: 0.1}
SIZES = [2, 3, 1]
ACT = "identity"
OUT = "identity"


def problem():
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 2)) * 10, rng.normal(size=(8, 1))


def diverge(dtype, backend, batch_size):
    X, Y = problem()
    net = fastbp.MLP(SIZES, activation=ACT, output=OUT, dtype=dtype, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning: the exception reports it
        with pytest.raises(fastbp.DivergenceError) as info:
            net.fit(X, Y, epochs=500, learning_rate=LR[batch_size], batch_size=batch_size, backend=backend)
    return net, info.value


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("backend", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_fit_stops_before_the_diverging_step(dtype, backend, batch_size):
    net, err = diverge(dtype, backend, batch_size)
    assert isinstance(err, FloatingPointError)
    assert err.epoch == 1 and err.batch >= 1, "the setup should diverge inside the second epoch"
    assert f"epoch {err.epoch}, batch {err.batch} (both counted from 0)" in str(err)
    assert np.isfinite(net.params).all()

    # Replay on a twin: err.epoch full epochs, then err.batch batches of the next one.
    X, Y = problem()
    twin = fastbp.MLP(SIZES, activation=ACT, output=OUT, dtype=dtype, seed=0)
    twin.fit(X, Y, epochs=err.epoch, learning_rate=LR[batch_size], batch_size=batch_size, backend=backend)
    order = twin.rng.permutation(X.shape[0])
    good, bad = order[: err.batch * batch_size], order[err.batch * batch_size : (err.batch + 1) * batch_size]
    impl = IMPLS[backend]
    if good.size:
        impl.train_epoch(twin.weights, twin.biases, X, Y, LR[batch_size], batch_size, good, ACT, OUT)
    assert twin.params.tobytes() == net.params.tobytes()

    # … and the next step is the one that diverges (and is refused on the twin too).
    with pytest.raises(fastbp.DivergenceError) as again:
        impl.train_epoch(twin.weights, twin.biases, X, Y, LR[batch_size], batch_size, bad, ACT, OUT)
    assert again.value.batch == 0 and again.value.epoch is None
    assert twin.params.tobytes() == net.params.tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_both_backends_diverge_at_the_same_step(dtype):
    errors = [diverge(dtype, backend, 3)[1] for backend in IMPLS]
    assert (errors[0].epoch, errors[0].batch) == (errors[1].epoch, errors[1].batch)


@pytest.mark.parametrize("impl", IMPLS.values(), ids=IMPLS)
def test_a_non_finite_loss_alone_stops_training(impl):
    """Z[L] = 1e200 makes the squared error inf while the step itself stays finite."""
    W, b = [np.zeros((1, 1))], [np.array([1e200])]
    X, Y = np.zeros((2, 1)), np.zeros((2, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(fastbp.DivergenceError, match="batch 0"):
            impl.train_epoch(W, b, X, Y, 1e-300, 1, None, "identity", "identity")
    assert b[0][0] == 1e200 and W[0][0, 0] == 0


@pytest.mark.parametrize("impl", IMPLS.values(), ids=IMPLS)
def test_update_refuses_a_step_to_inf_and_changes_nothing(impl):
    W, b = [np.ones((2, 2)), np.ones((1, 2))], [np.zeros(2), np.zeros(1)]
    before = [a.copy() for a in W + b]
    dW = [np.zeros((2, 2)), np.zeros((1, 2))]
    db = [np.zeros(2), np.array([-1e300])]  # b − α db = 1e300 · 1e10: overflows
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(fastbp.DivergenceError):
            impl.update(W, b, dW, db, 1e10)
    assert all(a.tobytes() == c.tobytes() for a, c in zip(W + b, before))


def test_divergence_error_is_a_floating_point_error_with_its_position():
    err = fastbp.DivergenceError(4, epoch=2)
    assert isinstance(err, FloatingPointError)
    assert (err.epoch, err.batch) == (2, 4)
    assert "epoch 2, batch 4" in str(err)
