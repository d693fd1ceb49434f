"""fastbp.MLPClassifier / MLPRegressor: scikit-learn's estimator checks, and the same training as scikit-learn."""

from __future__ import annotations

import copy
import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("sklearn")
from sklearn import neural_network as sk_nn  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastbp  # noqa: E402
from fastbp.estimators import InvalidParameterError, MLPClassifier, MLPRegressor  # noqa: E402
from fastbp.testing import sparse_rows, tolerance  # noqa: E402

# Small networks and few epochs keep scikit-learn's ~50 checks per instance fast;
# the learning rates are raised so that the checks' accuracy thresholds are met.
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=60, learning_rate_init=0.05),
    MLPClassifier(hidden_layer_sizes=(5, 4), activation="tanh", solver="sgd", max_iter=60, learning_rate_init=0.1),
    MLPRegressor(hidden_layer_sizes=(8,), max_iter=100, learning_rate_init=0.05),
    MLPRegressor(
        hidden_layer_sizes=(6,),
        activation="logistic",
        solver="sgd",
        max_iter=100,
        learning_rate_init=0.05,
        dtype=np.float32,
    ),
    MLPClassifier(hidden_layer_sizes=(6,), max_iter=40, learning_rate_init=0.05, backend="numpy"),
    MLPClassifier(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=60),
    MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=100),
    MLPRegressor(hidden_layer_sizes=(8,), loss="poisson", max_iter=100, learning_rate_init=0.05),
]


def _expected_failures(estimator):
    """Checks an instance is expected to fail, each with the reason."""
    if estimator.get_params().get("loss") == "poisson":
        return {
            "check_regressor_multioutput": (
                "draws negative targets whatever the positive_only tag says, and loss='poisson' refuses y < 0"
            )
        }
    if estimator.get_params().get("dtype") == np.float32:
        return {
            "check_regressor_multioutput": (
                "dtype=float32 asks for float32 parameters and arithmetic, so predictions are float32 even for "
                "float64 X; the check wants float64 (dtype=None, the default, follows X's dtype and passes)"
            ),
            "check_sample_weight_equivalence_on_dense_data": (
                "dtype=float32: 100 full-batch epochs summing 15 weighted or 30 repeated examples in float32 agree "
                "to float32 rounding (measured 6e-7 relative), not to the check's float64 rtol=1e-7 (the float64 "
                "instances pass it, and test_sample_weight.py holds float32 kernels to float32's tolerance)"
            ),
            "check_sample_weight_equivalence_on_sparse_data": (
                "dtype=float32: float32 rounding against the check's float64 rtol=1e-7, as on dense data"
            ),
        }
    return {}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ----------------------------------------------------------- same training as scikit-learn


def _data(kind, n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    s = X @ rng.normal(size=(5, 3))
    if kind == "binary":
        return X, np.where(s[:, 0] > 0, "yes", "no")
    if kind == "multiclass":
        return X, s.argmax(axis=1) + 10
    if kind == "multilabel":
        return X, (s > 0).astype(int)
    if kind == "regression":
        return X, s[:, 0] + 0.1 * rng.normal(size=n)
    return X, s  # multi-output regression


SETTINGS = {
    "adam": dict(solver="adam", learning_rate_init=0.01),
    "nesterov": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True),
    "momentum-invscaling": dict(
        solver="sgd",
        learning_rate_init=0.05,
        momentum=0.5,
        nesterovs_momentum=False,
        learning_rate="invscaling",
        power_t=0.25,
    ),
    "adaptive-plateau": dict(
        solver="sgd", learning_rate_init=0.05, learning_rate="adaptive", tol=10.0, n_iter_no_change=2
    ),
    "early-stopping": dict(
        solver="adam",
        learning_rate_init=0.01,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=3,
        tol=0.5,
    ),
}
KINDS = ["binary", "multiclass", "multilabel", "regression", "multi-output"]


def _pair(kind, **kw):
    params = dict(
        hidden_layer_sizes=(7, 4), activation="tanh", alpha=0.01, batch_size=16, max_iter=8, random_state=3, **kw
    )
    if kind in ("regression", "multi-output"):
        return MLPRegressor(**params), sk_nn.MLPRegressor(**params)
    return MLPClassifier(**params), sk_nn.MLPClassifier(**params)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("kind", KINDS)
