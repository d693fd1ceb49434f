"""The flat parameter store: views, packing, and recognising a network's own buffer."""

from __future__ import annotations

import numpy as np

import fastbp
from fastbp import kernels
from fastbp.params import Layout


def test_views_cover_the_buffer_in_layer_order():
    layout = Layout([3, 4, 2])
    flat = np.arange(layout.n_params, dtype=float)
    W, b = layout.views(flat)
    assert layout.n_params == 4 * 3 + 4 + 2 * 4 + 2
    assert W[0][0, 0] == 0 and b[0][0] == 12 and W[1][0, 0] == 16 and b[1][-1] == layout.n_params - 1
    assert all(np.shares_memory(a, flat) for a in W + b)


def test_pack_copies_every_layout_into_the_views_order(tmp_path):
    """``pack`` is the inverse of ``views`` for parameters in any memory order: Fortran-ordered,
    reversed strides, every other element of a wider array, a memory map."""
    layout = Layout([3, 4, 2])
    flat = np.arange(layout.n_params, dtype=np.float32)
    W, b = layout.views(flat)
    reversed_W1 = np.ascontiguousarray(W[1][:, ::-1])[:, ::-1]  # negative column stride
    wide_b0 = np.repeat(b[0], 2)[::2]  # stride of two elements
    np.save(tmp_path / "b1.npy", b[1])
    mapped_b1 = np.load(tmp_path / "b1.npy", mmap_mode="r")
    odd = [np.asfortranarray(W[0]), reversed_W1], [wide_b0, mapped_b1]
    assert reversed_W1.strides[1] < 0 and not wide_b0.flags.c_contiguous
    packed = layout.pack(*odd, np.float32)
    assert type(packed) is np.ndarray and packed.dtype == np.float32 and packed.shape == (layout.n_params,)
    assert not any(np.shares_memory(packed, a) for a in [flat, *odd[0], *odd[1]])
    np.testing.assert_array_equal(packed, flat)


def test_kernels_work_in_place_on_a_networks_buffer_and_on_copies():
    net = fastbp.MLP([3, 4, 2], seed=0)
    layout = Layout(net.layer_sizes)
    found = layout.buffer_of(net.weights, net.biases)  # the network's own buffer (net.params is a view of it)
    assert found is not None and found.base is None and found.ctypes.data == net.params.ctypes.data
    copies = ([w.copy() for w in net.weights], [b.copy() for b in net.biases])
    assert layout.buffer_of(*copies) is None
    X, Y = np.ones((2, 3)), np.ones((2, 2))
    kernels.train_epoch(*copies, X, Y, 0.1)  # a copy is packed, trained and written back
    kernels.train_epoch(net.weights, net.biases, X, Y, 0.1)  # the network's buffer, in place
    assert all(np.array_equal(a, b) for a, b in zip(copies[0] + copies[1], net.weights + net.biases))


def test_memory_mapped_weights_are_packed_not_mistaken_for_a_buffer(tmp_path):
    net = fastbp.MLP([3, 4, 2], seed=0)
    np.save(tmp_path / "p.npy", net.params)
    mapped = np.load(tmp_path / "p.npy", mmap_mode="r")
    W, b = Layout(net.layer_sizes).views(mapped)
    Z, A = kernels.forward(W, b, np.ones((1, 3)))
    np.testing.assert_array_equal(A[-1], net.forward(np.ones((1, 3))))


def test_a_layout_holds_a_writable_copy_of_its_sizes(tmp_path):
    """From a caller's array (changed afterwards), a read-only one, and a pickle loaded as read-only
    memory maps (joblib's ``mmap_mode="r"``): the sizes are the layout's own plain writable int64
    array, so no kernel compiles again for a read-only argument and no later change reaches it."""
    import joblib

    theirs = np.array([3, 4, 2])
    layout = Layout(theirs)
    theirs[1] = 400
    assert layout.sizes.tolist() == [3, 4, 2] and layout.n_params == 26
    read_only = np.array([3, 4, 2], dtype=np.int64)
    read_only.flags.writeable = False
    joblib.dump(Layout([3, 4, 2]), tmp_path / "layout.pkl")
    for made in (Layout(read_only), joblib.load(tmp_path / "layout.pkl", mmap_mode="r")):
        assert type(made.sizes) is np.ndarray and made.sizes.dtype == np.int64 and made.sizes.flags.writeable
        assert made.sizes.tolist() == [3, 4, 2] and (made.n_layers, made.n_params, made.n_units) == (2, 26, 6)
        assert made.shapes == [(4, 3), (2, 4)]


def test_an_estimator_loaded_from_read_only_memory_maps_predicts_on_the_kernel_it_compiled(tmp_path):
    """A fitted estimator dumped with joblib and loaded with ``mmap_mode="r"`` predicts what it did,
    on the prediction kernel's compiled specialisation: none is added for a read-only argument
    (one was, for the layout's sizes: a cold compile of several seconds on this project's machines)."""
    import warnings

    import joblib

    from fastbp._fast.rows import _predict_rows
    from fastbp.estimators import MLPClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 3)), np.arange(30) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X, y)
    expected = est.predict_proba(X)
    compiled = set(_predict_rows.signatures)
    assert compiled, "predict ran another kernel: this test checks none"
    joblib.dump(est, tmp_path / "est.pkl")
    loaded = joblib.load(tmp_path / "est.pkl", mmap_mode="r")
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    assert set(_predict_rows.signatures) == compiled
