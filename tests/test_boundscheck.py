"""The kernels under Numba's bounds checking: an out-of-range index fails loudly.

A fresh interpreter with ``NUMBA_BOUNDSCHECK=1`` and the bounds-checked runs' own
``NUMBA_CACHE_DIR`` (never the unchecked kernels' cache: every kernel in it is compiled with
the checks, here or by the other bounds-checked run; ``tests/conftest.py``) runs a small grid
of shapes, activations and outputs through every public kernel wrapper, and checks the results against the NumPy
reference.  One dtype and tiny sizes keep it to a few seconds of compiling.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import numpy as np
from fastbp.testing import bounds_check_missing

problem = bounds_check_missing()  # this interpreter and its cache really check bounds
if problem:
    raise SystemExit(problem)

from fastbp.testing import IMPLEMENTATIONS, assert_agree, make_problem

count = 0
for sizes in [(1, 1), (3, 5, 2), (4, 1, 3, 2)]:
    for activation in ("tanh", "relu"):
        for output in ("sigmoid", "softmax", "identity"):
            for batch_size in (1, 3, None):
                prob = make_problem(sizes, np.float64, activation, output, m=5, batch_size=batch_size)
                for name, (kernel, reference) in IMPLEMENTATIONS.items():
                    if name in ("update", "train_epoch"):
                        Wk, bk = prob.copy_params()
                        Wr, br = prob.copy_params()
                        rk = kernel(*prob.args(name, Wk, bk))
                        rr = reference(*prob.args(name, Wr, br))
                        assert_agree([rk, Wk, bk], [rr, Wr, br], np.float64, f"{name} {sizes}")
                    else:
                        assert_agree(kernel(*prob.args(name)), reference(*prob.args(name)), np.float64, name)
                    count += 1

print("checked", count)
"""


@pytest.mark.start_first
def test_kernels_run_clean_with_bounds_checking(boundscheck_cache):
    from fastbp.testing import IMPLEMENTATIONS

    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(boundscheck_cache)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.split()[-1] == str(3 * 2 * 3 * 3 * len(IMPLEMENTATIONS))
    cached = [f for _, _, files in os.walk(boundscheck_cache) for f in files]
    assert any(f.endswith(".nbc") for f in cached), "no kernel was compiled into the bounds-checked cache"


