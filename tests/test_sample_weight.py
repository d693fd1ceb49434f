"""Per-example weights (scikit-learn's ``sample_weight``): every kernel that takes them against the
plain kernel and the NumPy reference, the dispatch never handing them to a kernel that does not,
and the estimators following scikit-learn's own weighted training step for step.

Tolerances: :func:`fastbp.testing.tolerance` per dtype for kernel agreement (float64 rtol 1e-9, as
every agreement test); scikit-learn's trajectories in float64 to the same rtol 1e-9.
"""

from __future__ import annotations

import itertools
import warnings
from decimal import Decimal

import numpy as np
import pytest
import scipy.sparse as sp

from fastbp import MLP, _dispatch, reference
from fastbp._plain import BUILTIN
from fastbp.activations import NAMES as ACT_CODES
from fastbp.activations import get_activation
from fastbp.losses import NAMES as OUT_CODES
from fastbp.optimizers import SGD, Adam, train_epoch_reference
from fastbp.params import Layout
from fastbp.testing import EXP_LEARNING_RATE_SCALE, HIDDEN_ACTIVATIONS, OUTPUTS, assert_agree, make_problem, tolerance

DTYPES = [np.float32, np.float64]
M = 23  # not a multiple of the batch sizes below, nor of the block of 4
BATCHES = [1, 4, 7, M]
# depth 1-3; [40, 30, 2] is large enough for the blocked W[1] passes (BLOCKED_MIN_WEIGHTS)
SIZES = [[3, 1], [5, 4, 3], [40, 30, 2], [6, 5, 4, 2]]


