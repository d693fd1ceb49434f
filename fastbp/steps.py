"""Optimizer step kernels and their NumPy twins: the one home of every update rule.

Each step is an ``@njit`` kernel over the flat parameter buffer of
:mod:`fastbp.params` (``[W[1] | b[1] | W[2] | b[2] | …]``) with a NumPy twin of the
same arguments in :data:`IMPLEMENTATIONS`; the tests hold the pairs to agree, and
both to agree with scikit-learn's own ``SGDOptimizer`` and ``AdamOptimizer``.
The updates are scikit-learn's, written with a gradient g = dW (or db) and learning
rate α:

* plain gradient descent (the derivation's): W ← W − α g (:func:`_sgd_update`, with
  :func:`_step_is_finite` its read-only divergence check)
* SGD with momentum μ:   v ← μ v − α g;   W ← W + v
* Nesterov momentum:     v ← μ v − α g;   W ← W + μ v − α g
* Adam (β₁, β₂, ε):      t ← t + 1;  m ← β₁ m + (1−β₁) g;  s ← β₂ s + (1−β₂) g²;
                          α_t = α √(1−β₂ᵗ) / (1−β₁ᵗ);  W ← W − α_t m / (√s + ε)
* L2 (``alpha``), as scikit-learn's ``_backprop`` does it: over a batch of n
  examples, dW ← dW + (alpha / n) W (weights only, never the biases), and the
  loss gains ½ alpha ‖W‖² / n.

Every step kernel first checks, read-only, that the new parameters and optimizer
state would all be finite; only then does it write.  A step that would diverge is
never applied (the kernel returns ``False`` and nothing changes).

The epochs (plain and fast) never ask which optimizer they run: they call
:func:`_optimizer_step` with an ``OPT_*`` code and the ``hyper`` array, as
scikit-learn's epochs call ``_update_params``.  To add an optimizer: a code, its step
kernel and NumPy twin here, a branch in :func:`_optimizer_step` (and its twin), and its
class in :mod:`fastbp.optimizers`.
"""

from __future__ import annotations

import numpy as np

from ._jit import checked_from_python, jit, jit_exact, jit_inline, jit_inner, jit_vec

__all__ = ["IMPLEMENTATIONS", "OPT_SGD", "OPT_ADAM"]

#: Optimizer codes the epoch kernels hand to :func:`_optimizer_step`.
OPT_SGD, OPT_ADAM = 0, 1

#: Slots of the ``hyper`` array handed to the epoch kernel (float64).
LR, MOMENTUM, NESTEROV, BETA_1, BETA_2, EPSILON = range(6)


# ====================================================== checks of the kernels' calls from Python
# The step kernels are public through :data:`IMPLEMENTATIONS` (kernel beside NumPy twin): a call
# from Python first checks what would take their loops outside an array (each loops over the
# parameters' length and indexes the other arrays with it); the epoch kernels' compiled calls,
# which size every array themselves, are not checked (:func:`fastbp._jit.checked_from_python`).


def _flat_arrays(**arrays) -> int:
    """Every array 1-D, and all of the first one's length; returns that length."""
    n = None
    first = None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{name} must be a 1-D NumPy array, got {type(value).__name__}")
        if value.ndim != 1:
            raise ValueError(f"{name} must be a 1-D array, got shape {value.shape}")
        if n is None:
            n, first = value.shape[0], name
        elif value.shape[0] != n:
            raise ValueError(f"{name} must have {first}'s length {n}, got {value.shape[0]}")
    return n


def _check_update(p, g, lr):
    _flat_arrays(p=p, g=g)


def _check_sgd_step(params, grad, velocity, lr, momentum, nesterov):
    _flat_arrays(params=params, grad=grad, velocity=velocity)


def _check_adam_step(params, grad, m, s, t, lr, beta_1, beta_2, epsilon):
    _flat_arrays(params=params, grad=grad, m=m, s=s)


def _check_add_l2(grad, params, w_off, b_off, scale):
    _flat_arrays(grad=grad, params=params)
    _flat_arrays(w_off=w_off, b_off=b_off)
    for name, offsets in (("w_off", w_off), ("b_off", b_off)):
        if offsets.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer offsets, got dtype {offsets.dtype}")


