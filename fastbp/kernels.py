"""The kernel-level API: forward, backward, update and training epochs on your own arrays.

Public wrappers (:func:`forward`, :func:`predict`, :func:`backward`, :func:`gradients`,
:func:`loss`, :func:`update`, :func:`train_epoch`) take lists of W[l] and b[l] like any
user holds them, validate and convert once, and call the compiled kernels;
:mod:`fastbp.reference` has the same names and arguments in NumPy.

The kernels themselves live a layer below (``docs/derivation.md`` lists each beside the
equation it implements):

* :mod:`fastbp._plain` — the scalar-loop reference: explicit loops over one example that
  read like the equations (``_forward_example``, ``_backward_example``, ``_train_epoch`` …);
  every wrapper runs them for a custom activation (and under ``NUMBA_DISABLE_JIT=1``).
* :mod:`fastbp._fast` — the fast kernels, chosen by :mod:`fastbp._dispatch` and tested against
  the plain ones: the epochs :func:`train_epoch` runs, and the batch passes :func:`forward`,
  :func:`predict`, :func:`loss`, :func:`gradients` and :func:`backward` run for the built-in
  activations.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from . import _dispatch
from . import _validation as v
from ._dispatch import run_epoch
from ._plain import BUILTIN, kernels_for  # noqa: F401  (BUILTIN: importable, not in __all__)
from .activations import get_activation
from .errors import DivergenceError
from .losses import get_output
from .params import Layout, atomic_commit
from .steps import _sgd_update, _step_is_finite

#: The checked wrappers.  ``kernels_for``/``BUILTIN`` (the plain, unchecked compiled kernels behind
#: them, for the dispatcher and the tests) are importable but not public: they index their arrays
#: by the sizes they are given, as the wrappers have checked them.
__all__ = ["forward", "predict", "backward", "gradients", "loss", "update", "train_epoch"]


# ==================================================================== public wrappers


@functools.lru_cache(maxsize=64)
def _layout(sizes: tuple[int, ...]) -> Layout:
    """The :class:`~fastbp.params.Layout` of ``sizes``, made once per process (never mutated)."""
    return Layout(sizes)


class _Problem:
    """What every public wrapper settles first: sizes, dtype, the flat buffer, codes.

    ``writes``: whether the wrapper writes the parameters back (``train_epoch``, or a caller that
    trains ``params``): only then must the caller's arrays not share memory (where results are
    written back matters); the read-only operations read the packed copy, or a network's own
    buffer, whatever shares memory.  The parameters' finiteness is checked once over the packed
    buffer (and, if that fails, array by array, for a message naming the array), in the order of
    :func:`fastbp._validation.check_params`: shapes, dtype, finiteness, sharing, so that both
    backends refuse bad arguments with the same error."""

    def __init__(self, weights, biases, activation, output, writes: bool = False):
        self.sizes, self.dtype = v.check_params(weights, biases, overlap=False, finite=False)
        self.layout = _layout(self.sizes)
        self.weights, self.biases = weights, biases
        found = self.layout.buffer_of(weights, biases)
        self.in_place = found is not None
        self.params = found if found is not None else self.layout.pack(weights, biases, self.dtype)
        if not np.isfinite(self.params).all():
            v.check_params(weights, biases, overlap=False)  # raises, naming the array
            raise ValueError("weights or biases contain NaN or inf")  # (not reached)
        if found is None and writes:  # a network's own views are disjoint by construction
            v.check_no_overlap(weights, biases)
        self.activation = get_activation(activation)
        self.out = get_output(output)
        self.k = kernels_for(self.activation)
        self.act = self.activation.code

    def X(self, X, forward_only: bool = False):
        """X checked and converted; ``forward_only`` (``predict``, ``forward``, ``loss``): without
        the pass over X for NaN and inf where the kernel makes it itself
        (:func:`fastbp._dispatch.forward_refuses_non_finite`; ``loss`` then refuses a bad Y
        before a NaN in X, the reference the other way round)."""
        refuses = None
        if forward_only:
            sizes, act = self.layout.sizes, self.activation
            refuses = lambda m: _dispatch.forward_refuses_non_finite(act, sizes, m)  # noqa: E731
        return v.check_X(X, self.sizes[0], self.dtype, refuses)

    def Y(self, Y, m):
        return v.check_Y(Y, m, self.sizes[-1], self.out, self.dtype)

    def write_back(self):
        """Copy a packed buffer back into the caller's arrays (only when it was a copy), all or none."""
        if not self.in_place:
            W, b = self.layout.views(self.params)
            with atomic_commit():
                for dst, src in zip(list(self.weights) + list(self.biases), W + b):
                    dst[...] = src


def forward(weights, biases, X, activation="tanh", output="sigmoid"):
    """Forward pass: ``(Z, A)``, lists of Z[l] and A[l] (m × n_l) for l = 1 … L.

    ``weights[l-1]`` is W[l] (n_l × n_{l−1}), ``biases[l-1]`` is b[l] (n_l,), X is
    m × n_0 with one example per row; ``A[-1]`` is the network's output.  Each Z[l], A[l] is a
    view into one buffer for the whole pass (its memory order is the kernel's: not necessarily
    C-contiguous; ``np.ascontiguousarray`` copies one if you need it).
    """
    p = _Problem(weights, biases, activation, output)
    X = p.X(X, forward_only=True)
    return _dispatch.forward(p.params, p.layout.sizes, X, p.activation, p.out)