def _weights(m, seed=0, dtype=np.float64, zeros=True):
    """Positive weights of several magnitudes, one large, and (``zeros``) a few zeros, never a
    whole batch of them here (batches of one take none: a zero-sum batch is refused)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.2, 3.0, m)
    if zeros:
        w[::6] = 0.0
    w[1] = 7.5
    return w.astype(dtype)


def _no_zero_batch(sw, order, batch_size):
    """``sw`` with the first weight of any batch (of ``order``) whose weights are all zero set to 1."""
    for start in range(0, order.shape[0], batch_size):
        if not sw[order[start : start + batch_size]].any():
            sw[order[start]] = 1
    return sw


def _problem(sizes, dtype, act, out, seed, batch_size=1):
    lr = 0.05 if max(sizes) <= 8 else 0.01
    prob = make_problem(
        sizes, dtype=dtype, activation=act, output=out, m=M, batch_size=batch_size, seed=seed, learning_rate=lr
    )
    lay = Layout(sizes)
    return prob, lay, lay.pack(prob.weights, prob.biases, np.dtype(dtype))


def _cases():
    """(sizes, output, activation) over the grid, every hidden activation and output."""
    for k, (sizes, out) in enumerate(itertools.product(SIZES, OUTPUTS)):
        if out == "softmax" and sizes[-1] < 2:
            continue
        yield sizes, out, HIDDEN_ACTIVATIONS[k % len(HIDDEN_ACTIVATIONS)]


def _weighted_rows(rows, batches=BATCHES):
    return [
        row for row in rows if any(row.requires(_dispatch._case(s, bs, 0, None, True)) for s in SIZES for bs in batches)
    ]


# --------------------------------------------------------------- kernels: plain, fast, NumPy


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", BATCHES)
def test_weighted_epoch_fast_plain_and_reference_agree(dtype, batch_size):
    """Gradient descent with weights: the epoch the dispatcher selects, every fast row that takes
    weights (forced), the plain kernel and the NumPy reference give the same epoch."""
    ran = set()
    for k, (sizes, out, act) in enumerate(_cases()):
        prob, lay, p0 = _problem(sizes, dtype, act, out, seed=k, batch_size=batch_size)
        order = np.asarray(prob.order, dtype=np.int64)
        lr = np.dtype(dtype).type(prob.learning_rate)
        sw = _no_zero_batch(_weights(M, k, dtype, zeros=batch_size > 1), order, batch_size)
        g = get_activation(act)
        p_plain = p0.copy()
        ref = BUILTIN._train_epoch(
            p_plain, lay.sizes, prob.X, prob.Y, order, batch_size, lr, g.code, OUT_CODES[out], sw
        )
        assert ref[1] == -1
        W, b = prob.copy_params()
        J_ref = reference.train_epoch(W, b, prob.X, prob.Y, lr, batch_size, order, act, out, sample_weight=sw)
        msg = f"{sizes} batch {batch_size} {act} {out} {np.dtype(dtype)}"
        assert_agree((ref[0], p_plain), (J_ref, lay.pack(W, b, np.dtype(dtype))), dtype, "reference " + msg)
        for epoch in [None] + [row.name for row in _dispatch.FAST_EPOCHS]:
            case = _dispatch._case(sizes, batch_size, OUT_CODES[out], None, True)
            if epoch is not None and not _dispatch._ROWS[epoch].requires(case):
                continue
            p = p0.copy()
            res = _dispatch.run_epoch(
                p, lay.sizes, prob.X, prob.Y, order, batch_size, lr, g, OUT_CODES[out], epoch=epoch, sw=sw
            )
            ran.add(epoch or _dispatch.select_epoch(sizes, batch_size, OUT_CODES[out], g.code, weighted=True))
            assert res[1] == -1, msg
            assert_agree((res[0], p), (ref[0], p_plain), dtype, f"{epoch} {msg}")
    assert ran & {row.name for row in _dispatch.FAST_EPOCHS}, "no fast kernel ran with weights"


def test_every_row_that_takes_weights_ran_weighted():
    """The rows whose ``requires`` admit weights: each runs a problem of the grid above."""
    for row in _weighted_rows(_dispatch.FAST_EPOCHS) + _weighted_rows(_dispatch.FAST_OPTIMIZER_EPOCHS):
        assert any(row.requires(_dispatch._case(s, bs, 0, None, True)) for s in SIZES for bs in BATCHES)
    assert {row.name for row in _weighted_rows(_dispatch.FAST_EPOCHS)} == {"_batch_epoch"}
    assert {row.name for row in _weighted_rows(_dispatch.FAST_OPTIMIZER_EPOCHS)} == {"_batch_epoch_opt"}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_size", BATCHES)
@pytest.mark.parametrize("opt", ["adam", "nesterov"])
def test_weighted_optimizer_epoch_fast_plain_and_reference_agree(dtype, batch_size, opt):
    """An epoch with an optimizer and L2 (alpha / Σ_batch w): fast, plain and NumPy agree."""
    for k, (sizes, out, act) in enumerate(_cases()):
        prob, lay, p0 = _problem(sizes, dtype, act, out, seed=k)
        order = np.random.default_rng(k).permutation(M).astype(np.int64)
        sw = _no_zero_batch(_weights(M, k, dtype, zeros=batch_size > 1), order, batch_size)
        results = []
        for epoch in (None, _dispatch.PLAIN_OPTIMIZER, "numpy"):
            # (L2 alpha / Σ_batch w: at batch 1 and w_i = 0.2, 5 alpha)
            lr = 0.005 * (EXP_LEARNING_RATE_SCALE if out == "exp" else 1.0)  # e^z's gradient grows with z
            o = Adam(0.01, alpha=0.01) if opt == "adam" else SGD(lr, momentum=0.9, nesterov=True, alpha=0.01)
            o.bind(lay.sizes, np.dtype(dtype))
            p = p0.copy()
            args = (p, lay.sizes, prob.X, prob.Y, order, batch_size, get_activation(act), OUT_CODES[out])
            tail = (o.kind, o.hyper(), o.state, o.counter, o.alpha, 0.5)
            if epoch == "numpy":
                J, failed = train_epoch_reference(*args, *tail, sw)
            else:
                J, failed = _dispatch.run_epoch_opt(*args, *tail, epoch=epoch, sw=sw)
            assert failed == -1, (epoch, sizes, act, out)
            results.append((J, p, o.state))
        msg = f"{sizes} batch {batch_size} {act} {out} {np.dtype(dtype)}"
        assert_agree(results[0], results[1], dtype, "fast " + msg)
        assert_agree(results[2], results[1], dtype, "numpy " + msg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weighted_full_batch_objective_fast_plain_and_numpy_agree(dtype):
    """lbfgs's objective with weights: Σ w_i cost_i / Σw · cost_scale + ½ alpha ‖W‖² / Σw and its
    gradient, from the plain kernel (what weighted calls run: the fast column kernel takes no
    weights and refuses them when forced) and from the NumPy reference's formulas."""
    for k, (sizes, out, act) in enumerate(_cases()):
        prob, lay, p = _problem(sizes, dtype, act, out, seed=k)
        sw = _weights(M, k, dtype)
        results = []
        for kernel in (None, _dispatch.PLAIN_LOSS_AND_GRADIENT):
            grad = np.full_like(p, np.nan)
            J = _dispatch.loss_and_gradient(
                p, lay.sizes, prob.X, prob.Y, get_activation(act), OUT_CODES[out], grad, 0.3, 0.5, kernel=kernel, sw=sw
            )
            results.append((J, grad))
        with pytest.raises(ValueError, match="without sample weights"):
            _dispatch.loss_and_gradient(
                p,
                lay.sizes,
                prob.X,
                prob.Y,
                get_activation(act),
                OUT_CODES[out],
                grad,
                0.3,
                0.5,
                kernel=_dispatch.FAST_LOSS_AND_GRADIENT,
                sw=sw,
            )
        # the NumPy reference: weighted costs and _backward's weighted mean, plus the L2 term
        g, code = get_activation(act), OUT_CODES[out]
        Z, A = reference._forward(prob.weights, prob.biases, prob.X, g, code)
        _, dW, db = reference._backward(prob.weights, prob.X, prob.Y, Z, A, g, sw)
        D = float(sw.astype(np.float64).sum())
        costs = reference.example_costs_array(Z[-1], prob.Y, code)
        l2 = sum(float((W.astype(np.float64) ** 2).sum()) for W in prob.weights)
        J = 0.5 * float(sw.astype(np.float64) @ costs) / D + 0.5 * 0.3 * l2 / D
        dW = [d + dtype(0.3 / D) * W for d, W in zip(dW, prob.weights)]
        expected = (J, lay.pack(dW, db, np.dtype(dtype)))
        msg = f"{sizes} {act} {out} {np.dtype(dtype)}"
        assert_agree(results[0], results[1], dtype, "fast " + msg)
        assert_agree(results[1], expected, dtype, "numpy " + msg)


