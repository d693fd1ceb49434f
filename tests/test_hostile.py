"""Hostile use (issue 14): nothing a user can write from Python reaches a kernel unchecked, one
network has one state, no silent NaN, errors that name the argument.

Every refusal test asserts the error type, that the message names the argument, and that
nothing changed.  Saved-model attacks are in ``test_hostile_io.py``, the command line in
``test_hostile_cli.py``, the bounds-checked fuzz test in ``test_fuzz_boundscheck.py``.
"""

from __future__ import annotations

import copy
import os
import pickle
import re
import signal
import threading

import numpy as np
import pytest
from scipy import sparse

import fastbp
from fastbp import MLP, kernels, reference
from fastbp.optimizers import SGD, Adam
from fastbp.params import atomic_commit

BACKENDS = {"numba": kernels, "numpy": reference}


def _data(m=12, n=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n))
    return X, (X[:, :1] > 0).astype(float)


def _snapshot(net):
    return net.params.copy()


def _refused(exc_type, match, call, *nets):
    """``call()`` raises ``exc_type`` with ``match`` in its message and changes none of ``nets``."""
    before = [_snapshot(n) for n in nets]
    with pytest.raises(exc_type, match=match):
        call()
    for n, b in zip(nets, before):
        assert n.params.tobytes() == b.tobytes()


# ====================================================== memory safety: trusted attributes


def test_assigning_params_of_another_size_is_refused_and_changes_nothing():
    net = MLP([3, 4, 1], seed=0)
    for bad in (net.params[:5].copy(), np.zeros(net.params.size + 1), np.zeros((net.params.size, 1))):
        _refused(ValueError, "^params", lambda bad=bad: setattr(net, "params", bad), net)
    _refused(ValueError, "^params.*NaN", lambda: setattr(net, "params", np.full(net.params.size, np.nan)), net)
    _refused(TypeError, "^params", lambda: setattr(net, "params", np.array(["a"] * net.params.size)), net)
    X, Y = _data()
    net.fit(X, Y, epochs=1)  # and the network still trains in its own buffer


def test_assigning_params_copies_into_the_buffer_so_every_view_agrees():
    net = MLP([3, 4, 1], seed=0)
    W0 = net.weights[0]
    net.params = np.arange(net.params.size, dtype=np.float32)  # converted to the network's dtype
    assert net.params.dtype == np.float64
    np.testing.assert_array_equal(W0.ravel(), np.arange(12))
    np.testing.assert_array_equal(net.biases[0], np.arange(12, 16))


def test_the_kernel_buffer_cannot_be_resized_through_params():
    net = MLP([3, 4, 1], seed=0)
    before = _snapshot(net)
    with pytest.raises(ValueError, match="resize"):
        net.params.resize(5, refcheck=False)
    view = net.params
    view.shape = (net.params.size, 1)  # reshaping a view reshapes only that view
    assert net.params.shape == (net.layer_sizes[1] * 4 + 1 * 5,)
    assert net.params.tobytes() == before.tobytes()
    X, Y = _data()
    net.fit(X, Y, epochs=1)


@pytest.mark.parametrize("name", ["layer_sizes", "dtype", "activation", "output"])
def test_attributes_the_kernels_trust_are_read_only(name):
    net = MLP([3, 4, 1], seed=0)
    value = getattr(net, name)
    _refused(AttributeError, name, lambda: setattr(net, name, value), net)
    assert getattr(net, name) == value


def test_rng_must_be_a_generator():
    net = MLP([3, 4, 1], seed=0)
    rng = net.rng
    _refused(TypeError, "^rng", lambda: setattr(net, "rng", np.random.RandomState(0)), net)
    assert net.rng is rng
    net.rng = np.random.Generator(np.random.MT19937(1))  # any Generator is fine


