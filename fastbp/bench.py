"""``fastbp bench``: train the same networks, data and hyperparameters in fastbp and its peers.

Every system trains the same network (the same initial W[l], b[l]) on the same
seeded data with the same learning rate, batch size and visiting order (no
shuffling), for one epoch at a time; each system is warmed up first (JIT
compilation, caches) and then timed ``repeats`` times, the systems interleaved
so that a noisy neighbour slows them all alike.  The table gives each system's
best examples/s and fastbp's (numba) ratio to it.

Systems (peers are optional; a missing one is a skipped column with a note):

* ``numba``:   the epoch :meth:`fastbp.MLP.fit` runs: the inputs checked and converted once
  (as JAX's are converted to device arrays once), then :func:`fastbp._dispatch.run_epoch`
  per epoch (whatever the kernels currently are)
* ``numba-api``: :func:`fastbp.kernels.train_epoch`, the public per-call wrapper, which
  re-checks X, Y and the parameters on every call (not run unless asked for)
* ``numpy``:   :func:`fastbp.reference.train_epoch`, the NumPy reference
* ``jax``:     ``jax.jit`` of a ``lax.scan`` over the batches (per-example SGD: batches of one)
* ``torch``:   PyTorch eager, ``nn.Linear`` + autograd + ``optim.SGD``, one batch per step
* ``sklearn``: ``MLPClassifier(solver="sgd", momentum=0, alpha=0, shuffle=False)``, one
  ``partial_fit`` per epoch

Epochs: time-based by default.  Each system is probed on a short epoch (1,024 examples, 512 on
networks over 10⁵ flops per example) and then timed on an epoch of about ``--epoch-seconds``
(0.3 s) of its own training, so that a fixed cost per call (JAX's ~50 µs per jitted call) is a small
part of the time; ``--examples N`` gives every system the same N instead.

Threads: one for every system, set explicitly (numba's thread count, BLAS through
threadpoolctl, ``torch.set_num_threads(1)``, ``XLA_FLAGS``); the run reports them.  XLA does not
keep to its flags, so the process is also pinned to one CPU (``os.sched_setaffinity``, before any
peer is imported; ``--no-pin`` to keep the whole mask, ``--cpu N`` to choose).  The header names
the CPU, its vector extensions and the core it ran on.
It also measures this core's BLAS matmul peak (same dtype, one thread) and
reports fastbp's GFLOP/s (6 · Σ n_l n_{l−1} flops per example) as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from . import _validation as v
from ._argtypes import _batch_size, _non_negative_int, _positive_float, _positive_int, _seed
from .testing import Problem, make_problem

#: Every system ``fastbp bench`` knows, in table order.
SYSTEMS: tuple[str, ...] = ("numba", "numpy", "jax", "torch", "sklearn")
#: Systems that run only when named in ``--systems``.
EXTRA_SYSTEMS: tuple[str, ...] = ("numba-api",)
PEERS: tuple[str, ...] = ("jax", "torch", "sklearn")
DEFAULT_SIZES: tuple[str, ...] = ("2-4-1", "64-32-1", "64-64-10", "784-128-10", "256-256-10")
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
_BLAS_LIMIT = None  # threadpoolctl's limit, set by set_one_thread

#: The default epoch length is time-based: each system's timed epoch holds about this many seconds of
#: its own training (measured from a probe epoch), so that a peer's fixed cost per call (JAX ~50 µs
#: per jitted call) is a small part of what is timed.  Issue 12: with the old fixed 1,024/512 examples
#: that overhead decided the small-net cells.
EPOCH_SECONDS = 0.3
#: A time-based epoch never holds more than this many examples ...
MAX_EXAMPLES = 2_000_000
#: ... nor more than this many bytes of X and Y (each system may hold its own copy).
MAX_DATA_BYTES = 256 * 2**20


# ============================================================== the workload


@dataclass(frozen=True)
class Case:
    """One row of the table: a network, a training mode and the data size."""

    sizes: tuple[int, ...]
    activation: str = "tanh"
    output: str = "sigmoid"
    batch_size: int | None = 1  # None: full batch
    m: int = 1024  # examples per epoch (a time-based run gives each system its own, see run_case)
    dtype: str = "float32"
    learning_rate: float = 0.01

    @property
    def name(self) -> str:
        return "-".join(map(str, self.sizes))

    @property
    def batch(self) -> int:
        return self.m if self.batch_size is None else self.batch_size

    @property
    def label(self) -> str:
        bs = "full" if self.batch_size is None else str(self.batch_size)
        return f"{self.name} {self.activation}/{self.output} b={bs}"

    @property
    def flops_per_example(self) -> int:
        """:func:`flops_per_example` of this network."""
        return flops_per_example(self.sizes)


def make_data(case: Case, seed: int = 0) -> Problem:
    """What every system starts from, the same weights, biases, X, Y: :func:`fastbp.testing.make_problem`."""
    return make_problem(
        list(case.sizes),
        dtype=np.dtype(case.dtype),
        activation=case.activation,
        output=case.output,
        m=case.m,
        seed=seed,
        batch_size=case.batch_size,
        learning_rate=case.learning_rate,
        shuffle=False,
    )


def _labels(d: Problem) -> np.ndarray:
    """The integer class labels of one-hot (softmax) targets."""
    return d.Y.argmax(axis=1).astype(np.int64)


class Skip(Exception):
    """A system cannot run this case (not installed, or the case is outside what it can do)."""


# ============================================================ the systems
# Each maker returns ``epoch()``: one full pass over the data, parameters updated in place.


def _fastbp(backend: str) -> Callable[[Case, Problem], Callable[[], object]]:
    def make(case: Case, d: Problem):
        from . import kernels, reference

        impl = kernels if backend == "numba" else reference
        W, b = d.copy_params()
        return lambda: impl.train_epoch(
            W, b, d.X, d.Y, case.learning_rate, case.batch_size, None, case.activation, case.output
        )

    return make


def _fastbp_checked_once(case: Case, d: Problem):
    """``MLP.fit``'s per-epoch call: arguments checked once here, then the kernels alone."""
    from . import _validation as v
    from . import kernels
    from ._dispatch import run_epoch
    from .errors import DivergenceError

    W, b = d.copy_params()
    p = kernels._Problem(W, b, case.activation, case.output, writes=True)
    X, Y, lr, bs, idx = v.check_train_args(
        p.sizes, p.dtype, p.out, W, b, d.X, d.Y, case.learning_rate, case.batch_size, None
    )

    def epoch():
        J, failed = run_epoch(p.params, p.layout.sizes, X, Y, idx, bs, lr, p.activation, p.out)
        if failed >= 0:
            raise DivergenceError(failed)
        return float(J)

    return epoch