def test_same_training_as_sklearn(kind, setting):
    """Same init draws, shuffles, batches, L2, updates, schedule and stopping: the same model."""
    X, y = _data(kind)
    ours, theirs = _pair(kind, **SETTINGS[setting])
    ours.fit(X, y)
    theirs.fit(X, y)
    tol = tolerance(np.float64)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, **tol)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, **tol)
    for name in (
        "loss_",
        "best_loss_",
        "validation_scores_",
        "best_validation_score_",
        "n_outputs_",
        "out_activation_",
        "n_layers_",
        "n_features_in_",
    ):
        a, b = getattr(ours, name), getattr(theirs, name)
        if isinstance(b, (float, list)):
            np.testing.assert_allclose(a, b, **tol)
        else:
            assert a == b, name
    if kind in ("regression", "multi-output"):
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), **tol)
    else:
        np.testing.assert_array_equal(ours.classes_, theirs.classes_)
        np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), **tol)
        np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    if setting == "adaptive-plateau":
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
        assert ours._optimizer.learning_rate < ours.learning_rate_init


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_partial_fit_and_warm_start_match_sklearn(kind):
    X, y = _data(kind)
    ours, theirs = _pair(kind, solver="sgd", learning_rate_init=0.05)
    extra = {} if kind == "regression" else {"classes": np.unique(y)}  # ignored for multilabel y
    for lo, hi in ((0, 30), (30, 60), (60, 90)):
        ours.partial_fit(X[lo:hi], y[lo:hi], **extra)
        theirs.partial_fit(X[lo:hi], y[lo:hi], **extra)
    ours.set_params(warm_start=True, max_iter=3)
    theirs.set_params(warm_start=True, max_iter=3)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, **tolerance(np.float64))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("est", [MLPClassifier, MLPRegressor])
def test_float32_and_numpy_backend(est):
    X, y = _data("multiclass" if est is MLPClassifier else "regression")
    kw = dict(hidden_layer_sizes=(6,), max_iter=5, random_state=0, learning_rate_init=0.01)
    m64 = est(**kw).fit(X, y)
    m32 = est(**kw).fit(X.astype(np.float32), y)
    forced = est(dtype=np.float32, **kw).fit(X, y)
    ref = est(backend="numpy", **kw).fit(X, y)
    assert m32._params.dtype == np.float32 and forced._params.dtype == np.float32
    assert m64._params.dtype == np.float64
    np.testing.assert_allclose(m32.loss_curve_, m64.loss_curve_, rtol=1e-3)
    np.testing.assert_allclose(ref.loss_curve_, m64.loss_curve_, **tolerance(np.float64))
    np.testing.assert_allclose(ref._params, m64._params, **tolerance(np.float64))