# ------------------------------------------------------------------------------ dispatch


def test_dispatch_never_selects_a_row_without_weights_for_a_weighted_run():
    """Over shapes and batch sizes that select every row unweighted, a weighted run selects only
    rows whose ``requires`` admit weights (or the plain kernel)."""
    sizes_grid = [[2, 4, 1], [3, 16, 3], [5, 16, 3], [64, 256, 2], [40, 30, 2], [6, 5, 4, 2], [3, 1]]
    unweighted, weighted = set(), set()
    for sizes, bs, threads in itertools.product(sizes_grid, [1, 3, 8, 64, 2000], [None, True]):
        for w, seen in ((False, unweighted), (True, weighted)):
            name = _dispatch.select_epoch(sizes, bs, OUT_CODES["sigmoid"], ACT_CODES["tanh"], threads, weighted=w)
            seen.add(name)
            if w and name != _dispatch.PLAIN:
                assert _dispatch._ROWS[name].requires(_dispatch._case(sizes, bs, 0, threads, True))
        name = _dispatch.select_optimizer_epoch(sizes, bs, OUT_CODES["sigmoid"], ACT_CODES["tanh"], True)
        assert name == "_batch_epoch_opt"
    # the grid reaches every row (_batch_epoch: only weighted runs) …
    assert unweighted | weighted >= {row.name for row in _dispatch.FAST_EPOCHS}
    assert weighted == {"_batch_epoch"}  # … and weights reach only the one that takes them


