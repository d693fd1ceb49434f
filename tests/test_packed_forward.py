"""``predict``, ``forward`` and ``loss`` with the examples as rows (:mod:`fastbp._fast.packed_forward`):
each kernel agrees with its plain scalar-loop twin over the agreement grid (m = 1, one whole block,
and two and a short one) and on layers of several strips, writes nothing past its blocks, finds
no NaN or inf in a finite X, and the dispatcher runs it for the nets
:func:`fastbp._dispatch.packed_forward` names, above the rows kernels' thresholds, for the
built-in activations only."""

from __future__ import annotations

import numpy as np
import pytest

from fastbp import _dispatch, kernels, reference
from fastbp._fast import packed_forward as pf
from fastbp._plain import BUILTIN
from fastbp.activations import NAMES as ACT_CODES
from fastbp.activations import get_activation
from fastbp.losses import NAMES as OUT_CODES
from fastbp.params import Layout
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS, assert_agree, make_problem

from .conftest import SOFTSIGN

#: One example; one whole block of :data:`PACKED_BLOCK`; two and a short one of 3.
ROWS = [1, pf.PACKED_BLOCK, 2 * pf.PACKED_BLOCK + 3]

#: Layers of one unit, of several strips (float32: 16 units a strip, float64: 8) and the remainders
#: of both, deeper than a strip of inputs too.
WIDE_SIZES = [(37, 19, 10), (64, 1, 3), (5, 33), (3, 17, 1), (20, 40, 17, 1), (70, 16, 8)]


def _pads(sizes, dtype) -> list[int]:
    return _dispatch._packed_pads(sizes, np.dtype(dtype).itemsize)


def _layer_views(flat, sizes, m, dtype) -> list[np.ndarray]:
    """Layer l's m × pads[l] block of ``flat``, sliced to its n_l columns (as _dispatch.forward)."""
    pads = _pads(sizes, dtype)
    starts = np.cumsum([0, *pads]).tolist()
    return [flat[m * q : m * (q + p)].reshape(m, p)[:, :n] for q, p, n in zip(starts, pads, sizes[1:])]


def _assert_packed_kernels_agree(act, out, m, sizes, dtype):
    """The three packed kernels against their plain twins on one problem (outputs pre-filled with
    NaN: a value left unwritten fails; the flat Z, A one element longer, that element never written)."""
    prob = make_problem(sizes, dtype, act, out, m=m, seed=m)
    lay = Layout(sizes)
    p = lay.pack(prob.weights, prob.biases, dtype)
    a, o = ACT_CODES[act], OUT_CODES[out]
    n_flat = m * sum(_pads(sizes, dtype))
    AL = np.full((m, sizes[-1]), np.nan, dtype)
    Zf, Af = np.full((2, n_flat + 1), np.nan, dtype)
    Zf[-1] = Af[-1] = 7.0
    found = [pf._predict_packed(p, lay.sizes, prob.X, a, o, AL)]
    found.append(pf._forward_packed(p, lay.sizes, prob.X, a, o, Zf[:n_flat], Af[:n_flat]))
    J, non_finite = pf._loss_packed(p, lay.sizes, prob.X, prob.Y, a, o)
    assert found + [non_finite] == [False] * 3, "saw NaN or inf in a finite X"
    assert Zf[-1] == Af[-1] == 7.0, "wrote past its blocks"
    n_units = sum(sizes[1:])
    AL_plain, Z_plain, A_plain = np.empty_like(AL), np.empty((m, n_units), dtype), np.empty((m, n_units), dtype)
    BUILTIN._output_batch(p, lay.sizes, prob.X, a, o, AL_plain)
    BUILTIN._forward_batch(p, lay.sizes, prob.X, a, o, Z_plain, A_plain)
    J_plain = BUILTIN._loss_batch(p, lay.sizes, prob.X, prob.Y, a, o)
    got = (AL, _layer_views(Zf, sizes, m, dtype), _layer_views(Af, sizes, m, dtype), J)
    want = (AL_plain, lay.unit_views(Z_plain), lay.unit_views(A_plain), J_plain)
    assert_agree(got, want, dtype, f"{act} {out} {sizes} m={m}")


@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("act", HIDDEN_ACTIVATIONS)
def test_packed_kernels_agree_with_the_plain_kernels(act, out, m, layer_sizes, dtype):
    _assert_packed_kernels_agree(act, out, m, layer_sizes, dtype)