def _zero_unit_problems():
    X = np.ones((4, 3))
    yield "weights[1]", [np.ones((2, 3)), np.ones((0, 2))], [np.zeros(2), np.zeros(0)], X, np.zeros((4, 0))
    yield "weights[0]", [np.ones((0, 3)), np.ones((1, 0))], [np.zeros(0), np.zeros(1)], X, np.zeros((4, 1))
    yield (
        "weights[0]",
        [np.ones((2, 0)), np.ones((1, 2))],
        [np.zeros(2), np.zeros(1)],
        np.ones((4, 0)),
        np.zeros((4, 1)),
    )


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("fn", ["forward", "predict", "loss", "gradients", "backward", "update", "train_epoch"])
def test_zero_unit_layers_are_refused_by_every_public_wrapper(backend, fn):
    impl = BACKENDS[backend]
    for name, W, b, X, Y in _zero_unit_problems():
        before = [P.copy() for P in W + b]
        args = {
            "forward": (W, b, X),
            "predict": (W, b, X),
            "loss": (W, b, X, Y),
            "gradients": (W, b, X, Y),
            "backward": (W, b, X, Y, [np.zeros((4, w.shape[0])) for w in W], [np.zeros((4, w.shape[0])) for w in W]),
            "update": (W, b, [np.zeros_like(w) for w in W], [np.zeros_like(c) for c in b], 0.1),
            "train_epoch": (W, b, X, Y, 0.1),
        }[fn]
        with pytest.raises(ValueError, match=rf"^{name.replace('[', '.').replace(']', '.')} has shape"):
            getattr(impl, fn)(*args)
        assert all(np.array_equal(P, Q) for P, Q in zip(W + b, before))


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_one_array_passed_as_two_parameters_is_refused(backend):
    impl = BACKENDS[backend]
    X, Y = _data(n=3)
    W = np.full((3, 3), 0.1)
    weights, biases = [W, W, np.ones((1, 3))], [np.zeros(3), np.zeros(3), np.zeros(1)]
    before = W.copy()
    with pytest.raises(ValueError, match=r"^weights\[1\] shares memory with weights\[0\]"):
        impl.train_epoch(weights, biases, X, Y, 0.1)
    flat = np.zeros(8)  # overlapping views: b[0] is the tail of W[0]
    with pytest.raises(ValueError, match=r"^biases\[0\] shares memory with weights\[0\]"):
        impl.train_epoch([flat[:6].reshape(2, 3), np.ones((1, 2))], [flat[4:6], np.zeros(1)], X, Y, 0.1)
    assert np.array_equal(W, before) and not flat.any()


@pytest.mark.parametrize("fast_rows", [0, None])
def test_the_read_only_operations_accept_one_array_as_two_layers_on_both_backends(fast_rows, monkeypatch):
    """forward, predict, loss, gradients and backward only read the parameters, so tied weights
    (one array passed as W[0] and W[1]) are allowed, and give what two copies of it give, through
    the column kernels (``fast_rows`` 0) and the rows kernels below them; train_epoch, which writes them back,
    refuses them (above)."""
    from fastbp import _dispatch

    if fast_rows is not None:
        monkeypatch.setattr(_dispatch, "FAST_FORWARD_MIN_ROWS", fast_rows)
    X, Y = _data(m=5)
    W = np.random.default_rng(2).normal(size=(3, 3))
    tied = ([W, W, np.ones((1, 3))], [np.zeros(3), np.zeros(3), np.zeros(1)])
    copies = ([W.copy(), W.copy(), np.ones((1, 3))], [np.zeros(3), np.zeros(3), np.zeros(1)])

    def flat(result):  # the arrays of a result (lists of them, pairs of lists, or a float), in order
        if isinstance(result, (list, tuple)):
            return [a for part in result for a in flat(part)]
        return [np.asarray(result)]

    for impl in (kernels, reference):
        Z, A = impl.forward(*copies, X)
        for fn, extra in (
            ("forward", ()),
            ("predict", ()),
            ("loss", (Y,)),
            ("gradients", (Y,)),
            ("backward", (Y, Z, A)),
        ):
            got, want = flat(getattr(impl, fn)(*tied, X, *extra)), flat(getattr(impl, fn)(*copies, X, *extra))
            assert len(got) == len(want) > 0
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_a_gradient_that_is_a_parameter_is_read_before_the_step_on_both_backends():
    rng = np.random.default_rng(0)
    W0, b0 = [rng.normal(size=(4, 3)), rng.normal(size=(1, 4))], [rng.normal(size=4), rng.normal(size=1)]
    results = []
    for impl in (kernels, reference):
        W, b = [w.copy() for w in W0], [c.copy() for c in b0]
        impl.update(W, b, [W[0], W[1]], [b[0], b[1]], 0.5)  # dW[l] is W[l] itself
        results.append(W + b)
        W, b = [w.copy() for w in W0], [c.copy() for c in b0]
        impl.update(W, b, [W[0], W[1]], [W[1][0], b[1]], 0.5)  # db[0] is a row of W[1]
        results.append(W + b)
    for got, want in zip(results[0] + results[1], results[2] + results[3]):
        np.testing.assert_allclose(got, want, rtol=1e-15)
    np.testing.assert_allclose(results[0][0], 0.5 * W0[0], rtol=1e-15)


