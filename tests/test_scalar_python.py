"""The kernels are real scalar-loop code: run as plain Python they give the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastbp.testing import IMPLEMENTATIONS, assert_agree, make_problem

SCRIPT = r"""
import json, numpy as np
from fastbp.testing import IMPLEMENTATIONS, make_problem
out = {}
for output in ("sigmoid", "softmax", "identity"):
    prob = make_problem([3, 4, 2], np.float64, "tanh", output, m=5, batch_size=2)
    kernel, _ = IMPLEMENTATIONS["gradients"]
    dW, db = kernel(*prob.args("gradients"))
    W, b = prob.copy_params()
    J = IMPLEMENTATIONS["train_epoch"][0](*prob.args("train_epoch", W, b))
    out[output] = [J] + [a.ravel().tolist() for a in dW + db + W + b]
print(json.dumps(out))
"""


@pytest.mark.slow
def test_kernels_run_as_plain_python_and_agree():
    """NUMBA_DISABLE_JIT=1 runs the very same loops in the interpreter; both must agree."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    plain = json.loads(
        subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, capture_output=True, text=True).stdout
    )
    compiled = json.loads(
        subprocess.run([sys.executable, "-c", SCRIPT], check=True, capture_output=True, text=True).stdout
    )
    for output in plain:
        assert_agree([np.array(v) for v in plain[output]], [np.array(v) for v in compiled[output]], np.float64, output)


def test_py_func_of_the_example_kernels_agrees_with_the_compiled_kernel():
    """``.py_func`` of the per-example forward kernel, called from Python, equals the compiled one."""
    from fastbp._plain import loops
    from fastbp.params import Layout, offsets

    prob = make_problem([3, 4, 2], np.float64, "sigmoid", "softmax", m=1)
    layout = Layout([3, 4, 2])
    params = layout.pack(prob.weights, prob.biases, np.float64)
    offs = offsets(layout.sizes)
    results = []
    for fn in (loops._forward_example, loops._forward_example.py_func):
        z = np.zeros(layout.n_units)
        a = np.zeros(layout.n_units)
        fn(params, layout.sizes, *offs, prob.X[0], z, a, 0, 1)
        results.append((z, a))
    assert_agree(results[0], results[1], np.float64, "forward_example")
    _, ref_A = IMPLEMENTATIONS["forward"][1](prob.weights, prob.biases, prob.X, "sigmoid", "softmax")
    assert_agree(results[1][1][4:], ref_A[-1][0], np.float64, "against reference")