@pytest.mark.parametrize("out", OUTPUTS)
@pytest.mark.parametrize("sizes", WIDE_SIZES, ids=lambda s: "-".join(map(str, s)))
def test_packed_kernels_agree_with_the_plain_kernels_on_wider_layers(sizes, out, dtype):
    _assert_packed_kernels_agree("tanh", out, pf.PACKED_BLOCK + 19, sizes, dtype)


def test_packed_pads_are_the_kernels_layer_pads():
    """The dispatcher's view of the blocks (``_packed_pads``) is the kernels' (``_layer_pads``)."""
    for sizes in [(2, 4, 1), (64, 32, 1), (37, 19, 10), (5, 1, 1), (3, 17, 16, 8)]:
        for itemsize in (4, 8):
            pads, q_off, wt_off = pf._layer_pads.py_func(np.array(sizes), itemsize)
            assert pads.tolist() == _dispatch._packed_pads(sizes, itemsize)
            assert q_off.tolist() == np.cumsum([0, *pads]).tolist()


def test_the_packed_kernels_take_nets_past_their_weights():
    """packed_forward: from PACKED_MIN_WEIGHTS weights, and PACKED_MIN_WEIGHTS_SOFTMAX with a softmax
    output (its per-example passes are the column pass's strength)."""
    sig, soft = OUT_CODES["sigmoid"], OUT_CODES["softmax"]
    for least, out in ((_dispatch.PACKED_MIN_WEIGHTS, sig), (_dispatch.PACKED_MIN_WEIGHTS_SOFTMAX, soft)):
        # one layer of `least` weights, then one of a single input: the sum crosses at `least`
        assert _dispatch.packed_forward([least, 1], out)
        assert not _dispatch.packed_forward([least - 1, 1], out)
        assert _dispatch.packed_forward([least // 2, 2, 1], out) is (least // 2 * 2 + 2 >= least)
    assert _dispatch.packed_forward([64, 32, 1], sig) and not _dispatch.packed_forward([2, 4, 1], sig)
    assert _dispatch.packed_forward([784, 128, 10], soft) and not _dispatch.packed_forward([64, 64, 10], soft)


@pytest.mark.parametrize(
    "sizes, out, packed",
    [([64, 32, 1], "sigmoid", True), ([33, 40, 16], "identity", True), ([8, 8, 3], "softmax", False)],
)
def test_public_forward_passes_run_the_packed_kernels_on_the_nets_they_take(sizes, out, packed, monkeypatch):
    """kernels.predict/forward/loss above the rows kernels' thresholds call the packed kernels once
    each where packed_forward says so (not for a custom activation), give the reference's values,
    and forward's Z[l], A[l] are views of one buffer (C-contiguous where n_l fills whole strips)
    that kernels.backward takes back."""
    monkeypatch.setattr(_dispatch, "FAST_FORWARD_MIN_ROWS", 0)
    calls = []
    for name in ("_predict_packed", "_forward_packed", "_loss_packed"):
        real = getattr(pf, name)
        monkeypatch.setattr(pf, name, lambda *args, _real=real, _name=name: calls.append(_name) or _real(*args))
    m = pf.PACKED_BLOCK + 5
    prob = make_problem(sizes, np.float64, "tanh", out, m=m, seed=3)
    assert _dispatch.packed_forward(sizes, OUT_CODES[out]) is packed
    for activation in ("tanh", SOFTSIGN):
        calls.clear()
        args = (prob.weights, prob.biases, prob.X)
        Z, A = kernels.forward(*args, activation, out)
        got = (kernels.predict(*args, activation, out), (Z, A), kernels.loss(*args, prob.Y, activation, out))
        want = (
            reference.predict(*args, activation, out),
            reference.forward(*args, activation, out),
            reference.loss(*args, prob.Y, activation, out),
        )
        assert_agree(got, want, np.float64, f"{sizes} {activation}")
        custom = not isinstance(activation, str)
        assert calls == ([] if custom or not packed else ["_forward_packed", "_predict_packed", "_loss_packed"])
        assert all(v.base is Z[0].base for v in Z + A) and Z[0].base is not None
        if packed and not custom:
            lanes = 64 // 8
            assert [z.flags.c_contiguous for z in Z] == [n % lanes == 0 or n == 1 for n in sizes[1:]]
        assert_agree(
            kernels.backward(*args, prob.Y, Z, A, activation, out),
            reference.backward(*args, prob.Y, Z, A, activation, out),
            np.float64,
            f"backward from the packed Z, A, {sizes} {activation}",
        )
    tanh = get_activation("tanh")
    assert _dispatch._fast_forward(tanh, np.array(sizes), m) and not _dispatch._fast_forward(
        SOFTSIGN, np.array(sizes), m
    )