#: The fast kernels' own intrinsics (flat matrix views, register tiles, 8 × 8 transposes) address
#: their arrays by computed offsets that Numba's checks never see; under bounds checking they check
#: their spans themselves (fastbp/_fast/_bounds.py).  First proof that they do, each intrinsic
#: called once in range and once a single element past it (or with a negative count), then the
#: one-thread paths of the dispatcher that run them, on nets above its thresholds, against the NumPy
#: reference: forward, predict and loss with the examples as rows and as columns, backward, update,
#: and train_epoch per example (W[1]'s updates deferred over blocks on the tiles), on the deferred
#: kernels' short batches and on the tiles' longer ones.  The threaded twins are left out (their
#: compile would add minutes; tools/boundscheck_sweep.py runs them on two threads).
INTRINSICS_SCRIPT = r"""
import numba
import numpy as np
from fastbp.testing import bounds_check_missing

problem = bounds_check_missing()  # this interpreter and its cache really check bounds
if problem:
    raise SystemExit(problem)
from fastbp._fast._common import _matrix_view
from fastbp._fast._tiles import _strips, _transpose8

@numba.njit
def view(flat, start, n, nc):
    return _matrix_view(flat, start, n, nc).sum()

@numba.njit
def tiles(Z, W, S, B, init, n_rows):  # Z (n_rows = 4 rows × 2 strips) = W (4 × 3) · S (3 rows × 2 strips) + B
    _strips(Z, 0, 32, 16, W, 0, 3, 1, S, 0, 32, 16, 3, n_rows, B, 0, init, 2)

@numba.njit
def transpose8(M, ldm, MT, ldt):
    _transpose8(M, 0, ldm, MT, 0, ldt)

z = lambda n: np.zeros(n, np.float32)
calls = [  # (name, function, arguments in range, the same a single element short)
    ("view", view, (np.zeros(10), 4, 2, 3), (np.zeros(9), 4, 2, 3)),
    ("view of a negative shape", view, (np.zeros(10), 0, 0, 3), (np.zeros(10), 0, -1, 3)),
    ("tiles' Z", tiles, (z(128), z(12), z(96), z(4), 1, 4), (z(127), z(12), z(96), z(4), 1, 4)),
    ("tiles' W", tiles, (z(128), z(12), z(96), z(4), 1, 4), (z(128), z(11), z(96), z(4), 1, 4)),
    ("tiles' S", tiles, (z(128), z(12), z(96), z(4), 1, 4), (z(128), z(12), z(95), z(4), 1, 4)),
    ("tiles' B", tiles, (z(128), z(12), z(96), z(3), 0, 4), (z(128), z(12), z(96), z(3), 1, 4)),
    # n_rows = −1 would still run row tiles of 4, 2 and 1 (n_rows − n_main has those bits set)
    ("tiles' negative count", tiles, (z(128), z(12), z(96), z(4), 1, 0), (z(128), z(12), z(96), z(4), 1, -1)),
    ("transpose8's M", transpose8, (np.zeros(64), 8, np.zeros(71), 9), (np.zeros(63), 8, np.zeros(71), 9)),
    ("transpose8's MT", transpose8, (np.zeros(64), 8, np.zeros(71), 9), (np.zeros(64), 8, np.zeros(70), 9)),
]
for name, fn, good, bad in calls:
    fn(*good)
    try:
        fn(*bad)
    except IndexError:
        pass
    else:
        raise SystemExit(f"{name}: a span outside its array went unnoticed")

from fastbp.testing import IMPLEMENTATIONS, assert_agree, make_problem

count = 0
cases = [  # (sizes, dtype, activation, output, m, batch sizes of train_epoch)
    # forward, predict and loss with the examples as rows (2,100 rows: 16 blocks and 52); epochs per
    # example (1: W[1]'s 1,200 weights deferred over blocks of 8 on the tiles), on the tiles (None:
    # one batch of 2,100), the deferred kernels (8) and the tiles' batches (64)
    ((40, 30, 1), np.float64, "tanh", "sigmoid", 2100, (None, 1, 8, 64)),
    ((40, 30, 1), np.float32, "tanh", "sigmoid", 2100, (64,)),  # float32: a strip of 16 lanes
    ((70, 33, 17, 10), np.float64, "relu", "softmax", 150, (None, 32)),
    ((300, 220, 10), np.float64, "tanh", "softmax", 250, ()),  # examples as rows, softmax across them
    ((20, 16, 3), np.float64, "tanh", "identity", 2100, ()),  # the column forward pass
]
for sizes, dtype, activation, output, m, batches in cases:
    for name, (kernel, reference) in IMPLEMENTATIONS.items():
        for batch_size in batches if name == "train_epoch" else (None,):
            prob = make_problem(sizes, dtype, activation, output, m=m, batch_size=batch_size)
            if name in ("update", "train_epoch"):
                Wk, bk = prob.copy_params()
                Wr, br = prob.copy_params()
                rk = kernel(*prob.args(name, Wk, bk))
                rr = reference(*prob.args(name, Wr, br))
                assert_agree([rk, Wk, bk], [rr, Wr, br], dtype, f"{name} {sizes} {batch_size}")
            else:
                assert_agree(kernel(*prob.args(name)), reference(*prob.args(name)), dtype, f"{name} {sizes}")
            count += 1
print("checked", count)
"""


@pytest.mark.start_first
def test_the_fast_kernels_intrinsics_stay_inside_their_arrays_under_bounds_checking(boundscheck_cache):
    from fastbp.testing import IMPLEMENTATIONS

    # one thread: the threaded twins (compiled only where they run) would add minutes of compile
    # for the gradient code the one-thread epochs run here
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(boundscheck_cache), "NUMBA_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", INTRINSICS_SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # every operation but train_epoch once a case (five), train_epoch at each batch size listed
    assert out.stdout.split()[-1] == str(5 * (len(IMPLEMENTATIONS) - 1) + 4 + 1 + 2), out.stdout


def test_a_cache_warmed_without_bounds_checking_is_refused(tmp_path):
    """Numba's cache does not key on the switch: a bounds-checked run handed a cache an unchecked
    run warmed gets unchecked kernels back, and ``bounds_check_missing`` says so."""
    probe = "from fastbp.testing import bounds_check_missing as m; print(m())"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    env.pop("NUMBA_BOUNDSCHECK", None)
    unchecked = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600)
    assert "bounds checking is off" in unchecked.stdout, unchecked.stdout + unchecked.stderr
    warm = (  # the probe's kernel, compiled unchecked into the cache on inputs in range
        "import numpy as np; from fastbp._plain import BUILTIN; from fastbp.params import Layout\n"
        "L = Layout((4, 3, 1))\n"
        "BUILTIN._loss_batch(np.zeros(L.n_params), L.sizes, np.zeros((2, 4)), np.zeros((2, 1)), 1, 0)"
    )
    out = subprocess.run([sys.executable, "-c", warm], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    env["NUMBA_BOUNDSCHECK"] = "1"
    checked = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600)
    assert "NUMBA_CACHE_DIR holds kernels compiled without bounds checking" in checked.stdout, (
        checked.stdout + checked.stderr
    )
