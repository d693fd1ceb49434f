"""Training benchmarks: one epoch, forward, gradients, throughput, speed-up, memory.

Parameters (``param_names``): network ``size`` (see :data:`common.SIZES`), ``dtype``,
``backend`` (``numba`` kernels or ``numpy`` reference) and ``batch`` (examples per
update: 1 is per-example SGD, ``full`` the whole epoch; the mini-batch classes
:class:`MiniBatch` and :class:`MiniBatchRatios` take 8, 32, 256 and 1024).  Every ``setup`` fixes one
Numba thread and one BLAS thread and warms the JIT on a small input first, so no
``time_*`` includes compile time (that is measured apart, in :mod:`bench_startup`) and
none depends on how many cores happen to be free.  The threaded mini-batch kernel is
measured apart, with its thread count as a parameter (:class:`TrainEpochThreaded`,
:class:`ThreadSpeedUp`).
"""

from __future__ import annotations

from functools import partial

from .common import (
    BACKENDS,
    BATCHES,
    DTYPES,
    M_MINI,
    MINI_BATCHES,
    SIZES,
    TIMING,
    TIMING_WALL,
    M,
    best_seconds,
    flops_per_example,
    interleaved_best_seconds,
    probe,
    problem,
    skip_if_pointless,
    train_once,
    warm,
    warm_threaded,
)

_GRID = (list(SIZES), list(DTYPES), list(BACKENDS), list(BATCHES))
_GRID_NAMES = ["size", "dtype", "backend", "batch"]


class TrainEpoch:
    """Wall time of one training epoch of ``M[size]`` examples (parameters updated in place)."""

    params = _GRID
    param_names = _GRID_NAMES
    locals().update(TIMING)

    def setup(self, size, dtype, backend, batch):
        skip_if_pointless(size, backend, batch)
        warm(size, dtype)
        self.p = problem(size, dtype, batch=batch)
        self.W, self.b = self.p.copy_params()

    def time_train_epoch(self, size, dtype, backend, batch):
        train_once(backend, self.p, self.W, self.b)


class Throughput:
    """Training throughput: examples/s and GFLOP/s (6 · Σ n_l n_{l−1} flops per example), best of 3 epochs."""

    params = _GRID
    param_names = _GRID_NAMES

    def setup(self, size, dtype, backend, batch):
        TrainEpoch.setup(self, size, dtype, backend, batch)
        self.seconds = best_seconds(lambda: train_once(backend, self.p, self.W, self.b))

    def track_examples_per_second(self, size, dtype, backend, batch):
        return M[size] / self.seconds

    track_examples_per_second.unit = "examples/s"

    def track_gflops(self, size, dtype, backend, batch):
        return M[size] * flops_per_example(SIZES[size]) / self.seconds / 1e9

    track_gflops.unit = "GFLOP/s"


class SpeedUp:
    """numba/numpy speed-up of one epoch, both measured in this process, interleaved, best of 5."""

    params = (list(SIZES), list(DTYPES), list(BATCHES))
    param_names = ["size", "dtype", "batch"]

    #: Longer epochs for the larger batches: at M examples a 2-4-1 numba epoch at batch 256 took
    #: ~0.1 ms, and the ratio of two such best-of-5 times moved 1.4x between identical commits
    #: (a docs-only ``asv continuous``, 2026-11-29: 6.99 -> 4.96); batch 1 keeps M (the NumPy
    #: reference runs ~20 k examples/s there).
    EPOCH_SCALE = {"1": 1, "32": 4, "256": 16, "full": 16}

    def setup(self, size, dtype, batch):
        warm(size, dtype)
        self.p = problem(size, dtype, m=M[size] * self.EPOCH_SCALE[batch], batch=batch)
        self.params_by_backend = {name: self.p.copy_params() for name in BACKENDS}

    def track_numba_over_numpy(self, size, dtype, batch):
        # interleaved: a noisy neighbour hurts both sides alike
        calls = {name: partial(train_once, name, self.p, W, b) for name, (W, b) in self.params_by_backend.items()}
        best = interleaved_best_seconds(calls, 5)
        return best["numpy"] / best["numba"]

    track_numba_over_numpy.unit = "ratio"


