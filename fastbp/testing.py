"""The registry of implementations, seeded problem makers and tolerances.

One table, :data:`IMPLEMENTATIONS`, maps each operation to its kernel and its
NumPy reference (``{name: (kernel, reference)}``, numbagg's ``COMPARISONS``
idea).  fastbp's agreement tests and its pytest-benchmark suite both iterate
over it, and so can anyone checking another implementation (a GPU kernel, a
port to another language, a student's code) against fastbp::

    from fastbp.testing import make_problem, assert_agree, IMPLEMENTATIONS
    prob = make_problem([4, 8, 3], dtype=np.float32, output="softmax", m=16)
    _, reference = IMPLEMENTATIONS["gradients"]
    assert_agree(my_gradients(*prob.args("gradients")), reference(*prob.args("gradients")), np.float32)

Tolerances are stated once, per dtype, in :data:`TOLERANCE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from . import kernels, reference
from .activations import NAMES as ACTIVATION_NAMES
from .losses import NAMES as OUTPUT_NAMES

#: ``{name: (kernel, reference)}``: same names, same arguments.
IMPLEMENTATIONS: dict[str, tuple[Callable, Callable]] = {
    name: (getattr(kernels, name), getattr(reference, name))
    for name in ("forward", "predict", "backward", "gradients", "loss", "update", "train_epoch")
}

#: Agreement tolerances (relative, absolute) per dtype, for one call or one epoch.
TOLERANCE: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.float32): (2e-4, 2e-5),
    np.dtype(np.float64): (1e-9, 1e-11),
}

HIDDEN_ACTIVATIONS = tuple(name for name in ACTIVATION_NAMES if name != "logistic")  # derived from the name tables:
OUTPUTS = tuple(name for name in OUTPUT_NAMES if name != "logistic")  # a new entry is tested everywhere


def tolerance(dtype: Any) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for ``dtype``, for ``numpy.testing.assert_allclose``."""
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    return {"rtol": rtol, "atol": atol}


def make_targets(rng: np.random.Generator, m: int, n_y: int, output: str) -> np.ndarray:
    """Valid targets for ``output``: binary for sigmoid, one-hot for softmax, Gaussian for identity."""
    if output == "sigmoid":
        return (rng.random((m, n_y)) < 0.5).astype(np.float64)
    if output == "softmax":
        return np.eye(n_y)[rng.integers(0, n_y, size=m)]
    return rng.normal(size=(m, n_y))


@dataclass
class Problem:
    """A seeded network and data set: what every registered implementation is called with."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    activation: Any
    output: str
    learning_rate: float = 0.1
    batch_size: int | None = 1
    order: np.ndarray | None = None

    def copy_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return [w.copy() for w in self.weights], [b.copy() for b in self.biases]

    def args(self, name: str, weights=None, biases=None) -> tuple:
        """The positional arguments of ``IMPLEMENTATIONS[name]`` for this problem.

        ``update`` and ``train_epoch`` change the parameters in place: pass fresh
        copies (:meth:`copy_params`) for each implementation.
        """
        W = self.weights if weights is None else weights
        b = self.biases if biases is None else biases
        a, o = self.activation, self.output
        if name in ("forward", "predict"):
            return (W, b, self.X, a, o)
        if name in ("gradients", "loss"):
            return (W, b, self.X, self.Y, a, o)
        if name == "backward":
            Z, A = reference.forward(W, b, self.X, a, o)
            return (W, b, self.X, self.Y, Z, A, a, o)
        if name == "update":
            dW, db = reference.gradients(self.weights, self.biases, self.X, self.Y, a, o)
            return (W, b, dW, db, self.learning_rate)
        if name == "train_epoch":
            return (W, b, self.X, self.Y, self.learning_rate, self.batch_size, self.order, a, o)
        raise KeyError(name)


def make_problem(
    layer_sizes,
    dtype: Any = np.float64,
    activation: Any = "tanh",
    output: str = "sigmoid",
    m: int = 8,
    seed: int = 0,
    batch_size: int | None = 1,
    learning_rate: float = 0.1,
    shuffle: bool = True,
) -> Problem:
    """A seeded :class:`Problem`: Glorot-scaled weights, small random biases, N(0, 1) inputs."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    weights, biases = [], []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        limit = np.sqrt(6.0 / (n_in + n_out))
        weights.append(rng.uniform(-limit, limit, size=(n_out, n_in)).astype(dt))
        biases.append(rng.normal(0.0, 0.1, size=n_out).astype(dt))
    X = rng.normal(size=(m, layer_sizes[0])).astype(dt)
    Y = make_targets(rng, m, layer_sizes[-1], output).astype(dt)
    order = rng.permutation(m) if shuffle else None
    return Problem(weights, biases, X, Y, activation, output, learning_rate, batch_size, order)


def check_conformance(directory, results, *, require_all: bool = False):
    """Check results against the conformance vectors in ``directory`` (``fastbp conformance export DIR``).

    ``results`` is a folder of ``.npy`` files written by another implementation (any language) under
    the expected files' names, or a Python object with this module's kernel API (``forward``,
    ``backward``, ``gradients``, ``loss``, ``update``, ``train_epoch``, as :mod:`fastbp.reference`),
    run in memory.  Returns a :class:`fastbp.conformance.Report`: ``report.ok``, ``report.failures``,
    ``print(report)`` for the per case and operation table.  See ``docs/conformance.md``.
    """
    from .conformance import check  # (fastbp.conformance builds on this module: imported when called)

    return check(directory, results, require_all=require_all)


def _leaves(result) -> list:
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return [leaf for item in result for leaf in _leaves(item)]
    return [np.asarray(result)]


def assert_agree(actual, desired, dtype: Any, err_msg: str = "") -> None:
    """Assert that two results (arrays, floats, nested lists of them) agree to ``dtype``'s tolerance."""
    a, d = _leaves(actual), _leaves(desired)
    assert len(a) == len(d), f"{err_msg}: {len(a)} arrays against {len(d)}"
    for i, (x, y) in enumerate(zip(a, d)):
        np.testing.assert_allclose(x, y, **tolerance(dtype), err_msg=f"{err_msg} [item {i}]")