def test_inputs_that_alias_the_parameters_are_read_as_they_were_on_both_backends():
    rng = np.random.default_rng(1)
    W0, b0 = [rng.normal(size=(3, 3)), rng.normal(size=(1, 3))], [np.zeros(3), np.zeros(1)]
    Y = np.array([[0.0], [1.0], [1.0]])
    results = []
    for impl in (kernels, reference):
        W, b = [w.copy() for w in W0], [c.copy() for c in b0]
        J = impl.train_epoch(W, b, W[0], Y, 0.1)  # X is W[1] itself, written by the epoch
        W2, b2 = [w.copy() for w in W0], [c.copy() for c in b0]
        J2 = impl.train_epoch(W2, b2, W0[0].copy(), Y, 0.1)
        assert J == J2 and all(np.array_equal(P, Q) for P, Q in zip(W + b, W2 + b2))
        results.append(W + b)
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_fit_reads_an_X_that_is_a_view_of_the_network_as_it_was():
    a, b = MLP([4, 4, 1], seed=0), MLP([4, 4, 1], seed=0)
    Y = np.array([[0.0], [1.0], [1.0], [0.0]])
    a.fit(a.weights[0], Y, epochs=2, shuffle=False)
    b.fit(b.weights[0].copy(), Y, epochs=2, shuffle=False)
    assert a.params.tobytes() == b.params.tobytes()


@pytest.mark.parametrize(
    "attribute, value, match",
    [
        ("state", np.zeros((2, 3)), "^state has shape"),
        ("state", np.zeros(7), "^state must be"),
        ("state", np.zeros((2, 21), np.float32), "optimizer holds state"),
        ("counter", np.zeros(0, np.int64), "^counter"),
        ("counter", np.zeros(1, np.int32), "^counter"),
        ("counter", np.array([-5]), "^counter"),
        ("momentum", 5.0, "^momentum"),
        ("learning_rate", float("nan"), "^learning_rate"),
        ("alpha", -1.0, "^alpha"),
        ("kind", 7, "^kind"),
    ],
)
def test_optimizer_attributes_the_kernels_trust_are_checked_before_each_epoch(attribute, value, match):
    X, Y = _data()
    net = MLP([3, 4, 1], seed=0)
    opt = SGD(momentum=0.9)
    net.fit(X, Y, epochs=1, optimizer=opt)  # bound: state (2, 21)
    state = opt.state.copy()
    setattr(opt, attribute, value)
    _refused(ValueError, match, lambda: net.fit(X, Y, epochs=1, optimizer=opt), net)
    if attribute != "state":
        assert np.array_equal(opt.state, state)


def test_state_assigned_to_an_optimizer_never_bound_is_refused_naming_it():
    X, Y = _data()
    net = MLP([3, 4, 1], seed=0)
    opt = SGD(momentum=0.9)
    opt.state = np.zeros((2, net.params.size))
    _refused(ValueError, "optimizer holds state for no network", lambda: net.fit(X, Y, epochs=1, optimizer=opt), net)


def test_adam_hyper_parameters_written_after_construction_are_checked():
    X, Y = _data()
    net = MLP([3, 4, 1], seed=0)
    for name, value in (("beta_1", 1.0), ("beta_2", -0.1), ("epsilon", 0.0)):
        opt = Adam()
        setattr(opt, name, value)
        _refused(ValueError, f"^{name}", lambda opt=opt: net.fit(X, Y, epochs=1, optimizer=opt), net)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_matrix_and_masked_parameters_are_refused(backend):
    impl = BACKENDS[backend]
    X, _ = _data()
    W, b = [np.ones((4, 3)), np.ones((1, 4))], [np.zeros(4), np.zeros(1)]
    with pytest.raises(TypeError, match=r"^weights\[0\] must be a plain numpy.ndarray, got numpy.matrix"):
        impl.predict([np.matrix(W[0]), W[1]], b, X)
    masked = np.ma.masked_array(np.ones((1, 4)), mask=[[False, True, False, False]])
    masked.data[0, 1] = np.nan
    with pytest.raises(TypeError, match=r"^weights\[1\] must be a plain numpy.ndarray"):
        impl.predict([W[0], masked], b, X)