class MiniBatch:
    """One epoch of mini-batches, at batch 8, 32, 256 and 1024 (:data:`common.MINI_BATCHES`), on every net,
    of ``M_MINI[size]`` examples: the cells of issue 12's goals 1-4.

    Threads fixed in ``setup`` (:func:`common.fix_threads` through :func:`common.warm`): one Numba
    thread and one BLAS thread (NumPy's and SciPy's OpenBLAS, the one a kernel's ``np.dot`` calls), so
    the numba and numpy cells compare one core with one core; the threaded kernel's two-thread cells
    are :class:`TrainEpochThreaded`'s.  An untimed epoch of the very problem first, so a kernel the
    dispatcher picks only for this batch size is compiled before any sample.
    """

    params = (list(SIZES), list(DTYPES), list(BACKENDS), list(MINI_BATCHES))
    param_names = ["size", "dtype", "backend", "batch"]
    locals().update(TIMING)

    def setup(self, size, dtype, backend, batch):
        warm(size, dtype)
        self.p = problem(size, dtype, m=M_MINI[size], batch=batch)
        train_once(backend, self.p, *self.p.copy_params())
        self.W, self.b = self.p.copy_params()

    def time_train_epoch(self, size, dtype, backend, batch):
        train_once(backend, self.p, self.W, self.b)


class MiniBatchRatios:
    """The mini-batch goals as ratios measured in one process, interleaved, best of 5 (a busy neighbour
    slows both sides alike), one Numba and one BLAS thread:

    * ``track_numba_over_numpy``: the NumPy reference's epoch time over the numba kernels' (goal 4: ≥ 1);
    * ``track_batch_over_per_example``: the examples/s of this batch size over per-example SGD's on
      the same net and data (goal 1, "never slower with bigger batches": ≥ 1).
    """

    params = (list(SIZES), list(DTYPES), list(MINI_BATCHES))
    param_names = ["size", "dtype", "batch"]

    def setup(self, size, dtype, batch):
        warm(size, dtype)
        self.p = problem(size, dtype, m=M_MINI[size], batch=batch)
        self.per_example = problem(size, dtype, m=M_MINI[size], batch="1")
        self.params_of = {
            key: p.copy_params() for key, p in (("numba", self.p), ("numpy", self.p), ("numba-1", self.per_example))
        }
        for p in (self.p, self.per_example):  # compile (or load) outside the timing
            train_once("numba", p, *p.copy_params())

    def _epochs(self, *keys):
        where = {"numba": ("numba", self.p), "numpy": ("numpy", self.p), "numba-1": ("numba", self.per_example)}
        return {key: partial(train_once, *where[key], *self.params_of[key]) for key in keys}

    def track_numba_over_numpy(self, size, dtype, batch):
        best = interleaved_best_seconds(self._epochs("numba", "numpy"), 5)
        return best["numpy"] / best["numba"]

    track_numba_over_numpy.unit = "ratio"

    def track_batch_over_per_example(self, size, dtype, batch):
        best = interleaved_best_seconds(self._epochs("numba", "numba-1"), 5)
        return best["numba-1"] / best["numba"]  # same m: the ratio of the examples/s

    track_batch_over_per_example.unit = "ratio"


#: The nets and batches the split column kernel takes (W[1] of at least 16,384 weights, batches of 64 or
#: more: ``fastbp._dispatch.LARGE_W1_WEIGHTS``, ``SPLIT_MIN_BATCH_LARGE``).
_THREADED = (["784-128-10", "256-256-10"], ["float64", "float32"], ["64", "256"], [1, 2])


class TrainEpochThreaded:
    """One epoch of mini-batches on the nets the split column kernel serves, with ``threads`` Numba threads.

    ``threads=1`` runs each batch's two halves one after the other, ``threads=2`` on two threads
    (the threaded twin: bit-identical results).  On a machine whose cores are busy the two-thread
    time says more about the neighbours than about fastbp: :class:`ThreadSpeedUp` measures both
    in one process, interleaved.
    """

    params = _THREADED
    param_names = ["size", "dtype", "batch", "threads"]
    locals().update(TIMING_WALL)

    def setup(self, size, dtype, batch, threads):
        if warm_threaded(size, dtype, threads) != threads:
            raise NotImplementedError(f"Numba cannot start {threads} threads here (NUMBA_NUM_THREADS)")
        self.p = problem(size, dtype, batch=batch)
        self.W, self.b = self.p.copy_params()

    def time_train_epoch(self, size, dtype, batch, threads):
        train_once("numba", self.p, self.W, self.b)