@pytest.mark.parametrize("row", [r for r in _dispatch.FAST_EPOCHS if r.name != "_batch_epoch"], ids=lambda r: r.name)
def test_a_row_without_weights_cannot_be_forced_on_a_weighted_run(row):
    prob, lay, p0 = _problem([3, 4, 1], np.float64, "tanh", "sigmoid", seed=0)
    p = p0.copy()
    order = np.arange(M)
    bs = 1 if row.requires(_dispatch._case([3, 4, 1], 1, 0, None)) else 4
    with pytest.raises(ValueError, match="with sample weights"):
        _dispatch.run_epoch(
            p,
            lay.sizes,
            prob.X,
            prob.Y,
            order,
            bs,
            0.1,
            get_activation("tanh"),
            0,
            epoch=row.name,
            sw=_weights(M, zeros=False),
        )
    np.testing.assert_array_equal(p, p0)


# ------------------------------------------------------------------------------- MLP.fit


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_mlp_fit_integer_weights_equal_repeated_examples(optimizer, backend):
    """Full-batch training (order does not matter): weights 0-3 equal each example dropped or
    repeated that many times, to rounding."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    Y = (X @ rng.normal(size=(4, 2)) > 0).astype(float)
    w = rng.integers(0, 4, 30)
    w[0] = 2
    fits = []
    for Xf, Yf, sw in ((X, Y, w), (np.repeat(X, w, axis=0), np.repeat(Y, w, axis=0), None)):
        net = MLP([4, 6, 2], activation="tanh", output="sigmoid", seed=1)
        opt = "sgd" if optimizer == "sgd" else Adam(0.01, alpha=0.1)
        lr = 0.5 if optimizer == "sgd" else None
        h = net.fit(
            Xf, Yf, epochs=5, batch_size=None, backend=backend, optimizer=opt, learning_rate=lr, sample_weight=sw
        )
        fits.append((np.array(h.loss), net.params.copy()))
    assert_agree(fits[0], fits[1], np.float64)


def test_mlp_fit_sample_weight_errors_name_it_and_change_nothing():
    X = np.random.default_rng(0).normal(size=(8, 3))
    Y = np.ones((8, 1))
    net = MLP([3, 2, 1], seed=0)
    before = net.params.copy()
    for bad, match in (
        (np.ones(7), "sample_weight has 7 weights for 8 examples"),
        (np.ones((8, 1)), "sample_weight must be a number or a 1-D array"),
        (np.r_[np.ones(7), np.nan], "sample_weight contains NaN"),
        (np.zeros(8), "sample_weight: all weights are zero"),
        (["a"] * 8, "sample_weight must be a numeric array"),
        (1 + 1j, "sample_weight must be real"),
        (Decimal("NaN"), "sample_weight contains NaN"),
        (10**400, "sample_weight: this int is not a float64 number"),
        (10**5000, "sample_weight: this int is not a float64 number"),  # too long for a repr
    ):
        with pytest.raises((ValueError, TypeError), match=match):
            net.fit(X, Y, epochs=1, batch_size=4, sample_weight=bad)
    with pytest.raises(
        ValueError, match=r"sample_weight: the weights of batch 0 \(examples order\[0:1\]\) sum to zero"
    ):
        net.fit(X, Y, epochs=1, batch_size=1, shuffle=False, sample_weight=np.r_[0.0, np.ones(7)])
    np.testing.assert_array_equal(net.params, before)
    net.fit(X, Y, epochs=1, batch_size=4, sample_weight=2.0)  # a number: the same weight for all
    net.fit(X, Y, epochs=1, batch_size=4, sample_weight=Decimal("0.5"))
    net.fit(X, Y, epochs=1, batch_size=4, sample_weight=np.r_[-1.0, np.ones(7)])  # negative: allowed


# ---------------------------------------------------------------- the estimators, scikit-learn's

pytest.importorskip("sklearn")
from sklearn import neural_network as sk_nn  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from fastbp.estimators import MLPClassifier, MLPRegressor  # noqa: E402

KINDS = ["binary", "multiclass", "multilabel", "regression", "multi-output"]
SETTINGS = {
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "sgd": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True),
    "early-stopping": dict(
        solver="adam",
        learning_rate_init=0.01,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        tol=0.5,
    ),
}


def _data(kind, n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    s = X @ rng.normal(size=(5, 3))
    w = rng.uniform(0.0, 4.0, n)
    if kind == "binary":
        return X, np.where(s[:, 0] > 0, "yes", "no"), w
    if kind == "multiclass":
        return X, s.argmax(axis=1) + 10, w
    if kind == "multilabel":
        return X, (s > 0).astype(int), w
    if kind == "regression":
        return X, s[:, 0] + 0.1 * rng.normal(size=n), w
    return X, s, w


def _pair(kind, **kw):
    params = dict(
        hidden_layer_sizes=(7, 4), activation="tanh", alpha=0.01, batch_size=16, max_iter=8, random_state=3, **kw
    )
    if kind in ("regression", "multi-output"):
        return MLPRegressor(**params), sk_nn.MLPRegressor(**params)
    return MLPClassifier(**params), sk_nn.MLPClassifier(**params)


def _assert_same_model(ours, theirs, X, tol):
    assert ours.n_iter_ == theirs.n_iter_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, **tol)
    if hasattr(theirs, "predict_proba"):
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), **tol)
    else:
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), **tol)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_training_same_as_sklearn(kind, setting):
    """Same draws, shuffles and batches; each batch's weighted mean cost and gradient, L2 / Σw,
    and (early stopping) the weighted validation score: scikit-learn's trajectory (float64)."""
    X, y, w = _data(kind)
    ours, theirs = _pair(kind, **SETTINGS[setting])
    ours.fit(X, y, sample_weight=w)
    theirs.fit(X, y, sample_weight=w)
    tol = tolerance(np.float64)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, **tol)
    for name in ("loss_", "best_loss_", "validation_scores_", "best_validation_score_"):
        a, b = getattr(ours, name), getattr(theirs, name)
        if b is None:
            assert a is None, name
        else:
            np.testing.assert_allclose(a, b, **tol)
    _assert_same_model(ours, theirs, X, tol)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_weighted_partial_fit_and_sparse_same_as_sklearn(kind):
    X, y, w = _data(kind)
    ours, theirs = _pair(kind, solver="sgd", learning_rate_init=0.05)
    extra = {} if kind == "regression" else {"classes": np.unique(y)}
    for lo, hi in ((0, 30), (30, 60), (60, 90)):
        ours.partial_fit(sp.csr_matrix(X[lo:hi]), y[lo:hi], sample_weight=w[lo:hi], **extra)
        theirs.partial_fit(X[lo:hi], y[lo:hi], sample_weight=w[lo:hi], **extra)
    _assert_same_model(ours, theirs, X, tolerance(np.float64))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_weighted_lbfgs_same_as_sklearn(kind, sparse):
    """lbfgs's weighted full-batch objective: the same 30 iterations as scikit-learn's
    (rtol 1e-6, as the unweighted lbfgs test: the sums run in another order)."""
    X, y, w = _data(kind)
    ours, theirs = _pair(kind, solver="lbfgs")
    ours.set_params(max_iter=30)
    theirs.set_params(max_iter=30)
    ours.fit(sp.csr_matrix(X) if sparse else X, y, sample_weight=w)
    theirs.fit(X, y, sample_weight=w)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    _assert_same_model(ours, theirs, X, dict(rtol=1e-6, atol=1e-8))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
