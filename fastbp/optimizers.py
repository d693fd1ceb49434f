"""Optimizers: momentum and Nesterov SGD, Adam, L2 regularisation, learning-rate schedules.

Each update is an ``@njit`` kernel over the flat parameter buffer of
:mod:`fastbp.params` (``[W[1] | b[1] | W[2] | b[2] | …]``) with a NumPy twin of the
same name and arguments in :data:`IMPLEMENTATIONS`; the tests hold the pairs to
agree, and both to agree with scikit-learn's own ``SGDOptimizer`` and
``AdamOptimizer`` on the same gradients.  The updates are scikit-learn's, written
with a gradient g = dW (or db) and learning rate α:

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
keeps the divergence contract of :func:`fastbp.kernels._train_epoch`.

The learning-rate schedules (``constant``, ``invscaling``, ``adaptive``) change α
once per epoch, as scikit-learn's ``SGDOptimizer.iteration_ends`` and
``trigger_stopping`` do; they are scalar arithmetic in Python, in
:meth:`SGD.iteration_ends` and :meth:`SGD.trigger_stopping`.

:func:`_train_epoch_opt` is one compiled epoch (forward, backward, L2, optimizer
step for every batch) in plain per-example scalar loops, with no Python loop over
batches and no allocation per batch: the readable reference kernel, with
:func:`train_epoch_reference` its NumPy twin.  What the estimators and
:meth:`fastbp.MLP.fit` run for the built-in activations is the fast version of the
same epoch, :func:`fastbp.fast_optimizers.train_epoch_opt` (each batch's gradient
built by the fast mini-batch kernel's blocks, then these same L2 and step kernels),
held to agree with both; custom activations and ``NUMBA_DISABLE_JIT=1`` run this one.

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

import numbers
import weakref
from typing import Any

import numpy as np
from numba.core import config as numba_config

from ._jit import jit, recompile_with
from .kernels import _mean_gradient, kernels_for
from .losses import example_costs_array
from .params import Layout, offsets
from .vmath import jit_vec

__all__ = ["SGD", "Adam", "Optimizer", "IMPLEMENTATIONS", "train_epoch_reference"]

#: Optimizer codes the epoch kernel branches on.
SGD_KIND, ADAM_KIND = 0, 1

#: Slots of the ``hyper`` array handed to the epoch kernel (float64).
LR, MOMENTUM, NESTEROV, BETA_1, BETA_2, EPSILON = range(6)

SCHEDULES = ("constant", "invscaling", "adaptive")

# ============================================================================ kernels
#
# The step kernels are compiled with the NumPy error model (:func:`fastbp.vmath.jit_vec`):
# Python's ZeroDivisionError branch on Adam's division stops LLVM vectorising the loop
# (measured 4-8x slower on 100 k parameters).  Adam's divisor √s + ε is never 0 (ε > 0).

@jit_vec
def _sgd_step(params, grad, velocity, lr, momentum, nesterov):
    """One SGD step with (Nesterov) momentum, in place; ``False`` (and no change) if not finite.

    v ← μ v − α g, then W ← W + v, or W ← W + μ v − α g with ``nesterov``.
    With μ = 0 this is plain gradient descent W ← W − α g.
    """
    T = params.dtype.type
    lr = T(lr)
    mu = T(momentum)
    zero = T(0)
    check = zero
    for i in range(params.shape[0]):
        v = mu * velocity[i] - lr * grad[i]
        u = mu * v - lr * grad[i] if nesterov else v
        check += (params[i] + u) * zero + v * zero  # NaN if anything is not finite
    if check != zero:
        return False
    for i in range(params.shape[0]):
        v = mu * velocity[i] - lr * grad[i]
        velocity[i] = v
        params[i] += mu * v - lr * grad[i] if nesterov else v
    return True

@jit_vec
def _adam_step(params, grad, m, s, t, lr, beta_1, beta_2, epsilon):
    """Adam step number ``t`` (≥ 1), in place; ``False`` (and no change) if not finite.

    m ← β₁ m + (1−β₁) g,  s ← β₂ s + (1−β₂) g²,  W ← W − α_t m / (√s + ε)
    with α_t = α √(1−β₂ᵗ) / (1−β₁ᵗ) computed in float64, as scikit-learn does.
    """
    T = params.dtype.type
    lr_t = T(lr * np.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t))
    b1 = T(beta_1)
    b2 = T(beta_2)
    eps = T(epsilon)
    one = T(1)
    zero = T(0)
    check = zero
    for i in range(params.shape[0]):
        g = grad[i]
        mi = b1 * m[i] + (one - b1) * g
        si = b2 * s[i] + (one - b2) * g * g
        check += (params[i] - lr_t * mi / (np.sqrt(si) + eps)) * zero + mi * zero + si * zero
    if check != zero:
        return False
    for i in range(params.shape[0]):
        g = grad[i]
        mi = b1 * m[i] + (one - b1) * g
        si = b2 * s[i] + (one - b2) * g * g
        m[i] = mi
        s[i] = si
        params[i] -= lr_t * mi / (np.sqrt(si) + eps)
    return True

@jit_vec
def _add_l2(grad, params, w_off, b_off, scale):
    """dW[l] += scale · W[l] for every layer (biases untouched); returns ‖W‖² (float64).

    W[l] occupies ``params[w_off[l]:b_off[l]]`` (:func:`fastbp.params.offsets`).
    With ``scale = alpha / n`` for a batch of n examples this is scikit-learn's L2
    term; the returned sum of squares gives the loss term ½ alpha ‖W‖² / n.
    """
    T = params.dtype.type
    c = T(scale)
    total = 0.0
    for l in range(w_off.shape[0]):
        # views indexed by their own loop variable: params[i] with i from w_off[l] gets
        # Numba's negative-index wraparound, which stops LLVM vectorising the loop
        W = params[w_off[l] : b_off[l]]
        G = grad[w_off[l] : b_off[l]]
        for k in range(W.shape[0]):
            w = W[k]
            G[k] += c * w
            total += np.float64(w) * np.float64(w)
    return total

@jit_vec
def _optimizer_step(params, grad, state, counter, kind, hyper):
    """Dispatch one step of optimizer ``kind`` with the hyper-parameters in ``hyper``.

    ``state`` is (2, n_params): the velocity (SGD) or the moments m, s (Adam);
    ``counter[0]`` is Adam's step count t, advanced only when the step is applied.
    """
    if kind == ADAM_KIND:
        t = counter[0] + 1
        ok = _adam_step(
            params, grad, state[0], state[1], t, hyper[LR], hyper[BETA_1], hyper[BETA_2], hyper[EPSILON]
        )
        if ok:
            counter[0] = t
        return ok
    return _sgd_step(params, grad, state[0], hyper[LR], hyper[MOMENTUM], hyper[NESTEROV] != 0.0)

@jit
def _train_epoch_opt(params, sizes, X, Y, order, batch_size, act, out, kind, hyper, state, counter, alpha, cost_scale):
    """One epoch over the examples in ``order`` with an optimizer and L2; no allocation per batch.

    For each batch of n examples (consecutive runs of ``batch_size`` entries of
    ``order``, the last one may be short): the mean gradient of the per-example
    costs, plus (alpha / n) W on the weights, then one optimizer step.

    Returns ``(J, failed)`` like :func:`fastbp.kernels._train_epoch`.  J is
    scikit-learn's epoch loss: Σ_batches n · (cost_scale · mean cost + ½ alpha ‖W‖² / n),
    divided by the number of examples, each batch measured before its update
    (``cost_scale`` = 1 / n_outputs turns fastbp's ½ Σ (A−Y)² into scikit-learn's
    squared loss, a mean over outputs).  ``failed`` is −1, or the index of the
    first batch whose loss, new parameters or new optimizer state would not be
    finite; that step is not applied and the epoch stops there.
    """
    w_off, b_off, u_off = offsets(sizes)
    n_units = u_off[-1] + sizes[-1]
    z = np.empty(n_units, params.dtype)
    a = np.empty(n_units, params.dtype)
    dz = np.empty(n_units, params.dtype)
    grad = np.empty_like(params)
    m = order.shape[0]
    total = 0.0
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        n = stop - start
        batch_cost = _mean_gradient(
            params, sizes, w_off, b_off, u_off, X, Y, order, start, stop, z, a, dz, grad, act, out
        )
        batch_loss = cost_scale * batch_cost
        if alpha > 0.0:
            batch_loss += 0.5 * alpha * _add_l2(grad, params, w_off, b_off, alpha / n)
        if not np.isfinite(batch_loss):
            return total / m, start // batch_size
        if not _optimizer_step(params, grad, state, counter, kind, hyper):
            return total / m, start // batch_size
        total += batch_loss
    return total / m, -1

_custom_epochs: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()

def epoch_kernel_for(activation):
    """:func:`_train_epoch_opt` for ``activation``: the cached one, or a clone for a custom g.

    A custom activation gets the epoch kernel re-compiled against the forward and
    backward kernels :func:`fastbp.kernels.kernels_for` built for it (the user's g
    inlined), once per activation and process.
    """
    if not activation.is_custom:
        return _train_epoch_opt
    if activation in _custom_epochs:
        return _custom_epochs[activation]
    kset = kernels_for(activation)
    kernel = recompile_with(
        {"_train_epoch_opt": _train_epoch_opt},
        globals(),
        {"_mean_gradient": kset._mean_gradient},
    )["_train_epoch_opt"]
    _custom_epochs[activation] = kernel
    return kernel

# ========================================================================= references

def _sgd_step_ref(params, grad, velocity, lr, momentum, nesterov):
    """NumPy twin of :func:`_sgd_step` (same arguments, same in-place contract)."""
    T = params.dtype.type
    lr, mu = T(lr), T(momentum)
    with np.errstate(all="ignore"):  # non-finite results are reported, not warned about
        v = mu * velocity - lr * grad
        u = mu * v - lr * grad if nesterov else v
        new = params + u
    if not (np.isfinite(new).all() and np.isfinite(v).all()):
        return False
    velocity[...] = v
    params[...] = new
    return True

def _adam_step_ref(params, grad, m, s, t, lr, beta_1, beta_2, epsilon):
    """NumPy twin of :func:`_adam_step`."""
    T = params.dtype.type
    lr_t = T(lr * np.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t))
    b1, b2 = T(beta_1), T(beta_2)
    with np.errstate(all="ignore"):
        mi = b1 * m + (T(1) - b1) * grad
        si = b2 * s + (T(1) - b2) * grad * grad
        new = params - lr_t * mi / (np.sqrt(si) + T(epsilon))
    if not (np.isfinite(new).all() and np.isfinite(mi).all() and np.isfinite(si).all()):
        return False
    m[...] = mi
    s[...] = si
    params[...] = new
    return True

def _add_l2_ref(grad, params, w_off, b_off, scale):
    """NumPy twin of :func:`_add_l2`."""
    total = 0.0
    for lo, hi in zip(w_off, b_off):
        w = params[lo:hi]
        grad[lo:hi] += params.dtype.type(scale) * w
        total += float(np.dot(w.astype(np.float64), w.astype(np.float64)))
    return total

def _optimizer_step_ref(params, grad, state, counter, kind, hyper):
    """NumPy twin of :func:`_optimizer_step`."""
    if kind == ADAM_KIND:
        t = counter[0] + 1
        ok = _adam_step_ref(
            params, grad, state[0], state[1], t, hyper[LR], hyper[BETA_1], hyper[BETA_2], hyper[EPSILON]
        )
        if ok:
            counter[0] = t
        return ok
    return _sgd_step_ref(params, grad, state[0], hyper[LR], hyper[MOMENTUM], hyper[NESTEROV] != 0.0)

def train_epoch_reference(
    params, sizes, X, Y, order, batch_size, activation, out, kind, hyper, state, counter, alpha, cost_scale
):
    """NumPy twin of :func:`_train_epoch_opt`: same arguments (``activation`` an
    :class:`fastbp.Activation` instead of its code), same ``(J, failed)`` result."""
    from .reference import _backward, _forward

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
        with np.errstate(all="ignore"):
            Z, A = _forward(W, b, Xb, activation, out)
            batch_loss = cost_scale * float(example_costs_array(Z[-1], Yb, out).sum())
        _, gW, gb = _backward(W, Xb, Yb, Z, A, activation)
        for dst, src in zip(dW + db, gW + gb):
            dst[...] = src
        if alpha > 0.0:
            batch_loss += 0.5 * alpha * _add_l2_ref(grad, params, w_off, b_off, alpha / len(idx))
        if not np.isfinite(batch_loss):
            return total / m, k
        if not _optimizer_step_ref(params, grad, state, counter, kind, hyper):
            return total / m, k
        total += batch_loss
    return total / m, -1

#: ``{name: (kernel, reference)}``: same names, same arguments, same in-place contract.
IMPLEMENTATIONS = {
    "sgd_step": (_sgd_step, _sgd_step_ref),
    "adam_step": (_adam_step, _adam_step_ref),
    "add_l2": (_add_l2, _add_l2_ref),
    "optimizer_step": (_optimizer_step, _optimizer_step_ref),
}

# ========================================================================= optimizers

def _check_real(value: Any, name: str, low: float, high: float | None = None, *, low_open=False, high_open=True):
    """A finite real number in [low, high) (bounds' openness as given); ValueError/TypeError naming it."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    x = float(value)
    bad = not np.isfinite(x) or (x <= low if low_open else x < low)
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

    kind: int = SGD_KIND
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
        self._best_loss = np.inf
        self._no_improvement = 0

    def bind(self, sizes, dtype) -> None:
        """Allocate state for a network of ``sizes`` and ``dtype`` (kept if already bound to one such)."""
        sizes = tuple(int(s) for s in sizes)
        dtype = np.dtype(dtype)
        if self.state is not None:
            if self._sizes == sizes and self.state.dtype == dtype:
                return
            raise ValueError(
                f"optimizer holds state for a network of layer sizes {list(self._sizes)} "
                f"({self.state.dtype}); call optimizer.reset() or use a new optimizer for "
                f"{list(sizes)} ({dtype})"
            )
        self._sizes = sizes
        self.state = np.zeros((2, Layout(sizes).n_params), dtype=dtype)

    def hyper(self) -> np.ndarray:
        """The float64 hyper-parameter array the kernels read (slots LR, MOMENTUM, …)."""
        h = np.zeros(6)
        h[LR] = self.learning_rate
        return h

    def train_epoch(self, params, sizes, X, Y, order, batch_size, activation, out, backend="numba", cost_scale=1.0):
        """Run one epoch on the flat buffer ``params`` in place; returns ``(J, failed)``.

        Inputs must already be validated (C-contiguous, the buffer's dtype); see
        :func:`_train_epoch_opt` for the meaning of the result.  ``backend="numba"``
        runs :func:`fastbp.fast_optimizers.train_epoch_opt` for a built-in activation,
        else the plain :func:`_train_epoch_opt` (compiled for a custom activation).
        """
        sizes_arr = np.asarray(sizes, dtype=np.int64)
        self.bind(sizes_arr, params.dtype)
        args = (X, Y, order, int(batch_size))
        tail = (self.kind, self.hyper(), self.state, self.counter, float(self.alpha), float(cost_scale))
        if backend == "numpy":
            J, failed = train_epoch_reference(params, sizes_arr, *args, activation, out, *tail)
        elif activation.is_custom or numba_config.DISABLE_JIT:
            # the plain kernel (compiled for a custom g); the fast one uses Numba
            # intrinsics that have no pure-Python form
            kernel = epoch_kernel_for(activation)
            J, failed = kernel(params, sizes_arr, *args, activation.code, out, *tail)
        else:
            from .fast_optimizers import train_epoch_opt

            J, failed = train_epoch_opt(params, sizes_arr, *args, activation.code, out, *tail)
        return float(J), int(failed)

    def runner(self, params, sizes, backend="numba") -> "_EpochRunner":
        """An object with ``train_epoch`` shaped like :func:`fastbp.kernels.train_epoch`,
        running this optimizer's epochs on the flat buffer ``params`` (what
        :meth:`fastbp.MLP.fit` uses).  Binds the state now, so a mismatch raises here."""
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

    def train_epoch(self, weights, biases, X, Y, learning_rate, batch_size, order, activation, output) -> float:
        from .activations import get_activation
        from .errors import DivergenceError
        from .losses import get_output

        order = np.ascontiguousarray(order, dtype=np.int64)
        J, failed = self.optimizer.train_epoch(
            self.params, self.sizes, X, Y, order, batch_size, get_activation(activation), get_output(output),
            self.backend,
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

    kind = SGD_KIND

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

    kind = ADAM_KIND

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