def test_coefs_are_views_and_pickling_keeps_them_so():
    X, y = _data("binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    assert clf.coefs_[0].shape == (5, 4) and clf.coefs_[1].shape == (4, 1)
    clf.coefs_[1][...] = 0
    clf.intercepts_[1][...] = 1.0  # σ(1) > ½ for every example
    assert (clf.predict(X) == "yes").all()
    clone = pickle.loads(pickle.dumps(clf))
    clone.coefs_ = [np.zeros((5, 4)), np.zeros((4, 1))]
    clone.intercepts_ = [np.zeros(4), np.array([-1.0])]
    assert (clone.predict(X) == "no").all() and (clf.predict(X) == "yes").all()
    with pytest.raises(ValueError, match="coefs_"):
        clone.coefs_ = [np.zeros((4, 5)), np.zeros((4, 1))]


def test_coefs_items_assigned_write_into_the_model():
    """``coefs_[i] = C`` and ``intercepts_[i] = b`` change what predict reads, as in scikit-learn
    (whose lists hold the arrays it predicts with); a bad item is refused naming it, nothing
    changed; a deep copy or a pickle of the list is plain arrays, detached from the model."""
    X, y = _data("binary")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    saved = copy.deepcopy(clf.coefs_)
    assert type(saved) is list and all(type(w) is np.ndarray for w in saved)
    assert [w.shape for w in pickle.loads(pickle.dumps(clf.intercepts_))] == [(4,), (1,)]
    clf.coefs_[1] = np.zeros((4, 1))
    clf.intercepts_[1] = np.array([1.0])
    assert (clf.predict(X) == "yes").all()
    before = clf._params.copy()
    for bad, err in ((np.zeros((1, 4)), ValueError), (np.full((4, 1), np.nan), ValueError), (["a"] * 4, TypeError)):
        with pytest.raises(err, match=r"coefs_\[1\]"):
            clf.coefs_[1] = bad
    np.testing.assert_array_equal(clf._params, before)
    saved[1][...] = 5.0  # the deep copy is the model's no longer
    np.testing.assert_array_equal(clf.coefs_[1], 0.0)


@pytest.mark.parametrize(
    "params, name",
    [
        (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
        (dict(activation="softplus"), "activation"),
        (dict(solver="newton"), "solver"),
        (dict(max_fun=0), "max_fun"),
        (dict(n_iter_no_change=2.5), "n_iter_no_change"),
        (dict(alpha=-1.0), "alpha"),
        (dict(batch_size=0), "batch_size"),
        (dict(batch_size="big"), "batch_size"),
        (dict(learning_rate="cosine"), "learning_rate"),
        (dict(learning_rate_init=0), "learning_rate_init"),
        (dict(max_iter=0), "max_iter"),
        (dict(momentum=1.5), "momentum"),
        (dict(validation_fraction=1.0), "validation_fraction"),
        (dict(beta_1=1.0), "beta_1"),
        (dict(beta_2=-0.1), "beta_2"),
        (dict(epsilon=0.0), "epsilon"),
        (dict(n_iter_no_change=0), "n_iter_no_change"),
        (dict(shuffle="yes"), "shuffle"),
        (dict(dtype=np.int32), "dtype"),
        (dict(backend="cuda"), "backend"),
        (dict(random_state=-1), "random_state"),
        (dict(random_state=np.random.default_rng(0)), "random_state"),
    ],
)
def test_bad_parameters_name_the_parameter_and_change_nothing(params, name):
    X, y = _data("binary")
    clf = MLPClassifier(**{"hidden_layer_sizes": (3,), "max_iter": 1, "random_state": 0, **params})
    with pytest.raises(ValueError, match=name):
        clf.fit(X, y)
    with pytest.raises(ValueError, match=name):
        clf.partial_fit(X, y, classes=["no", "yes"])
    assert not hasattr(clf, "classes_") and not hasattr(clf, "n_iter_")


def test_multilabel_partial_fit_keeps_the_labels_of_the_first_call():
    # scikit-learn 1.9 sets classes_ = unique(classes) here and then refuses its own
    # second call; fastbp keeps the label binarizer's classes_ (the label columns).
    X, y = _data("multilabel")
    clf = MLPClassifier(hidden_layer_sizes=(4,), random_state=0)
    for lo in (0, 30, 60):
        clf.partial_fit(X[lo : lo + 30], y[lo : lo + 30], classes=[0, 1])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.predict(X).shape == y.shape and clf.predict_proba(X).shape == y.shape


@pytest.mark.parametrize(
    "rs",
    [None, 0, 2**32 - 1, np.uint32(5), np.int64(3), True, np.random.RandomState(0)],
    ids=["None", "0", "2**32-1", "uint32", "int64", "True", "RandomState"],
)
def test_random_state_takes_what_scikit_learn_takes(rs):
    MLPClassifier(random_state=rs)._check_params()
    sk_nn.MLPClassifier(random_state=rs)._validate_params()


@pytest.mark.parametrize("rs", [2**32, 10**5000, -1, 1.5, "0"], ids=["2**32", "10**5000", "-1", "1.5", "str"])
def test_random_state_refused_as_scikit_learn_refuses_it(rs):
    with pytest.raises(InvalidParameterError, match="^random_state"):
        MLPClassifier(random_state=rs)._check_params()
    if not (isinstance(rs, int) and rs > 2**40):  # (scikit-learn's message cannot print 10**5000)
        with pytest.raises(ValueError, match="random_state"):
            sk_nn.MLPClassifier(random_state=rs)._validate_params()


@pytest.mark.parametrize(
    "params, accepted",
    [
        ({"validation_fraction": 0.0}, True),
        ({"validation_fraction": 0.5}, True),
        ({"validation_fraction": 1.0}, False),
        ({"validation_fraction": -0.1}, False),
        ({"verbose": 0}, True),
        ({"verbose": 2}, True),
        ({"verbose": True}, True),
        ({"verbose": -1}, False),
        ({"verbose": 0.5}, False),
    ],
    ids=lambda v: repr(v),
)
def test_validation_fraction_and_verbose_take_what_scikit_learn_takes(params, accepted):
    for check in (MLPClassifier(**params)._check_params, sk_nn.MLPClassifier(**params)._validate_params):
        if accepted:
            check()
        else:
            with pytest.raises(ValueError, match=next(iter(params))):
                check()


def test_validation_fraction_zero_fits_without_early_stopping_and_is_refused_with_it():
    X, y = _data("binary")
    clf = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, validation_fraction=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert clf.fit(X, y).n_iter_ == 2
    stopping = MLPClassifier(hidden_layer_sizes=(3,), max_iter=2, validation_fraction=0.0, early_stopping=True)
    with pytest.raises(ValueError, match="test_size"):
        stopping.fit(X, y)
    assert not hasattr(stopping, "n_iter_")


def test_parameter_errors_are_value_and_type_errors():

    X, y = _data("binary")
    with pytest.raises(InvalidParameterError, match="momentum") as info:
        MLPClassifier(momentum="high").fit(X, y)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_refused_first_partial_fit_leaves_the_classifier_unfitted():
    X, y = _data("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(3,))
    with pytest.raises(ValueError):
        clf.partial_fit(X[:, :0], y, classes=[10, 11, 12])  # no features
    assert not hasattr(clf, "classes_") and not hasattr(clf, "n_features_in_")
    reg = MLPRegressor(early_stopping=True, validation_fraction=0.01)
    with pytest.raises(ValueError, match="validation_fraction"):
        reg.fit(X[:50], y[:50].astype(float))
    assert not hasattr(reg, "n_iter_")


def test_partial_fit_checks_the_parameters_once_per_call(monkeypatch):
    X, y = _data("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(3,), random_state=0)
    calls = []
    check = MLPClassifier._check_params
    monkeypatch.setattr(MLPClassifier, "_check_params", lambda self: calls.append(1) or check(self))
    clf.partial_fit(X, y, classes=[10, 11, 12])
    clf.partial_fit(X, y)
    assert len(calls) == 2


def test_partial_fit_rules():
    X, y = _data("multiclass")
    clf = MLPClassifier(hidden_layer_sizes=(3,))
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    clf.partial_fit(X, y, classes=[10, 11, 12])
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y, classes=[10, 11])
    with pytest.raises(ValueError, match="early_stopping"):
        MLPRegressor(early_stopping=True).partial_fit(X, y.astype(float))
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        clf.set_params(hidden_layer_sizes=(4,)).partial_fit(X, y)


def test_divergence_raises_and_keeps_finite_parameters():
    X, y = _data("regression")
    reg = MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", learning_rate_init=0.5, max_iter=50, random_state=0)
    with pytest.raises(fastbp.DivergenceError):
        reg.fit(X, y * 1e150)
    assert np.isfinite(reg._params).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NumPy reference overflowing on its way
@pytest.mark.parametrize(
    "solver, lr, y_scale, where",
    [
        ("sgd", 1.0, 1.0, (1, 0)),  # the weights grow until the step overflows, in epoch 2
        ("sgd", 2.0, 1.0, (0, 5)),
        ("adam", 0.01, 1e160, (0, 0)),  # the first loss overflows
    ],
)
def test_divergence_stops_where_the_reference_does_and_keeps_its_parameters(solver, lr, y_scale, where):
    """The compiled epochs (the fast optimizer kernel) and the NumPy reference refuse the
    same step: DivergenceError names the same epoch and batch, and the model keeps the same
    finite parameters and loss curve, those from just before that step."""
    X, y = _data("regression")
    results = []
    for backend in ("numba", "numpy"):
        reg = MLPRegressor(
            hidden_layer_sizes=(4,),
            solver=solver,
            learning_rate_init=lr,
            batch_size=16,
            max_iter=50,
            random_state=0,
            backend=backend,
        )
        with pytest.raises(fastbp.DivergenceError) as info:
            reg.fit(X, y * y_scale)
        assert (info.value.epoch, info.value.batch) == where
        assert np.isfinite(reg._params).all() and len(reg.loss_curve_) == where[0]
        results.append((reg._params, reg.loss_curve_))
    np.testing.assert_allclose(results[0][0], results[1][0], **tolerance(np.float64))
    np.testing.assert_allclose(results[0][1], results[1][1], **tolerance(np.float64))


# ------------------------------------------------------------------ learns as well as scikit-learn


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("problem", ["digits", "regression"])
def test_learns_as_well_as_sklearn(problem):
    """Same data, settings and seed: test accuracy (digits) or R² (regression) within 0.02 of scikit-learn's.

    (With float64 the two follow the same trajectory, so the scores are in fact
    equal; the margin keeps the test honest about what is promised.)  The speed
    comparison is ``examples/compare_sklearn.py``, not a test.
    """
    from sklearn.datasets import load_digits, make_regression
    from sklearn.model_selection import train_test_split

    if problem == "digits":
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
        params = dict(hidden_layer_sizes=(32,), learning_rate_init=1e-2, batch_size=32, max_iter=15)
        ours_cls, theirs_cls, floor = MLPClassifier, sk_nn.MLPClassifier, 0.9
    else:
        X, y = make_regression(n_samples=600, n_features=10, n_informative=6, noise=5.0, random_state=0)
        y = y / y.std()
        params = dict(hidden_layer_sizes=(32,), solver="sgd", learning_rate_init=1e-2, momentum=0.9, max_iter=30)
        ours_cls, theirs_cls, floor = MLPRegressor, sk_nn.MLPRegressor, 0.9
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    ours = ours_cls(random_state=0, **params).fit(Xtr, ytr).score(Xte, yte)
    theirs = theirs_cls(random_state=0, **params).fit(Xtr, ytr).score(Xte, yte)
    assert ours > floor
    assert ours >= theirs - 0.02


def test_import_fastbp_does_not_import_sklearn():
    import subprocess
    import sys

    code = (
        "import sys, fastbp; assert 'sklearn' not in sys.modules; fastbp.MLPClassifier; assert 'sklearn' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_refused_refit_leaves_a_fitted_classifier_as_it_was():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = rng.integers(0, 3, 40)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0).fit(X, y)
    before = (clf.predict_proba(X), list(clf.classes_), clf.n_features_in_)
    clf.set_params(early_stopping=True)
    with pytest.raises(ValueError, match="test_size = 1"):  # scikit-learn's stratified-split message
        clf.fit(X[:5, :2], np.array(list("ababa")))
    np.testing.assert_array_equal(clf.predict_proba(X), before[0])
    assert list(clf.classes_) == before[1] and clf.n_features_in_ == before[2]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_mismatch_names_the_cause():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3))
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, warm_start=True, random_state=0).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="^y: "):
        reg.fit(X, X[:, :2])
    reg.set_params(hidden_layer_sizes=(5,))
    with pytest.raises(ValueError, match="^hidden_layer_sizes: "):
        reg.fit(X, X[:, 0])


