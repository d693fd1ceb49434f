"""BLAS on one thread while a fast kernel that calls it runs (layer L0).

The column mini-batch kernels (:mod:`fastbp._fast.columns`) hand their wide matrix products
to BLAS through Numba's ``np.dot`` (SciPy's OpenBLAS).  OpenBLAS splits a product between
its threads differently for each thread count, and the sums then round differently: on this
project's machines an epoch of 784-128-10 at batch 256 gave other bits with two BLAS threads
than with one (``python tools/blas_threads.py`` re-checks it).  fastbp promises the same bits
for any thread setting, so :func:`one_blas_thread` holds every loaded BLAS to one thread for
the length of a kernel call (about 13 µs per call, through one cached
:class:`threadpoolctl.ThreadpoolController`; threadpoolctl comes with scikit-learn).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_controller = None


def _get_controller():
    global _controller
    if _controller is None:
        # Numba's np.dot calls SciPy's BLAS: load it before the controller takes its census
        # of the process's BLAS libraries (it does not see libraries loaded later).
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Hold every BLAS library of the process to one thread inside the ``with`` block."""
    with _get_controller().limit(limits=1, user_api="blas"):
        yield
