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