# ------------------------------------------------------------------ scikit-learn's behaviour at the edges


def _warnings_of(fit, *args):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(*args)
    return [(w.category, str(w.message)) for w in caught if not issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize(
    "case",
    ["max_iter", "warm_start", "early-stopping", "partial_fit", "inf-patience", "lbfgs-max_iter", "lbfgs-converged"],
)
def test_convergence_warnings_where_sklearn_warns(case):
    """The same ConvergenceWarnings (category and text), in the same calls, as scikit-learn."""
    X, y = _data("regression")
    params = dict(hidden_layer_sizes=(5,), random_state=0, max_iter=4, learning_rate_init=0.01)
    params.update(
        {
            "warm_start": dict(warm_start=True),
            "early-stopping": dict(early_stopping=True, n_iter_no_change=1, tol=10.0, max_iter=20),
            "inf-patience": dict(n_iter_no_change=np.inf, tol=100.0, max_iter=6),
            "lbfgs-max_iter": dict(solver="lbfgs", max_iter=5),
            "lbfgs-converged": dict(solver="lbfgs", max_iter=500, tol=1e-2),
        }.get(case, {})
    )
    seen = []
    for est in (MLPRegressor(**params), sk_nn.MLPRegressor(**params)):
        method = est.partial_fit if case == "partial_fit" else est.fit
        seen.append([_warnings_of(method, X, y) for _ in range(3)])
        seen.append(est.n_iter_)
    assert seen[0] == seen[2] and seen[1] == seen[3]
    if case in ("max_iter", "warm_start", "inf-patience", "lbfgs-max_iter"):
        assert all(len(w) == 1 and w[0][0] is ConvergenceWarning for w in seen[0])


def test_assigned_coefs_before_the_first_fit():
    """coefs_/intercepts_ are plain assignable attributes before a fit, as in scikit-learn; a
    first partial_fit starts from them (one epoch from those weights, as scikit-learn's
    partial_fit from the same weights), a fit without warm_start initialises afresh."""
    X, y = _data("regression")
    W0 = [np.full((5, 4), 0.1), np.linspace(-1, 1, 4).reshape(4, 1)]
    b0 = [np.zeros(4), np.array([0.5])]
    params = dict(hidden_layer_sizes=(4,), solver="sgd", momentum=0.0, shuffle=False, random_state=0)
    ours = MLPRegressor(**params)
    ours.coefs_, ours.intercepts_ = W0, b0
    assert ours.coefs_ is not None and len(ours.intercepts_) == 2
    ours.partial_fit(X, y)
    theirs = sk_nn.MLPRegressor(**params).partial_fit(X[:2], y[:2])  # (scikit-learn cannot start unfitted)
    theirs.coefs_, theirs.intercepts_ = [w.copy() for w in W0], [b.copy() for b in b0]
    theirs.partial_fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, **tolerance(np.float64))
    fresh = MLPRegressor(**params, max_iter=3)
    fresh.coefs_ = W0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fresh.fit(X, y)
        plain = MLPRegressor(**params, max_iter=3).fit(X, y)
    np.testing.assert_array_equal(fresh._params, plain._params)
    for wrong, err, match in (
        ([np.zeros((4, 5)), np.zeros((4, 1))], ValueError, "coefs_"),
        ([np.full((5, 4), np.nan), np.zeros((4, 1))], ValueError, r"coefs_\[0\] contains NaN"),
        ([np.zeros((5, 4)), np.zeros((4, 1), complex)], TypeError, r"coefs_\[1\] must be real"),
    ):
        bad = MLPRegressor(**params)
        bad.coefs_ = wrong
        with pytest.raises(err, match=match):
            bad.partial_fit(X, y)
        assert not hasattr(bad, "n_iter_") and not hasattr(bad, "_params")


