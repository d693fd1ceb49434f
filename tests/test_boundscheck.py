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
import numba
import numpy as np
assert numba.config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK was not picked up"

@numba.njit
def _past_the_end(a):
    return a[a.shape[0]]

try:  # proof that this interpreter really checks bounds
    _past_the_end(np.zeros(3))
except IndexError:
    pass
else:
    raise SystemExit("bounds checking is off: an out-of-range read went unnoticed")

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

# A kernel handed an input narrower than its layer sizes claims (what the public
# wrappers refuse) must now raise instead of reading past the row.
from fastbp._plain import BUILTIN
from fastbp.params import Layout
layout = Layout((4, 3, 1))
params = np.zeros(layout.n_params)
X_narrow, Y = np.zeros((2, 3)), np.zeros((2, 1))
try:
    BUILTIN._loss_batch(params, layout.sizes, X_narrow, Y, 1, 0)
except IndexError:
    pass
else:
    raise SystemExit("a kernel read past the end of a row unnoticed")
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
