"""Reproducible to the bit: the same seed gives the same initial and trained weights.

In this process, in fresh interpreters (``sys.executable``), and whatever
``NUMBA_NUM_THREADS`` is; each backend against itself (the two backends agree to
a tolerance, not to the bit: they sum in different orders).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import fastbp

# Run as it is in fresh interpreters (``python -c``), and exec'd in this process.
SCRIPT = r"""
import hashlib
import numpy as np
import fastbp


def digests():
    lines = []
    rng = np.random.default_rng(123)
    X = rng.normal(size=(40, 5))
    Y = np.eye(3)[rng.integers(0, 3, 40)]
    for backend in ("numba", "numpy"):
        for dtype in (np.float32, np.float64):
            net = fastbp.MLP([5, 7, 3], activation="tanh", output="softmax", dtype=dtype, seed=2024)
            init = hashlib.sha256(net.params.tobytes()).hexdigest()
            net.fit(X, Y, epochs=3, learning_rate=0.05, batch_size=4, backend=backend)
            lines.append(f"{backend} {np.dtype(dtype).name} {init} {hashlib.sha256(net.params.tobytes()).hexdigest()}")
    return lines


if __name__ == "__main__":
    print("\n".join(digests()))
"""


def digests_here() -> list[str]:
    """The script's output, computed in this process."""
    namespace = {"__name__": "reproducibility_script"}
    exec(SCRIPT, namespace)
    return namespace["digests"]()


def run_fresh(threads: int) -> list[str]:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")[:-1]


def test_same_seed_same_bits_in_this_process():
    assert digests_here() == digests_here()


def test_same_seed_same_bits_across_fresh_processes_and_thread_counts():
    here = digests_here()
    assert len(here) == 4
    assert run_fresh(1) == here
    assert run_fresh(2) == here


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_networks_start_from_the_same_draw(dtype):
    """The initial draw is made in float64 and rounded: a float32 network starts from float64's weights, rounded."""
    a = fastbp.MLP([4, 6, 2], seed=5, dtype=dtype)
    b = fastbp.MLP([4, 6, 2], seed=5, dtype=np.float64)
    assert a.params.tobytes() == b.params.astype(dtype).tobytes()


def test_different_seeds_give_different_weights():
    assert fastbp.MLP([4, 6, 2], seed=1).params.tobytes() != fastbp.MLP([4, 6, 2], seed=2).params.tobytes()


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_training_twice_from_the_same_seed_gives_the_same_bits(backend):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 4)), (rng.random((30, 1)) < 0.5)
    nets = [fastbp.MLP([4, 5, 1], activation="relu", seed=9) for _ in range(2)]
    hist = [n.fit(X, Y, epochs=2, batch_size=3, backend=backend) for n in nets]
    assert nets[0].params.tobytes() == nets[1].params.tobytes()
    assert hist[0].loss == hist[1].loss


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_bits_do_not_depend_on_where_the_workspaces_lie(dtype, output):
    """Z and A carved from one buffer at every gap (and order): the same bits.

    Regression: the softmax sum shared a loop with a store, so LLVM vectorised it
    behind a run-time check on how far apart A and Z lay in memory, and with
    ``reassoc`` the two paths summed in different orders; forward's two
    back-to-back ``np.empty`` buffers then gave allocator-dependent bits.
    """
    from fastbp._plain.loops import _forward_batch
    from fastbp.losses import NAMES as OUTPUTS
    from fastbp.params import Layout

    for n_y in (2, 3, 4, 5, 8, 9, 16, 17):  # around the vector widths
        layout = Layout([3, n_y])
        rng = np.random.default_rng(n_y)
        params = rng.normal(size=layout.n_params).astype(dtype)
        X = rng.normal(size=(3, 3)).astype(dtype)
        n = 3 * layout.n_units
        results = set()
        for gap in range(-40, 41):
            buf = np.zeros(3 * n + 200, dtype)
            Z = buf[100 : 100 + n].reshape(3, -1)
            start = 100 + n + gap if gap >= 0 else 100 - n + gap + 1  # A after Z, or before it
            A = buf[start : start + n].reshape(3, -1)
            _forward_batch(params, layout.sizes, X, 1, OUTPUTS[output], Z, A)
            results.add(Z.tobytes() + A.tobytes())
        assert len(results) == 1, f"{n_y} outputs: the bits depend on the gap between Z and A"


#: Trains one epoch with each named kernel (kernel:batch size:dtype) on a net where it runs; prints one
#: digest per kernel.
KERNELS_SCRIPT = r"""
import hashlib
import sys
import numpy as np
from fastbp._dispatch import run_epoch
from fastbp.activations import get_activation
from fastbp.losses import NAMES
from fastbp.params import Layout

rng = np.random.default_rng(123)
for kernel, batch_size, dtype in [k.split(":") for k in sys.argv[1:]]:
    batch_size, dtype = int(batch_size), np.dtype(dtype).type
    X = rng.normal(size=(40, 5)).astype(dtype)
    Y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 40)]
    layout = Layout([5, 7, 3])
    p = (rng.normal(size=layout.n_params) * 0.3).astype(dtype)
    order = np.arange(40, dtype=np.int64)
    run_epoch(p, layout.sizes, X, Y, order, batch_size, dtype(0.05), get_activation("tanh"), NAMES["softmax"],
              epoch=kernel)
    print(kernel, np.dtype(dtype).name, hashlib.sha256(p.tobytes()).hexdigest())
"""