def test_divergence_is_sklearns_value_error():
    X, y = _data("regression")
    huge = X * 1e154
    for est in (MLPRegressor(random_state=0, max_iter=5), sk_nn.MLPRegressor(random_state=0, max_iter=5)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match=re.escape(fastbp.estimators.NON_FINITE_MESSAGE)):
                est.fit(huge, y)
    assert issubclass(fastbp.DivergenceError, ValueError) and issubclass(fastbp.DivergenceError, FloatingPointError)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("lr, y_scale", [(1.0, 1.0), (0.5, 1e3), (0.01, 1e160)])
def test_early_stopping_divergence_gives_sklearns_nan_scores(lr, y_scale):
    """scikit-learn trains on with NaN parameters: NaN validation scores to max_iter, then
    the best parameters; fastbp refuses the step and records the same."""
    X, y = _data("regression")
    params = dict(
        hidden_layer_sizes=(4,),
        solver="sgd" if y_scale < 1e100 else "adam",
        learning_rate_init=lr,
        batch_size=16,
        max_iter=12,
        random_state=0,
        early_stopping=True,
        validation_fraction=0.2,
    )
    ours = MLPRegressor(**params).fit(X, y * y_scale)
    theirs = sk_nn.MLPRegressor(**params).fit(X, y * y_scale)
    assert ours.n_iter_ == theirs.n_iter_ == 12
    np.testing.assert_array_equal(np.isnan(ours.validation_scores_), np.isnan(theirs.validation_scores_))
    assert np.isnan(ours.validation_scores_[-1])
    np.testing.assert_allclose(ours.best_validation_score_, theirs.best_validation_score_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, **tolerance(np.float64))