def _jax(case: Case, d: Problem):
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError as exc:
        raise Skip(f"jax not installed ({exc.name})") from None
    if case.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    bs = case.batch
    n_batches = case.m // bs
    if n_batches * bs != case.m:
        raise Skip(f"m={case.m} is not a multiple of the batch size {bs}")
    g = {"tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}.get(case.activation)
    if g is None:
        raise Skip(f"activation {case.activation!r} not wired for jax")
    lr = case.learning_rate

    # Each layer as (W @ aᵀ)ᵀ, not a @ Wᵀ: the same numbers, but XLA's CPU backend ran the
    # a @ Wᵀ form 2-3.5x slower on wide layers here (float32, 784-128-10: about 25k against
    # 55-87k examples/s; re-measure with `fastbp bench --systems jax` after editing it), and a
    # peer must be timed in its fast form, or the ratio flatters fastbp.
    def cost(params, x, y):
        a = x
        for W, b in params[:-1]:
            a = g((W @ a.T).T + b)
        W, b = params[-1]
        z = (W @ a.T).T + b
        if case.output == "sigmoid":  # binary cross-entropy from the logit, summed over outputs
            per = jnp.sum(jnp.maximum(z, 0) - y * z + jnp.log1p(jnp.exp(-jnp.abs(z))), axis=1)
        else:  # softmax cross-entropy via log-sum-exp
            per = jax.nn.logsumexp(z, axis=1) - jnp.sum(y * z, axis=1)
        return jnp.mean(per)

    def step(params, batch):
        x, y = batch
        J, grads = jax.value_and_grad(cost)(params, x, y)
        return jax.tree_util.tree_map(lambda p, gr: p - lr * gr, params, grads), J

    @jax.jit
    def epoch(params, Xb, Yb):
        params, costs = lax.scan(step, params, (Xb, Yb))
        return params, jnp.mean(costs)

    Xb = jnp.asarray(d.X.reshape(n_batches, bs, -1))
    Yb = jnp.asarray(d.Y.reshape(n_batches, bs, -1))
    state = {"params": [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(d.weights, d.biases)]}

    def run():
        state["params"], J = epoch(state["params"], Xb, Yb)
        return float(J)  # blocks until the epoch is done

    return run


def _torch(case: Case, d: Problem):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:
        raise Skip(f"torch not installed ({exc.name})") from None
    acts = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}
    if case.activation not in acts:
        raise Skip(f"activation {case.activation!r} not wired for torch")
    dtype = getattr(torch, case.dtype)
    layers: list = []
    for l, (W, b) in enumerate(zip(d.weights, d.biases)):
        lin = torch.nn.Linear(W.shape[1], W.shape[0], dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if l < len(d.weights) - 1:
            layers.append(acts[case.activation]())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=case.learning_rate, momentum=0.0)
    X = torch.from_numpy(d.X)
    Y = torch.from_numpy(d.Y)
    labels = torch.from_numpy(_labels(d)) if case.output == "softmax" else None
    bs, m = case.batch, case.m

    def run():
        total = 0.0
        for start in range(0, m, bs):
            stop = min(start + bs, m)
            opt.zero_grad(set_to_none=True)
            z = model(X[start:stop])
            if case.output == "sigmoid":  # BCE summed over outputs, mean over the batch (as fastbp)
                J = F.binary_cross_entropy_with_logits(z, Y[start:stop], reduction="sum") / (stop - start)
            else:
                J = F.cross_entropy(z, labels[start:stop])
            J.backward()
            opt.step()
            total += J.item() * (stop - start)
        return total / m

    return run