#: kernel:batch size:dtype: the kernels whose W[1] passes were once compiled apart (the blocked and
#: deferred kernels, now on the register tiles: a called helper, :func:`fastbp._fast._tiles._strips_compiled`),
#: one dtype each (a case is a cold compile of 10-15 s in a fresh process that holds up a pytest
#: worker; both dtypes are covered, and every kernel in both dtypes is held to the plain one elsewhere).
CACHED_KERNELS = ["_sgd_epoch_blocked_tiles:1:float32", "_deferred_tiles_epoch:4:float64"]


#: Two epochs of the split optimizer kernel (on its one-thread twin) for each case in argv
#: (optimizer:output:sizes:m:batch:activation:dtype); prints one digest of the parameters, the
#: optimizer state and the losses per case.
OPTIMIZER_SCRIPT = r"""
import hashlib
import sys
import numpy as np
from fastbp._dispatch import run_epoch_opt
from fastbp.activations import get_activation
from fastbp.losses import NAMES
from fastbp.optimizers import SGD, Adam
from fastbp.params import Layout

OPTIMIZERS = {"adam": lambda: Adam(0.001), "nesterov": lambda: SGD(0.01, momentum=0.9, nesterov=True)}
rng = np.random.default_rng(1)
# argv: optimizer:output:sizes:m:batch:activation:dtype
for name, output, net, m, batch, act, dtype in [a.split(":") for a in sys.argv[1:]]:
    sizes, m, batch, dtype = [int(n) for n in net.split("-")], int(m), int(batch), np.dtype(dtype)
    X = rng.normal(size=(m, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], m)]
    if output == "exp":  # Poisson targets: counts
        Y = rng.poisson(2.0, size=(m, sizes[-1])).astype(dtype)
    layout = Layout(sizes)
    p = (rng.normal(size=layout.n_params) * 0.1).astype(dtype)
    opt = OPTIMIZERS[name]()
    opt.bind(layout.sizes, dtype)
    order = np.arange(m, dtype=np.int64)
    losses = [run_epoch_opt(p, layout.sizes, X, Y, order, batch, get_activation(act), NAMES[output],
                            opt.kind, opt.hyper(), opt.state, opt.counter, 1e-2, 1.0,
                            epoch="_columns_epoch_opt_split", threads=False)[0] for _ in range(2)]
    digest = hashlib.sha256(p.tobytes() + opt.state.tobytes() + np.array(losses).tobytes()).hexdigest()
    print(name, output, dtype.name, digest)
"""


def _compiled_then_cached(tmp_path, script, args) -> list[list[str]]:
    """The output lines of ``script`` run twice in fresh processes: the first compiles into an empty
    Numba cache, the second loads from it."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert out.returncode == 0, out.stderr
        runs.append(out.stdout.split("\n")[:-1])
    return runs


@pytest.mark.start_first
def test_an_optimizer_step_compiled_here_and_one_loaded_from_the_cache_give_the_same_bits(tmp_path):
    """The same for the optimizer steps.  Regressions: with fastmath, the momentum step's vectorised
    and scalar copies (chosen at run time by an overlap check of its arrays) rounded differently, and
    a process that compiled the split kernel and one that loaded it gave Nesterov steps 1 ulp apart;
    and the Poisson cost's sum (a loop that calls log, so never vectorised) was split into partial
    sums in one copy and not in the other: epoch losses 1 ulp apart (fastbp.losses._poisson_cost_sum)."""
    # Adam and Nesterov on each gradient: the register tiles (64-100-10, batches of 200) in float32,
    # the loops (3-1-4, batches of 32) in float64.  Each (gradient, dtype) pair is a cold
    # compile of 20-25 s in the suite's longest fresh process, so one dtype each; every pair is held
    # to the plain kernel elsewhere (tests/test_dispatch.py).
    cases = [
        "adam:softmax:64-100-10:400:200:tanh:float32",
        "nesterov:softmax:64-100-10:400:200:tanh:float32",
        "adam:exp:3-1-4:301:32:relu:float64",
        "nesterov:softmax:3-1-4:150:32:tanh:float64",
    ]
    runs = _compiled_then_cached(tmp_path, OPTIMIZER_SCRIPT, cases)
    assert len(runs[0]) == len(cases)
    assert runs[0] == runs[1]


@pytest.mark.start_first
def test_a_kernel_compiled_here_and_one_loaded_from_the_cache_give_the_same_bits(tmp_path):
    """One fresh process compiles the kernels into an empty Numba cache, a second loads them from it:
    the same bits.  Regression: the blocked and deferred kernels' block passes, compiled as functions
    of their own, gave results 1 ulp apart between the two (the workspaces then lie elsewhere in
    memory, and a run-time overlap check chose another summation order)."""
    runs = _compiled_then_cached(tmp_path, KERNELS_SCRIPT, CACHED_KERNELS)
    assert len(runs[0]) == len(CACHED_KERNELS)
    assert runs[0] == runs[1]