# ============================================================ one network, one state


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "copy"])
def test_copies_and_pickles_keep_weights_and_biases_as_views_of_params(how, tmp_path):
    net = MLP([3, 4, 2], output="softmax", seed=0)
    other = {
        "deepcopy": copy.deepcopy,
        "pickle": lambda n: pickle.loads(pickle.dumps(n)),
        "copy": copy.copy,
    }[how](net)
    for P in other.weights + other.biases:
        assert np.shares_memory(P, other.params)
    X, Y = _data()
    Y = np.hstack([Y, 1 - Y])
    before = other.forward(X)
    other.fit(X, Y, epochs=2)
    assert not np.array_equal(other.forward(X), before)  # forward reads what fit trained
    want = reference.predict(other.weights, other.biases, X, "tanh", "softmax")
    np.testing.assert_allclose(other.forward(X), want, rtol=1e-13)
    path = other.save(tmp_path / "m.npz")
    assert fastbp.load(path).params.tobytes() == other.params.tobytes()  # save reads it too
    if how != "copy":
        assert not np.shares_memory(net.params, other.params)


def test_item_assignment_into_weights_writes_into_the_network():
    net = MLP([3, 4, 1], seed=0)
    net.weights[0] = np.ones((4, 3))
    net.biases[-1] = [2.5]
    np.testing.assert_array_equal(net.params[:12], 1.0)
    assert net.params[-1] == 2.5
    X, _ = _data()
    np.testing.assert_allclose(net.forward(X), reference.predict(net.weights, net.biases, X), rtol=1e-13)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda n: n.weights.__setitem__(0, np.ones((3, 4))), ValueError, r"^weights\[0\] must have shape \(4, 3\)"),
        (lambda n: n.weights.__setitem__(-1, np.full((1, 4), np.inf)), ValueError, r"^weights\[1\] contains inf"),
        (lambda n: n.biases.__setitem__(slice(0, 2), []), TypeError, "^biases"),
        (lambda n: n.weights.append(np.ones((1, 1))), TypeError, "^weights"),
        (lambda n: n.weights.pop(), TypeError, "^weights"),
        (lambda n: setattr(n, "weights", [np.ones((4, 3))]), ValueError, "^weights must be a list of 2"),
        (lambda n: setattr(n, "biases", [np.ones(4), np.ones(2)]), ValueError, r"^biases\[1\] must have shape"),
        (lambda n: setattr(n, "weights", np.ones((4, 3))), TypeError, "^weights"),
    ],
)
def test_bad_assignments_into_weights_and_biases_are_refused_and_change_nothing(call, error, match):
    net = MLP([3, 4, 1], seed=0)
    _refused(error, match, lambda: call(net), net)


def test_assigning_whole_lists_of_weights_and_biases():
    net = MLP([3, 4, 1], seed=0)
    net.weights = [np.zeros((4, 3)), np.ones((1, 4))]
    net.biases = (np.ones(4), np.zeros(1))
    np.testing.assert_array_equal(net.params, np.r_[np.zeros(12), np.ones(4), np.ones(4), 0.0])


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt here, whatever this process inherited: a shell's background
    job starts with SIGINT ignored, and then the interrupt these tests send was dropped (the
    interrupted fit below ran its 10**6 epochs, many minutes).  Restored afterwards."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_inside_a_commit_is_delivered_after_every_write(ctrl_c_raises):
    a = np.zeros(3)
    with pytest.raises(KeyboardInterrupt):
        with atomic_commit():
            a[0] = 1
            os.kill(os.getpid(), signal.SIGINT)
            a[1] = 1  # still written: the interrupt waits for the block's end
            a[2] = 1
    assert a.tolist() == [1, 1, 1]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_interrupted_numpy_fit_keeps_the_parameters_of_a_whole_number_of_steps(ctrl_c_raises):
    X, Y = _data(m=6)
    net = MLP([3, 5, 4, 1], seed=0)
    start = _snapshot(net)
    timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            net.fit(X, Y, epochs=10**6, batch_size=1, shuffle=False, backend="numpy")
    finally:
        timer.cancel()
    got = net.params
    replay = MLP([3, 5, 4, 1], seed=0)
    assert replay.params.tobytes() == start.tobytes()
    W, b = replay._weights, replay._biases
    for step in range(10**6):
        if replay.params.tobytes() == got.tobytes():
            return
        i = step % 6
        reference.train_epoch(W, b, X, Y, 0.1, 1, [i])
    raise AssertionError("the interrupted network's parameters are not those of any whole step")