def _check_optimizer_step(params, grad, state, counter, kind, hyper):
    n = _flat_arrays(params=params, grad=grad)
    if not isinstance(state, np.ndarray) or state.ndim != 2 or state.shape[0] < 2 or state.shape[1] != n:
        shape = state.shape if isinstance(state, np.ndarray) else type(state).__name__
        raise ValueError(f"state must be a (2, {n}) array (velocity, or Adam's m and s), got {shape}")
    for name, value, least in (("counter", counter, 1), ("hyper", hyper, EPSILON + 1)):
        if not isinstance(value, np.ndarray) or value.ndim != 1 or value.shape[0] < least:
            raise ValueError(f"{name} must be a 1-D array of at least {least} entries")


# ================================================================ gradient descent


@checked_from_python(_check_update)
@jit
def _sgd_update(p, g, lr):
    """W −= α dW (and b −= α db): one step of gradient descent on a flat array."""
    for i in range(p.shape[0]):
        p[i] -= lr * g[i]


@checked_from_python(_check_update)
@jit
def _step_is_finite(p, g, lr):
    """Whether every W − α dW would be finite (read-only: nothing changes if not).

    ``x * 0`` is 0 for a finite x and NaN for ±inf or NaN, so one sum tells.
    """
    s = p.dtype.type(0)
    for i in range(p.shape[0]):
        s += (p[i] - lr * g[i]) * p.dtype.type(0)
    return s == 0


@jit_exact
def _gd_apply(P, G, lr):
    """W −= α dW over a range, without fastmath (the split column kernels' update: the same
    bits on every path, whichever thread runs it; :func:`fastbp._jit.jit_exact`)."""
    for i in range(P.shape[0]):
        P[i] -= lr * G[i]


def _sgd_update_ref(p, g, lr):
    """NumPy twin of :func:`_sgd_update`."""
    p -= p.dtype.type(lr) * g


def _step_is_finite_ref(p, g, lr):
    """NumPy twin of :func:`_step_is_finite`."""
    with np.errstate(all="ignore"):
        return bool(np.isfinite(p - p.dtype.type(lr) * g).all())


# ========================================================= optimizers with state
#
# The step kernels are compiled with the NumPy error model (:func:`fastbp._jit.jit_vec`):
# Python's ZeroDivisionError branch on Adam's division stops LLVM vectorising the loop
# (measured 4-8x slower on 100 k parameters).  Adam's divisor √s + ε is never 0 (ε > 0).


# The steps below are built from pieces over one range of the parameters (views ``P``, ``G``
# and the state's): a check pass, read-only, and an apply pass, each compiled once on its own,
# so every caller runs the same machine code.  The whole-buffer kernels run them over
# everything; the split column kernels (:mod:`fastbp._fast.columns`) run them over the two
# halves of the buffer, on two threads or one, and combine the checks' sums.  The apply
# passes are :func:`fastbp._jit.jit_exact` (no fastmath): every value they write is
# elementwise and has the same bits on every path LLVM compiles (with fastmath, a kernel that
# compiled them and one that loaded them from Numba's cache gave Nesterov steps 1 ulp apart).
# The check passes only read, and only decide whether a step is applied.


@jit_inner
def _sgd_check(P, G, V, lr, mu, nesterov):
    """Σ of (W + u)·0 + v·0 over a range: 0, or NaN if a new W or v would not be finite."""
    zero = P.dtype.type(0)
    check = zero
    for i in range(P.shape[0]):
        v = mu * V[i] - lr * G[i]
        u = mu * v - lr * G[i] if nesterov else v
        check += (P[i] + u) * zero + v * zero  # NaN if anything is not finite
    return check


@jit_exact
def _sgd_apply(P, G, V, lr, mu, nesterov):
    """v ← μ v − α g, then W ← W + v (or W + μ v − α g, Nesterov) over a range."""
    for i in range(P.shape[0]):
        v = mu * V[i] - lr * G[i]
        V[i] = v
        P[i] += mu * v - lr * G[i] if nesterov else v


@checked_from_python(_check_sgd_step)
@jit_vec
def _sgd_step(params, grad, velocity, lr, momentum, nesterov):
    """One SGD step with (Nesterov) momentum, in place; ``False`` (and no change) if not finite.

    v ← μ v − α g, then W ← W + v, or W ← W + μ v − α g with ``nesterov``.
    With μ = 0 this is plain gradient descent W ← W − α g.
    """
    T = params.dtype.type
    lr = T(lr)
    mu = T(momentum)
    if _sgd_check(params, grad, velocity, lr, mu, nesterov) != T(0):
        return False
    _sgd_apply(params, grad, velocity, lr, mu, nesterov)
    return True