class ThreadSpeedUp:
    """Two threads over one: the split kernel's threaded twin's epoch time against its one-thread twin's,
    both measured in this process, interleaved, best of 5 (a ratio, so a busy neighbour slows
    both sides alike)."""

    params = _THREADED[:3]
    param_names = ["size", "dtype", "batch"]

    def setup(self, size, dtype, batch):
        if warm_threaded(size, dtype, 2) < 2:
            raise NotImplementedError("Numba has only one thread here (NUMBA_NUM_THREADS)")
        self.p = problem(size, dtype, batch=batch)
        self.W, self.b = self.p.copy_params()

    def track_two_threads_over_one(self, size, dtype, batch):
        import numba

        def run(n):
            numba.set_num_threads(n)
            train_once("numba", self.p, self.W, self.b)

        best = interleaved_best_seconds({1: partial(run, 1), 2: partial(run, 2)}, 5)
        return best[1] / best[2]

    track_two_threads_over_one.unit = "ratio"


class EpochOverProbe:
    """One numba epoch's time over a fixed probe's (:func:`common.probe`), both measured in this process,
    interleaved, best of 7.

    The regression detector for a shared machine: a neighbour that slows this core (another process on
    the same core or its SMT sibling, a busy memory bus) slows the probe too, so the ratio keeps what
    fastbp changed.  On the first docs-only ``asv continuous`` runs, the epoch times alone moved by up to
    2.4x (wall clock) and 1.4x (CPU time) between identical commits.
    """

    params = (list(SIZES), ["float64"], list(BATCHES))
    param_names = ["size", "dtype", "batch"]

    def setup(self, size, dtype, batch):
        warm(size, dtype)
        probe()  # compile (or load) the probe
        self.p = problem(size, dtype, batch=batch)
        self.W, self.b = self.p.copy_params()

    def track_epoch_over_probe(self, size, dtype, batch):
        calls = {"epoch": partial(train_once, "numba", self.p, self.W, self.b), "probe": probe}
        best = interleaved_best_seconds(calls, 7)
        return best["epoch"] / best["probe"]

    track_epoch_over_probe.unit = "ratio"


class Forward:
    """One forward pass over ``M[size]`` examples."""

    params = (list(SIZES), list(DTYPES), list(BACKENDS))
    param_names = ["size", "dtype", "backend"]
    locals().update(TIMING)

    def setup(self, size, dtype, backend):
        warm(size, dtype)
        self.p = problem(size, dtype)
        self.impl = BACKENDS[backend]

    def time_forward(self, size, dtype, backend):
        self.impl.forward(self.p.weights, self.p.biases, self.p.X, self.p.activation, self.p.output)

    def time_gradients(self, size, dtype, backend):
        self.impl.gradients(self.p.weights, self.p.biases, self.p.X, self.p.Y, self.p.activation, self.p.output)


class Memory:
    """Peak memory of training 64-64-10 on m examples.

    ``peakmem_data`` is the process with the data built and nothing run (the
    baseline); ``peakmem_train_epoch`` adds one epoch.  Their difference is what
    training costs beyond the data: for the numba kernels it stays the same
    whatever m (workspaces are per network, not per example); the NumPy
    reference at ``full`` batch holds m × n activations, so there it grows.
    """

    params = ([2_000, 20_000], list(BACKENDS), ["32", "full"])
    param_names = ["m", "backend", "batch"]

    def setup(self, m, backend, batch):
        warm("64-64-10", "float64")
        self.p = problem("64-64-10", "float64", m=m, batch=batch)
        self.W, self.b = self.p.copy_params()

    def peakmem_data(self, m, backend, batch):
        pass

    def peakmem_train_epoch(self, m, backend, batch):
        train_once(backend, self.p, self.W, self.b)