@pytest.mark.parametrize("est", [MLPClassifier, MLPRegressor])
def test_integer_weights_equal_repeated_examples(est, solver):
    """Full-batch sgd (one batch, so no order) and lbfgs: integer weights, zeros among them, equal
    dropping or repeating each example that many times."""
    X, y, _ = _data("multiclass" if est is MLPClassifier else "regression", n=40)
    w = np.random.default_rng(1).integers(0, 4, 40)
    kw = dict(hidden_layer_sizes=(6,), solver=solver, batch_size=500, max_iter=20, random_state=0, alpha=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # batch_size clipped to n_samples
        weighted = est(**kw).fit(X, y, sample_weight=w)
        repeated = est(**kw).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    _assert_same_model(weighted, repeated, X, dict(rtol=1e-7, atol=1e-10))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_unit_weights_give_the_unweighted_model_bit_for_bit(solver):
    """Weights of one: w_i / Σw = 1/n exactly, so the weighted path computes the unweighted numbers."""
    X, y, _ = _data("multiclass")
    a = MLPClassifier(hidden_layer_sizes=(40,), solver=solver, max_iter=5, random_state=0).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(40,), solver=solver, max_iter=5, random_state=0)
    b.fit(X, y, sample_weight=np.ones(len(y)))
    np.testing.assert_array_equal(a._params, b._params)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "regression", "multi-output"])