@pytest.mark.parametrize(
    "kind, y, fraction",
    [
        ("classifier", np.array([0] * 19 + [1]), 0.1),  # a class with one member
        ("classifier", np.arange(20) % 2, 0.05),  # fewer validation examples than classes
        ("regressor", np.arange(20.0), 0.05),  # a validation set of fewer than two examples
    ],
)
def test_validation_split_errors_are_sklearns(kind, y, fraction):
    X = np.random.default_rng(0).normal(size=(20, 3))
    pair = (MLPClassifier, sk_nn.MLPClassifier) if kind == "classifier" else (MLPRegressor, sk_nn.MLPRegressor)
    messages = []
    for cls in pair:
        with pytest.raises(ValueError) as info:
            cls(early_stopping=True, validation_fraction=fraction, max_iter=2).fit(X, y)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_float32_and_float64_regressors_agree_as_sklearns_do():
    """scikit-learn's own test_mlp_regressor_dtypes_casting, tolerance and all."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    mlp_64 = MLPRegressor(alpha=1e-5, hidden_layer_sizes=(5, 3), random_state=1, max_iter=50)
    mlp_64.fit(X[:300], y[:300])
    pred_64 = mlp_64.predict(X[300:])
    mlp_32 = MLPRegressor(alpha=1e-5, hidden_layer_sizes=(5, 3), random_state=1, max_iter=50)
    mlp_32.fit(X[:300].astype(np.float32), y[:300])
    pred_32 = mlp_32.predict(X[300:].astype(np.float32))
    assert mlp_32._params.dtype == np.float32
    np.testing.assert_allclose(pred_64, pred_32, rtol=5e-04)


# ------------------------------------------------------------------------------------ lbfgs


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("max_iter", [30, 2000])
@pytest.mark.parametrize("kind", KINDS)
def test_lbfgs_same_as_sklearn(kind, max_iter):
    """From the same start (the same draws), the same L-BFGS-B iterations: the same n_iter_,
    loss_ and weights (float64).  Tolerance: rtol 1e-6 after 30 iterations; for runs to
    convergence (tol=1e-3, 15-150 iterations) loss_ to rtol 1e-4 and weights to 5e-4
    absolute: the two sum the same terms in different orders and L-BFGS-B carries those
    last bits along (measured: loss 1.1e-5, weights 5e-5 to 2e-4 after 146 iterations)."""
    X, y = _data(kind)
    if kind == "multi-output" and max_iter > 100:
        pytest.skip("hundreds of iterations: rounding differences grow past any useful tolerance")
    ours, theirs = _pair(kind, solver="lbfgs", tol=1e-3)
    ours.set_params(max_iter=max_iter)
    theirs.set_params(max_iter=max_iter)
    ours.fit(X, y)
    theirs.fit(X, y)
    tol = dict(rtol=1e-6, atol=1e-8) if max_iter == 30 else dict(rtol=0, atol=5e-4)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6 if max_iter == 30 else 1e-4)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, **tol)
    assert not hasattr(ours, "loss_curve_") and not hasattr(theirs, "loss_curve_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_max_fun_warm_start_and_no_partial_fit():
    X, y = _data("multiclass")
    ours, theirs = _pair("multiclass", solver="lbfgs", max_fun=7)
    ours.set_params(max_iter=100)
    theirs.set_params(max_iter=100)
    w = [_warnings_of(est.fit, X, y) for est in (ours, theirs)]
    assert w[0] == w[1] and "status=1" in w[0][0][1]
    assert ours.n_iter_ == theirs.n_iter_ <= 7
    ours.set_params(warm_start=True, max_fun=15000, max_iter=10)
    theirs.set_params(warm_start=True, max_fun=15000, max_iter=10)
    ours.fit(X, y)
    theirs.fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)
    for est in (MLPClassifier(solver="lbfgs"), MLPRegressor(solver="lbfgs")):
        assert not hasattr(est, "partial_fit")
        with pytest.raises(AttributeError, match="no attribute .partial_fit."):
            getattr(est, "partial_fit")  # noqa: B009  (the attribute access is what raises)
    assert hasattr(MLPRegressor(solver="sgd"), "partial_fit")
    # an lbfgs fit warm-started with adam: the stochastic bookkeeping starts then
    ours.set_params(solver="adam", max_iter=2).fit(X, y)
    assert len(ours.loss_curve_) == 2


# ------------------------------------------------------------------------------- sparse X


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("setting", ["adam", "nesterov", "early-stopping", "lbfgs"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression", "multi-output"])
def test_sparse_equals_dense(kind, setting):
    """CSR and CSC X give the dense X's model: bit for bit for the stochastic solvers (each
    batch densified, then the same kernel on it; their loss curves to an ulp or two), to rounding
    for lbfgs (its sums in chunks)."""
    X, y = _data(kind)
    X[np.abs(X) < 0.7] = 0.0
    settings = dict(SETTINGS, lbfgs=dict(solver="lbfgs"))[setting]
    dense, _ = _pair(kind, **settings)
    dense.fit(X, y)
    for fmt in (sp.csr_matrix, sp.csc_matrix):
        est, _ = _pair(kind, **settings)
        est.fit(fmt(X), y)
        assert est.n_iter_ == dense.n_iter_
        if setting == "lbfgs":
            np.testing.assert_allclose(est._params, dense._params, rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_array_equal(est._params, dense._params)
            # the loss to an ulp or two: the sparse epoch adds each batch's mean times its size,
            # (J_b · n_b) / m, where the dense kernel divides its own sum once
            np.testing.assert_allclose(est.loss_curve_, dense.loss_curve_, rtol=5e-16, atol=0)
        out = est.predict_proba if kind in ("binary", "multiclass") else est.predict
        np.testing.assert_allclose(out(fmt(X)), out(X), rtol=1e-12, atol=1e-15)
    if setting == "adam":  # partial_fit and float32 too
        est, _ = _pair(kind, **settings)
        extra = {"classes": np.unique(y)} if kind in ("binary", "multiclass") else {}
        est.partial_fit(sp.csr_matrix(X, dtype=np.float32), y, **extra)
        ref, _ = _pair(kind, **settings)
        ref.partial_fit(X.astype(np.float32), y, **extra)
        np.testing.assert_array_equal(est._params, ref._params)


def test_sparse_rows_gives_seeded_canonical_rows_of_the_density_it_is_asked():
    """fastbp.testing.sparse_rows (the sparse problems here and in tools/sparse_memory.py): CSR in
    canonical form, cols · density entries a row (fewer only where two draws coincide, at least
    one), the same matrix for the same seed, and bad sizes refused."""
    X = sparse_rows(3000, 2000, density=0.004, seed=1)
    assert sp.isspmatrix_csr(X) and X.shape == (3000, 2000) and X.has_canonical_format
    per_row = np.diff(X.indptr)
    assert per_row.min() >= 1 and per_row.max() == 8 and per_row.mean() > 7.9
    assert (sparse_rows(3000, 2000, density=0.004, seed=1) != X).nnz == 0
    assert (sparse_rows(3000, 2000, density=0.004, seed=2) != X).nnz > 0
    assert np.diff(sparse_rows(5, 10, density=1e-9).indptr).tolist() == [1] * 5
    for bad in [(0, 10, 0.1), (10, 0, 0.1), (10, 10, 0.0), (10, 10, 1.5)]:
        with pytest.raises(ValueError, match="sparse_rows"):
            sparse_rows(*bad)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_fit_memory_stays_far_below_the_dense_matrix(solver):
    """CSR matrices of 5,000 columns at 0.1 % density: fit and predict densify a batch or chunk of
    rows at a time, so their peak allocation (tracemalloc's) does not grow with the rows, and with
    16,000 rows it is under a tenth of the dense matrix's 640 MB.  (Not a tenth of 4,000 rows' 160 MB:
    lbfgs's peak there is 15.5 MB, a chunk of 8.4 MB and L-BFGS-B's own 7 MB of history for the
    20,009 parameters, and one run in a busy pytest worker read 16.1 MB.)"""
    import tracemalloc

    peaks = {}
    for m in (4000, 16000):
        X = sparse_rows(m, 5000, density=0.001, seed=0)  # scipy.sparse.random: 10 s for 16,000 rows
        y = np.random.default_rng(0).normal(size=m)
        reg = MLPRegressor(hidden_layer_sizes=(4,), solver=solver, max_iter=2, random_state=0)
        # compile outside the measurement (the compiler's own Python objects would count): the same fit
        # and predict once, since a fit on fewer rows runs other kernels (its batches are shorter)
        reg.fit(X, y).predict(X)
        tracemalloc.start()
        try:
            reg.fit(X, y)
            reg.predict(X)
            peaks[m] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    dense = 16000 * 5000 * 8
    assert peaks[16000] < 0.1 * dense, peaks
    assert peaks[16000] < 1.5 * peaks[4000], peaks  # densifying all of X would be 4x


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("setting", ["adam", "nesterov", "early-stopping", "lbfgs"])
@pytest.mark.parametrize("outputs", [1, 3])
def test_poisson_same_as_sklearn(outputs, setting):
    """MLPRegressor(loss="poisson"): exp output, half Poisson deviance; the same trajectory as
    scikit-learn's (stochastic solvers: rtol 1e-9; lbfgs, 30 iterations: rtol 1e-6)."""
    X, _ = _data("regression")
    rng = np.random.default_rng(1)
    y = rng.poisson(np.exp(0.3 * X[:, :outputs] - 0.2)).astype(float)
    y = y[:, 0] if outputs == 1 else y
    settings = dict(SETTINGS, lbfgs=dict(solver="lbfgs", max_iter=30))[setting]
    params = dict(
        hidden_layer_sizes=(7, 4),
        activation="tanh",
        alpha=0.01,
        batch_size=16,
        max_iter=8,
        random_state=3,
        loss="poisson",
    )
    params.update(settings)
    ours = MLPRegressor(**params).fit(X, y)
    theirs = sk_nn.MLPRegressor(**params).fit(X, y)
    assert ours.out_activation_ == theirs.out_activation_ == "exp"
    assert ours.n_iter_ == theirs.n_iter_
    tol = tolerance(np.float64) if setting != "lbfgs" else dict(rtol=1e-6, atol=1e-8)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, **tol)
    if setting != "lbfgs":
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, **tol)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=tol["rtol"])
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), **tol)


