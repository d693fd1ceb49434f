"""Every kernel agrees with its NumPy reference twin, over the whole grid.

The grid: depths 1 to 4 with widths including 1, m = 1 and m not a multiple of
the batch, float32 and float64, every hidden activation (the custom one too) and
every output.  Pairs come from :data:`fastbp.testing.IMPLEMENTATIONS`, the same
registry the benchmarks use; tolerances from :data:`fastbp.testing.TOLERANCE`.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp.testing import IMPLEMENTATIONS, assert_agree, make_problem

PURE = ["forward", "predict", "backward", "gradients", "loss"]
IN_PLACE = ["update", "train_epoch"]


@pytest.mark.parametrize("name", PURE)
@pytest.mark.parametrize("m", [1, 7])
def test_pure_kernels_agree_with_reference(name, m, layer_sizes, dtype, activation, output):
    kernel, reference = IMPLEMENTATIONS[name]
    prob = make_problem(layer_sizes, dtype, activation, output, m=m, seed=m)
    got = kernel(*prob.args(name))
    want = reference(*prob.args(name))
    assert_agree(got, want, dtype, name)
    for arr in _arrays(got):
        assert arr.dtype == dtype  # no silent promotion


def _arrays(result):
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, (list, tuple)):
        return [a for item in result for a in _arrays(item)]
    return []


@pytest.mark.parametrize("name", IN_PLACE)
@pytest.mark.parametrize("m, batch_size", [(1, 1), (7, 1), (7, 3), (7, None)])
def test_in_place_kernels_agree_with_reference(name, m, batch_size, layer_sizes, dtype, activation, output):
    kernel, reference = IMPLEMENTATIONS[name]
    prob = make_problem(layer_sizes, dtype, activation, output, m=m, seed=m, batch_size=batch_size)
    Wk, bk = prob.copy_params()
    Wr, br = prob.copy_params()
    outcomes = []
    for impl, W, b in ((kernel, Wk, bk), (reference, Wr, br)):
        try:
            outcomes.append(impl(*prob.args(name, W, b)))
        except fastbp.DivergenceError as err:
            # e^z outputs on deep linear nets can outgrow lr 0.1 (5-7-6-4-3, identity g):
            # then both must refuse the same step and keep the same parameters
            if output != "exp":
                raise
            outcomes.append(("diverged", err.batch))
    got, want = outcomes
    assert type(got) is type(want), (name, got, want)
    if isinstance(got, tuple) and got[:1] == ("diverged",):
        assert got == want
        got = want = None
    assert_agree([got, Wk, bk], [want, Wr, br], dtype, name)
    # the step did something (a 1-unit softmax is constant: its gradient is 0) ...
    if not (output == "softmax" and layer_sizes[-1] == 1):
        assert any(not np.array_equal(a, b) for a, b in zip(Wk + bk, prob.weights + prob.biases))
    # ... and float32 stayed float32
    assert all(P.dtype == dtype for P in Wk + bk)


def test_kernel_outputs_match_derivation_shapes():
    prob = make_problem([3, 5, 2], np.float64, "tanh", "sigmoid", m=4)
    kernel, _ = IMPLEMENTATIONS["forward"]
    Z, A = kernel(*prob.args("forward"))
    assert [z.shape for z in Z] == [(4, 5), (4, 2)] == [a.shape for a in A]
    dW, db = IMPLEMENTATIONS["gradients"][0](*prob.args("gradients"))
    assert [w.shape for w in dW] == [(5, 3), (2, 5)]
    assert [b.shape for b in db] == [(5,), (2,)]
