"""Start-up: a first ``fit`` + ``predict`` compiles only what it runs, and a second process
compiles nothing (Numba's on-disk cache hits).

Each case runs in fresh interpreters sharing one empty ``NUMBA_CACHE_DIR`` (the
first process fills it, the second must load from it).  What was compiled is read
from the dispatchers themselves (``signatures``, ``stats``), never from a clock:
the times are in ``docs/performance.md`` (``benchmarks/bench_startup.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

# The first training call of the README and of the asv start-up benchmark
# (benchmarks/bench_startup.py), then a report of every fastbp dispatcher that holds
# a compiled specialisation and of the entry kernels' cache statistics.
SCRIPT = """
import json, sys
import numpy as np
import fastbp
from numba.core.dispatcher import Dispatcher

sizes, batch_size, dtype = json.loads(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.normal(size=(16, sizes[0]))
Y = (rng.random((16, sizes[-1])) < 0.5).astype(float)
net = fastbp.MLP(sizes, seed=0, dtype=dtype)
net.fit(X, Y, epochs=1, batch_size=batch_size)
net.predict(X)

compiled, stats = {}, {}
for modname, mod in list(sys.modules.items()):
    if not modname.startswith("fastbp."):
        continue
    for name, obj in vars(mod).items():
        if isinstance(obj, Dispatcher) and obj.signatures:
            key = mod.__name__.split(".")[-1] + "." + name
            compiled[key] = len(obj.signatures)
            stats[key] = [sum(obj.stats.cache_hits.values()), sum(obj.stats.cache_misses.values())]
print(json.dumps({"compiled": compiled, "stats": stats}))
"""

#: (layer sizes, batch size, dtype) of each case.
CASES = {
    "4-8-1 per-example float64 (the asv benchmark)": ([4, 8, 1], 1, "float64"),
    "64-32-10 per-example float32 (blocked W[1])": ([64, 32, 10], 1, "float32"),
}


def _expected_epoch(case) -> str:
    """The epoch kernel the dispatcher selects for a case (``module.name``, as the script reports it)."""
    from fastbp import _dispatch
    from fastbp.activations import ACT_TANH
    from fastbp.losses import OUT_SIGMOID

    sizes, batch_size, _ = case
    name = _dispatch.select_epoch(sizes, batch_size, OUT_SIGMOID, ACT_TANH)
    row = next(row for row in _dispatch.FAST_EPOCHS if row.name == name)
    return row.module.split(".")[-1] + "." + name


#: Entry kernels that must never be compiled by a first fit + predict of these cases: the plain
#: epoch (only after a fast kernel hands an epoch over) and batch kernels, and every other fast epoch.
NOT_NEEDED = (
    "loops._train_epoch",
    "loops._output_batch",
    "loops._forward_batch",
    "loops._loss_batch",
    "loops._gradients_batch",
)


def _run(case, cache_dir) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(case)], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def _epoch_kernels(compiled: dict) -> list[str]:
    """The compiled epoch kernels of the fast modules (``_sgd_epoch``, ``_sgd_epoch_blocked_tiles``, …)."""
    return [k for k in compiled if "_epoch" in k.split(".")[-1] and not k.startswith("loops.")]


@pytest.mark.parametrize("name", list(CASES))
def test_first_fit_compiles_only_its_kernels_and_a_second_process_loads_them(name, tmp_path):
    cold = _run(CASES[name], tmp_path)
    epoch = _epoch_kernels(cold["compiled"])
    assert epoch == [_expected_epoch(CASES[name])], ("the selected epoch kernel alone, compiled once", cold["compiled"])
    entries = {epoch[0]: 1, "rows._predict_rows": 1}
    for kernel, n in entries.items():
        assert cold["compiled"].get(kernel) == n, (kernel, cold["compiled"])
        assert cold["stats"][kernel] == [0, 1], (kernel, "expected one cache miss in a cold process")
    assert not [k for k in NOT_NEEDED if k in cold["compiled"]], cold["compiled"]
    # predict's rows kernel calls the loops for g and the output with the signatures they have (one
    # compile each, shared with the epoch kernel where it calls them too)
    for helper in ("activations.activate_loop", "losses.output_loop"):
        assert cold["compiled"].get(helper) == 1, (helper, cold["compiled"])

    warm = _run(CASES[name], tmp_path)
    # Loaded from disk: a hit, no miss, and nothing else compiled (no helper is even typed).
    assert warm["compiled"] == entries, warm["compiled"]
    for kernel in entries:
        assert warm["stats"][kernel] == [1, 0], (kernel, warm["stats"][kernel])


@pytest.mark.slow  # one more cold compile (~6 s), for a benchmark script
def test_startup_profile_lists_the_epoch_kernel_of_a_cold_first_fit(capsys):
    """``tools/startup_profile.py profile`` (the tool behind docs/performance.md's table) runs."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tools"))
    try:
        import startup_profile
    finally:
        sys.path.pop(0)
    startup_profile.main(["profile", "--sizes", "3,5,1", "--min-seconds", "0"])
    out = capsys.readouterr().out
    assert "first fit" in out and "_epoch" in out and "all " in out, out
    # the first predict compiles the rows kernel, and the table says it was predict's
    row = next(line for line in out.splitlines() if line.endswith("rows._predict_rows"))
    assert float(row.split()[2]) == 0 and float(row.split()[3]) > 0, row


# A custom activation from a module file (its source is what the cache key hashes), trained with
# per-example SGD; prints the parameters' bits and the cache statistics of the re-compiled epoch kernel.
CUSTOM_SCRIPT = """
import hashlib, importlib, json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import fastbp
from fastbp._plain import kernels_for

acts = importlib.import_module(sys.argv[2])
act = fastbp.Activation(acts.g, acts.g_prime, name="mine")
rng = np.random.default_rng(0)
X = rng.normal(size=(24, 3))
Y = (rng.random((24, 1)) < 0.5).astype(float)
out = {}
for backend in ("numba", "numpy"):
    net = fastbp.MLP([3, 5, 1], activation=act, seed=0)
    net.fit(X, Y, epochs=2, batch_size=1, backend=backend)
    out[backend] = net.params.tolist()
stats = kernels_for(act)._train_epoch.stats
out["stats"] = [sum(stats.cache_hits.values()), sum(stats.cache_misses.values())]
print(json.dumps(out))
"""

SOFTSIGN_SOURCE = """
import numba


@numba.njit
def g(z):
    return z / (1 + abs(z))


@numba.njit
def g_prime(z):
    return 1 / (1 + abs(z)) ** 2
"""


@pytest.mark.slow  # three processes, two of them compile the plain kernel set for a custom g
def test_custom_activation_kernels_are_cached_on_disk_keyed_by_the_source_of_g(tmp_path):
    """A second process with the same g and g′ loads the re-compiled kernels from Numba's cache; a
    different g of the same name (an edited file) compiles afresh and never gets the other's code."""
    cache, code = tmp_path / "cache", tmp_path / "code"
    code.mkdir()
    (code / "acts_a.py").write_text(SOFTSIGN_SOURCE)
    (code / "acts_b.py").write_text(SOFTSIGN_SOURCE.replace("z / (1 + abs(z))", "z / (2 + abs(z))"))

    def run(module):
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        done = subprocess.run(
            [sys.executable, "-c", CUSTOM_SCRIPT, str(code), module],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    first, second = run("acts_a"), run("acts_a")
    assert first["stats"] == [0, 1] and second["stats"] == [1, 0]
    assert first["numba"] == second["numba"]
    other = run("acts_b")
    assert other["stats"] == [0, 1]  # a different source: compiled, not loaded
    # each agrees with the NumPy reference of its own g (so neither ran the other's or the built-in code)
    for result in (first, other):
        assert np.allclose(result["numba"], result["numpy"], rtol=1e-9, atol=1e-12)
    assert not np.allclose(first["numba"], other["numba"])


def test_source_key_follows_closures_and_refuses_functions_without_source():
    from fastbp._jit import source_key

    def outer(f):
        def inner(z):
            return f(z)

        return inner

    def one(z):
        return z

    def two(z):
        return -z

    assert source_key([outer(one)]) == source_key([outer(one)]) != source_key([outer(two)])
    namespace: dict = {}
    exec("def three(z):\n    return 3 * z\n", namespace)
    assert source_key([outer(namespace["three"])]) is None


#: A full-batch gradient and a mini-batch epoch (both on the register tiles' gradient: 200 rows,
#: batches of 100), the plain full-batch kernel and the column predict and loss (their loops, no BLAS),
#: then the literal types in the signatures of the helpers they call.
LITERAL_SCRIPT = """
from numba.core.caching import Cache

def _compile_here(self, sig, target_context):  # every load a miss; saves go on as usual
    target_context.refresh()
    return None

Cache.load_overload = _compile_here

import numpy as np
from fastbp._dispatch import FAST_LOSS_AND_GRADIENT, PLAIN_LOSS_AND_GRADIENT, loss_and_gradient, run_epoch
from fastbp._fast import _columns, forward
from fastbp._plain import loops
from fastbp.activations import get_activation
from fastbp.losses import NAMES
from fastbp.params import Layout

rng = np.random.default_rng(0)
layout = Layout([5, 7, 3])
act, out = get_activation("tanh"), NAMES["softmax"]
X = rng.normal(size=(200, 5))
Y = np.eye(3)[rng.integers(0, 3, 200)]
p = rng.normal(size=layout.n_params) * 0.3
for kernel in (FAST_LOSS_AND_GRADIENT, PLAIN_LOSS_AND_GRADIENT):
    loss_and_gradient(p, layout.sizes, X, Y, act, out, np.zeros_like(p), 0.0, 1.0, kernel=kernel)
order = np.arange(200, dtype=np.int64)
run_epoch(p, layout.sizes, X, Y, order, 100, 0.05, act, out, epoch="_columns_epoch_split", threads=False)
forward._predict_fast(p, layout.sizes, X, act.code, out, np.empty((200, 3)), 1 << 30)  # the loops, no BLAS
forward._loss_fast(p, layout.sizes, X, Y, act.code, out, 1 << 30)
for helper in (
    _columns._columns_gradient_tiled,
    _columns._new_columns_workspace,
    loops._mean_gradient,
    forward._chunk_forward,
):
    literal = sum(any("Literal" in str(t) for t in sig) for sig in helper.signatures)
    print(helper.py_func.__name__, len(helper.signatures), literal)
"""


@pytest.mark.start_first
def test_no_compiled_helper_is_specialised_on_a_literal_argument():
    """The full-batch kernels and the mini-batch epochs call the same compiled gradient and
    workspace, so one process compiles each once a dtype.  Numba compiles a function called with a
    constant (``0``, ``False``) again for that literal (``Literal[int](0)``): the full-batch kernel's
    ``start=0`` once cost a second 15-20 s compile of the column gradient, and the forward kernels'
    padding constant a second compile of their chunk pass.

    A fresh process that compiles every kernel itself (a helper loaded with its caller from the
    cache lists no signature), refusing every load from Numba's cache but saving into the tests'
    own (``tests/_numba_cache.py``): started first, it compiles kernels that the pytest workers
    then load instead of compiling them again (the full-batch gradient, the column epoch, predict
    and loss, float64)."""
    done = subprocess.run(
        [sys.executable, "-c", LITERAL_SCRIPT], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:-1] == [
        "_columns_gradient_tiled 1 0",
        "_new_columns_workspace 1 0",
        "_mean_gradient 1 0",
        "_chunk_forward 1 0",
    ]