def test_a_refit_that_fails_part_way_leaves_the_fitted_estimator_as_it_was(monkeypatch):
    from fastbp.estimators import MLPClassifier, _BaseMLP

    X, _ = _data(m=40)
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y)
    before = (clf.predict_proba(X), clf._params.copy(), dict(clf.__dict__))
    clf.set_params(hidden_layer_sizes=(2**40,))
    with pytest.raises(ValueError, match="^hidden_layer_sizes"):
        clf.fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before[0])

    def out_of_memory(self, *args):
        self.n_iter_ = -1  # part-way: some bookkeeping already replaced
        raise MemoryError("Unable to allocate 40.0 TiB")

    monkeypatch.setattr(_BaseMLP, "_initialize", out_of_memory)
    clf.set_params(hidden_layer_sizes=(5,))
    with pytest.raises(MemoryError):
        clf.fit(X, y)
    monkeypatch.undo()
    np.testing.assert_array_equal(clf.predict_proba(X), before[0])
    assert clf.n_iter_ == before[2]["n_iter_"] and clf._layout.sizes.tolist() == [3, 4, 1]


def test_a_warm_refit_that_fails_while_training_restores_parameters_and_optimizer(monkeypatch):
    from fastbp.estimators import MLPRegressor

    X, y = _data(m=40)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, warm_start=True, random_state=0).fit(X, y[:, 0])
    params, state, curve = reg._params.copy(), reg._optimizer.state.copy(), list(reg.loss_curve_)
    calls = []
    real = type(reg._optimizer)._train_epoch

    def fails_second_epoch(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(reg._optimizer), "_train_epoch", fails_second_epoch)
    with pytest.raises(RuntimeError):
        reg.fit(X, y[:, 0])
    assert reg._params.tobytes() == params.tobytes()
    assert reg._optimizer.state.tobytes() == state.tobytes() and reg.loss_curve_ == curve


# ======================================================================= no silent NaN


def test_masked_inputs_with_masked_entries_are_refused_everywhere():
    X, Y = _data()
    data = X.copy()
    data[2, 1] = np.nan
    Xm = np.ma.masked_invalid(data)
    net = MLP([3, 4, 1], seed=0)
    for call in (
        lambda: net.predict(Xm),
        lambda: net.fit(Xm, Y, epochs=1),
        lambda: net.fit(X, np.ma.masked_array(Y, mask=Y > 0), epochs=1),
        lambda: kernels.forward(net.weights, net.biases, Xm),
        lambda: reference.forward(net.weights, net.biases, Xm),
    ):
        _refused(ValueError, "^[XY] is a masked array with masked entries", call, net)
    np.testing.assert_array_equal(net.predict(np.ma.masked_array(X)), net.predict(X))  # nothing masked: fine


def test_float32_estimator_refuses_float64_input_beyond_its_range():
    from fastbp.estimators import MLPClassifier

    X, _ = _data(m=40)
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0, dtype=np.float32).fit(X, y)
    params = clf._params.copy()
    with pytest.raises(ValueError, match="^X overflows float32"):
        clf.predict_proba(np.full((2, 3), 1e300))
    with pytest.raises(ValueError, match="^X overflows float32"):
        clf.predict_proba(sparse.csr_matrix(np.full((2, 3), 1e300)))  # densified a chunk at a time
    with pytest.raises(ValueError, match="^X overflows float32"):
        clf.fit(X * 1e300, y)
    assert clf._params.tobytes() == params.tobytes()


@pytest.mark.parametrize("sparse_X", [False, True])
def test_estimators_refuse_nan_even_where_scikit_learn_assumes_finite(sparse_X):
    """With ``sklearn.config_context(assume_finite=True)`` validate_data does not look for NaN and
    inf; fastbp's kernels still must not see them: fit and predict refuse them all the same."""
    import sklearn

    from fastbp.estimators import MLPClassifier

    X, _ = _data(m=40)
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    params = clf._params.copy()
    bad = X.copy()
    bad[3, 1] = np.nan
    bad = sparse.csr_matrix(bad) if sparse_X else bad
    with sklearn.config_context(assume_finite=True):
        with pytest.raises(ValueError, match="^X contains NaN"):
            clf.predict_proba(bad)
        with pytest.raises(ValueError, match="^X:? contains NaN"):
            clf.fit(bad, y)
    assert clf._params.tobytes() == params.tobytes()


# =========================================================== errors that name the problem


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_nan_weights_written_by_the_user_are_named_by_fit_on_both_backends(backend):
    X, Y = _data()
    net = MLP([3, 4, 1], seed=0)
    net.weights[1][0, 2] = np.nan
    _refused(ValueError, r"^weights\[1\] contains NaN", lambda: net.fit(X, Y, epochs=1, backend=backend), net)
    _refused(ValueError, r"^weights\[1\] contains NaN", lambda: net.forward(X, backend=backend), net)


