"""scikit-learn estimators on fastbp's kernels: :class:`MLPClassifier` and :class:`MLPRegressor`.

Drop-in replacements for :class:`sklearn.neural_network.MLPClassifier` and
:class:`~sklearn.neural_network.MLPRegressor` (solvers ``"lbfgs"``, ``"sgd"``,
``"adam"``): the same parameter names and defaults, the same fitted
attributes, and the same training procedure (initialisation, shuffling, batches,
L2, optimizer updates, schedules, early stopping and stopping rules, drawing
from ``random_state`` in the same order), so that with the same settings and
seed the two follow the same trajectory up to floating-point rounding.  The
epochs run in one compiled Numba kernel (:func:`fastbp._fast.optimizer._batch_epoch_opt`;
the plain :func:`fastbp._plain.loops._train_epoch_opt` for ``NUMBA_DISABLE_JIT=1``; the
choice is :func:`fastbp._dispatch.run_epoch_opt`'s).  ``solver="lbfgs"`` is scipy's
L-BFGS-B over the flat parameter buffer, each evaluation one compiled full-batch
loss-and-gradient call (:func:`fastbp._dispatch.loss_and_gradient`).

``sample_weight`` in ``fit``, ``partial_fit`` and ``score`` is scikit-learn's: per batch,
the cost and gradient are means weighted by w_i / Σ_batch w, the L2 term is divided by
Σ_batch w, lbfgs's objective likewise over all examples, early stopping's validation
score is weighted.

What differs from scikit-learn (see ``docs/estimators.md``):

* a batch whose weights sum to zero is refused with a ValueError naming ``sample_weight``
  (scikit-learn's ``numpy.average`` raises ZeroDivisionError there);
* sparse X (CSR, CSC) is densified a batch (or, to predict and for lbfgs, a chunk of
  rows) at a time: the same results as the dense X, in memory that does not grow to
  the dense matrix (no first-layer kernel over CSR rows: the work is the dense one);
* ``dtype`` (``None``: float32 input trains in float32, anything else in float64;
  or force ``numpy.float32``/``numpy.float64``) and ``backend`` (``"numba"`` or the
  NumPy reference ``"numpy"``) are extra;
* log-loss is computed from the logits, without scikit-learn's clipping of
  probabilities at machine epsilon (the values agree unless a probability is
  within epsilon of 0 or 1);
* a step that would make the loss or a parameter non-finite is not applied and
  fit raises :class:`fastbp.DivergenceError`, a ``ValueError`` with scikit-learn's
  message (scikit-learn applies the step and raises that ``ValueError`` at the end;
  with early stopping both end with NaN validation scores and the best weights).

``coefs_[i]`` is (n_in, n_out) as in scikit-learn: the transpose of fastbp's
W[i+1], and a *view* into the network's one flat parameter buffer, as are
``intercepts_[i]``; writing into them changes the model.
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _dispatch, reference
from . import _validation as _val
from .activations import get_activation
from .errors import DivergenceError
from .losses import get_output
from .optimizers import SCHEDULES, SGD, Adam
from .params import Layout, offsets

__all__ = ["MLPClassifier", "MLPRegressor", "InvalidParameterError"]

#: Numbers densified at a time where X is sparse and the kernel sees all rows at once (prediction,
#: validation scores, each lbfgs evaluation): max(1, CHUNK_NUMBERS // n_features) rows, never X's.
CHUNK_NUMBERS = 1 << 20


def _chunk_rows(X) -> int:
    return max(1, CHUNK_NUMBERS // max(1, X.shape[1]))


_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
_SOLVERS = ("lbfgs", "sgd", "adam")
_STOCHASTIC_SOLVERS = ("sgd", "adam")
_BACKENDS = ("numba", "numpy")
_OUTPUT_CODES = {"logistic": "sigmoid", "softmax": "softmax", "identity": "identity", "exp": "exp"}

#: scikit-learn's message for a fit that diverged (its ``_fit``'s final check); fastbp's
#: :class:`DivergenceError` (a ValueError too) leads with it.
NON_FINITE_MESSAGE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."
)


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a bad value or type (both a ValueError and a TypeError,
    like scikit-learn's own ``InvalidParameterError``); the message starts with its name."""


def _is_bool(x) -> bool:
    return isinstance(x, (bool, np.bool_))


def _check_number(est, name, low=None, high=None, low_open=False, high_open=False, integer=False):
    value = getattr(est, name)
    kind = numbers.Integral if integer else numbers.Real
    if _is_bool(value) or not isinstance(value, kind):
        raise InvalidParameterError(f"{name} must be {'an integer' if integer else 'a real number'}, got {value!r}")
    bad = not np.isfinite(float(value))
    if low is not None:
        bad = bad or (value <= low if low_open else value < low)
    if high is not None:
        bad = bad or (value >= high if high_open else value > high)
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise InvalidParameterError(
            f"{name} must be in {lo}{low}, {high if high is not None else 'inf'}{hi}, got {value!r}"
        )