def predict(weights, biases, X, activation="tanh", output="sigmoid"):
    """A[L] alone (m × n_L): the forward pass without keeping every layer's Z and A."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X, forward_only=True)
    AL = np.empty((X.shape[0], p.sizes[-1]), p.dtype)
    _dispatch.predict(p.params, p.layout.sizes, X, p.activation, p.out, AL)
    return AL


def backward(weights, biases, X, Y, Z, A, activation="tanh", output="sigmoid"):
    """Backward pass from a stored forward pass: ``(dZ, dW, db)``.

    ``dZ[l-1]`` is ∂cost_i/∂Z[l] for every example i (m × n_l, not divided by m);
    ``dW``/``db`` are the mean gradients of J, shaped like ``weights``/``biases``.  ``Z`` and
    ``A`` may be in any memory order (those :func:`forward` returns may be strided or Fortran-ordered views);
    each dZ[l] is a view into one buffer, in the kernel's memory order, as :func:`forward`'s.
    """
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    m = X.shape[0]
    widths = [n_out for n_out, _ in p.layout.shapes]
    Zs = v.check_units(Z, "Z", m, widths, p.dtype, any_layout=True)  # copied into the kernel's layout below
    As = v.check_units(A, "A", m, widths, p.dtype, any_layout=True)
    dZ, grad = _dispatch.backward(p.params, p.layout.sizes, X, Y, Zs, As, p.activation)
    dW, db = p.layout.views(grad)
    return dZ, dW, db


def gradients(weights, biases, X, Y, activation="tanh", output="sigmoid"):
    """Mean gradients of J over the rows of X: ``(dW, db)`` shaped like the parameters."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X)
    Y = p.Y(Y, X.shape[0])
    grad = np.empty(p.layout.n_params, p.dtype)
    _dispatch.loss_and_gradient(p.params, p.layout.sizes, X, Y, p.activation, p.out, grad, 0.0, 1.0)
    return p.layout.views(grad)


def loss(weights, biases, X, Y, activation="tanh", output="sigmoid") -> float:
    """J: the mean over the rows of X of the per-example cost (see :mod:`fastbp.losses`)."""
    p = _Problem(weights, biases, activation, output)
    X = p.X(X, forward_only=True)
    Y = p.Y(Y, X.shape[0])
    return float(_dispatch.loss(p.params, p.layout.sizes, X, Y, p.activation, p.out))


def update(weights, biases, dW, db, learning_rate) -> None:
    """Gradient descent in place: W[l] −= α dW[l], b[l] −= α db[l].

    Raises :class:`fastbp.DivergenceError` (and changes nothing) if a new
    parameter would not be finite.
    """
    sizes, dtype = v.check_params(weights, biases)
    lr = dtype.type(v.check_positive_float(learning_rate, "learning_rate", dtype))
    grads = v.check_grads(weights, biases, dW, db, dtype)
    v.check_writeable(weights, biases)
    params = list(weights) + list(biases)
    grads = [v.unshared(G, params) for G in grads]  # a gradient that is a parameter: its value before the step
    flats = [np.ascontiguousarray(P).reshape(-1) for P in params]
    if not all(_step_is_finite(F, G, lr) for F, G in zip(flats, grads)):
        raise DivergenceError(0, detail="update")
    with atomic_commit():  # every parameter from the same step, even under Ctrl-C
        for P, F, G in zip(params, flats, grads):
            if np.shares_memory(P, F):  # P was C-contiguous: F is a view of it
                _sgd_update(F, G, lr)
            else:
                F = F.copy()
                _sgd_update(F, G, lr)
                P[...] = F.reshape(P.shape)


def train_epoch(
    weights,
    biases,
    X,
    Y,
    learning_rate,
    batch_size: int | None = 1,
    order: Sequence[int] | None = None,
    activation="tanh",
    output="sigmoid",
    sample_weight=None,
) -> float:
    """One epoch of gradient descent, in place; returns the epoch's mean cost.

    Examples are visited in ``order`` (default: as given; it may repeat rows) in batches of
    ``batch_size`` visits (``None``: all of ``order`` as one batch; the last short batch is used).
    Each batch applies W −= α · mean dW over its examples (with ``sample_weight``,
    one weight per row of X, the mean weighted by them, as scikit-learn's).  Raises
    :class:`fastbp.DivergenceError` if a step would make the loss or a parameter
    non-finite; the parameters are then those from just before that step.
    """
    p = _Problem(weights, biases, activation, output, writes=True)
    X, Y, lr, bs, idx = v.check_train_args(
        p.sizes, p.dtype, p.out, weights, biases, X, Y, learning_rate, batch_size, order
    )
    sw = v.check_sample_weight(sample_weight, X.shape[0], p.dtype)
    if p.in_place:  # the epoch writes the caller's buffer: an X or Y that is part of it is read as it was
        X, Y = v.unshared(X, [p.params]), v.unshared(Y, [p.params])
    J, failed = run_epoch(p.params, p.layout.sizes, X, Y, idx, bs, lr, p.activation, p.out, sw=sw)
    p.write_back()
    if failed >= 0:
        raise DivergenceError(failed)
    return float(J)