@pytest.mark.parametrize(
    "lr, dtype, match",
    [
        (1e39, np.float32, "overflows the network's dtype float32"),
        (1e-46, np.float32, "rounds to 0"),
        (10**400, np.float64, "too large for a float"),
        (1e-330, np.float64, "rounds to 0|finite positive"),
    ],
)
def test_learning_rates_the_network_cannot_hold_are_refused_everywhere(lr, dtype, match):
    X, Y = _data()
    net = MLP([3, 4, 1], dtype=dtype, seed=0)
    W, b = net.weights, net.biases
    zeros = ([np.zeros_like(w) for w in W], [np.zeros_like(c) for c in b])
    for call in (
        lambda: net.fit(X, Y, epochs=1, learning_rate=lr),
        lambda: net.fit(X, Y, epochs=1, learning_rate=lr, backend="numpy"),
        lambda: kernels.train_epoch(W, b, X, Y, lr),
        lambda: reference.train_epoch(W, b, X, Y, lr),
        lambda: kernels.update(W, b, *zeros, lr),
        lambda: reference.update(W, b, *zeros, lr),
    ):
        _refused(ValueError, f"^learning_rate.*({match})", call, net)


@pytest.mark.parametrize("sizes", [[3, 2**63, 1], [2**31, 1], [3, 2**40, 2**40, 1]])
def test_layer_sizes_too_large_are_a_value_error_naming_them(sizes):
    with pytest.raises(ValueError, match="^layer_sizes"):
        MLP(sizes)


def test_an_unpickled_estimator_whose_buffer_does_not_match_its_layers_is_refused():
    from fastbp.estimators import MLPRegressor

    X, y = _data(m=20)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y[:, 0])
    state = dict(reg.__getstate__())  # (a copy: object.__getstate__ may return the __dict__ itself)
    state["_params"] = state["_params"][:5].copy()
    with pytest.raises(ValueError, match="^_params"):
        MLPRegressor().__setstate__(state)
    assert pickle.loads(pickle.dumps(reg)).predict(X).tolist() == reg.predict(X).tolist()


@pytest.mark.parametrize("name", ["exp_array", "tanh_array", "sigmoid_array", "log1p_unit_array"])
def test_the_public_whole_array_math_checks_out_before_writing(name):
    from fastbp import vmath

    fn = getattr(vmath, name)
    x = np.linspace(0, 1, 10)
    for out, error, match in (
        (np.zeros(2), ValueError, "out must have x's shape"),  # was a write past out's end
        (np.zeros((10, 1)), ValueError, "out must be 1-dimensional"),
        (np.zeros(10, np.float32), TypeError, "out must have x's dtype"),
        (np.zeros(10)[:0], ValueError, "out must have x's shape"),
        ([0.0] * 10, TypeError, "out must be a NumPy array"),
    ):
        with pytest.raises(error, match=f"^{name}: {match}"):
            fn(x, out)
        assert not np.any(out)
    ro = np.zeros(10)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=f"^{name}: out is read-only"):
        fn(x, ro)
    out = np.empty(10)
    fn(x, out)
    assert np.isfinite(out).all()
    # out overlapping x other than exactly (x reversed): NumPy's answer, x read before it is overwritten
    y = np.linspace(0.05, 0.95, 9)
    expected = np.empty(9)
    fn(y.copy(), expected)
    fn(y, y[::-1])
    np.testing.assert_array_equal(y[::-1], expected)
    same = np.linspace(0.05, 0.95, 9)
    fn(same, same)  # exactly in place: no copy needed, the same values
    np.testing.assert_array_equal(same, expected)


def test_log1p_unit_array_refuses_x_outside_its_domain():
    from fastbp import vmath

    out = np.zeros(3)
    for bad in ([0.5, 10.0, 0.2], [-0.1, 0.0, 1.0], [0.0, np.inf, 0.5]):
        with pytest.raises(ValueError, match=r"^log1p_unit_array: x must lie in \[0, 1\]"):
            vmath.log1p_unit_array(np.array(bad), out)
        assert not out.any()
    vmath.log1p_unit_array(np.array([0.0, 1.0, np.nan]), out)
    assert out[0] == 0 and out[1] == np.log1p(1.0) and np.isnan(out[2])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SGD(learning_rate_init=1e39), "^learning_rate = 1e\\+39 overflows the network's dtype float32"),
        (lambda: Adam(learning_rate_init=1e-46), "^learning_rate = 1e-46 rounds to 0"),
        (lambda: Adam(epsilon=1e-50), "^epsilon = 1e-50 rounds to 0 in the network's dtype float32"),
    ],
)
def test_optimizer_settings_the_network_dtype_cannot_hold_are_refused_before_training(make, match):
    X, Y = _data()
    net = MLP([3, 4, 1], dtype=np.float32, seed=0)
    _refused(ValueError, match, lambda: net.fit(X, Y, epochs=1, optimizer=make()), net)


