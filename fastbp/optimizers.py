"""Optimizers: momentum and Nesterov SGD, Adam, L2 regularisation, learning-rate schedules.

Each update is an ``@njit`` step kernel of :mod:`fastbp.steps` over the flat parameter
buffer of :mod:`fastbp.params` (``[W[1] | b[1] | W[2] | b[2] | …]``) with a NumPy twin of
the same arguments in :data:`IMPLEMENTATIONS`; the tests hold the pairs to agree, and
both to agree with scikit-learn's own ``SGDOptimizer`` and ``AdamOptimizer`` on the same
gradients.  The updates are scikit-learn's, written with a gradient g = dW (or db) and
learning rate α:

* SGD with momentum μ:   v ← μ v − α g;   W ← W + v
* Nesterov momentum:     v ← μ v − α g;   W ← W + μ v − α g
* Adam (β₁, β₂, ε):      t ← t + 1;  m ← β₁ m + (1−β₁) g;  s ← β₂ s + (1−β₂) g²;
                          α_t = α √(1−β₂ᵗ) / (1−β₁ᵗ);  W ← W − α_t m / (√s + ε)
* L2 (``alpha``), as scikit-learn's ``_backprop`` does it: over a batch of n
  examples, dW ← dW + (alpha / n) W (weights only, never the biases), and the
  loss gains ½ alpha ‖W‖² / n.

Every step kernel first checks, read-only, that the new parameters and optimizer
state would all be finite; only then does it write.  A step that would diverge is
never applied (the kernel returns ``False`` and nothing changes), which is what
keeps the divergence contract of the epochs.

The learning-rate schedules (``constant``, ``invscaling``, ``adaptive``) change α
once per epoch, as scikit-learn's ``SGDOptimizer.iteration_ends`` and
``trigger_stopping`` do; they are scalar arithmetic in Python, in
:meth:`SGD.iteration_ends` and :meth:`SGD.trigger_stopping`.

:func:`fastbp._plain.loops._train_epoch_opt` is one compiled epoch (forward, backward,
L2, optimizer step for every batch) in plain per-example scalar loops, with no Python
loop over batches and no allocation per batch: the readable reference kernel, with
:func:`train_epoch_reference` its NumPy twin.  What the estimators and
:meth:`fastbp.MLP.fit` run for the built-in activations is the fast version of the same
epoch, :func:`fastbp._fast.optimizer._batch_epoch_opt` (each batch's gradient built by
the fast mini-batch kernel's blocks, then these same L2 and step kernels), held to agree
with both; :func:`fastbp._dispatch.run_epoch_opt` chooses (custom activations and
``NUMBA_DISABLE_JIT=1`` run the plain one).

Optimizer objects (:class:`SGD`, :class:`Adam`) hold their state (velocities,
moments, step count, current learning rate, samples seen) and are what
:meth:`fastbp.MLP.fit` accepts as ``optimizer=``.  Pass the same object to several
``fit`` calls on the same network and training continues where it stopped (the
momentum, Adam's moments and step count, and the schedule carry over, as they
would in one longer run); pass a new object, or call :meth:`reset`, to start
afresh.  An object bound to one network refuses another of different shape or
dtype.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _validation, reference
from ._dispatch import run_epoch_opt
from .activations import get_activation
from .errors import DivergenceError
from .losses import example_costs_array, get_output
from .params import Layout, atomic_commit, offsets
from .steps import (
    BETA_1,
    BETA_2,
    EPSILON,
    IMPLEMENTATIONS,
    LR,
    MOMENTUM,
    NESTEROV,
    OPT_ADAM,
    OPT_SGD,
    _add_l2_ref,
    _optimizer_step_ref,
)

__all__ = ["SGD", "Adam", "Optimizer", "IMPLEMENTATIONS", "SCHEDULES", "train_epoch_reference"]

SCHEDULES = ("constant", "invscaling", "adaptive")


def train_epoch_reference(
    params, sizes, X, Y, order, batch_size, activation, out, kind, hyper, state, counter, alpha, cost_scale, sw=None
):
    """NumPy twin of :func:`fastbp._plain.loops._train_epoch_opt`: same arguments
    (``activation`` an :class:`fastbp.Activation` instead of its code; ``sw`` ``None``
    or the per-example weights), same ``(J, failed)`` result."""
    layout = Layout(sizes)
    w_off, b_off, _ = offsets.py_func(layout.sizes)
    W, b = layout.views(params)
    grad = np.empty_like(params)
    dW, db = layout.views(grad)
    m = order.shape[0]
    total = 0.0
    for k, start in enumerate(range(0, m, batch_size)):
        idx = order[start : start + batch_size]
        Xb, Yb = X[idx], Y[idx]
        swb = None if sw is None else sw[idx]
        with np.errstate(all="ignore"):
            Z, A = reference._forward(W, b, Xb, activation, out)
            batch_loss = cost_scale * reference._batch_cost(example_costs_array(Z[-1], Yb, out), swb)
        _, gW, gb = reference._backward(W, Xb, Yb, Z, A, activation, swb)
        for dst, src in zip(dW + db, gW + gb):
            dst[...] = src
        if alpha > 0.0:
            n = len(idx)
            D = n if swb is None else float(swb.astype(np.float64).sum())  # scikit-learn's sw_sum
            # dW += (alpha / Σw) W; loss += n · ½ alpha ‖W‖² / Σw (the batch counts n times in J)
            batch_loss += 0.5 * alpha * _add_l2_ref(grad, params, w_off, b_off, alpha / D) * (n / D)
        if not np.isfinite(batch_loss):
            return total / m, k
        with atomic_commit():  # parameters, moments and step count of one whole step, even under Ctrl-C
            stepped = _optimizer_step_ref(params, grad, state, counter, kind, hyper)
        if not stepped:
            return total / m, k
        total += batch_loss
    return total / m, -1


# ========================================================================= optimizers


def _check_real(value: Any, name: str, low: float, high: float | None = None, *, low_open=False, high_open=True):
    """A finite real number in [low, high) (bounds' openness as given); ValueError/TypeError naming it."""
    if type(value) is float:  # the common case (re-checked every epoch): no ABC instance check
        x = value
    else:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
        try:
            x = float(value)
        except (OverflowError, ValueError):  # 10**400
            raise ValueError(f"{name} must be a finite number, got an integer too large for a float") from None
    bad = not math.isfinite(x) or (x <= low if low_open else x < low)
    if high is not None:
        bad = bad or (x >= high if high_open else x > high)
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        rng = f"{lo}{low}, {high if high is not None else 'inf'}{hi}"
        raise ValueError(f"{name} must be a finite number in {rng}, got {value!r}")
    return x


class Optimizer:
    """What :class:`SGD` and :class:`Adam` share: state binding, the epoch runner, schedules.

    Attributes
    ----------
    learning_rate : float
        The current learning rate α (changes with the schedule).
    t_ : int
        Training examples seen so far (scikit-learn's ``t_``; drives ``invscaling``).
    state : ndarray or None
        (2, n_params) optimizer state in the network's dtype, ``None`` until bound.
    """

    kind: int = OPT_SGD
    learning_rate_schedule: str = "constant"

    def __init__(self, learning_rate_init: float, alpha: float):
        self.learning_rate_init = _check_real(learning_rate_init, "learning_rate_init", 0.0, low_open=True, high=None)
        self.alpha = _check_real(alpha, "alpha", 0.0, None)
        self.reset()

    def reset(self) -> None:
        """Forget all state: the next epoch starts as with a new optimizer."""
        self.learning_rate = float(self.learning_rate_init)
        self.t_ = 0
        self.state: np.ndarray | None = None
        self.counter = np.zeros(1, np.int64)
        self._sizes: tuple[int, ...] | None = None
        self._state_shape: tuple[int, int] | None = None  # (2, n_params), set by bind
        self._best_loss = np.inf
        self._no_improvement = 0

    def bind(self, sizes, dtype) -> None:
        """Allocate state for a network of ``sizes`` and ``dtype`` (kept if already bound to one such)."""
        sizes = tuple(int(s) for s in sizes)
        dtype = np.dtype(dtype)
        self._check_attributes()
        for name in ("learning_rate", "learning_rate_init", "epsilon"):  # what the kernels round to dtype
            value = getattr(self, name, None)
            if value is None:
                continue
            if dtype == np.float64:
                r = float(value)
            else:
                with np.errstate(over="ignore", under="ignore"):
                    r = float(dtype.type(value))
            if not math.isfinite(r) or r <= 0:
                problem = "overflows" if not math.isfinite(r) else "rounds to 0 in"
                raise ValueError(f"{name} = {value!r} {problem} the network's dtype {dtype}")
        if self.state is not None:
            if self._sizes == sizes and self.state.dtype == dtype:
                shape = getattr(self, "_state_shape", None) or (2, Layout(sizes).n_params)  # None: unpickled old
                if self.state.shape != shape:
                    raise ValueError(
                        f"state has shape {self.state.shape}, not {shape} for layer sizes "
                        f"{list(sizes)}; call optimizer.reset()"
                    )
                return
            held = (
                "no network (state assigned before it was bound)"
                if self._sizes is None
                else (f"a network of layer sizes {list(self._sizes)} ({self.state.dtype})")
            )
            raise ValueError(
                f"optimizer holds state for {held}; call optimizer.reset() or use a new optimizer for "
                f"{list(sizes)} ({dtype})"
            )
        self._sizes = sizes
        self._state_shape = (2, Layout(sizes).n_params)
        self.state = np.zeros(self._state_shape, dtype=dtype)

    def _check_attributes(self) -> None:
        """The attributes the kernels trust, re-checked before each epoch (a user may have assigned them):
        ``state`` a writeable C-contiguous float array or None, ``counter`` one int64, finite hyper-parameters."""
        state = self.__dict__.get("state")
        if state is not None and (
            type(state) is not np.ndarray
            or state.ndim != 2
            or state.dtype not in (np.dtype(np.float32), np.dtype(np.float64))
            or not state.flags.c_contiguous
            or not state.flags.writeable
        ):
            raise ValueError("state must be None or the optimizer's own (2, n_params) array; call optimizer.reset()")
        if state is not None and not np.isfinite(state).all():
            raise ValueError("state contains NaN or inf; call optimizer.reset()")
        counter = self.__dict__.get("counter")
        if (
            type(counter) is not np.ndarray
            or counter.shape != (1,)
            or counter.dtype != np.int64
            or not counter.flags.writeable
            or counter[0] < 0
        ):
            raise ValueError("counter must be the optimizer's own int64 array of one step count >= 0; call reset()")
        if self.kind != type(self).kind:
            raise ValueError(f"kind must be {type(self).kind} for {type(self).__name__}, got {self.kind!r}")
        _check_real(self.learning_rate, "learning_rate", 0.0, low_open=True)
        _check_real(self.learning_rate_init, "learning_rate_init", 0.0, low_open=True)
        _check_real(self.alpha, "alpha", 0.0)
        for name, (low, high, low_open, high_open) in self._HYPER.items():
            _check_real(getattr(self, name), name, low, high, low_open=low_open, high_open=high_open)

    #: Hyper-parameters a subclass adds: ``{name: (low, high, low_open, high_open)}``, re-checked each epoch.
    _HYPER: dict = {}

    def hyper(self) -> np.ndarray:
        """The float64 hyper-parameter array the kernels read (slots LR, MOMENTUM, …)."""
        h = np.zeros(6)
        h[LR] = self.learning_rate
        return h

    def _train_epoch(
        self, params, sizes, X, Y, order, batch_size, activation, out, backend="numba", cost_scale=1.0, sw=None
    ):
        """Run one epoch on the flat buffer ``params`` in place; returns ``(J, failed)``.

        Private: the inputs must already be validated (C-contiguous, the buffer's dtype, ``order``
        inside X; ``sw`` ``None`` or one weight per row of X, the buffer's dtype), as
        :meth:`fastbp.MLP.fit` and the estimators validate them; the kernel indexes X with
        ``order`` unchecked.  From Python, train through those (or
        :func:`fastbp.kernels.train_epoch`, which checks).  See
        :func:`fastbp._plain.loops._train_epoch_opt` for the meaning of the result.
        ``backend="numba"`` runs the kernel :func:`fastbp._dispatch.run_epoch_opt` chooses
        (the fast one for a built-in activation, else the plain one compiled for a custom g).
        """
        sizes_arr = np.asarray(sizes, dtype=np.int64)
        self.bind(sizes_arr, params.dtype)
        args = (X, Y, order, int(batch_size))
        tail = (self.kind, self.hyper(), self.state, self.counter, float(self.alpha), float(cost_scale))
        if backend == "numpy":
            if sw is not None:
                _validation.check_batch_weights(sw, order, int(batch_size))
            J, failed = train_epoch_reference(params, sizes_arr, *args, activation, out, *tail, sw)
        else:
            J, failed = run_epoch_opt(params, sizes_arr, *args, activation, out, *tail, sw=sw)
        return float(J), int(failed)

    def _runner(self, params, sizes, backend="numba") -> "_EpochRunner":
        """An object with ``train_epoch`` shaped like :func:`fastbp.kernels.train_epoch`,
        running this optimizer's epochs on the flat buffer ``params`` (what
        :meth:`fastbp.MLP.fit` uses, on inputs it has validated: private, as
        :meth:`_train_epoch`).  Binds the state now, so a mismatch raises here."""
        self.bind(sizes, params.dtype)
        return _EpochRunner(self, params, sizes, backend)

    # ---------------------------------------------------------------- schedules

    def iteration_ends(self, time_step: int) -> None:
        """End of an epoch after ``time_step`` examples in all (scikit-learn's hook)."""

    def trigger_stopping(self, msg: str = "", verbose: bool = False) -> bool:
        """Training stopped improving: ``True`` to stop (scikit-learn's hook)."""
        if verbose:
            print(msg + " Stopping.")
        return True

    def epoch_end(self, loss: float, n_examples: int, tol: float = 1e-4, n_iter_no_change: int = 10) -> None:
        """Bookkeeping after an epoch of :meth:`fastbp.MLP.fit`: samples seen, schedule.

        ``adaptive`` divides α by 5 after more than ``n_iter_no_change`` epochs whose
        loss failed to fall by ``tol`` below the best so far (scikit-learn's rule);
        :meth:`fastbp.MLP.fit` runs its fixed number of epochs regardless.
        """
        self.t_ += int(n_examples)
        if loss > self._best_loss - tol:
            self._no_improvement += 1
        else:
            self._no_improvement = 0
        self._best_loss = min(self._best_loss, loss)
        self.iteration_ends(self.t_)
        if self._no_improvement > n_iter_no_change:
            self.trigger_stopping()  # adaptive: α /= 5 (until α ≤ 1e-6); fit runs its epochs regardless
            self._no_improvement = 0


class _EpochRunner:
    """``train_epoch`` with the signature of :func:`fastbp.kernels.train_epoch`, for an optimizer.

    ``weights``/``biases`` must be views of ``params`` (an MLP's own); ``learning_rate``
    is ignored (the optimizer has its own).  Raises :class:`fastbp.DivergenceError`
    like the kernels' wrapper, and calls :meth:`Optimizer.epoch_end` after each epoch.
    """

    def __init__(self, optimizer: Optimizer, params: np.ndarray, sizes, backend: str):
        self.optimizer, self.params, self.sizes, self.backend = optimizer, params, sizes, backend

    def train_epoch(
        self, weights, biases, X, Y, learning_rate, batch_size, order, activation, output, sample_weight=None
    ) -> float:
        order = np.ascontiguousarray(order, dtype=np.int64)
        J, failed = self.optimizer._train_epoch(
            self.params,
            self.sizes,
            X,
            Y,
            order,
            batch_size,
            get_activation(activation),
            get_output(output),
            self.backend,
            sw=sample_weight,
        )
        if failed >= 0:
            raise DivergenceError(failed)
        self.optimizer.epoch_end(J, X.shape[0])
        return J


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum, L2 and a schedule.

    Parameters
    ----------
    learning_rate_init
        α at the start (> 0).
    momentum
        μ in [0, 1]; 0 (default) is plain gradient descent.
    nesterov
        Use Nesterov's momentum (scikit-learn's ``nesterovs_momentum``).
    learning_rate
        Schedule: ``"constant"``; ``"invscaling"``, α = α₀ / (t + 1)^power_t after
        each epoch, t the examples seen; ``"adaptive"``, α / 5 when the loss stops
        improving (see :meth:`trigger_stopping` and :meth:`Optimizer.epoch_end`).
    power_t
        Exponent of ``invscaling`` (≥ 0).
    alpha
        L2 strength (≥ 0), scikit-learn's ``alpha``.
    """

    kind = OPT_SGD

    def __init__(
        self,
        learning_rate_init: float = 0.1,
        momentum: float = 0.0,
        nesterov: bool = False,
        learning_rate: str = "constant",
        power_t: float = 0.5,
        alpha: float = 0.0,
    ):
        self.momentum = _check_real(momentum, "momentum", 0.0, 1.0, high_open=False)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        if not isinstance(learning_rate, str) or learning_rate not in SCHEDULES:
            raise ValueError(f"learning_rate must be one of {list(SCHEDULES)}, got {learning_rate!r}")
        self.learning_rate_schedule = learning_rate
        self.power_t = _check_real(power_t, "power_t", 0.0, None)
        super().__init__(learning_rate_init, alpha)

    def __repr__(self) -> str:
        return (
            f"SGD(learning_rate_init={self.learning_rate_init}, momentum={self.momentum}, "
            f"nesterov={self.nesterov}, learning_rate={self.learning_rate_schedule!r}, "
            f"power_t={self.power_t}, alpha={self.alpha})"
        )

    _HYPER = {"momentum": (0.0, 1.0, False, False), "power_t": (0.0, None, False, True)}

    def hyper(self) -> np.ndarray:
        h = super().hyper()
        h[MOMENTUM] = self.momentum
        h[NESTEROV] = 1.0 if self.nesterov else 0.0
        return h

    def iteration_ends(self, time_step: int) -> None:
        """``invscaling``: α = α₀ / (time_step + 1)^power_t (scikit-learn's SGDOptimizer)."""
        if self.learning_rate_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg: str = "", verbose: bool = False) -> bool:
        """``adaptive``: divide α by 5 and go on, or stop once α ≤ 1e-6; others stop."""
        if self.learning_rate_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class Adam(Optimizer):
    """Adam (Kingma & Ba), with scikit-learn's defaults and bias correction, plus L2.

    Parameters
    ----------
    learning_rate_init
        α (> 0), default 0.001.
    beta_1, beta_2
        Decay rates of the first and second moment estimates, in [0, 1).
    epsilon
        ε > 0 added to √s.
    alpha
        L2 strength (≥ 0).

    ``counter[0]`` is the step count t (one per batch), kept across epochs and
    ``fit`` calls with the moments.
    """

    kind = OPT_ADAM

    def __init__(
        self,
        learning_rate_init: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        alpha: float = 0.0,
    ):
        self.beta_1 = _check_real(beta_1, "beta_1", 0.0, 1.0)
        self.beta_2 = _check_real(beta_2, "beta_2", 0.0, 1.0)
        self.epsilon = _check_real(epsilon, "epsilon", 0.0, None, low_open=True)
        super().__init__(learning_rate_init, alpha)

    def __repr__(self) -> str:
        return (
            f"Adam(learning_rate_init={self.learning_rate_init}, beta_1={self.beta_1}, "
            f"beta_2={self.beta_2}, epsilon={self.epsilon}, alpha={self.alpha})"
        )

    _HYPER = {"beta_1": (0.0, 1.0, False, True), "beta_2": (0.0, 1.0, False, True), "epsilon": (0.0, None, True, True)}

    @property
    def t(self) -> int:
        """Adam's step count (batches stepped so far)."""
        return int(self.counter[0])

    def hyper(self) -> np.ndarray:
        h = super().hyper()
        h[BETA_1] = self.beta_1
        h[BETA_2] = self.beta_2
        h[EPSILON] = self.epsilon
        return h
