"""The parameter store: one contiguous buffer per network, W[l] and b[l] as views into it.

Layout of the flat buffer (layers l = 1 … L, row-major)::

    [ W[1] (n_1 × n_0) | b[1] (n_1) | W[2] (n_2 × n_1) | b[2] (n_2) | … ]

Kernels and optimizers walk the one array; users see lists of matrices that are
views into it, so writing into ``net.weights[l]`` in place changes the network
(scikit-learn's ``_pack``/``_unpack`` idea, without the copying).

The per-layer *unit* workspace (Z[l], A[l], dZ[l] of one example) has the same
idea: ``[ layer 1 (n_1) | layer 2 (n_2) | … | layer L (n_L) ]``.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Sequence

import numpy as np

from ._jit import jit


@jit
def offsets(sizes):
    """Where W[l], b[l] and layer l's units start: three int64 arrays of length L.

    ``w_off[l]``/``b_off[l]`` index the parameter buffer, ``u_off[l]`` the unit
    workspace, for the layer that maps ``sizes[l]`` inputs to ``sizes[l+1]`` units.
    """
    L = sizes.shape[0] - 1
    w_off = np.empty(L, np.int64)
    b_off = np.empty(L, np.int64)
    u_off = np.empty(L, np.int64)
    p = 0
    u = 0
    for l in range(L):
        w_off[l] = p
        p += sizes[l + 1] * sizes[l]
        b_off[l] = p
        p += sizes[l + 1]
        u_off[l] = u
        u += sizes[l + 1]
    return w_off, b_off, u_off


class Layout:
    """The shapes of a network's parameters and where they sit in the flat buffer."""

    def __init__(self, layer_sizes: Sequence[int]):
        # A copy of its own, a plain writable int64 array: the kernels walk the parameter buffer by
        # these sizes (a caller's array changed later, from another thread while a kernel runs
        # without the GIL, would take them outside it), and a read-only array (a memory-mapped
        # pickle's) would make every kernel compile again for a read-only argument.
        self.sizes = np.array(layer_sizes, dtype=np.int64)
        self.n_layers = len(self.sizes) - 1
        self.shapes = [(int(self.sizes[l + 1]), int(self.sizes[l])) for l in range(self.n_layers)]
        self.n_params = int(sum(o * (i + 1) for o, i in self.shapes))
        self.n_units = int(self.sizes[1:].sum())

    def __setstate__(self, state: dict) -> None:
        """Unpickled (joblib's ``mmap_mode="r"`` hands back read-only memory maps): rebuilt from the
        sizes, so that it holds a writable array of its own as :meth:`__init__` makes."""
        self.__init__([int(n) for n in state["sizes"]])

    def _bounds(self):
        p = 0
        for n_out, n_in in self.shapes:
            yield p, p + n_out * n_in, p + n_out * (n_in + 1)
            p += n_out * (n_in + 1)

    def views(self, flat: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """W[l] and b[l] as views into ``flat`` (no copy)."""
        weights, biases = [], []
        for (n_out, n_in), (w0, b0, end) in zip(self.shapes, self._bounds()):
            weights.append(flat[w0:b0].reshape(n_out, n_in))
            biases.append(flat[b0:end])
        return weights, biases

    def unit_views(self, buf: np.ndarray) -> list[np.ndarray]:
        """Per-layer column blocks of a unit buffer (m × n_units) or (n_units,)."""
        out, u = [], 0
        for n_out, _ in self.shapes:
            out.append(buf[..., u : u + n_out])
            u += n_out
        return out

    def pack(self, weights, biases, dtype) -> np.ndarray:
        """A new flat buffer holding copies of ``weights`` and ``biases``: W[1], b[1], W[2], …"""
        parts = [a for W, b in zip(weights, biases) for a in (np.ravel(W), b)]
        return np.concatenate(parts, dtype=dtype, casting="unsafe")

    def buffer_of(self, weights, biases) -> np.ndarray | None:
        """The flat buffer that ``weights``/``biases`` are views of, if they are exactly that.

        Lets the kernels work in place on a network's parameters (no copy) while
        still accepting any list of arrays from a user.
        """
        base = getattr(weights[0], "base", None)
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        if (
            not isinstance(base, np.ndarray)
            or base.ndim != 1
            or base.size != self.n_params
            or not base.flags.c_contiguous
            or not base.flags.writeable
        ):
            return None
        W, b = self.views(base)
        for mine, theirs in zip(W + b, list(weights) + list(biases)):
            if (
                mine.__array_interface__["data"][0] != theirs.__array_interface__["data"][0]
                or mine.shape != theirs.shape
                or mine.strides != theirs.strides
                or mine.dtype != theirs.dtype
            ):
                return None
        return base


@contextmanager
def atomic_commit():
    """Hold Ctrl-C (SIGINT) back while a step's new parameters are written, then deliver it.

    A NumPy update writes W[1], b[1], W[2], … (and an optimizer's state) one array at a
    time; an interrupt between two writes would leave W[2] from step k+1 beside b[2] from
    step k.  Inside this block SIGINT is recorded and re-delivered to the previous handler
    when the block ends, so an interrupted fit keeps the parameters of a whole number of
    steps.  Outside the main thread (where Python delivers no signals) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    except (ValueError, OSError):  # pragma: no cover - no signal handling here (embedded interpreters)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(signal.SIGINT, caught[0])
            elif previous == signal.SIG_DFL:  # pragma: no cover - the process asked to die on SIGINT
                os.kill(os.getpid(), signal.SIGINT)
