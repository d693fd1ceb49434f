"""Shared pieces of the asv suite: network sizes, seeded data makers, JIT warm-up.

In the style of numpy's and scipy's ``benchmarks/benchmarks/common.py``: small and
seeded.  The data come from :func:`fastbp.testing.make_problem` /
:func:`fastbp.testing.make_targets`, the same makers the agreement tests use; the flop
count and the best-of-N timers of the ``track_*`` benchmarks are
:func:`fastbp.bench.flops_per_example`, :func:`fastbp.bench.best_seconds` and
:func:`fastbp.bench.interleaved_best_seconds` (their one home, shared with ``fastbp bench``
and ``tools/``), re-exported here.

BLAS is limited to one thread here (threadpoolctl, a dependency of
scikit-learn), so the NumPy reference and the Numba kernels are both measured
on one core and the numba/numpy ratios compare like with like.
"""

from __future__ import annotations

import numpy as np

from fastbp import kernels, reference
from fastbp.bench import best_seconds, flops_per_example, interleaved_best_seconds  # noqa: F401 - re-exported
from fastbp.testing import make_problem, make_targets

try:  # one BLAS thread for every benchmark (the Numba kernels are single-threaded)
    from threadpoolctl import threadpool_limits

    _BLAS_LIMIT = threadpool_limits(limits=1)
except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
    _BLAS_LIMIT = None

#: Network sizes by name (asv parameter values must be printable and stable).
SIZES: dict[str, list[int]] = {
    "2-4-1": [2, 4, 1],
    "64-32-1": [64, 32, 1],
    "64-64-10": [64, 64, 10],
    "784-128-10": [784, 128, 10],
    "256-256-10": [256, 256, 10],
}

#: Examples per epoch for each size, chosen so one numba epoch at batch 1 takes
#: roughly 5-20 ms on one core (the whole ``--quick`` suite must stay under 5 min on 2 cores).
M: dict[str, int] = {
    "2-4-1": 4096,
    "64-32-1": 2048,
    "64-64-10": 1024,
    "784-128-10": 256,
    "256-256-10": 256,
}

#: Training modes: examples per update ("full" = the whole epoch in one batch).
BATCHES: dict[str, int | None] = {"1": 1, "32": 32, "256": 256, "full": None}

DTYPES = ("float64", "float32")
BACKENDS: dict[str, object] = {"numba": kernels, "numpy": reference}

#: The big networks: the NumPy reference at batch 1 spends its time in Python
#: overhead per example there (a few thousand examples/s), which tells nothing
#: the small networks do not already tell; those combinations are skipped.
BIG = ("784-128-10", "256-256-10")

LEARNING_RATE = 0.01  # small enough that repeated epochs never diverge


def skip_if_pointless(size: str, backend: str, batch: str) -> None:
    """Raise ``NotImplementedError`` (asv's "skip this combination") for pointlessly slow ones."""
    if backend == "numpy" and batch == "1" and size in BIG:
        raise NotImplementedError("numpy reference at batch 1 on a big network: Python overhead only")


def problem(
    size: str,
    dtype: str = "float64",
    m: int | None = None,
    batch: str = "1",
    activation: str = "tanh",
    output: str = "sigmoid",
    seed: int = 0,
):
    """A seeded :class:`fastbp.testing.Problem` for one benchmark combination."""
    return make_problem(
        SIZES[size],
        dtype=np.dtype(dtype),
        activation=activation,
        output=output,
        m=M[size] if m is None else m,
        seed=seed,
        batch_size=BATCHES[batch],
        learning_rate=LEARNING_RATE,
        shuffle=True,
    )


def targets(m: int, n_y: int, output: str = "sigmoid", seed: int = 0) -> np.ndarray:
    """Seeded targets for ``output`` (a thin wrapper of :func:`fastbp.testing.make_targets`)."""
    return make_targets(np.random.default_rng(seed), m, n_y, output)


def warm(size: str, dtype: str, activation: str = "tanh", output: str = "sigmoid") -> None:
    """Compile (or load from Numba's cache) every kernel a benchmark calls, on a 64-example input.

    Called in ``setup`` so that no ``time_*`` ever includes compile time.  The fast
    kernels pick a different kernel for per-example SGD, mini-batches and (with
    threads) batches of 64 or more, so each of those paths is run once.
    """
    p = problem(size, dtype, m=64, activation=activation, output=output)
    W, b = p.copy_params()
    for batch_size in (1, 2, 64):
        kernels.train_epoch(W, b, p.X, p.Y, LEARNING_RATE, batch_size, None, activation, output)
    kernels.forward(W, b, p.X, activation, output)
    kernels.gradients(W, b, p.X, p.Y, activation, output)


def train_once(backend: str, p, W, b) -> float:
    """One epoch of ``p`` on the parameters W, b (changed in place) through the public API."""
    return BACKENDS[backend].train_epoch(W, b, p.X, p.Y, p.learning_rate, p.batch_size, p.order, p.activation, p.output)