def _sklearn(case: Case, d: Problem):
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError as exc:  # pragma: no cover - scikit-learn is a fastbp dependency
        raise Skip(f"scikit-learn not installed ({exc.name})") from None
    sk_activation = {"sigmoid": "logistic"}.get(case.activation, case.activation)  # scikit-learn's name
    if sk_activation not in ("tanh", "relu", "logistic", "identity"):
        raise Skip(f"activation {case.activation!r} not in scikit-learn")
    import warnings

    clf = MLPClassifier(
        hidden_layer_sizes=case.sizes[1:-1],
        activation=sk_activation,
        solver="sgd",
        alpha=0.0,
        batch_size=case.batch,
        learning_rate="constant",
        learning_rate_init=case.learning_rate,
        momentum=0.0,
        nesterovs_momentum=False,
        max_iter=1,
        shuffle=False,
        early_stopping=False,
        tol=0.0,
        random_state=0,
    )
    # softmax output: integer labels; sigmoid output: a 0/1 indicator matrix (multilabel → logistic
    # units with binary cross-entropy summed over outputs), or 1-D labels for one output.
    if case.output == "softmax":
        y = _labels(d)
        if case.sizes[-1] < 3:
            raise Skip("scikit-learn uses a logistic unit, not softmax, for 2 classes")
    elif case.output == "sigmoid":
        y = d.Y[:, 0].astype(np.int64) if case.sizes[-1] == 1 else d.Y.astype(np.int64)
    else:
        raise Skip(f"output {case.output!r} is MLPRegressor's, not compared")
    # What unique_labels(y) gives: 0/1 for one logistic output, else class or column indices.
    classes = np.array([0, 1]) if case.output == "sigmoid" and y.ndim == 1 else np.arange(case.sizes[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(d.X[:1], y[:1], classes=classes)  # builds the layers; replaced just below
    # Start from fastbp's initial parameters (scikit-learn stores W[l]ᵀ, shape n_{l−1} × n_l).
    clf.coefs_ = [np.ascontiguousarray(W.T) for W in d.weights]
    clf.intercepts_ = [b.copy() for b in d.biases]
    if [c.shape for c in clf.coefs_] != [(a, b) for a, b in zip(case.sizes[:-1], case.sizes[1:])]:
        raise Skip("scikit-learn built a different network shape")  # pragma: no cover

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(d.X, y)
        return clf.loss_

    return run


MAKERS: dict[str, Callable[[Case, Problem], Callable[[], object]]] = {
    "numba": _fastbp_checked_once,
    "numba-api": _fastbp("numba"),
    "numpy": _fastbp("numpy"),
    "jax": _jax,
    "torch": _torch,
    "sklearn": _sklearn,
}


# ================================================================= threads


def set_one_thread(systems: Sequence[str]) -> dict[str, str]:
    """Pin every system in ``systems`` to one thread; returns what each reports now.

    XLA's flags only take effect if set before jax is first imported (this
    function sets them if jax is not imported yet, and says so otherwise).
    """
    threads: dict[str, str] = {}
    try:
        import numba

        numba.set_num_threads(1)
        threads["numba"] = f"{numba.get_num_threads()} (numba.set_num_threads)"
    except Exception as exc:  # pragma: no cover
        threads["numba"] = f"unknown ({exc})"
    from threadpoolctl import threadpool_info, threadpool_limits

    try:  # SciPy's own OpenBLAS (what np.dot inside a Numba kernel calls) loads lazily: load it to limit it too
        import scipy.linalg  # noqa: F401
    except ImportError:  # pragma: no cover - scipy comes with scikit-learn
        pass
    global _BLAS_LIMIT
    if _BLAS_LIMIT is None:
        _BLAS_LIMIT = threadpool_limits(limits=1)  # undone by restore_threads()
    blas = [
        f"{i['internal_api']} {i['num_threads']}" + (f" ({i['architecture']})" if i.get("architecture") else "")
        for i in threadpool_info()
    ]
    threads["BLAS (numpy, sklearn, torch)"] = ", ".join(blas) or "none found"
    if "torch" in systems:
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
        else:
            threads["torch"] = f"{torch.get_num_threads()} intra-op"
    if "jax" in systems:
        if "jax" in sys.modules and XLA_ONE_THREAD not in os.environ.get("XLA_FLAGS", ""):
            threads["jax"] = "jax was imported before fastbp bench: XLA thread flags not applied"
        else:
            flags = os.environ.get("XLA_FLAGS", "")
            if XLA_ONE_THREAD not in flags:
                os.environ["XLA_FLAGS"] = (flags + " " + XLA_ONE_THREAD).strip()
            threads["jax"] = f"XLA_FLAGS={os.environ['XLA_FLAGS']}"
    return threads


def restore_threads() -> None:
    """Give BLAS back the thread counts it had before :func:`set_one_thread`."""
    global _BLAS_LIMIT
    if _BLAS_LIMIT is not None:
        _BLAS_LIMIT.restore_original_limits()
        _BLAS_LIMIT = None


# ============================================================ one core


@dataclass
class Pinning:
    """What :func:`pin_to_one_cpu` did: the CPU (None: not pinned, ``note`` says why) and how to undo it."""

    cpu: int | None
    before: tuple[int, ...] = ()  # the process's affinity mask before pinning
    note: str = ""
    _saved: dict[int, frozenset[int]] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        if self.cpu is None:
            return f"not pinned ({self.note})"
        return (
            f"CPU {self.cpu} (os.sched_setaffinity, every thread of this process; "
            f"the mask was {_cpu_list(self.before)}; --no-pin keeps it)"
        )

    def restore(self) -> None:
        """Give every thread of the process its mask from before (threads started since: the main thread's)."""
        if self.cpu is None:
            return
        main = self._saved.get(os.getpid(), frozenset(self.before))
        for tid in _threads():
            try:
                os.sched_setaffinity(tid, self._saved.get(tid, main))
            except OSError:  # the thread has ended
                pass
        self.cpu = None


def _threads() -> list[int]:
    """The ids of this process's threads (Linux: /proc/self/task); just the process elsewhere."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:  # pragma: no cover - not Linux
        return [os.getpid()]


def _cpu_list(cpus) -> str:
    return "{" + ", ".join(str(c) for c in sorted(cpus)) + "}"


def pin_to_one_cpu(cpu: int | None = None) -> Pinning:
    """Pin this process, every thread it has now and (by inheritance) every thread it starts later,
    to one CPU of its current affinity mask: ``cpu``, or the lowest one.

    One-thread flags do not hold everywhere: XLA's CPU backend ignores ``XLA_FLAGS``' thread
    settings for some of its work and used both cores of a 2-core machine in issue 12's runs.  Only
    the affinity mask holds every system to one core.  Call it before the peers are imported, so the
    threads they start inherit the mask; threads already running (OpenBLAS's pool, started with
    NumPy) are pinned one by one.  ``ValueError`` if ``cpu`` is not in the mask.
    """
    if not hasattr(os, "sched_setaffinity"):
        return Pinning(None, note="os.sched_setaffinity is not available on this platform")
    before = tuple(sorted(os.sched_getaffinity(0)))
    if cpu is None:
        cpu = before[0]
    elif cpu not in before:
        raise ValueError(f"CPU {cpu} is not in this process's affinity mask {_cpu_list(before)}")
    saved = {}
    for tid in _threads():
        try:
            saved[tid] = frozenset(os.sched_getaffinity(tid))
            os.sched_setaffinity(tid, {cpu})
        except OSError:  # the thread has ended
            pass
    os.sched_setaffinity(0, {cpu})  # the calling thread, whatever /proc says
    return Pinning(cpu, before, _saved=saved)


# ============================================================== the CPU

#: The flags of /proc/cpuinfo that decide how wide the kernels' vectors are (x86, then Arm), in this order.
VECTOR_FLAGS: tuple[str, ...] = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512dq",
    "avx512cd",
    "avx512bw",
    "avx512vl",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "asimdhp",
    "sve",
    "sve2",
    "sme",
)


def _widest(flags: Sequence[str]) -> str:
    for flag, name in (
        ("avx512f", "AVX-512, 512-bit"),
        ("avx2", "AVX2, 256-bit"),
        ("avx", "AVX, 256-bit"),
        ("sve", "SVE"),
        ("asimd", "NEON, 128-bit"),
        ("sse4_2", "SSE4.2, 128-bit"),
    ):
        if flag in flags:
            return name
    return "unknown"


def cpu_info(cpuinfo: str | None = None) -> dict:
    """The CPU the run measures: model, family/model numbers, its vector extensions (those of
    :data:`VECTOR_FLAGS` it has, and the widest), logical CPUs, physical cores, this process's
    affinity mask and the CPU name Numba's LLVM compiles for.

    ``cpuinfo``: the text of /proc/cpuinfo (default: read it; without one, flags are unknown).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as fh:
                cpuinfo = fh.read()
        except OSError:  # pragma: no cover - not Linux
            cpuinfo = ""
    fields: dict[str, str] = {}
    cores = set()
    physical = None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        fields.setdefault(key, value)
        if key == "physical id":
            physical = value
        elif key == "core id":
            cores.add((physical, value))
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    flags = [f for f in VECTOR_FLAGS if f in present]
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    try:
        import llvmlite.binding as llvm

        llvm_cpu = os.environ.get("NUMBA_CPU_NAME") or llvm.get_host_cpu_name()
    except Exception:  # pragma: no cover - llvmlite comes with numba
        llvm_cpu = "unknown"
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine() or "unknown",
        "family": fields.get("cpu family"),
        "model_number": fields.get("model"),
        "flags": flags,
        "flags_known": bool(present),
        "widest_vector": _widest(flags) if present else "unknown",
        "logical_cpus": os.cpu_count(),
        "physical_cores": len(cores) or None,
        "affinity": affinity,
        "llvm_cpu": llvm_cpu,
    }


def describe_cpu(info: Mapping) -> str:
    """One header line of :func:`cpu_info`: model, cores, vector extensions, Numba's target."""
    model = info["model"]
    if info.get("family") is not None:
        model += f" (family {info['family']}, model {info['model_number']})"
    cores = f"{info['logical_cpus']} logical CPUs"
    if info.get("physical_cores"):
        cores += f", {info['physical_cores']} cores"
    if info.get("affinity") is not None:
        cores += f", this process may run on {len(info['affinity'])}"
    if info.get("flags_known"):
        ext = f"vector extensions: {' '.join(info['flags']) or 'none of ' + ', '.join(VECTOR_FLAGS[:3])} "
        ext += f"(widest: {info['widest_vector']})"
    else:
        ext = "vector extensions: unknown (no /proc/cpuinfo flags)"
    return f"{model}; {cores}; {ext}; Numba/LLVM target: {info['llvm_cpu']}"


# ===================================================== the measuring helpers
# One copy of each, for ``fastbp bench``, the asv suite (benchmarks/common.py) and the scripts in tools/.


def flops_per_example(sizes: Sequence[int]) -> int:
    """Nominal flops of one training step per example: 6 · Σ n_l · n_{l−1}.

    2 per multiply-add for the forward product W[l] A[l−1], the same for W[l]ᵀ dZ[l]
    and for dZ[l] A[l−1]ᵀ (biases, activations and the update not counted).  Nominal:
    it counts W[1]ᵀ dZ[1] (2 · n_0 · n_1), which no kernel computes since nothing needs
    ∂J/∂X; the work done is 4 · n_0 · n_1 + 6 · Σ_{l≥2} n_l · n_{l−1}.  Every GFLOP/s
    and %-of-peak figure in the docs and asv's ``track_gflops`` history uses this count,
    so it stays; ``sizes`` as for :class:`fastbp.MLP` (``TypeError``/``ValueError`` otherwise).
    """
    sizes = v.check_layer_sizes(sizes)
    return 6 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def true_flops_per_example(sizes: Sequence[int]) -> int:
    """The flops a training step does per example: 4 · n_0 · n_1 + 6 · Σ_{l≥2} n_l · n_{l−1}.

    :func:`flops_per_example` less the 2 · n_0 · n_1 of W[1]ᵀ dZ[1], which no kernel computes
    (nothing needs ∂J/∂X): the count issue 12's goal 3 divides by the BLAS peak
    (``tools/peak_share.py``).  ``sizes`` as for :func:`flops_per_example`."""
    sizes = v.check_layer_sizes(sizes)
    return flops_per_example(sizes) - 2 * sizes[0] * sizes[1]


def best_seconds(func: Callable[..., object], repeats: int = 3, setup: Callable[[], tuple] | None = None) -> float:
    """The shortest of ``repeats`` wall times of ``func(*setup())`` (``setup`` untimed; default no arguments)."""
    repeats = v.check_int(repeats, "repeats", 1)
    best = math.inf
    for _ in range(repeats):
        args = () if setup is None else setup()
        t0 = time.perf_counter()
        func(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved_best_seconds(
    calls: Mapping[str, Callable[..., object]], repeats: int = 3, setup: Callable[[], tuple] | None = None
) -> dict[str, float]:
    """:func:`best_seconds` of every call, interleaved (a, b, c, a, b, c, …): load from
    other processes hits them all alike.  ``setup`` (untimed) gives each call its arguments."""
    repeats = v.check_int(repeats, "repeats", 1)
    best = dict.fromkeys(calls, math.inf)
    for _ in range(repeats):
        for name, call in calls.items():
            best[name] = min(best[name], best_seconds(call, 1, setup))
    return best


def blas_peak_gflops(dtype: str, n: int = 512, repeats: int = 5) -> float:
    """This core's measured matmul peak: best GFLOP/s of an n×n @ n×n product (2n³ flops).

    Uses as many BLAS threads as BLAS has now: call it under one thread
    (:func:`set_one_thread`, or ``threadpoolctl.threadpool_limits(1)``) for one core's peak.
    """
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    n = v.check_int(n, "n", 1)
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n, n)).astype(dtype)
    B = rng.normal(size=(n, n)).astype(dtype)
    A @ B  # first call: page faults, thread start-up
    return 2 * n**3 / best_seconds(lambda: A @ B, repeats) / 1e9


