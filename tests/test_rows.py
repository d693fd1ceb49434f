"""``predict``, ``forward`` and ``loss`` on fewer rows than the column pass takes
(:mod:`fastbp._fast.rows`): each kernel agrees with its plain scalar-loop twin over the agreement
grid (m = 1, a whole block of 32 and a short last block of one strip; on wider layers also a short
block of several strips ending inside one), and the dispatcher runs them for the
built-in activations only (a custom one keeps the plain kernels)."""

from __future__ import annotations

import numpy as np
import pytest

from fastbp import _dispatch, kernels, reference
from fastbp._fast import rows
from fastbp._plain import BUILTIN
from fastbp.activations import NAMES as ACT_CODES
from fastbp.activations import get_activation
from fastbp.losses import NAMES as OUT_CODES
from fastbp.params import Layout
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS, assert_agree, make_problem

from .conftest import SOFTSIGN

#: One example; one whole block of :data:`fastbp._fast.rows.ROWS_BLOCK`; two and a short one of 3 (one strip).
ROWS = [1, rows.ROWS_BLOCK, 2 * rows.ROWS_BLOCK + 3]

#: ... and on the wider layers also one block and a short one of 19 (float64: two whole strips of 8 and
#: 3 in a third; float32: one of 16 and 3 in a second).
WIDE_ROWS = [rows.ROWS_BLOCK + 19, 2 * rows.ROWS_BLOCK + 3]

#: Wider than the agreement grid's: the tiles' rows of W[l] in whole tiles and their remainders.
WIDE_SIZES = [(37, 19, 10), (64, 1, 3), (5, 33), (3, 17, 1)]


@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("act", HIDDEN_ACTIVATIONS)
def test_row_kernels_agree_with_the_plain_kernels(act, out, m, layer_sizes, dtype):
    _assert_row_kernels_agree(act, out, m, layer_sizes, dtype)


@pytest.mark.parametrize("m", WIDE_ROWS)
@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("sizes", WIDE_SIZES, ids=lambda s: "-".join(map(str, s)))
def test_row_kernels_agree_with_the_plain_kernels_on_wider_layers(sizes, out, m, dtype):
    _assert_row_kernels_agree("tanh", out, m, sizes, dtype)


def _assert_row_kernels_agree(act, out, m, layer_sizes, dtype):
    """The three row kernels against their plain twins on one problem (outputs pre-filled with NaN:
    a value left unwritten fails)."""
    prob = make_problem(layer_sizes, dtype, act, out, m=m, seed=m)
    lay = Layout(layer_sizes)
    p = lay.pack(prob.weights, prob.biases, dtype)
    a, o = ACT_CODES[act], OUT_CODES[out]
    n_units = sum(layer_sizes[1:])
    AL, Z, A = (np.full((m, n), np.nan, dtype) for n in (layer_sizes[-1], n_units, n_units))
    AL_plain, Z_plain, A_plain = np.empty_like(AL), np.empty_like(Z), np.empty_like(A)
    rows._predict_rows(p, lay.sizes, prob.X, a, o, AL)
    rows._forward_rows(p, lay.sizes, prob.X, a, o, Z, A)
    J = rows._loss_rows(p, lay.sizes, prob.X, prob.Y, a, o)
    BUILTIN._output_batch(p, lay.sizes, prob.X, a, o, AL_plain)
    BUILTIN._forward_batch(p, lay.sizes, prob.X, a, o, Z_plain, A_plain)
    J_plain = BUILTIN._loss_batch(p, lay.sizes, prob.X, prob.Y, a, o)
    assert_agree((AL, Z, A, J), (AL_plain, Z_plain, A_plain, J_plain), dtype, f"{act} {out} {layer_sizes}")


@pytest.mark.parametrize("disable_jit", [False, True])
def test_fewer_rows_run_the_row_kernels_for_built_in_activations(disable_jit, monkeypatch):
    """kernels.predict/forward/loss on a few rows call the row kernels once each for tanh and not
    for a custom activation (the plain kernels, which compile the user's g) nor under
    ``NUMBA_DISABLE_JIT=1`` (set here on the dispatcher only), and all give the reference's values."""
    monkeypatch.setattr(_dispatch.numba_config, "DISABLE_JIT", disable_jit)
    calls = []
    for name in ("_predict_rows", "_forward_rows", "_loss_rows"):
        real = getattr(rows, name)
        monkeypatch.setattr(rows, name, lambda *args, _real=real, _name=name: calls.append(_name) or _real(*args))
    prob = make_problem([5, 6, 3], np.float64, "tanh", "softmax", m=9, seed=2)
    assert not _dispatch._fast_forward(get_activation("tanh"), np.array([5, 6, 3]), 9)
    built_in = [] if disable_jit else ["_predict_rows", "_forward_rows", "_loss_rows"]
    for activation, expected_calls in (("tanh", built_in), (SOFTSIGN, [])):
        calls.clear()
        args = (prob.weights, prob.biases, prob.X)
        got = (
            kernels.predict(*args, activation, "softmax"),
            kernels.forward(*args, activation, "softmax"),
            kernels.loss(*args, prob.Y, activation, "softmax"),
        )
        assert calls == expected_calls, activation
        want = (
            reference.predict(*args, activation, "softmax"),
            reference.forward(*args, activation, "softmax"),
            reference.loss(*args, prob.Y, activation, "softmax"),
        )
        assert_agree(got, want, np.float64, str(activation))


@pytest.mark.parametrize(
    "sizes, m, columns",
    [
        ([64, 32, 10], 1347, False),  # fastbp train's digits: 1,347 train rows, rows kernels
        ([64, 100, 10], 1347, False),  # scikit-learn's default hidden layer on digits
        ([2, 4, 1], _dispatch.FAST_FORWARD_MIN_ROWS - 1, False),
        ([2, 4, 1], _dispatch.FAST_FORWARD_MIN_ROWS, True),  # enough rows, whatever the net
        ([784, 128, 10], 165, False),  # 16.77 M multiply-adds
        ([784, 128, 10], 166, True),  # 16.87 M: past FAST_FORWARD_MIN_MACS
        ([256, 256, 10], 247, True),
    ],
)
def test_the_column_pass_takes_many_rows_or_much_work(sizes, m, columns):
    """Where the column pass takes over from the rows kernels (its compile, about 4.9 s once per
    machine, is worth it from a millisecond's work a call): digits-sized scoring stays on the rows
    kernels (goal 7), a few hundred rows of a big net go to the column pass (goal 4)."""
    tanh = get_activation("tanh")
    assert _dispatch._fast_forward(tanh, np.array(sizes), m) is columns
    assert _dispatch._fast_forward(SOFTSIGN, np.array(sizes), m) is False  # custom: the plain kernels