@jit_inline
def _adam_constants(dtype, t, lr, beta_1, beta_2, epsilon):
    """``(α_t, β₁, β₂, 1 − β₁, 1 − β₂, ε)`` in the parameters' dtype for step ``t``.

    α_t = α √(1−β₂ᵗ) / (1−β₁ᵗ) is computed in float64, as scikit-learn does; 1 − β in
    float64, then rounded (as scikit-learn's NumPy does): in float32, 1 − T(β₂) is 1.3e-5 off
    1 − β₂ = 0.001, a bias in every second moment.  (float64: the same constants, but the last
    bits of the step change: fastmath no longer reassociates (1 − β) g.)"""
    T = dtype.type
    lr_t = T(lr * np.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t))
    return lr_t, T(beta_1), T(beta_2), T(1.0 - beta_1), T(1.0 - beta_2), T(epsilon)


@jit_inner
def _adam_sums(P, G, M, S, b1, b2, c1, c2):
    """The cheap check pass over a range, without √ and ÷: ``(check, neg, Σ|m|, Σ|W|)`` of the
    new m, s (check: NaN if W, m or s is not finite; neg: below 0 if some s < 0)."""
    zero = P.dtype.type(0)
    check = zero
    neg = zero
    sum_m = zero
    sum_p = zero
    for i in range(P.shape[0]):
        g = G[i]
        mi = b1 * M[i] + c1 * g
        si = b2 * S[i] + c2 * g * g
        check += P[i] * zero + mi * zero + si * zero
        neg += si - abs(si)
        sum_m += abs(mi)
        sum_p += abs(P[i])
    return check, neg, sum_m, sum_p


@jit_inline
def _adam_bound_holds(dtype, neg, sum_m, sum_p, lr_t, eps):
    """Whether the cheap pass's sums prove every new W finite (see :func:`_adam_step`)."""
    big = 0.5 * np.float64(np.finfo(dtype).max)
    inv_eps = max(1.0, 1.0 / np.float64(eps))
    bound = np.float64(sum_p) + max(abs(np.float64(lr_t)), 1.0) * np.float64(sum_m) * inv_eps
    return neg == 0.0 and inv_eps <= big and bound <= big


@jit_inner
def _adam_exact_check(P, G, M, S, lr_t, b1, b2, c1, c2, eps):
    """The exact check over a range: Σ (W − α_t m/(√s + ε))·0, NaN if a new W is not finite."""
    zero = P.dtype.type(0)
    check = zero
    for i in range(P.shape[0]):
        g = G[i]
        mi = b1 * M[i] + c1 * g
        si = b2 * S[i] + c2 * g * g
        check += (P[i] - lr_t * mi / (np.sqrt(si) + eps)) * zero
    return check


@jit_exact
def _adam_apply(P, G, M, S, lr_t, b1, b2, c1, c2, eps):
    """m ← β₁ m + (1−β₁) g,  s ← β₂ s + (1−β₂) g²,  W ← W − α_t m / (√s + ε) over a range."""
    for i in range(P.shape[0]):
        g = G[i]
        mi = b1 * M[i] + c1 * g
        si = b2 * S[i] + c2 * g * g
        M[i] = mi
        S[i] = si
        P[i] -= lr_t * mi / (np.sqrt(si) + eps)


@checked_from_python(_check_adam_step)
@jit_vec
def _adam_step(params, grad, m, s, t, lr, beta_1, beta_2, epsilon):
    """Adam step number ``t`` (≥ 1), in place; ``False`` (and no change) if not finite.

    m ← β₁ m + (1−β₁) g,  s ← β₂ s + (1−β₂) g²,  W ← W − α_t m / (√s + ε)
    with α_t = α √(1−β₂ᵗ) / (1−β₁ᵗ) computed in float64, as scikit-learn does.
    """
    lr_t, b1, b2, c1, c2, eps = _adam_constants(params.dtype, t, lr, beta_1, beta_2, epsilon)
    zero = params.dtype.type(0)
    # Is every new W, m, s finite?  First a pass without √ and ÷ (the step on 784-128-10's
    # parameters: 202 → 126-132 µs float64, 58 → 47-50 µs float32, `python tools/step_speed.py`):
    # m, s, W finite, s ≥ 0, and Σ|W| + max(|α_t|, 1) · Σ|m| · max(1, 1/ε) below half the
    # dtype's largest number bound |W| + |α_t m/(√s + ε)| and every intermediate of it (α_t m,
    # m/(√s + ε), m · 1/(√s + ε)), in any order of evaluation: sums of |x| cannot underflow below
    # their largest term.  Where the bound cannot tell (or a sum overflows), the exact pass
    # decides, so the answer is always the exact pass's.
    check, neg, sum_m, sum_p = _adam_sums(params, grad, m, s, b1, b2, c1, c2)
    if check != zero:
        return False
    if not _adam_bound_holds(params.dtype, neg, sum_m, sum_p, lr_t, eps):
        if _adam_exact_check(params, grad, m, s, lr_t, b1, b2, c1, c2, eps) != zero:
            return False
    _adam_apply(params, grad, m, s, lr_t, b1, b2, c1, c2, eps)
    return True