def test_weighted_score_is_sklearns(kind):
    X, y, w = _data(kind)
    ours, theirs = _pair(kind, solver="adam", learning_rate_init=0.01)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert ours.score(X, y, sample_weight=w) == pytest.approx(theirs.score(X, y, sample_weight=w), rel=1e-9)
    assert ours.score(X, y, sample_weight=w) != pytest.approx(ours.score(X, y), rel=1e-9)


@pytest.mark.parametrize("est", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.ones(5), ValueError, r"sample_weight.shape == \(5,\), expected \(90,\)"),
        (np.ones((90, 2)), ValueError, "Sample weights must be 1D array or scalar"),
        (np.r_[np.ones(89), np.nan], ValueError, "Input sample_weight contains NaN"),
        (np.zeros(90), ValueError, "Sample weights must contain at least one non-zero number"),
        (np.array(["x"] * 90), ValueError, "could not convert"),
    ],
)
def test_bad_sample_weight_is_sklearns_error_and_changes_nothing(est, bad, error, match):
    """scikit-learn's ``_check_sample_weight`` messages, raised before anything changes (a fitted
    estimator keeps its model)."""
    X, y, _ = _data("multiclass" if est is MLPClassifier else "regression")
    ours = est(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours.fit(X, y)
    params, curve = ours._params.copy(), list(ours.loss_curve_)
    with pytest.raises(error, match=match):
        ours.fit(X, y, sample_weight=bad)
    np.testing.assert_array_equal(ours._params, params)
    assert ours.loss_curve_ == curve
    sk = (sk_nn.MLPClassifier if est is MLPClassifier else sk_nn.MLPRegressor)(hidden_layer_sizes=(3,), max_iter=2)
    with pytest.raises(error, match=match):
        sk.fit(X, y, sample_weight=bad)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_batch_of_zero_weight_is_refused_and_changes_nothing():
    X, y, _ = _data("regression", n=20)
    w = np.ones(20)
    w[:5] = 0.0
    est = MLPRegressor(hidden_layer_sizes=(3,), solver="sgd", batch_size=5, shuffle=False, max_iter=3, random_state=0)
    with pytest.raises(ValueError, match=r"sample_weight: the weights of batch 0 .* sum to zero"):
        est.fit(X, y, sample_weight=w)
    assert not hasattr(est, "coefs_")
    lbfgs = MLPRegressor(hidden_layer_sizes=(3,), solver="lbfgs", max_iter=3)
    with pytest.raises(ValueError, match="sum to zero"):
        lbfgs.fit(X, y, sample_weight=np.r_[np.ones(10), -np.ones(10)])  # Σw = 0: negative weights
    MLPRegressor(hidden_layer_sizes=(3,), max_iter=2).fit(X, y, sample_weight=np.r_[-0.5, np.ones(19)])  # allowed


def test_sample_weight_in_the_signatures_as_sklearns():
    import inspect

    for ours, theirs in ((MLPClassifier, sk_nn.MLPClassifier), (MLPRegressor, sk_nn.MLPRegressor)):
        for method in ("fit", "partial_fit", "score"):
            a = list(inspect.signature(getattr(ours, method)).parameters)
            b = list(inspect.signature(getattr(theirs, method)).parameters)
            assert a == b, (ours.__name__, method)
