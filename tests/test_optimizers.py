"""Optimizers: each step kernel against its NumPy twin and against scikit-learn's own optimizers."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp import optimizers as O
from fastbp._plain.loops import _train_epoch_opt
from fastbp.activations import get_activation
from fastbp.losses import get_output
from fastbp.params import Layout, offsets
from fastbp.steps import _add_l2
from fastbp.testing import EXP_LEARNING_RATE_SCALE, assert_agree, make_problem, tolerance

from .conftest import SOFTSIGN

sk_opt = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")

DTYPES = (np.float32, np.float64)
N_STEPS = 4


def _grads(dtype, n=37, steps=N_STEPS, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n).astype(dtype), [rng.normal(size=n).astype(dtype) for _ in range(steps)]


SGD_SETTINGS = [(0.0, False), (0.9, False), (0.9, True), (0.5, True)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum, nesterov", SGD_SETTINGS)
def test_sgd_step_kernel_reference_and_sklearn_agree(dtype, momentum, nesterov):
    p0, grads = _grads(dtype)
    results = []
    for step in O.IMPLEMENTATIONS["sgd_step"]:
        p, vel = p0.copy(), np.zeros_like(p0)
        for g in grads:
            assert step(p, g, vel, 0.05, momentum, nesterov)
        results.append((p, vel))
    sk_params = [p0.copy()]
    sk = sk_opt.SGDOptimizer(sk_params, 0.05, "constant", momentum, nesterov)
    for g in grads:
        sk.update_params(sk_params, [g])
    assert results[0][0].dtype == np.dtype(dtype)
    assert_agree(results[0], results[1], dtype, "kernel vs reference")
    assert_agree(results[0], (sk_params[0], sk.velocities[0]), dtype, "kernel vs scikit-learn")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta_1, beta_2, epsilon", [(0.9, 0.999, 1e-8), (0.5, 0.9, 1e-3), (0.0, 0.0, 1e-8)])
def test_adam_step_kernel_reference_and_sklearn_agree(dtype, beta_1, beta_2, epsilon):
    p0, grads = _grads(dtype)
    results = []
    for step in O.IMPLEMENTATIONS["adam_step"]:
        p, m, s = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        for t, g in enumerate(grads, start=1):
            assert step(p, g, m, s, t, 0.01, beta_1, beta_2, epsilon)
        results.append((p, m, s))
    sk_params = [p0.copy()]
    sk = sk_opt.AdamOptimizer(sk_params, 0.01, beta_1, beta_2, epsilon)
    for g in grads:
        sk.update_params(sk_params, [g])
    assert_agree(results[0], results[1], dtype, "kernel vs reference")
    assert_agree(results[0], (sk_params[0], sk.ms[0], sk.vs[0]), dtype, "kernel vs scikit-learn")


@pytest.mark.parametrize("name", ["sgd_step", "adam_step"])
@pytest.mark.parametrize("impl", [0, 1], ids=["kernel", "reference"])
def test_step_that_would_diverge_changes_nothing(name, impl):
    step = O.IMPLEMENTATIONS[name][impl]
    p = np.array([1.0, 2.0, 3.0])
    g = np.array([0.0, np.inf, 1.0])
    before = p.copy()
    state = [np.full(3, 0.5), np.full(3, 0.25)]
    saved = [s.copy() for s in state]
    if name == "sgd_step":
        ok = step(p, g, state[0], 0.1, 0.9, True)
    else:
        ok = step(p, g, state[0], state[1], 1, 0.1, 0.9, 0.999, 1e-8)
    assert not ok
    np.testing.assert_array_equal(p, before)
    for s, s0 in zip(state, saved):
        np.testing.assert_array_equal(s, s0)


#: Adam steps around the kernel's cheap finiteness bound: (dtype, W, g, s, ε, α, applied).  "huge W":
#: W = 0.9 × the dtype's largest.  The last four overflow in α_t m / (√s + ε) while the sums of a
#: √Σx² bound underflowed or the product α_t m overflowed first (found in review): both refuse.
ADAM_CHECK_CASES = {
    "bound holds f32": (np.float32, 1.0, 1e-3, 0.0, 1e-8, 0.001, True),
    "bound holds f64": (np.float64, 1.0, 1e-3, 0.0, 1e-8, 0.001, True),
    "huge W f32": (np.float32, "huge", 1e-3, 0.0, 1e-8, 0.001, True),
    "huge W f64": (np.float64, "huge", 1e-3, 0.0, 1e-8, 0.001, True),
    "tiny eps, large m f32": (np.float32, 1.0, 1e17, 0.0, 1e-30, 0.001, True),
    "negative s f64": (np.float64, 1.0, 1e-3, -1.0, 1e-8, 0.001, False),
    "negative lr f64": (np.float64, 1.0, 1e21, 0.0, 1e-8, -1.0, True),
    "m underflows f32": (np.float32, 1.0, 1e-23, 0.0, 1e-40, 1e31, False),
    "m underflows f64": (np.float64, 1.0, 1e-169, 0.0, 1e-300, 1e201, False),
    "eps > 1 f32": (np.float32, 1.0, 1e11, 0.0, 1e10, 1e31, False),
}


@pytest.mark.parametrize("case", list(ADAM_CHECK_CASES))
def test_adam_step_cheap_check_gives_the_exact_answer(case):
    """The kernel's bound-then-exact check accepts and refuses the steps its NumPy twin does,
    and a refused step changes nothing."""
    dtype, w, g, s0, eps, lr, applied = ADAM_CHECK_CASES[case]
    if w == "huge":
        w = 0.9 * float(np.finfo(dtype).max)
    results = []
    for step in O.IMPLEMENTATIONS["adam_step"]:
        p = np.full(8, w, dtype)
        m, s = np.zeros(8, dtype), np.full(8, s0, dtype)
        before = (p.copy(), m.copy(), s.copy())
        with np.errstate(all="ignore"):
            ok = step(p, np.full(8, g, dtype), m, s, 1, lr, 0.9, 0.999, eps)
        assert bool(ok) == applied, case
        if not ok:
            for a, b in zip((p, m, s), before):
                np.testing.assert_array_equal(a, b)
        results.append((p, m, s))
    assert_agree(results[0], results[1], dtype, case)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
def test_l2_gradient_and_loss_match_sklearn_backprop(dtype, output):
    """fastbp's mean gradient + (alpha/n) W, and J + ½ alpha ‖W‖²/n, are scikit-learn's ``_backprop``."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    sizes = [5, 6, 4, 3]
    prob = make_problem(sizes, dtype=dtype, activation="tanh", output=output, m=11)
    alpha, n = 0.3, prob.X.shape[0]
    W, b = prob.weights, prob.biases
    dW, db = fastbp.kernels.gradients(W, b, prob.X, prob.Y, "tanh", output)
    layout = Layout(sizes)
    params = layout.pack(W, b, dtype)
    grad = layout.pack(dW, db, dtype)
    w_off, b_off, _ = offsets(layout.sizes)
    sq = _add_l2(grad, params, w_off, b_off, alpha / n)
    n_outputs = sizes[-1]
    J = fastbp.kernels.loss(W, b, prob.X, prob.Y, "tanh", output)
    J = J / (n_outputs if output == "identity" else 1) + 0.5 * alpha * sq / n

    est = MLPRegressor(alpha=alpha) if output == "identity" else MLPClassifier(alpha=alpha)
    est.activation, est.n_layers_ = "tanh", len(sizes)
    est.out_activation_ = {"sigmoid": "logistic", "softmax": "softmax", "identity": "identity"}[output]
    est.loss = "squared_error" if output == "identity" else "log_loss"
    est.coefs_ = [w.T.copy() for w in W]
    est.intercepts_ = [c.copy() for c in b]
    X, Y = prob.X, prob.Y
    acts = [X] + [None] * (len(sizes) - 1)
    cg = [np.empty((i, o), dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    ig = [np.empty(o, dtype) for o in sizes[1:]]
    sk_loss, cg, ig = est._backprop(X, Y, None, acts, [None] * (len(sizes) - 1), cg, ig)
    got_W, got_b = layout.views(grad)
    assert_agree([w.T for w in got_W] + list(got_b), cg + ig, dtype, "L2 gradients")
    # scikit-learn clips probabilities at machine epsilon inside the log; the targets
    # here keep p away from it, so the two losses agree to the dtype's tolerance.
    np.testing.assert_allclose(J, sk_loss, **tolerance(dtype))


def test_add_l2_kernel_and_reference_agree():
    sizes = np.array([3, 4, 2])
    layout = Layout(sizes)
    rng = np.random.default_rng(3)
    params, grad = rng.normal(size=layout.n_params), rng.normal(size=layout.n_params)
    out = []
    for f in O.IMPLEMENTATIONS["add_l2"]:
        g = grad.copy()
        out.append((g, f(g, params, *offsets(sizes)[:2], 0.7)))
    assert_agree(out[0], out[1], np.float64)
    _, biases = layout.views(out[0][0] - grad)
    assert all((db == 0).all() for db in biases)  # biases are never regularised


def test_invscaling_and_adaptive_schedules_match_sklearn():
    inv = O.SGD(0.2, learning_rate="invscaling", power_t=0.3)
    sk = sk_opt.SGDOptimizer([np.zeros(1)], 0.2, "invscaling", 0.9, True, 0.3)
    for t in (10, 20, 35):
        inv.iteration_ends(t)
        sk.iteration_ends(t)
        assert inv.learning_rate == pytest.approx(sk.learning_rate, rel=1e-15)
    ada = O.SGD(0.2, learning_rate="adaptive")
    sk = sk_opt.SGDOptimizer([np.zeros(1)], 0.2, "adaptive")
    stops = []
    for _ in range(12):
        stops.append((ada.trigger_stopping(), sk.trigger_stopping("", False)))
        assert ada.learning_rate == pytest.approx(sk.learning_rate, rel=1e-15)
    assert stops[0] == (False, False) and stops[-1] == (True, True)
    assert O.SGD(0.1).trigger_stopping() is True  # constant: plateau means stop


def _epoch_args(dtype, output, m=23):
    sizes = [4, 7, 3]
    prob = make_problem(sizes, dtype=dtype, output=output, m=m, seed=5)
    layout = Layout(sizes)
    return layout, layout.pack(prob.weights, prob.biases, dtype), prob


OPTIMIZERS = {
    "sgd": lambda: O.SGD(0.1, alpha=0.01),
    "nesterov": lambda: O.SGD(0.05, momentum=0.9, nesterov=True, alpha=0.1),
    "momentum": lambda: O.SGD(0.05, momentum=0.5),
    "adam": lambda: O.Adam(0.01, alpha=0.05),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_epoch_kernel_agrees_with_reference(dtype, output, opt_name):
    layout, params0, prob = _epoch_args(dtype, output)
    order = np.random.default_rng(1).permutation(prob.X.shape[0])
    results = []
    for backend in ("numba", "numpy"):
        opt = OPTIMIZERS[opt_name]()
        p = params0.copy()
        Js = [
            opt._train_epoch(
                p,
                layout.sizes,
                prob.X,
                prob.Y,
                order,
                5,
                get_activation("tanh"),
                get_output(output),
                backend,
                cost_scale=0.5,
            )
            for _ in range(3)
        ]
        results.append((p, opt.state, [J for J, _ in Js]))
        assert all(failed == -1 for _, failed in Js)
    assert results[0][0].dtype == np.dtype(dtype)
    assert_agree(results[0], results[1], dtype, opt_name)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_epoch_stops_before_a_diverging_step(backend):
    layout, params, prob = _epoch_args(np.float64, "identity")
    Y = prob.Y * 1e200  # the first squared error overflows to inf
    opt = O.SGD(0.1, momentum=0.9)
    before = params.copy()
    J, failed = opt._train_epoch(
        params,
        layout.sizes,
        prob.X,
        Y,
        np.arange(prob.X.shape[0]),
        4,
        get_activation("tanh"),
        get_output("identity"),
        backend,
    )
    assert failed == 0
    np.testing.assert_array_equal(params, before)
    assert not opt.state.any()


def test_epoch_kernel_runs_as_plain_python():
    """The scalar loops are the reference they claim to be: ``py_func`` gives the same epoch."""
    layout, params0, prob = _epoch_args(np.float64, "softmax", m=6)
    results = []
    for f in (_train_epoch_opt, _train_epoch_opt.py_func):
        opt = O.Adam(0.01, alpha=0.1)
        p = params0.copy()
        out = f(
            p,
            layout.sizes,
            prob.X,
            prob.Y,
            np.arange(6),
            4,
            get_activation("tanh").code,
            get_output("softmax"),
            opt.kind,
            opt.hyper(),
            np.zeros((2, p.size)),
            np.zeros(1, np.int64),
            0.1,
            1.0,
            np.empty(0),  # sw: no weights
        )
        results.append((p, out[0]))
    assert_agree(results[0], results[1], np.float64)


def test_fit_with_sgd_object_without_momentum_is_plain_gradient_descent():
    X = np.random.default_rng(0).normal(size=(30, 4))
    Y = (X[:, :1] > 0).astype(float)
    a, b = fastbp.MLP([4, 5, 1], seed=2), fastbp.MLP([4, 5, 1], seed=2)
    ha = a.fit(X, Y, epochs=3, learning_rate=0.3, batch_size=7)
    hb = b.fit(X, Y, epochs=3, batch_size=7, optimizer=O.SGD(0.3))
    np.testing.assert_allclose(ha.loss, hb.loss, **tolerance(np.float64))
    np.testing.assert_allclose(a.params, b.params, **tolerance(np.float64))


@pytest.mark.parametrize(
    "make", [lambda: O.Adam(0.01), lambda: O.SGD(0.05, momentum=0.9, nesterov=True, learning_rate="invscaling")]
)
def test_optimizer_state_carries_over_fit_calls(make):
    X = np.random.default_rng(0).normal(size=(30, 4))
    Y = np.eye(3)[np.random.default_rng(1).integers(0, 3, 30)]
    a, b = fastbp.MLP([4, 6, 3], output="softmax", seed=3), fastbp.MLP([4, 6, 3], output="softmax", seed=3)
    oa, ob = make(), make()
    a.fit(X, Y, epochs=4, batch_size=8, optimizer=oa)
    b.fit(X, Y, epochs=2, batch_size=8, optimizer=ob)
    b.fit(X, Y, epochs=2, batch_size=8, optimizer=ob)
    np.testing.assert_allclose(a.params, b.params, **tolerance(np.float64))
    assert oa.t_ == ob.t_ == 120
    ob.reset()
    assert ob.state is None and ob.t_ == 0 and ob.learning_rate == ob.learning_rate_init


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fit_with_adam_learns_and_custom_activation_works(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2))
    Y = (X[:, 0] * X[:, 1] > 0).astype(float)
    for act in ("tanh", SOFTSIGN):
        net = fastbp.MLP([2, 8, 1], activation=act, seed=0)
        h = net.fit(X, Y, epochs=40, batch_size=8, optimizer=O.Adam(0.05), backend=backend)
        assert h.loss[-1] < 0.6 * h.loss[0]


def test_fit_raises_divergence_error_with_an_optimizer():
    net = fastbp.MLP([2, 3, 1], output="identity", seed=0)
    X = np.ones((4, 2))
    before = net.params.copy()
    with pytest.raises(fastbp.DivergenceError) as info:
        net.fit(X, np.full(4, 1e200), epochs=2, batch_size=2, optimizer=O.SGD(0.1, momentum=0.9))
    assert info.value.epoch == 0 and info.value.batch == 0
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: O.SGD(momentum=1.5), "momentum"),
        (lambda: O.SGD(momentum=-0.1), "momentum"),
        (lambda: O.SGD(learning_rate_init=0.0), "learning_rate_init"),
        (lambda: O.SGD(learning_rate="cosine"), "learning_rate"),
        (lambda: O.SGD(power_t=float("nan")), "power_t"),
        (lambda: O.SGD(alpha=-1.0), "alpha"),
        (lambda: O.Adam(beta_1=1.0), "beta_1"),
        (lambda: O.Adam(beta_2=-0.5), "beta_2"),
        (lambda: O.Adam(epsilon=0.0), "epsilon"),
    ],
)
def test_bad_optimizer_arguments_name_the_argument(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_bad_optimizer_arguments_types():
    with pytest.raises(TypeError, match="nesterov"):
        O.SGD(nesterov="yes")
    with pytest.raises(TypeError, match="momentum"):
        O.SGD(momentum="0.9")


def test_fit_refuses_bad_optimizer_use_before_changing_anything():
    X, Y = np.zeros((4, 2)), np.zeros(4)
    net = fastbp.MLP([2, 3, 1], seed=0)
    before = net.params.copy()
    with pytest.raises(ValueError, match="optimizer"):
        net.fit(X, Y, optimizer="adam")
    with pytest.raises(TypeError, match="optimizer"):
        net.fit(X, Y, optimizer=object())
    with pytest.raises(ValueError, match="learning_rate"):
        net.fit(X, Y, learning_rate=0.5, optimizer=O.Adam())
    opt = O.Adam()
    fastbp.MLP([2, 4, 1], seed=0).fit(X, Y, epochs=1, optimizer=opt)
    with pytest.raises(ValueError, match="reset"):
        net.fit(X, Y, epochs=1, optimizer=opt)
    np.testing.assert_array_equal(net.params, before)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

_values = st.floats(-1e6, 1e6) | st.sampled_from([1e200, -1e200, np.inf, -np.inf, np.nan])


@settings(max_examples=60, deadline=None)
@given(
    p=arrays(np.float64, 6, elements=st.floats(-1e6, 1e6)),
    g=arrays(np.float64, 6, elements=_values),
    lr=st.floats(1e-4, 10.0),
    mu=st.floats(0.0, 1.0),
    nesterov=st.booleans(),
    adam=st.booleans(),
)
def test_steps_agree_or_both_refuse_on_any_gradient(p, g, lr, mu, nesterov, adam):
    """Kernel and twin agree on any gradient, extremes included; a refused step changes nothing."""
    results = []
    for step in O.IMPLEMENTATIONS["adam_step" if adam else "sgd_step"]:
        params, s1, s2 = p.copy(), np.zeros(6), np.zeros(6)
        if adam:
            ok = step(params, g, s1, s2, 1, lr, 0.9, 0.999, 1e-8)
        else:
            ok = step(params, g, s1, lr, mu, nesterov)
        if not ok:
            np.testing.assert_array_equal(params, p)
            assert not s1.any() and not s2.any()
        else:
            assert np.isfinite(params).all() and np.isfinite(s1).all() and np.isfinite(s2).all()
        results.append((bool(ok), params, s1, s2))
    assert results[0][0] == results[1][0]
    assert_agree(results[0][1:], results[1][1:], np.float64)


@pytest.mark.parametrize("schedule", ["invscaling", "adaptive"])
def test_fit_applies_the_learning_rate_schedule_as_scikit_learn_does(schedule):
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    Y = (X[:, :1] > 0).astype(float)
    net = fastbp.MLP([2, 3, 1], seed=0)
    # adaptive: α so small that no epoch improves the loss by tol (1e-4): a plateau
    alpha0 = 0.1 if schedule == "invscaling" else 1e-5
    opt = O.SGD(learning_rate_init=alpha0, learning_rate=schedule, power_t=0.5)
    net.fit(X, Y, epochs=14, batch_size=5, optimizer=opt)
    if schedule == "invscaling":  # α = α₀ / (t + 1)^power_t, t = examples seen
        sk = SGDOptimizer([np.zeros(1)], learning_rate_init=alpha0, lr_schedule=schedule, power_t=0.5)
        sk.iteration_ends(14 * 20)
        assert opt.learning_rate == pytest.approx(sk.learning_rate, rel=1e-12) and opt.learning_rate < alpha0
    else:  # epoch 1 sets the best loss; epochs 2-12 fail to improve: more than 10, so α /= 5 once
        assert opt.learning_rate == pytest.approx(alpha0 / 5, rel=1e-12)


# ------------------------------------------------------------- the fast optimizer epoch

import functools  # noqa: E402

from fastbp import _dispatch  # noqa: E402
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS  # noqa: E402

#: Depths 1 to 3 (a width-1 layer), and W[1] large enough for the blocked batch gradient
#: (_dispatch.blocked_batches) with no hidden layer, and with an odd number of rows.
FAST_SIZES = [[3, 2], [4, 7, 3], [2, 1, 5, 2], [40, 26], [33, 37, 3]]
M_FAST = 11  # not a multiple of the batch sizes 4 nor of _dispatch.BLOCK

_ACT_OF_CODE = {get_activation(name).code: get_activation(name) for name in HIDDEN_ACTIVATIONS}


def _fast_epoch_opt(params, sizes, X, Y, order, batch_size, act, out, *tail):
    """The fast optimizer epoch (forced through the dispatcher), with the plain kernel's arguments."""
    return _dispatch.run_epoch_opt(
        params, sizes, X, Y, order, batch_size, _ACT_OF_CODE[act], out, *tail, epoch="_batch_epoch_opt"
    )


#: Every optimizer (at learning rate α), and the two schedules that change α between epochs.
FAST_OPTIMIZERS = {
    "sgd": lambda lr: O.SGD(lr, alpha=0.01),
    "nesterov": lambda lr: O.SGD(lr, momentum=0.9, nesterov=True, alpha=0.1),
    "momentum": lambda lr: O.SGD(lr, momentum=0.5),
    "adam": lambda lr: O.Adam(lr / 5, alpha=0.05),
    "nesterov-invscaling": lambda lr: O.SGD(
        lr, momentum=0.9, nesterov=True, learning_rate="invscaling", power_t=0.3, alpha=0.01
    ),
    "momentum-adaptive": lambda lr: O.SGD(lr, momentum=0.5, learning_rate="adaptive", alpha=0.01),
}

EPOCH_IMPLS = ("fast", "plain", "reference")


def _plain_epoch_opt(*args):
    """The plain optimizer epoch, unweighted (its last argument, ``sw``, empty)."""
    return _train_epoch_opt(*args, np.empty(0, args[0].dtype))


def _epochs(impl, make, params, sizes, X, Y, order, batch_size, act, out, epochs=3):
    """``epochs`` epochs of one implementation; the schedule steps between them.

    ``tol`` is so large that no epoch improves: ``adaptive`` divides α by 5 from the
    second epoch on.  Returns the parameters, state, step count, losses, final α.
    """
    opt = make()
    opt.bind(sizes, params.dtype)
    activation, out_code = get_activation(act), get_output(out)
    losses = []
    for _ in range(epochs):
        args = (params, sizes, X, Y, order, batch_size)
        tail = (opt.kind, opt.hyper(), opt.state, opt.counter, opt.alpha, 0.5)
        if impl == "reference":
            J, failed = O.train_epoch_reference(*args, activation, out_code, *tail)
        else:
            kernel = _fast_epoch_opt if impl == "fast" else _plain_epoch_opt
            J, failed = kernel(*args, activation.code, out_code, *tail)
        assert failed == -1
        losses.append(J)
        opt.epoch_end(J, X.shape[0], tol=1e9, n_iter_no_change=0)
    return params, opt.state, opt.counter, losses, opt.learning_rate


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", [1, 4, M_FAST], ids=["batch1", "batch4", "full"])
@pytest.mark.parametrize("opt_name", sorted(FAST_OPTIMIZERS))
def test_fast_epoch_agrees_with_plain_and_reference(dtype, opt_name, batch_size):
    """The fast optimizer epoch, the plain scalar-loop one and the NumPy reference: the same
    parameters, optimizer state and losses over 3 epochs (the schedule stepping between
    them), for every depth/blocking, hidden activation and output."""
    for sizes in FAST_SIZES:
        # faster blows up (batch 1, momentum 0.9, identity output), where no two summation
        # orders agree to float32's tolerance; 0.005 keeps it well-conditioned
        lr0 = 0.02 if max(sizes) <= 10 else 0.005
        layout = Layout(sizes)
        for act in HIDDEN_ACTIVATIONS:
            for out in OUTPUTS:
                # (e^z's dZ[L] grows with the logit: the scale make_problem applies to exp's rate)
                lr = lr0 * (EXP_LEARNING_RATE_SCALE if out == "exp" else 1.0)
                make = functools.partial(FAST_OPTIMIZERS[opt_name], lr)
                prob = make_problem(sizes, dtype=dtype, activation=act, output=out, m=M_FAST, seed=7)
                params0 = layout.pack(prob.weights, prob.biases, dtype)
                order = np.asarray(prob.order, dtype=np.int64)
                runs = {
                    impl: _epochs(impl, make, params0.copy(), layout.sizes, prob.X, prob.Y, order, batch_size, act, out)
                    for impl in EPOCH_IMPLS
                }
                msg = f"{opt_name} {sizes} {np.dtype(dtype)} {act} {out} batch {batch_size}"
                assert runs["fast"][0].dtype == np.dtype(dtype)
                assert runs["fast"][4] == runs["plain"][4] == runs["reference"][4]  # the same schedule
                assert_agree(runs["fast"], runs["plain"], dtype, msg + " vs plain")
                assert_agree(runs["fast"], runs["reference"], dtype, msg + " vs reference")
    if "invscaling" in opt_name or "adaptive" in opt_name:
        assert runs["fast"][4] < make().learning_rate_init  # the schedule did change α


def _diverging_problem(dtype, bad_batch=None, batch_size=3, sizes=(33, 37, 2)):
    """A regression problem (W[1] large enough to be blocked) whose batch ``bad_batch`` (in
    visiting order, batches of ``batch_size``) has a target that makes the loss overflow:
    1e200 in float64 (its square overflows), inf in float32 (whose largest square is finite
    in the float64 the loss is summed in)."""
    prob = make_problem(list(sizes), dtype=dtype, activation="tanh", output="identity", m=17, seed=2)
    order = np.asarray(prob.order, dtype=np.int64)
    if bad_batch is not None:
        prob.Y[order[bad_batch * batch_size + 1]] = 1e200 if dtype == np.float64 else np.inf
    layout = Layout(list(sizes))
    return layout, layout.pack(prob.weights, prob.biases, dtype), prob, order


def _one_epoch(impl, opt, params, layout, prob, order, batch_size, act="tanh", out="identity"):
    opt.bind(layout.sizes, params.dtype)
    args = (params, layout.sizes, prob.X, prob.Y, order, batch_size)
    tail = (opt.kind, opt.hyper(), opt.state, opt.counter, opt.alpha, 1.0)
    if impl == "reference":
        return O.train_epoch_reference(*args, get_activation(act), get_output(out), *tail)
    kernel = _fast_epoch_opt if impl == "fast" else _plain_epoch_opt
    return kernel(*args, get_activation(act).code, get_output(out), *tail)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the reference's inf · 0
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt_name", ["adam", "nesterov"])
@pytest.mark.parametrize("bad_batch", [0, 2])
def test_fast_epoch_stops_before_the_same_diverging_batch(dtype, opt_name, bad_batch):
    """A batch whose loss overflows: every implementation reports it, and leaves the
    parameters, the optimizer state and the step count as they were just before it."""
    layout, params0, prob, order = _diverging_problem(dtype, bad_batch)
    runs = {}
    for impl in EPOCH_IMPLS:
        opt, p = OPTIMIZERS[opt_name](), params0.copy()
        J, failed = _one_epoch(impl, opt, p, layout, prob, order, 3)
        assert failed == bad_batch, impl
        assert np.isfinite(p).all() and np.isfinite(opt.state).all()
        runs[impl] = (J, p, opt.state, opt.counter)
    if bad_batch == 0:
        np.testing.assert_array_equal(runs["fast"][1], params0)
        assert not runs["fast"][2].any() and runs["fast"][3][0] == 0
    assert_agree(runs["fast"], runs["plain"], dtype)
    assert_agree(runs["fast"], runs["reference"], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_epoch_refuses_a_step_with_finite_loss_but_overflowing_parameters(dtype):
    """The loss is finite but the new parameters would not be: the step is not applied."""
    layout, params0, prob, order = _diverging_problem(dtype)
    prob.Y *= 100  # gradients of ~100: α dW overflows
    lr = float(np.finfo(dtype).max) / 10
    for impl in EPOCH_IMPLS:
        opt, p = O.SGD(lr, momentum=0.9), params0.copy()
        J, failed = _one_epoch(impl, opt, p, layout, prob, order, 4)
        assert (J, failed) == (0.0, 0), impl
        np.testing.assert_array_equal(p, params0)
        assert not opt.state.any()


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("sizes", [[6, 5, 3], [40, 30, 3]], ids=["plain", "blocked"])
def test_fast_epoch_allocates_nothing_per_batch(batch_size, sizes):
    """Numba's allocation count of a fast optimizer epoch does not grow with m."""
    from numba.core.runtime import _nrt_python, rtsys

    _nrt_python.memsys_enable_stats()
    layout = Layout(sizes)
    counts = []
    for m in (16, 800):
        prob = make_problem(sizes, dtype=np.float32, output="softmax", m=m)
        params = layout.pack(prob.weights, prob.biases, np.float32)
        order = np.arange(m, dtype=np.int64)
        opt = O.Adam(0.01, alpha=0.1)
        _one_epoch("fast", opt, params, layout, prob, order, batch_size, out="softmax")  # compiled
        before = rtsys.get_allocation_stats().alloc
        _one_epoch("fast", opt, params, layout, prob, order, batch_size, out="softmax")
        counts.append(rtsys.get_allocation_stats().alloc - before)
    assert counts[0] == counts[1] and counts[0] < 32


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fit_runs_the_fast_epoch_custom_activations_the_plain_one(monkeypatch):
    """MLP.fit(optimizer=...) runs the epoch select_optimizer_epoch names: the fast one for a
    built-in activation, the plain one for a custom activation and under NUMBA_DISABLE_JIT
    (each shown by the same bits as that kernel forced)."""
    from fastbp.activations import ACT_CUSTOM, ACT_TANH
    from fastbp.losses import OUT_SIGMOID

    sizes = [3, 4, 1]
    assert _dispatch.select_optimizer_epoch(sizes, 5, OUT_SIGMOID, ACT_TANH) == "_columns_epoch_opt"
    assert _dispatch.select_optimizer_epoch(sizes, 5, OUT_SIGMOID, ACT_CUSTOM) == _dispatch.PLAIN_OPTIMIZER
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 3))
    Y = (X[:, :1] > 0).astype(float)

    def fit_and_forced(activation, forced):
        net = fastbp.MLP(sizes, activation=activation, seed=0)
        p0 = net.params.copy()
        net.fit(X, Y, epochs=1, batch_size=5, shuffle=False, optimizer=O.Adam(0.01))
        opt = O.Adam(0.01)
        opt.bind(np.asarray(sizes), p0.dtype)
        _dispatch.run_epoch_opt(
            p0,
            np.asarray(sizes, np.int64),
            X,
            Y,
            np.arange(24),
            5,
            net.activation,
            OUT_SIGMOID,
            opt.kind,
            opt.hyper(),
            opt.state,
            opt.counter,
            opt.alpha,
            1.0,
            epoch=forced,
        )
        np.testing.assert_array_equal(net.params, p0)

    fit_and_forced("tanh", "_columns_epoch_opt")
    fit_and_forced(SOFTSIGN, _dispatch.PLAIN_OPTIMIZER)
    monkeypatch.setattr(_dispatch.numba_config, "DISABLE_JIT", True)  # as under NUMBA_DISABLE_JIT=1
    fit_and_forced("tanh", _dispatch.PLAIN_OPTIMIZER)
