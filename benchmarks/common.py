"""Shared pieces of the asv suite: network sizes, seeded data makers, JIT warm-up.

In the style of numpy's and scipy's ``benchmarks/benchmarks/common.py``: small and
seeded.  The data come from :func:`fastbp.testing.make_problem` /
:func:`fastbp.testing.make_targets`, the same makers the agreement tests use; the flop
count and the best-of-N timers of the ``track_*`` benchmarks are
:func:`fastbp.bench.flops_per_example`, :func:`fastbp.bench.best_seconds` and
:func:`fastbp.bench.interleaved_best_seconds` (their one home, shared with ``fastbp bench``
and ``tools/``), re-exported here.

Threads: every benchmark's ``setup`` fixes its own thread counts with :func:`fix_threads`
(Numba's ``set_num_threads`` and BLAS through threadpoolctl, a dependency of scikit-learn):
one Numba thread and one BLAS thread everywhere, so the NumPy reference and the Numba
kernels are both measured on one core and the numba/numpy ratios compare like with like.
Without it, mini-batches of 64 or more on the big networks ran the threaded kernel, which on
a busy two-core machine took a median 23.8 ms against 2.67 ms on one thread (issue 15) and
showed up as false regressions.  The threaded kernel has benchmarks of its own
(:class:`bench_training.TrainEpochThreaded`), which ask for their thread count explicitly.

Noise: :data:`TIMING` is the sampling every ``time_*`` class uses (asv's ``repeat``,
``rounds``, ``warmup_time``, ``min_run_count``): several rounds, which ``asv continuous``
interleaves between the two commits, and enough samples per round that asv's statistical
test has something to test.  See docs/performance.md, "Noise".
"""

from __future__ import annotations

import os
import time

import numba
import numpy as np

from fastbp import kernels, reference
from fastbp.bench import best_seconds, flops_per_example, interleaved_best_seconds  # noqa: F401 - re-exported
from fastbp.testing import make_problem, make_targets

_BLAS_LIMIT = None  # threadpoolctl's limit object, kept alive by fix_threads


def fix_threads(numba_threads: int = 1, blas_threads: int = 1) -> int:
    """Fix Numba's and BLAS's thread counts for the benchmark that calls it (in its ``setup``).

    ``numba_threads`` is capped at ``NUMBA_NUM_THREADS`` (Numba cannot start more threads than
    that); returns the Numba thread count now in force.  Called in ``setup``, never at import:
    the forkserver process that asv forks every benchmark from must not start Numba's OpenMP
    threads (a forked child of a process that has them is aborted by GNU OpenMP).
    """
    global _BLAS_LIMIT
    import numba
    from threadpoolctl import threadpool_limits

    try:  # scipy brings a second OpenBLAS, loaded lazily (by Numba's compiler): load it now to limit it too
        import scipy.linalg  # noqa: F401
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        pass
    numba.set_num_threads(max(1, min(int(numba_threads), numba.config.NUMBA_NUM_THREADS)))
    # (BLAS only: OpenMP's count would also cap the threads of Numba's OpenMP layer)
    _BLAS_LIMIT = threadpool_limits(limits=int(blas_threads), user_api="blas")
    return numba.get_num_threads()


#: Sampling of every single-threaded ``time_*`` benchmark: asv's ``repeat`` as (min, max, seconds)
#: samples per round, ``rounds`` (interleaved between commits by ``asv continuous``), ``warmup_time``
#: before the first sample and at least ``min_run_count`` samples, timed with the process's CPU time
#: (``time.process_time``), not the wall clock: on a shared machine a benchmark spends much of its wall
#: time waiting for a core while other processes run, and that wait, not fastbp, decided the first
#: docs-only ``asv continuous`` (ratios from 0.36 to 2.4 with wall time).  With one Numba and one BLAS
#: thread the CPU time is the time the work takes.  A class applies it with ``locals().update(TIMING)``.
TIMING = {
    "repeat": (5, 15, 4.0),
    "rounds": 3,
    "warmup_time": 0.2,
    "min_run_count": 5,
    "sample_time": 0.02,
    "timer": time.process_time,
}

