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


def test_pack_copies_every_layout_into_the_views_order():
    """``pack`` is the inverse of ``views`` for parameters in any memory order."""
    layout = Layout([3, 4, 2])
    flat = np.arange(layout.n_params, dtype=np.float32)
    W, b = layout.views(flat)
    odd = [np.asfortranarray(W[0]), W[1][:, ::-1][:, ::-1]], [b[0].copy(), b[1][::-1][::-1]]
    packed = layout.pack(*odd, np.float32)
    assert packed.dtype == np.float32 and packed.shape == (layout.n_params,)
    assert not np.shares_memory(packed, flat)
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