# ============================================================== the run


@dataclass
class Row:
    """One case's results: best examples/s per system (``None``: skipped, see ``notes``) and the
    examples per epoch each system was timed on."""

    case: Case
    rates: dict[str, float | None] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)

    def ratio(self, system: str) -> float | None:
        """fastbp numba's examples/s over ``system``'s (> 1: fastbp is faster)."""
        mine, theirs = self.rates.get("numba"), self.rates.get(system)
        if not mine or not theirs:
            return None
        return mine / theirs

    def gflops(self, system: str = "numba") -> float | None:
        rate = self.rates.get(system)
        return None if rate is None else rate * self.case.flops_per_example / 1e9


def max_examples(case: Case) -> int:
    """The most examples a time-based epoch of ``case`` holds: :data:`MAX_EXAMPLES`, or fewer where
    X and Y would pass :data:`MAX_DATA_BYTES`."""
    per_example = np.dtype(case.dtype).itemsize * (case.sizes[0] + case.sizes[-1])
    return max(1, min(MAX_EXAMPLES, MAX_DATA_BYTES // per_example))


def examples_for(rate: float, seconds: float, batch: int, least: int, most: int) -> int:
    """Examples for an epoch of about ``seconds`` at ``rate`` examples/s, in whole batches of ``batch``:
    at least ``least`` (the probe's epoch), at most ``most`` (rounded down to whole batches, one at least)."""
    want = math.ceil(rate * seconds / batch) * batch
    most = max(batch, most // batch * batch)
    return int(min(max(want, least), most))


def run_case(
    case: Case, systems: Sequence[str], repeats: int = 3, seed: int = 0, epoch_seconds: float | None = None
) -> Row:
    """Train ``case`` in every system: a warm-up epoch each, then ``repeats`` interleaved timed epochs.

    ``epoch_seconds`` (a time-based epoch length): ``case.m`` examples are only the probe; each system's
    probe epoch is timed once after the warm-up, and the system is then timed on an epoch of
    :func:`examples_for` about ``epoch_seconds`` at that rate (new data of that length from the same
    seed, the same network; a new warm-up).  ``None``, or a full-batch case (whose batch *is* the
    epoch): every system runs ``case.m`` examples.
    """
    d = make_data(case, seed)
    data = {case.m: d}
    row = Row(case)
    epochs: dict[str, Callable[[], object]] = {}
    for name in systems:
        try:
            epochs[name] = MAKERS[name](case, d)
            epochs[name]()  # warm-up: JIT compilation, caches, first-touch of the data
            m = case.m
            if epoch_seconds is not None and case.batch_size is not None:
                rate = case.m / best_seconds(epochs[name], 1)
                m = examples_for(rate, epoch_seconds, case.batch, case.m, max_examples(case))
                if m != case.m:
                    long_case = replace(case, m=m)
                    if m not in data:
                        data[m] = make_data(long_case, seed)
                    epochs[name] = MAKERS[name](long_case, data[m])
                    epochs[name]()  # warm-up again: JAX compiles for the new length
            row.examples[name] = m
        except Skip as exc:
            epochs.pop(name, None)
            row.rates[name], row.notes[name] = None, str(exc)
    del data, d
    for name, seconds in interleaved_best_seconds(epochs, repeats).items():
        row.rates[name] = row.examples[name] / seconds
    return row


def build_cases(
    sizes: Sequence[str],
    activations: Sequence[str],
    outputs: Sequence[str],
    batch_sizes: Sequence[int | None],
    examples: int | None,
    dtype: str,
    learning_rate: float,
) -> list[Case]:
    """The table's rows for each size: the headline (first activation and output) at every
    batch size, then each other activation and each other output at the first batch size."""
    cases = []
    finite = [b for b in batch_sizes if b is not None]
    for name in sizes:
        layer_sizes = tuple(int(x) for x in name.split("-"))
        m = examples if examples is not None else _default_m(layer_sizes)
        step = math.lcm(*finite) if finite else 1
        m = max(step, (m // step) * step)  # a whole number of batches for every batch size (JAX's scan)
        base = dict(sizes=layer_sizes, m=m, dtype=dtype, learning_rate=learning_rate)
        variants = [(activations[0], outputs[0], b) for b in batch_sizes]
        variants += [(a, outputs[0], batch_sizes[0]) for a in activations[1:]]
        variants += [(activations[0], o, batch_sizes[0]) for o in outputs[1:]]
        for act, out, bs in variants:
            if out == "softmax" and layer_sizes[-1] < 2:
                continue  # softmax over one output is constant: no row
            cases.append(Case(activation=act, output=out, batch_size=bs, **base))
    return cases


def _default_m(layer_sizes: Sequence[int]) -> int:
    """The probe epoch of a time-based run (and the whole epoch before issue 12): 1024 examples for
    small networks, 512 for those over 10⁵ flops per example.

    Long enough to time once, short enough that the slowest per-example peers (~5-10k examples/s)
    take 0.05-0.2 s over it.
    """
    return 1024 if flops_per_example(layer_sizes) < 100_000 else 512


def _m_cell(row: Row) -> str:
    """The table's m: one number, or the range over the systems (each system's is in ``--json``)."""
    ms = sorted(set(row.examples.values())) or [row.case.m]
    return f"{ms[0]:,}" if len(ms) == 1 else f"{ms[0]:,}–{ms[-1]:,}"


def format_table(rows: Sequence[Row], systems: Sequence[str], peak: float | None) -> str:
    """A Markdown table: examples/s per system, fastbp's ratio to each, GFLOP/s and % of BLAS peak."""
    head = ["case", "m"] + [f"{s} ex/s" for s in systems]
    head += [f"numba/{s}" for s in systems if s != "numba"]
    if "numba" in systems:
        head += ["numba GFLOP/s", "% of BLAS peak"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.case.label, _m_cell(row)]
        cells += ["skipped" if row.rates.get(s) is None else f"{row.rates[s]:,.0f}" for s in systems]
        for s in systems:
            if s != "numba":
                r = row.ratio(s)
                cells.append("–" if r is None else f"{r:.2f}×")
        if "numba" in systems:
            gf = row.gflops("numba")
            cells.append("–" if gf is None else f"{gf:.3f}")
            cells.append("–" if gf is None or not peak else f"{100 * gf / peak:.2g}%")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(args: argparse.Namespace, out=None) -> int:
    """``fastbp bench``: run every case, print the table, optionally save JSON and a plot."""
    out = sys.stdout if out is None else out
    systems = list(dict.fromkeys(args.systems))
    # First the core, then the thread settings: torch (imported by set_one_thread) and XLA (at jax's
    # first use) start their thread pools after this, and those threads inherit the one-CPU mask.
    pin, cpu = getattr(args, "pin", True), getattr(args, "cpu", None)
    pinning = pin_to_one_cpu(cpu) if pin else Pinning(None, note="--no-pin")
    try:
        threads = set_one_thread(systems)
        try:
            return _run(args, systems, threads, pinning, out)
        finally:
            restore_threads()
    finally:
        pinning.restore()


def _run(args: argparse.Namespace, systems: list[str], threads: dict[str, str], pinning: Pinning, out) -> int:
    cases = build_cases(
        args.sizes, args.activation, args.output, args.batch_sizes, args.examples, args.dtype, args.learning_rate
    )
    epoch_seconds = None if args.examples is not None else getattr(args, "epoch_seconds", EPOCH_SECONDS)
    peak = blas_peak_gflops(args.dtype) if "numba" in systems else None
    cpu = cpu_info()
    print(
        f"fastbp bench: {len(cases)} cases × {len(systems)} systems, dtype={args.dtype}, "
        f"α={args.learning_rate}, {args.repeats} interleaved repeats (best kept), no shuffling",
        file=out,
    )
    if epoch_seconds is None:
        print(f"  epoch: the same m examples for every system (--examples {args.examples})", file=out)
    else:
        print(
            f"  epoch: time-based, about {epoch_seconds:g} s of each system's own training "
            f"(m from a probe epoch of 1024 examples, 512 on nets over 1e5 flops/example; "
            f"whole batches, at most {MAX_EXAMPLES:,} examples or {MAX_DATA_BYTES // 2**20} MiB of X and Y; "
            "m per system in --json; --examples N for a fixed m)",
            file=out,
        )
    print(f"  CPU: {describe_cpu(cpu)}; Python {platform.python_version()}", file=out)
    print(f"  pinned: {pinning.describe()}", file=out)
    for key, value in threads.items():
        print(f"  threads: {key}: {value}", file=out)
    if peak is not None:
        print(
            f"  BLAS matmul peak ({args.dtype}, 1 thread, 512×512): {peak:.2f} GFLOP/s"
            + ("  [OPENBLAS_CORETYPE is set: unset it for the real peak]" if "OPENBLAS_CORETYPE" in os.environ else ""),
            file=out,
        )
        print(
            "  GFLOP/s and % of peak count 6·Σ n_l·n_(l−1) flops per example (flops_per_example: nominal, with the"
            " 2·n_0·n_1 of ∂J/∂X that no kernel computes, so a wide first layer can read over 100 %)",
            file=out,
        )
    rows = []
    for i, case in enumerate(cases, 1):
        rows.append(run_case(case, systems, args.repeats, args.seed, epoch_seconds))
        if args.progress:
            print(f"  [{i}/{len(cases)}] {case.label}", file=sys.stderr)
    print(format_table(rows, systems, peak), file=out)
    notes = sorted({f"{s}: {n}" for row in rows for s, n in row.notes.items()})
    for note in notes:
        print(f"  skipped: {note}", file=out)
    versions = _versions(systems)
    print("  versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), file=out)
    if args.json:
        payload = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpu": cpu["model"],
            "cpu_info": cpu,
            "pinned_cpu": pinning.cpu,
            "pinning": pinning.describe(),
            "epoch_seconds": epoch_seconds,
            "threads": threads,
            "blas_peak_gflops": peak,
            "versions": versions,
            "systems": systems,
            "rows": [
                dict(case=asdict(r.case), label=r.case.label, rates=r.rates, examples=r.examples, notes=r.notes)
                for r in rows
            ],
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=1)
    if args.plot:
        plot(rows, systems, args.plot)
    return 0


def plot(rows: Sequence[Row], systems: Sequence[str], path: str) -> None:
    """Examples/s against network size, one line per system, one panel per batch size.

    Only the headline rows (the first activation and output) are drawn; networks are
    placed in order of flops per example, equally spaced.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("nothing to plot: no rows")
    act, out = rows[0].case.activation, rows[0].case.output
    head = [r for r in rows if (r.case.activation, r.case.output) == (act, out)]
    batches = list(dict.fromkeys(r.case.batch_size for r in head))
    names = [n for _, n in sorted({(r.case.flops_per_example, r.case.name) for r in head})]
    fig, axes = plt.subplots(
        1, len(batches), figsize=(3.4 * len(batches) + 0.6, 3.6), dpi=80, sharey=True, squeeze=False
    )
    for ax, bs in zip(axes[0], batches):
        for s in systems:
            pts = sorted(
                (names.index(r.case.name), r.rates[s]) for r in head if r.case.batch_size == bs and r.rates.get(s)
            )
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, label=s)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
        ax.set_title(f"batch {bs or 'full'}", fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("examples / s (1 thread)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Training throughput, {act} hidden / {out} output, {rows[0].case.dtype}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _versions(systems: Sequence[str]) -> dict[str, str]:
    from importlib import metadata

    names = {
        "numba": "numba",
        "numba-api": "numba",
        "numpy": "numpy",
        "jax": "jax",
        "torch": "torch",
        "sklearn": "scikit-learn",
    }
    out = {"fastbp": metadata.version("fastbp")} if _installed("fastbp") else {}
    for s in systems:
        if _installed(names[s]):
            out[names[s]] = metadata.version(names[s])
    return out


def _installed(dist: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


# ============================================================== the CLI


def _size(text: str) -> str:
    parts = text.split("-")
    if len(parts) < 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected layer sizes like 64-32-1, got {text!r}")
    return text


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``bench`` to ``fastbp``'s subcommands (``subparsers`` from ``add_subparsers``)."""
    p = subparsers.add_parser(
        "bench",
        help="compare training speed with JAX, PyTorch and scikit-learn on the same networks and data",
        description=(
            "Train the same networks, data and hyperparameters in fastbp (numba kernels, numpy "
            "reference) and its peers (JAX, PyTorch, scikit-learn: optional, skipped if missing), "
            "one thread each, and print examples/s and fastbp's ratio to each. Rows per size: "
            "the first activation/output at every batch size, then the other activations and outputs "
            "at the first batch size."
        ),
    )
    p.add_argument(
        "--sizes",
        type=_size,
        nargs="+",
        default=None,
        help=f"networks as layer sizes n0-n1-...-nL (default: {' '.join(DEFAULT_SIZES)})",
    )
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="(default: float32)")
    p.add_argument(
        "--batch-sizes",
        type=_batch_size,
        nargs="+",
        default=None,
        help="examples per update, or 'full' (default: 1 32 256)",
    )
    p.add_argument(
        "--activation",
        nargs="+",
        choices=["tanh", "relu", "sigmoid"],
        default=["tanh", "relu"],
        help="hidden activations; the first is the headline (default: tanh relu)",
    )
    p.add_argument(
        "--output",
        nargs="+",
        choices=["sigmoid", "softmax"],
        default=["sigmoid", "softmax"],
        help="output layers; the first is the headline (default: sigmoid softmax)",
    )
    epoch = p.add_mutually_exclusive_group()
    epoch.add_argument(
        "--examples",
        type=_positive_int,
        default=None,
        metavar="N",
        help=(
            "examples per epoch, the same for every system, rounded to whole batches (default: time-based, "
            "see --epoch-seconds; --quick: 64)"
        ),
    )
    epoch.add_argument(
        "--epoch-seconds",
        type=_positive_float,
        default=None,
        metavar="S",
        help=(
            f"the default epoch length is time-based: each system is timed on an epoch of about S seconds of "
            f"its own training, its m measured from a probe epoch of 1024 examples (512 on networks over 1e5 "
            f"flops per example), in whole batches, at most {MAX_EXAMPLES:,} examples or "
            f"{MAX_DATA_BYTES // 2**20} MiB of X and Y (default: {EPOCH_SECONDS}; full-batch rows keep the "
            f"probe's m)"
        ),
    )
    p.add_argument(
        "--systems",
        nargs="+",
        choices=list(SYSTEMS + EXTRA_SYSTEMS),
        default=list(SYSTEMS),
        help="systems to run (default: all; missing peers are skipped with a note)",
    )
    p.add_argument(
        "--learning-rate", type=_positive_float, default=0.01, help="α, the same for every system (default: 0.01)"
    )
    p.add_argument(
        "--repeats", type=_positive_int, default=None, help="timed epochs per system, best kept (default: 3)"
    )
    p.add_argument("--seed", type=_seed, default=0, help="seed of the weights and data, in [0, 2**32) (default: 0)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: sizes 2-4-1 and 8-8-2, batch 1 and 4, 64 examples, 1 repeat "
        "(options given explicitly still apply)",
    )
    p.add_argument(
        "--cpu",
        type=_non_negative_int,
        default=None,
        help="pin the run to this CPU, one of the process's affinity mask (default: the lowest of the mask)",
    )
    p.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the process to one CPU (by default it is, with os.sched_setaffinity, before any peer "
        "is imported: XLA does not keep to its one-thread flags)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--plot", metavar="PNG", help="also plot examples/s against network size (matplotlib)")
    p.add_argument("--progress", action="store_true", help="print each case as it finishes, on stderr")
    return p


#: What ``--quick`` changes, for the options not given explicitly.
QUICK = {"sizes": ["2-4-1", "8-8-2"], "batch_sizes": [1, 4], "examples": 64, "repeats": 1}
DEFAULTS = {"sizes": list(DEFAULT_SIZES), "batch_sizes": [1, 32, 256], "examples": None, "repeats": 3}
#: Options filled after QUICK/DEFAULTS, whatever the mode.
ALWAYS = {"epoch_seconds": EPOCH_SECONDS}


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--json``/``--plot`` (found before any training), or None."""
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(path):
                return f"argument {option}: {path!r} is a folder, not a file"
            if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                return f"argument {option}: cannot write {path!r} (no such folder, or not writable)"
    if getattr(args, "pin", True) and getattr(args, "cpu", None) is not None:
        if not hasattr(os, "sched_getaffinity"):
            return "argument --cpu: cannot pin on this platform (no os.sched_setaffinity)"
        mask = os.sched_getaffinity(0)
        if args.cpu not in mask:
            return f"argument --cpu: CPU {args.cpu} is not in this process's affinity mask {_cpu_list(mask)}"
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return "argument --plot: needs matplotlib (pip install 'fastbp[bench]')"
    return None


def main(args: argparse.Namespace, out=None) -> int:
    """Dispatch target for ``fastbp bench``: fills the defaults (``--quick``'s or the full run's), then runs.

    A bad ``--json``/``--plot`` path is one line on stderr and exit status 2, before anything runs.
    """
    problem = _usage_problem(args)
    if problem:
        print(f"fastbp bench: error: {problem}", file=sys.stderr)
        return 2
    defaults = dict(QUICK if args.quick else DEFAULTS)
    if args.epoch_seconds is not None:
        defaults.pop("examples")  # --quick --epoch-seconds S: the time-based epoch asked for, not --quick's 64
    for key, value in {**defaults, **ALWAYS}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return run(args, out)