@pytest.mark.parametrize("name", ["learning_rate_init", "alpha"])
def test_optimizer_numbers_too_large_for_a_float_are_a_value_error_naming_them(name):
    with pytest.raises(ValueError, match=f"^{name}"):
        SGD(**{name: 10**400})


def _helpers_without_a_python_entry() -> list:
    """Every dispatcher in fastbp's modules compiled without a CPython wrapper (``JIT_INNER``,
    ``JIT_EXACT``, and ``compile_as`` copies with those options)."""
    import importlib
    import pkgutil

    from numba.core.dispatcher import Dispatcher

    found = {}
    for info in pkgutil.walk_packages(fastbp.__path__, "fastbp."):
        if info.name == "fastbp.__main__":  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and obj.targetoptions.get("no_cpython_wrapper"):
                found[id(obj)] = obj
    return list(found.values())


def test_a_compiled_helper_called_from_python_raises_instead_of_crashing():
    """Numba jumps to the missing wrapper of a helper compiled without one, and the interpreter dies
    (numba#2541).  ``fastbp.losses.output_loop`` and its kind sit in importable modules: each refuses a
    Python call with a TypeError that names it, before anything is compiled or run."""
    from fastbp._jit import HelperDispatcher

    helpers = _helpers_without_a_python_entry()
    names = {f"{h.py_func.__module__}.{h.py_func.__qualname__}" for h in helpers}
    assert {"fastbp.losses.output_loop", "fastbp._fast._columns._columns_gradient"} <= names
    for helper in helpers:
        assert isinstance(helper, HelperDispatcher), helper
        z, a = np.zeros(3), np.zeros(3)
        name = re.escape(helper.py_func.__qualname__)
        with pytest.raises(TypeError, match=rf"{name} is a helper .* cannot be called from"):
            helper(z, a, 1)
        np.testing.assert_array_equal(a, 0.0)


_V3, _V2, _I3 = np.zeros(3), np.zeros(2), np.arange(3)

#: Python calls of the public compiled building blocks that would take their loops outside an array:
#: (function, arguments, exception, what the message names).
_BUILDING_BLOCK_MISUSE = {
    "output_activation a short": ("output_activation", (_V3, _V2, 0), ValueError, "^a must have z's length 3"),
    "output_activation z empty": ("output_activation", (np.zeros(0), np.zeros(0), 1), ValueError, "^z must hold"),
    "output_activation a 2-D": ("output_activation", (_V3, np.zeros((3, 1)), 0), TypeError, "^a must be a 1-D"),
    "output_activation z a list": ("output_activation", ([0.0] * 3, _V3, 0), TypeError, "^z must be a 1-D"),
    "example_cost y short": ("example_cost", (_V3, _V2, 1), ValueError, "^y must have z's length 3"),
    "batch_weight stop past order": ("batch_weight", (_V3, _I3, 0, 4), ValueError, "^start, stop must satisfy"),
    "batch_weight start after stop": ("batch_weight", (_V3, _I3, 2, 1), ValueError, "^start, stop must satisfy"),
    "batch_weight order past sw": ("batch_weight", (_V2, _I3, 0, 3), ValueError, r"^order\[start:stop\] must index sw"),
    "batch_weight order negative": ("batch_weight", (_V3, -_I3, 0, 3), ValueError, r"^order\[start:stop\] must index"),
}


@pytest.mark.parametrize("case", list(_BUILDING_BLOCK_MISUSE))
def test_a_public_compiled_building_block_refuses_arguments_that_would_leave_its_arrays(case):
    """``fastbp.losses.output_activation``, ``example_cost`` and ``batch_weight`` are the plain kernels'
    per-example steps, compiled with a Python entry point and public: from Python, what would make
    their loops read or write past an array is refused first, nothing written."""
    from fastbp import losses
    from fastbp._jit import CheckedDispatcher

    name, args, error, match = _BUILDING_BLOCK_MISUSE[case]
    function = getattr(losses, name)
    assert isinstance(function, CheckedDispatcher)
    before = [a.copy() for a in args if isinstance(a, np.ndarray)]
    with pytest.raises(error, match=match):
        function(*args)
    for a, b in zip([a for a in args if isinstance(a, np.ndarray)], before):
        np.testing.assert_array_equal(a, b)