#: The threaded kernel's benchmarks: the same sampling on the wall clock (CPU time would add the threads up).
TIMING_WALL = {**TIMING, "timer": time.perf_counter}

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

#: The mini-batch sizes issue 12's goals are stated at (:class:`bench_training.MiniBatch`).
MINI_BATCHES: tuple[str, ...] = ("8", "32", "256", "1024")

#: Examples per epoch of the mini-batch benchmarks: at least two batches of 1024 on every net, and a
#: numba epoch of a few ms to ~20 ms on one core (the NumPy reference at batch 8 takes ~5-10x that).
M_MINI: dict[str, int] = {
    "2-4-1": 16384,
    "64-32-1": 8192,
    "64-64-10": 4096,
    "784-128-10": 2048,
    "256-256-10": 2048,
}

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
        batch_size=BATCHES[batch] if batch in BATCHES else int(batch),  # (the threaded benchmarks' "64")
        learning_rate=LEARNING_RATE,
        shuffle=True,
    )


def targets(m: int, n_y: int, output: str = "sigmoid", seed: int = 0) -> np.ndarray:
    """Seeded targets for ``output`` (a thin wrapper of :func:`fastbp.testing.make_targets`)."""
    return make_targets(np.random.default_rng(seed), m, n_y, output)


def warm(size: str, dtype: str, activation: str = "tanh", output: str = "sigmoid") -> None:
    """Fix one Numba and one BLAS thread, then compile (or load from Numba's cache) every kernel
    a benchmark calls, on a 64-example input.

    Called in ``setup`` so that no ``time_*`` ever includes compile time.  The fast
    kernels pick a different kernel for per-example SGD and mini-batches, so each of
    those paths is run once (the threaded one is warmed by :func:`warm_threaded`).
    """
    fix_threads(1)
    p = problem(size, dtype, m=64, activation=activation, output=output)
    W, b = p.copy_params()
    for batch_size in (1, 2, 64):
        kernels.train_epoch(W, b, p.X, p.Y, LEARNING_RATE, batch_size, None, activation, output)
    kernels.forward(W, b, p.X, activation, output)
    kernels.gradients(W, b, p.X, p.Y, activation, output)


def warm_threaded(size: str, dtype: str, threads: int) -> int:
    """Fix ``threads`` Numba threads (and one BLAS thread) and compile the split column kernel's twin for them;
    returns the thread count in force.  The threaded twin runs however busy the machine is
    (``FASTBP_BUSY_CHECK=0``; asv runs each benchmark in a process of its own): a threaded
    benchmark that silently ran the one-thread twin under load would measure something else."""
    os.environ["FASTBP_BUSY_CHECK"] = "0"
    warm(size, dtype)
    n = fix_threads(threads)
    p = problem(size, dtype, m=64)
    W, b = p.copy_params()
    kernels.train_epoch(W, b, p.X, p.Y, LEARNING_RATE, 64, None, "tanh", "sigmoid")
    return n


@numba.njit(cache=True, nogil=True)
def _probe_kernel(x: np.ndarray, w: np.ndarray) -> float:  # pragma: no cover - compiled
    acc = 0.0
    for i in range(x.shape[0]):
        s = 0.0
        for j in range(w.shape[0]):
            s += w[j] * x[i]
        acc += np.tanh(s * 1e-3)
    return acc


_PROBE_X = np.linspace(-1.0, 1.0, 20_000)
_PROBE_W = np.linspace(0.5, 1.5, 64)


def probe() -> float:
    """A fixed piece of work (no fastbp code, so the same in every commit): a per-example loop of
    multiply-adds and a tanh each, ~1-2 ms.  Timed beside a benchmark, interleaved, it measures how
    fast this core runs *now*; the ratio of the two is what :class:`bench_training.EpochOverProbe`
    tracks, and on a shared machine it moves far less than either time."""
    return _probe_kernel(_PROBE_X, _PROBE_W)


def train_once(backend: str, p, W, b) -> float:
    """One epoch of ``p`` on the parameters W, b (changed in place) through the public API."""
    return BACKENDS[backend].train_epoch(W, b, p.X, p.Y, p.learning_rate, p.batch_size, p.order, p.activation, p.output)