def test_poisson_without_hidden_layer_is_a_poisson_regressor():
    """No hidden layer: half Poisson deviance + alpha/2 ‖w‖² / n, i.e. scikit-learn's
    PoissonRegressor with alpha / n (both to convergence with lbfgs; rtol 1e-4)."""
    from sklearn.linear_model import PoissonRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = rng.poisson(np.exp(X @ np.array([0.3, -0.2, 0.1, 0.0]) + 0.5)).astype(float)
    alpha = 0.5
    mlp = MLPRegressor(
        hidden_layer_sizes=(),
        loss="poisson",
        solver="lbfgs",
        alpha=alpha * len(y),
        tol=1e-10,
        max_iter=1000,
        random_state=0,
    ).fit(X, y)
    glm = PoissonRegressor(alpha=alpha, tol=1e-10, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(mlp.coefs_[0].ravel(), glm.coef_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mlp.intercepts_[0][0], glm.intercept_, rtol=1e-4)
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson").fit(X, y - 1)


def test_regressor_loss_parameter():
    X, y = _data("regression")
    assert MLPRegressor().get_params()["loss"] == "squared_error"
    reg = MLPRegressor(loss="absolute_error", max_iter=2)
    for call in (reg.fit, reg.partial_fit):
        with pytest.raises(ValueError, match="^loss must be"):
            call(X, np.abs(y))
    assert not hasattr(reg, "n_iter_")


#: Labels for the classifier's targets: (y, what the binarizer is fitted on or None for y itself,
#: the binarizer's arguments, whether _indicator_rows builds the rows itself).
_LABELS = {
    "ints, ten classes": (np.arange(40) % 10, None, {}, True),
    "strings, three classes": (np.array(["b", "a", "c", "a"] * 5), None, {}, True),
    "whole floats, two classes": (np.array([1.0, 3.0, 3.0, 1.0, 3.0]), None, {}, True),
    "bools": (np.array([True, False, False, True]), None, {}, True),
    "two of three fitted classes": (np.array([0, 2, 2, 0]), np.array([0, 1, 2]), {}, True),
    "one of two fitted classes": (np.array([1, 1, 1]), np.array([0, 1]), {}, True),
    "a label outside the classes": (np.array([0, 1, 5, 2]), np.array([0, 1, 2]), {}, False),
    "objects of mixed types": (
        np.array([1, "a", 1, "a"], dtype=object),
        np.array(["a", "b", "c"], dtype=object),
        {},
        False,
    ),
    "multilabel rows": (np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1]]), None, {}, False),
    # label_binarize casts the classes to y's dtype: -256 wraps to 0 in int8, two classes alike
    "int8 labels, a class beyond int8": (np.array([0, 5], np.int8), np.array([-256, 0, 5]), {}, False),
    "neg_label -1": (np.arange(12) % 3, None, {"neg_label": -1}, False),
}