@checked_from_python(_check_add_l2)
@jit_vec
def _add_l2(grad, params, w_off, b_off, scale):
    """dW[l] += scale · W[l] for every layer (biases untouched); returns ‖W‖² (float64).

    W[l] occupies ``params[w_off[l]:b_off[l]]`` (:func:`fastbp.params.offsets`).
    With ``scale = alpha / n`` for a batch of n examples this is scikit-learn's L2
    term; the returned sum of squares gives the loss term ½ alpha ‖W‖² / n.
    """
    return _add_l2_range(grad, params, w_off, b_off, scale, 0, params.shape[0])


@jit_inline
def _add_l2_range(grad, params, w_off, b_off, scale, lo, hi):
    """:func:`_add_l2` on the parameters ``lo … hi−1`` alone: dW += scale · W there; returns
    the Σ W² of those weights (float64)."""
    c = params.dtype.type(scale)
    total = 0.0
    for l in range(w_off.shape[0]):
        a = max(w_off[l], lo)
        b = min(b_off[l], hi)
        if a < b:
            _l2_gradient(grad[a:b], params[a:b], c)
            total += _sum_squares(params[a:b])
    return total


@jit_exact
def _l2_gradient(G, W, c):
    """G += c · W (elementwise, the same bits on every path: :func:`fastbp._jit.jit_exact`)."""
    for k in range(W.shape[0]):
        G[k] += c * W[k]


@jit_inner
def _sum_squares(W):
    """Σ W² in float64 (read-only: one vectorised path, so the same order wherever W lies)."""
    total = 0.0
    for k in range(W.shape[0]):
        w = np.float64(W[k])
        total += w * w
    return total


@checked_from_python(_check_optimizer_step)
@jit_vec
def _optimizer_step(params, grad, state, counter, kind, hyper):
    """Dispatch one step of optimizer ``kind`` with the hyper-parameters in ``hyper``.

    ``state`` is (2, n_params): the velocity (SGD) or the moments m, s (Adam);
    ``counter[0]`` is Adam's step count t, advanced only when the step is applied.
    """
    if kind == OPT_ADAM:
        t = counter[0] + 1
        ok = _adam_step(params, grad, state[0], state[1], t, hyper[LR], hyper[BETA_1], hyper[BETA_2], hyper[EPSILON])
        if ok:
            counter[0] = t
        return ok
    if kind == OPT_SGD:
        return _sgd_step(params, grad, state[0], hyper[LR], hyper[MOMENTUM], hyper[NESTEROV] != 0.0)
    raise ValueError("_optimizer_step: unknown optimizer code")


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
        mi = b1 * m + T(1.0 - beta_1) * grad
        si = b2 * s + T(1.0 - beta_2) * grad * grad
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
    if kind == OPT_ADAM:
        t = counter[0] + 1
        ok = _adam_step_ref(
            params, grad, state[0], state[1], t, hyper[LR], hyper[BETA_1], hyper[BETA_2], hyper[EPSILON]
        )
        if ok:
            counter[0] = t
        return ok
    if kind == OPT_SGD:
        return _sgd_step_ref(params, grad, state[0], hyper[LR], hyper[MOMENTUM], hyper[NESTEROV] != 0.0)
    raise ValueError(f"_optimizer_step_ref: unknown optimizer code {kind!r}")


#: ``{name: (kernel, reference)}``: same names, same arguments, same in-place contract.
IMPLEMENTATIONS = {
    "sgd_step": (_sgd_step, _sgd_step_ref),
    "adam_step": (_adam_step, _adam_step_ref),
    "add_l2": (_add_l2, _add_l2_ref),
    "optimizer_step": (_optimizer_step, _optimizer_step_ref),
    "sgd_update": (_sgd_update, _sgd_update_ref),
    "step_is_finite": (_step_is_finite, _step_is_finite_ref),
}