def _checked_list(name: str, value, shapes: list, dtype) -> list[np.ndarray]:
    """``value``, a list assigned to ``coefs_`` or ``intercepts_``, as arrays of ``shapes`` and
    ``dtype``: ValueError if the list's length or a shape is wrong, else each array checked as
    :func:`fastbp._validation.check_shaped` checks it (real, finite; the error names ``name[i]``)."""
    if len(value) != len(shapes) or any(np.shape(v) != tuple(t) for v, t in zip(value, shapes)):
        raise ValueError(f"{name} must be a list of arrays shaped {shapes}")
    return [_val.check_shaped(v, f"{name}[{i}]", t, dtype) for i, (v, t) in enumerate(zip(value, shapes))]


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, fitting loop, fitted attributes."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=None,
        backend="numba",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.backend = backend

    # ------------------------------------------------------------ parameter checks

    def _hidden_sizes(self) -> list[int]:
        h = self.hidden_layer_sizes
        sizes = list(h) if hasattr(h, "__iter__") and not isinstance(h, str) else [h]
        for s in sizes:
            if _is_bool(s) or not isinstance(s, numbers.Integral):
                raise InvalidParameterError(f"hidden_layer_sizes must hold integers, got {h!r}")
            if s <= 0:
                raise InvalidParameterError(f"hidden_layer_sizes must be > 0, got {h!r}")
        return [int(s) for s in sizes]

    def _check_params(self):
        """Validate every parameter (ValueError/TypeError naming it) and build the optimizer."""
        hidden = self._hidden_sizes()
        for name, options in (
            ("activation", _ACTIVATIONS),
            ("solver", _SOLVERS),
            ("learning_rate", SCHEDULES),
            ("backend", _BACKENDS),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in options:
                raise InvalidParameterError(f"{name} must be one of {list(options)}, got {value!r}")
        _check_number(self, "alpha", 0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            if _is_bool(self.batch_size) or not isinstance(self.batch_size, numbers.Integral):
                raise InvalidParameterError(f"batch_size must be 'auto' or an integer >= 1, got {self.batch_size!r}")
            _check_number(self, "batch_size", 1, integer=True)
        _check_number(self, "learning_rate_init", 0.0, low_open=True)
        _check_number(self, "power_t", 0.0)
        _check_number(self, "max_iter", 1, integer=True)
        _check_number(self, "tol", 0.0)
        _check_number(self, "momentum", 0.0, 1.0)
        _check_number(self, "validation_fraction", 0.0, 1.0, high_open=True)  # 0 too, as scikit-learn
        _check_number(self, "beta_1", 0.0, 1.0, high_open=True)
        _check_number(self, "beta_2", 0.0, 1.0, high_open=True)
        _check_number(self, "epsilon", 0.0, low_open=True)
        if not (isinstance(self.n_iter_no_change, numbers.Real) and self.n_iter_no_change == np.inf):
            _check_number(self, "n_iter_no_change", 1, integer=True)  # an integer >= 1, or numpy.inf
        _check_number(self, "max_fun", 1, integer=True)
        for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not _is_bool(getattr(self, name)):
                raise InvalidParameterError(f"{name} must be True or False, got {getattr(self, name)!r}")
        rs = self.random_state  # scikit-learn's "random_state" constraint: None, an int in [0, 2**32), a RandomState
        if not (
            rs is None
            or isinstance(rs, np.random.RandomState)
            or (isinstance(rs, numbers.Integral) and 0 <= rs < 2**32)  # True too, as scikit-learn
        ):
            got = "an integer outside that range" if isinstance(rs, numbers.Integral) else f"{rs!r:.80}"
            raise InvalidParameterError(
                f"random_state must be None, an integer in [0, 2**32 - 1] or a numpy.random.RandomState, got {got}"
            )
        if not (_is_bool(self.verbose) or (isinstance(self.verbose, numbers.Integral) and self.verbose >= 0)):
            raise InvalidParameterError(f"verbose must be a bool or an integer >= 0, got {self.verbose!r}")
        if self.dtype is not None:
            try:
                dt = np.dtype(self.dtype)
            except TypeError:
                dt = None
            if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
                raise InvalidParameterError(f"dtype must be None, numpy.float32 or numpy.float64, got {self.dtype!r}")
        if self.solver == "lbfgs":
            opt = None
        elif self.solver == "sgd":
            opt = SGD(
                self.learning_rate_init,
                self.momentum,
                bool(self.nesterovs_momentum),
                self.learning_rate,
                self.power_t,
                self.alpha,
            )
        else:
            opt = Adam(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon, self.alpha)
        return hidden, opt

    # -------------------------------------------------------------- fitted state

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_params")

    def _views(self):
        W, b = self._layout.views(self._params)
        return W, b

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, ``coefs_[i]`` of shape (n_in, n_out): views of Wᵀ into the parameter buffer
        (``coefs_[i] = C`` writes C into the model, checked, as scikit-learn's predict reads the arrays
        of its plain list; ``coefs_[i][...] = C`` writes into the view as NumPy does, unchecked).

        Before the first fit, what was assigned (a plain attribute, as in scikit-learn): a
        first ``partial_fit`` (or ``fit`` with ``warm_start=True``) starts from it, where
        scikit-learn would fail; a ``fit`` without ``warm_start`` initialises afresh.
        """
        if not hasattr(self, "_params"):
            if "_pending_coefs" in self.__dict__:
                return self._pending_coefs
            raise AttributeError("coefs_ is set by fit")
        return _val.ViewList([W.T for W in self._views()[0]], "coefs_")

    @coefs_.setter
    def coefs_(self, value):
        if not hasattr(self, "_params"):
            self._pending_coefs = list(value)
            return
        self._assign("coefs_", value, [W.T for W in self._views()[0]])

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, ``intercepts_[i]`` of shape (n_out,): views into the parameter buffer
        (before the first fit, what was assigned, as :attr:`coefs_`)."""
        if not hasattr(self, "_params"):
            if "_pending_intercepts" in self.__dict__:
                return self._pending_intercepts
            raise AttributeError("intercepts_ is set by fit")
        return _val.ViewList(list(self._views()[1]), "intercepts_")

    @intercepts_.setter
    def intercepts_(self, value):
        if not hasattr(self, "_params"):
            self._pending_intercepts = list(value)
            return
        self._assign("intercepts_", value, list(self._views()[1]))

    def _pending_ok(self, layer_units, dtype):
        """Check coefs_/intercepts_ assigned before the first fit against the layer sizes, and each
        array as :class:`fastbp._validation.ViewList` checks one written after it (real, finite,
        within ``dtype``'s range; ValueError or TypeError naming it), before anything changes."""
        for name, shapes in (
            ("coefs_", [(a, b) for a, b in zip(layer_units[:-1], layer_units[1:])]),
            ("intercepts_", [(b,) for b in layer_units[1:]]),
        ):
            value = self.__dict__.get("_pending_" + name.rstrip("_"))
            if value is not None:
                _checked_list(name, value, shapes, dtype)

    def _assign(self, name, value, targets):
        new = _checked_list(name, value, [t.shape for t in targets], targets[0].dtype)
        for t, v in zip(targets, new):
            t[...] = v

    # ---------------------------------------------------------------- fitting

    def _validate_input(self, X, y, incremental, reset):  # pragma: no cover - overridden
        raise NotImplementedError

    #: What validating a new X, y replaces; restored if the call is refused before training.
    _INPUT_STATE = ("n_features_in_", "feature_names_in_", "classes_", "_label_binarizer")

    def _fit(self, X, y, incremental=False, checked=None, sample_weight=None):
        # ``checked``: what _check_params returned, where the caller ran it already
        hidden, optimizer = checked or self._check_params()
        # A call that fails part-way (refused input, MemoryError for a huge network, an error
        # in a callback-like hook …) leaves the estimator exactly as it was: its attributes,
        # parameters and optimizer state are restored.  A DivergenceError is a result, not a
        # failure: the model keeps the parameters from just before the refused step (documented).
        saved = {k: list(x) if isinstance(x, list) else x for k, x in self.__dict__.items()}  # loss_curve_ …
        params = self.__dict__.get("_params")
        params_before = None if params is None else params.copy()
        optimizer_before = copy.deepcopy(self.__dict__.get("_optimizer"))
        try:
            X, y, sample_weight, layer_units, dtype, first_pass = self._prepare(
                X, y, sample_weight, hidden, incremental
            )
            rs = check_random_state(self.random_state)
            if first_pass:
                # what was assigned to coefs_/intercepts_ before the first fit: used where
                # scikit-learn would not initialise (partial_fit, warm_start), dropped otherwise
                pending = {
                    k: self.__dict__.pop(k) for k in ("_pending_coefs", "_pending_intercepts") if k in self.__dict__
                }
                self._initialize(y, layer_units, dtype, rs)
                if incremental or self.warm_start:
                    W, b = self._views()
                    for Wl, c in zip(W, pending.get("_pending_coefs", ())):
                        Wl[...] = np.asarray(c).T
                    for bl, c in zip(b, pending.get("_pending_intercepts", ())):
                        bl[...] = c
            if self.solver == "lbfgs":
                self._fit_lbfgs(X, y, sample_weight)
                return self
            if not incremental or not hasattr(self, "_optimizer"):
                self._optimizer = optimizer
            self._fit_stochastic(X, y, rs, incremental, sample_weight)
        except DivergenceError:
            raise
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(saved)
            if params is not None:
                params[...] = params_before
            if optimizer_before is not None:
                self._optimizer = optimizer_before
            raise
        return self

    def _prepare(self, X, y, sample_weight, hidden, incremental):
        """Validate X, y and sample_weight against the parameters and the fitted network; nothing
        else changes.  ``sample_weight`` comes back as scikit-learn's ``_check_sample_weight`` makes
        it (float64 or float32; the kernels get it in the network's dtype), or ``None``."""
        first_pass = not hasattr(self, "_params") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError("early_stopping: partial_fit does not support early_stopping=True")
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            # scikit-learn's own checks and messages (1-D, length, finite, not all zero);
            # negative weights are accepted, as scikit-learn's MLP accepts them
            sample_weight = _val.unit_weights_as_none(_check_sample_weight(sample_weight, X))
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        if self.early_stopping and self.solver in _STOCHASTIC_SOLVERS:
            # scikit-learn splits first (its stratification errors come first), then checks the
            # validation set's size: the same split, dry-run on indices, refuses the same data
            # here, before anything changes (the real split draws from random_state later)
            stratify = y if is_classifier(self) and y.shape[1] == 1 else None
            _, val = train_test_split(
                np.arange(X.shape[0]), test_size=self.validation_fraction, stratify=stratify, random_state=0
            )
            if val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
        n_features = X.shape[1]
        layer_units = [n_features] + hidden + [y.shape[1]]
        try:
            _val.check_layer_sizes(layer_units)
        except ValueError as exc:
            raise InvalidParameterError(f"hidden_layer_sizes: {exc}") from None
        fitted = [int(n) for n in self._layout.sizes] if not first_pass else layer_units
        if fitted != layer_units:
            if fitted[-1] != layer_units[-1]:
                cause = f"y: this y needs {layer_units[-1]} outputs, the fitted network has {fitted[-1]}"
            elif fitted[0] != layer_units[0]:
                cause = f"X: this X has {layer_units[0]} features, the fitted network {fitted[0]}"
            else:
                cause = f"hidden_layer_sizes: now {hidden}, the fitted network has {fitted[1:-1]}"
            raise ValueError(f"{cause}; use warm_start=False to start again")
        dtype = self._params.dtype if not first_pass else np.dtype(self.dtype or X.dtype)
        if first_pass and (incremental or self.warm_start):
            self._pending_ok(layer_units, dtype)
        if sp.issparse(X):  # CSR (rows are what the batches take); densified a batch at a time
            X = X.tocsr().astype(dtype, copy=False)
            if not np.isfinite(X.data).all():
                raise ValueError("X: contains NaN or inf, or values beyond the network's dtype")
        else:
            # one compiled specialisation; float64 beyond float32's range is refused, not made inf
            X = _val.finite_contiguous(X, "X", dtype, checked=not _assume_finite())  # (validate_data's check)
        y = _val.finite_contiguous(y, "y", dtype)
        if sample_weight is not None:
            _val.finite_contiguous(sample_weight, "sample_weight", dtype)  # (refuses float32 overflow)
        return X, y, sample_weight, layer_units, dtype, first_pass

    def _initialize(self, y, layer_units, dtype, rs):
        """Fresh parameters and bookkeeping, drawn from ``rs`` exactly as scikit-learn draws them."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        self._layout = Layout(layer_units)
        self._params = np.empty(self._layout.n_params, dtype=dtype)
        W, b = self._views()
        factor = 2.0 if self.activation == "logistic" else 6.0
        for l in range(self.n_layers_ - 1):
            fan_in, fan_out = layer_units[l], layer_units[l + 1]
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[l][...] = rs.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype, copy=False).T
            b[l][...] = rs.uniform(-bound, bound, fan_out).astype(dtype, copy=False)
        self._best_params = self._params.copy()
        if self.solver in _STOCHASTIC_SOLVERS:  # (scikit-learn's lbfgs keeps no loss curve)
            self._start_bookkeeping()

    def _start_bookkeeping(self):
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _fit_lbfgs(self, X, y, sample_weight=None):
        """scikit-learn's ``_fit_lbfgs``: scipy's L-BFGS-B over the flat parameter vector,
        each function evaluation one compiled full-batch loss-and-gradient call
        (:func:`fastbp._dispatch.loss_and_gradient`).  With ``sample_weight`` the objective is
        scikit-learn's weighted one: weighted mean cost + ½ alpha ‖W‖² / Σw."""
        import scipy.optimize

        activation = get_activation(self.activation)
        out = get_output(_OUTPUT_CODES[self.out_activation_])
        cost_scale = 1.0 / self.n_outputs_ if self.out_activation_ == "identity" else 1.0
        params, sizes = self._params, self._layout.sizes
        grad = np.empty_like(params)
        alpha = float(self.alpha)
        order = np.arange(X.shape[0], dtype=np.int64)  # (the fast kernel's example order, made once)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=params.dtype)
        if sw is not None:
            _val.check_batch_weights(sw, order, X.shape[0])  # Σw = 0 (negative weights) has no mean

        def fun(x):
            params[...] = x  # (scipy hands float64; a float32 model rounds it to its buffer)
            if not sp.issparse(X):
                loss = _dispatch.loss_and_gradient(
                    params, sizes, X, y, activation, out, grad, alpha, cost_scale, order, sw=sw
                )
                return loss, grad.astype(np.float64)
            # sparse X: the same sums over chunks of densified rows, then the L2 term; each
            # chunk's (weighted) mean counts its number of rows (its Σw) in the whole's
            m, rows = X.shape[0], _chunk_rows(X)
            D = m if sw is None else float(sw.astype(np.float64).sum())
            loss, total = 0.0, np.zeros(params.shape[0])
            for lo in range(0, m, rows):
                swc = None if sw is None else sw[lo : lo + rows]
                if swc is not None and not swc.any():
                    continue  # weight zero: no part in the sums
                n = min(rows, m - lo) if swc is None else float(swc.astype(np.float64).sum())
                if n == 0:
                    raise ValueError(
                        "sample_weight: the weights of a chunk of rows of sparse X sum to zero; "
                        "lbfgs on sparse X needs each chunk's sum to be non-zero"
                    )
                Xc = _dense_rows(X, slice(lo, lo + rows), params.dtype)
                loss += n * _dispatch.loss_and_gradient(
                    params, sizes, Xc, y[lo : lo + Xc.shape[0]], activation, out, grad, 0.0, cost_scale, sw=swc
                )
                total += n * grad.astype(np.float64)
                del Xc  # (freed before the next chunk is made: one chunk alive at a time)
            loss, total = loss / D, total / D
            for lo, hi in zip(*offsets.py_func(sizes)[:2]):
                w = params[lo:hi].astype(np.float64)
                loss += 0.5 * alpha * float(w @ w) / D
                total[lo:hi] += (alpha / D) * w
            return loss, total

        with np.errstate(all="ignore"):  # a non-finite loss is L-BFGS-B's to handle, and checked below
            res = scipy.optimize.minimize(
                fun,
                params.astype(np.float64),
                method="L-BFGS-B",
                jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
            )
        self.n_iter_ = _check_lbfgs_result(res, self.max_iter)
        self.loss_ = float(res.fun)
        params[...] = res.x
        if not np.isfinite(params).all():
            raise DivergenceError(0, self.n_iter_, message=NON_FINITE_MESSAGE)

    def _fit_stochastic(self, X, y, rs, incremental, sample_weight=None):
        if not hasattr(self, "loss_curve_"):  # warm start after an lbfgs fit
            self._start_bookkeeping()
        sw_val = None
        if self.early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            if sample_weight is None:
                X, X_val, y, y_val = train_test_split(
                    X, y, random_state=rs, test_size=self.validation_fraction, stratify=stratify
                )
            else:  # the same split (the indices do not depend on how many arrays are split)
                X, X_val, y, y_val, sample_weight, sw_val = train_test_split(
                    X, y, sample_weight, random_state=rs, test_size=self.validation_fraction, stratify=stratify
                )
            if is_classifier(self):  # (its size of at least 2 was checked in _prepare)
                y_val = self._label_binarizer.inverse_transform(y_val)
            X = X if sp.issparse(X) else np.ascontiguousarray(X)
            y = np.ascontiguousarray(y)
        else:
            X_val = y_val = None
        # the kernels' weights: the training part, in the network's dtype (the validation
        # scores weigh with scikit-learn's checked weights, as scikit-learn's do)
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=self._params.dtype)
        n_samples = X.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.int64)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(  # noqa: B028  (scikit-learn's own call, no stacklevel: the same warning)
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped"
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        activation = get_activation(self.activation)
        out = get_output(_OUTPUT_CODES[self.out_activation_])
        cost_scale = 1.0 / self.n_outputs_ if self.out_activation_ == "identity" else 1.0
        opt = self._optimizer
        self.n_iter_ = 0  # epochs of this call, as scikit-learn counts them (t_ counts all examples)
        diverged = False
        for _ in range(self.max_iter):
            if self.shuffle:
                # what sklearn.utils.shuffle(sample_idx, random_state=rs) does (the same draws,
                # the same permutation), without its per-call parameter validation
                rs.shuffle(sample_idx)
            if diverged:  # scikit-learn's parameters are NaN from here on: so are its losses and scores
                J, failed = np.nan, -1
            else:
                J, failed = self._epoch(opt, X, y, sample_idx, batch_size, activation, out, cost_scale, sw)
            if failed >= 0:
                if not self.early_stopping:
                    # scikit-learn trains on with NaN parameters to max_iter (its loss is NaN, so its
                    # no-improvement count never grows), warns, and raises this ValueError
                    if not incremental:
                        warnings.warn(  # noqa: B028  (as scikit-learn warns)
                            "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization "
                            "hasn't converged yet." % self.max_iter,
                            ConvergenceWarning,
                        )
                    raise DivergenceError(failed, self.n_iter_, message=NON_FINITE_MESSAGE)
                # with early stopping scikit-learn ends with the best parameters, its later
                # validation scores NaN: the step is not applied here, the rest recorded as NaN
                diverged, J = True, np.nan
            self.n_iter_ += 1
            self.loss_ = J
            self.t_ += n_samples
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            self._update_no_improvement_count(X_val, y_val, diverged, sw_val)
            opt.iteration_ends(self.t_)
            if self._no_improvement_count > self.n_iter_no_change:
                if self.early_stopping:
                    msg = "Validation score did not improve more than tol=%f for %d consecutive epochs." % (
                        self.tol,
                        self.n_iter_no_change,
                    )
                else:
                    msg = "Training loss did not improve more than tol=%f for %d consecutive epochs." % (
                        self.tol,
                        self.n_iter_no_change,
                    )
                if opt.trigger_stopping(msg, self.verbose):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(  # noqa: B028  (as scikit-learn warns)
                    "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't "
                    "converged yet." % self.max_iter,
                    ConvergenceWarning,
                )
        if self.early_stopping:
            self._params[...] = self._best_params

    def _epoch(self, opt, X, y, sample_idx, batch_size, activation, out, cost_scale, sw=None):
        if sp.issparse(X):
            return self._sparse_epoch(opt, X, y, sample_idx, batch_size, activation, out, cost_scale, sw)
        return opt._train_epoch(
            self._params,
            self._layout.sizes,
            X,
            y,
            sample_idx,
            batch_size,
            activation,
            out,
            self.backend,
            cost_scale,
            sw=sw,
        )

    def _sparse_epoch(self, opt, X, y, sample_idx, batch_size, activation, out, cost_scale, sw=None):
        """The epoch over sparse X: each batch's rows densified (batch_size × n_features numbers,
        never X's), then one call of the same epoch kernel on that batch alone, with the nominal
        batch size (so the kernel takes the same path as for dense X).  Returns ``(J, failed)``."""
        m = sample_idx.shape[0]
        local = np.arange(batch_size, dtype=np.int64)
        total = 0.0
        for k, start in enumerate(range(0, m, batch_size)):
            idx = sample_idx[start : start + batch_size]
            n = idx.shape[0]
            Xb = _dense_rows(X, idx, self._params.dtype)
            swb = None if sw is None else np.ascontiguousarray(sw[idx])
            J, failed = self._epoch(
                opt, Xb, np.ascontiguousarray(y[idx]), local[:n], batch_size, activation, out, cost_scale, swb
            )
            del Xb  # (freed before the next batch is made: one batch alive at a time)
            if failed >= 0:
                return total / m, k
            total += J * n
        return total / m, -1

    def _update_no_improvement_count(self, X_val, y_val, diverged=False, sw_val=None):
        if self.early_stopping:
            self.validation_scores_.append(np.nan if diverged else self._score(X_val, y_val, sw_val))
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last = self.validation_scores_[-1]
            if last < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last > self.best_validation_score_:
                self.best_validation_score_ = last
                self._best_params = self._params.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    # -------------------------------------------------------------- prediction

    def _forward(self, X, check_input=True) -> np.ndarray:
        """A[L] for X: the network's output, (n_samples, n_outputs)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=(np.float64, np.float32), reset=False)
        if sp.issparse(X):  # a chunk of rows densified at a time
            dtype = self._params.dtype
            with np.errstate(over="ignore"):  # a float32 network's overflow, refused just below
                X, rows = X.tocsr().astype(dtype, copy=False), _chunk_rows(X)
            if not np.isfinite(X.data).all():
                if _assume_finite():  # validate_data did not look
                    raise ValueError("X contains NaN or inf; remove or impute non-finite values first")
                raise ValueError(f"X overflows {dtype} (values too large for the network's dtype)")
            if X.shape[0] == 0:
                return np.empty((0, int(self._layout.sizes[-1])), self._params.dtype)
            return np.concatenate(
                [
                    self._forward(_dense_rows(X, slice(lo, lo + rows), self._params.dtype), False)
                    for lo in range(0, X.shape[0], rows)
                ]
            )
        # with check_input, validate_data has refused NaN and inf (unless scikit-learn's assume_finite
        # is set): only a float32 network's overflow is left to refuse.  Without it (a sparse X's
        # densified rows, which can overflow float32 on the way; the fit's own X, scored) all of it
        X = _val.finite_contiguous(np.asarray(X), "X", self._params.dtype, checked=check_input and not _assume_finite())
        # The kernels read X and write A[L] by the network's own sizes, not by n_features_in_ and
        # n_outputs_ (plain attributes a user or a pickle can change): hold X to the input layer.
        n_in, n_out = int(self._layout.sizes[0]), int(self._layout.sizes[-1])
        if X.ndim != 2 or X.shape[1] != n_in:
            raise ValueError(
                f"X has {X.shape[-1] if X.ndim else 0} features, but the fitted network's input layer "
                f"has {n_in} (n_features_in_ = {getattr(self, 'n_features_in_', None)})"
            )
        activation = get_activation(self.activation)
        out = get_output(_OUTPUT_CODES[self.out_activation_])
        if self.backend == "numpy":
            W, b = self._views()
            _, A = reference._forward(W, b, X, activation, out)
            return np.ascontiguousarray(A[-1])
        AL = np.empty((X.shape[0], n_out), self._params.dtype)
        _dispatch.predict(self._params, self._layout.sizes, X, activation, out, AL)
        return AL

    def __setstate__(self, state):
        # A model loaded from a read-only memory map (joblib) gets its own writable
        # buffer, so that predict compiles no read-only specialisation and a warm
        # start can train it.
        params = state.get("_params")
        if params is not None and (type(params) is not np.ndarray or not params.flags.writeable):
            state["_params"] = np.array(params)
        layout = state.get("_layout")
        if params is not None and (
            layout is None
            or state["_params"].shape != (layout.n_params,)
            or not state["_params"].flags.c_contiguous
            or state["_params"].dtype not in (np.dtype(np.float32), np.dtype(np.float64))
        ):  # the kernels walk the buffer by the layout's sizes: they must agree
            raise ValueError("_params: the pickled estimator's parameters do not match its layer sizes")
        super().__setstate__(state)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and y; returns ``self``.

        ``sample_weight`` (n_samples,), default None: scikit-learn's per-example weights.
        Each batch's cost and gradient are means weighted by them (w_i / Σ_batch w
        instead of 1/n), the L2 term is divided by Σ_batch w, lbfgs's objective likewise
        over all examples, and early stopping's validation score is weighted too.
        Validated as scikit-learn validates them (negative weights accepted); a batch
        whose weights sum to zero is refused (ValueError; scikit-learn raises
        ZeroDivisionError there).
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _check_solver(self):
        # (an invalid solver keeps partial_fit, whose parameter check then names it)
        if self.solver == "lbfgs":
            raise AttributeError(
                "partial_fit is only available for stochastic optimizers. %s is not stochastic." % self.solver
            )
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _assume_finite() -> bool:
    """scikit-learn's ``assume_finite`` setting: where it is set, ``validate_data`` does not refuse
    NaN and inf, so fastbp's own check (:func:`fastbp._validation.finite_contiguous`) must."""
    return bool(get_config()["assume_finite"])


def _dense_rows(X, rows, dtype):
    """Rows ``rows`` of the CSR matrix X as a C-contiguous dense array of ``dtype``."""
    return np.require(X[rows].toarray(), dtype=dtype, requirements=["C", "W"])


def _check_lbfgs_result(res, max_iter):
    """scikit-learn's ``_check_optimize_result("lbfgs", ...)``: the iteration count, and its
    ConvergenceWarning (the same text) where L-BFGS-B stopped for any reason but convergence."""
    n_iter = min(res.nit, max_iter)
    if res.status != 0:
        msg = f"lbfgs failed to converge after {n_iter} iteration(s) (status={res.status}):\n{res.message}\n"
        if n_iter == max_iter:
            msg += f"\nIncrease the number of iterations to improve the convergence (max_iter={max_iter})."
        msg += (
            "\nYou might also want to scale the data as shown in:\n"
            "    https://scikit-learn.org/stable/modules/preprocessing.html"
        )
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    return n_iter


def _indicator_rows(binarizer: LabelBinarizer, y) -> np.ndarray:
    """``binarizer.transform(y).astype(bool)`` (the targets the network trains on), computed directly
    where y is 1-D labels of the classes' own dtype, all among ``binarizer.classes_``, and the
    binarizer has two classes or more and its default labels: row i True in the column of y[i]'s
    class (one column, the second class's, for two classes).  Any other y goes through ``transform``
    itself: multilabel rows, a label outside the classes, labels that do not sort, and labels of
    another dtype than the classes (``label_binarize`` casts the classes to an integer y's dtype
    first, wrapping those that do not fit, and its result is kept as it is).

    scikit-learn's transform builds a sparse matrix and re-checks the target type first: on the
    digits' 1,797 labels 954 µs against 37 µs here, of a validation (``_validate_input``) of 2.0 ms,
    now 1.1 ms, on the Zen 3 of docs/performance-kernels.md: ``python -m timeit -s "from
    sklearn.datasets import load_digits; from sklearn.preprocessing import LabelBinarizer; from
    fastbp.estimators import _indicator_rows; X, y = load_digits(return_X_y=True); b =
    LabelBinarizer().fit(y)" "_indicator_rows(b, y)"`` (and ``"b.transform(y).astype(bool)"``)."""
    classes = binarizer.classes_
    kind = binarizer.y_type_
    plain = binarizer.neg_label == 0 and binarizer.pos_label == 1 and not binarizer.sparse_output
    direct = y.ndim == 1 and y.dtype == classes.dtype and kind in ("binary", "multiclass")
    if direct and plain and len(classes) >= 2:
        try:
            idx = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
            known = bool(np.all(classes[idx] == y))
        except TypeError:  # labels that do not sort (objects of mixed types): transform says what is wrong
            known = False
        if known and kind == "binary":
            return (idx == 1).reshape(-1, 1)
        if known:
            rows = np.zeros((y.shape[0], len(classes)), dtype=bool)
            rows[np.arange(y.shape[0]), idx] = True
            return rows
    return binarizer.transform(y).astype(bool)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastbp's kernels (scikit-learn's interface).

    Binary (one logistic output), multiclass (softmax) and multilabel (one
    logistic output per label, y a 0/1 indicator matrix) classification, trained
    on log-loss plus ``alpha``·½‖W‖²/n with ``solver="adam"`` or ``"sgd"`` (with
    ``sample_weight``: weighted means, ½‖W‖²/Σw).
    Parameters and attributes are scikit-learn's
    (:class:`sklearn.neural_network.MLPClassifier`), plus:

    dtype : None, numpy.float32 or numpy.float64, default=None
        The precision of the parameters and of every computation.  ``None``:
        float32 if X is float32, else float64.
    backend : {"numba", "numpy"}, default="numba"
        The compiled kernels, or fastbp's NumPy reference (slow; for checking).

    See ``docs/estimators.md`` for what differs from scikit-learn.
    """

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=True, dtype=(np.float64, np.float32), reset=reset
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous "
                        f"call to fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, _indicator_rows(self._label_binarizer, y)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y (continuing the fit); ``classes`` is required on the first call.
        ``sample_weight``: as in :meth:`fit` (scikit-learn's order of the arguments)."""
        checked = self._check_params()  # validated once, before anything is set
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                binarizer.fit(y)
            else:
                binarizer.fit(classes)
            self._label_binarizer, self.classes_ = binarizer, binarizer.classes_
            try:
                return self._fit(X, y, incremental=True, checked=checked, sample_weight=sample_weight)
            except Exception:
                # refused before training (_fit has put n_features_in_ etc. back): unfitted, as it was;
                # a failure while training (divergence) keeps the network and its classes
                if "_params" not in self.__dict__:
                    del self._label_binarizer, self.classes_
                raise
        elif (
            classes is not None
            and not self._label_binarizer.y_type_.startswith("multilabel")  # label columns, not classes
            and not np.array_equal(np.unique(classes), self.classes_)
        ):
            raise ValueError(
                f"classes={classes!r} is not the same as on the first call to partial_fit, was {self.classes_!r}"
            )
        return self._fit(X, y, incremental=True, checked=checked, sample_weight=sample_weight)

    def _score(self, X, y, sample_weight=None):
        return accuracy_score(y, self._predict(X, check_input=False), sample_weight=sample_weight)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def predict(self, X):
        """Predicted class labels (or a label indicator matrix for multilabel y)."""
        check_is_fitted(self)
        return self._predict(X)

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        check_is_fitted(self)
        y_pred = self._forward(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        y_prob = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastbp's kernels (scikit-learn's interface).

    ``loss="squared_error"``: identity output, squared error (scikit-learn's ``loss_`` is
    ½ · mean over samples *and* outputs; the gradient is that of ½ Σ over outputs,
    as in scikit-learn).  ``loss="poisson"``: exponential output (log link), half the
    Poisson deviance summed over outputs, y ≥ 0.  Single or multiple outputs.  Parameters
    and attributes are scikit-learn's (:class:`sklearn.neural_network.MLPRegressor`;
    ``loss`` is keyword-only here), plus ``dtype`` and ``backend`` as in :class:`MLPClassifier`.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        loss="squared_error",
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype=None,
        backend="numba",
    ):
        self.loss = loss
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            dtype=dtype,
            backend=backend,
        )

    def _check_params(self):
        if not isinstance(self.loss, str) or self.loss not in ("squared_error", "poisson"):
            raise InvalidParameterError(f"loss must be one of ['squared_error', 'poisson'], got {self.loss!r}")
        return super()._check_params()

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        return X, y

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y, continuing the fit (or starting it); ``sample_weight`` as in :meth:`fit`."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _score(self, X, y, sample_weight=None):
        y_pred = self._predict(X, check_input=False)
        if not np.isfinite(y_pred).all():
            return np.nan
        return r2_score(y, y_pred, sample_weight=sample_weight)

    def _predict(self, X, check_input=True):
        y_pred = self._forward(X, check_input)
        return y_pred.ravel() if self.n_outputs_ == 1 else y_pred

    def predict(self, X):
        """Predicted targets, (n_samples,) or (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"  # (the checks then draw y >= 0)
        return tags