@pytest.mark.parametrize("case", list(_LABELS))
def test_indicator_rows_are_the_label_binarizers(case):
    """The classifier's targets (fastbp.estimators._indicator_rows: one-hot rows built directly for
    1-D labels of the classes' dtype among the classes) are LabelBinarizer's transform, as bools,
    for the labels the classifier passes it: integers, strings, floats, booleans, a subset of the
    fitted classes built directly (transform is not called), and transform itself for the rest (a
    label outside the classes, mixed types, multilabel rows, an integer y narrower than the classes,
    whose cast scikit-learn keeps, a binarizer with other labels), refusing what it refuses."""
    from sklearn.preprocessing import LabelBinarizer

    from fastbp.estimators import _indicator_rows

    y, fitted_on, options, direct = _LABELS[case]
    binarizer = LabelBinarizer(**options).fit(y if fitted_on is None else fitted_on)
    try:
        expected = binarizer.transform(y).astype(bool)
    except (TypeError, ValueError) as exc:  # whatever transform refuses, the same way
        with pytest.raises(type(exc)):
            _indicator_rows(binarizer, y)
        return
    if direct:  # built without scikit-learn's transform
        binarizer.transform = lambda _y: pytest.fail("transform was called")
    got = _indicator_rows(binarizer, y)
    assert got.dtype == bool and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