def test_the_checked_building_blocks_still_compute_what_their_plain_python_does():
    from fastbp import losses

    rng = np.random.default_rng(0)
    z, y = rng.normal(size=4), np.array([0.0, 1.0, 0.0, 0.0])
    for out in range(4):
        a, a_py = np.empty(4), np.empty(4)
        losses.output_activation(z, a, out)
        losses.output_activation.py_func(z, a_py, out)
        np.testing.assert_allclose(a, a_py, rtol=1e-12)
        np.testing.assert_allclose(losses.example_cost(z, y, out), losses.example_cost.py_func(z, y, out), rtol=1e-12)
    sw, order = np.array([0.5, 2.0, 1.0]), np.array([2, 0, 1])
    assert losses.batch_weight(sw, order, 1, 3) == 2.5
    assert losses.batch_weight(np.zeros(0), order, 1, 3) == 2.0


def _step_calls(n_short):
    """Each step kernel of ``fastbp.optimizers.IMPLEMENTATIONS`` called from Python with one array
    ``n_short`` long where the parameters are 6: (name, args, the argument the error names)."""
    p, g = np.ones(6), np.ones(6)
    short = np.ones(n_short)
    offs = np.array([0], np.int64), np.array([4], np.int64)
    hyper = np.array([0.1, 0.9, 0.0, 0.9, 0.999, 1e-8])
    return [
        ("sgd_update", (p, short, 0.1), "g"),
        ("step_is_finite", (p, short, 0.1), "g"),
        ("sgd_step", (p, g, short, 0.1, 0.9, False), "velocity"),
        ("adam_step", (p, g, np.zeros(6), np.zeros(n_short), 1, 0.1, 0.9, 0.999, 1e-8), "s"),
        ("add_l2", (short, p, *offs, 0.1), "params"),
        ("add_l2", (g, p, offs[0], np.array([], np.int64), 0.1), "b_off"),
        ("optimizer_step", (p, g, np.zeros((2, n_short)), np.zeros(1, np.int64), 1, hyper), "state"),
        ("optimizer_step", (p, g, np.zeros((2, 6)), np.zeros(1, np.int64), 1, hyper[:3]), "hyper"),
        ("optimizer_step", (p, short, np.zeros((2, 6)), np.zeros(1, np.int64), 0, hyper), "grad"),
    ]


@pytest.mark.parametrize("case", range(len(_step_calls(2))))
def test_the_public_step_kernels_refuse_arrays_they_would_read_past_before_writing(case):
    """``fastbp.optimizers.IMPLEMENTATIONS``' compiled steps loop over the parameters' length and
    index every other array with it: called from Python, a shorter array is refused, naming it,
    and nothing is written (the epochs' compiled calls are not checked: they size the arrays)."""
    from fastbp.optimizers import IMPLEMENTATIONS

    name, args, arg = _step_calls(2)[case]
    before = [a.copy() for a in args if isinstance(a, np.ndarray)]
    with pytest.raises(ValueError, match=f"^{arg} must"):
        IMPLEMENTATIONS[name][0](*args)
    after = [a for a in args if isinstance(a, np.ndarray)]
    assert all(np.array_equal(x, y) for x, y in zip(before, after))
    good = _step_calls(6)[case]
    if arg not in ("b_off", "hyper"):  # the same call with every array whole runs
        IMPLEMENTATIONS[name][0](*good[1])


@pytest.mark.parametrize("attribute", ["n_features_in_", "n_outputs_"])
def test_predict_holds_x_and_its_output_to_the_fitted_network_not_to_changed_attributes(attribute):
    """``n_features_in_`` and ``n_outputs_`` are plain attributes (a user or a pickle can change
    them); the kernels read X and write A[L] by the network's own layer sizes."""
    import warnings

    from fastbp.estimators import MLPRegressor

    rng = np.random.default_rng(0)
    X, Y = rng.random((40, 64)), rng.random((40, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2).fit(X, Y)
    expected = reg.predict(X[:5])
    setattr(reg, attribute, 1)
    if attribute == "n_features_in_":
        with pytest.raises(ValueError, match="input layer has 64"):
            reg.predict(rng.random((3, 1)))
    else:  # the output is the network's 8 columns whatever n_outputs_ says (raveled, as it says 1)
        np.testing.assert_array_equal(reg.predict(X[:5]).reshape(5, 8), expected)
