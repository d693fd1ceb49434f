"""The one place where fastbp's Numba compilation options are chosen.

Every kernel is compiled with :data:`JIT_OPTIONS`:

* ``cache=True``: compiled machine code is kept on disk (``__pycache__`` or
  ``NUMBA_CACHE_DIR``), so a fresh process does not recompile.
* ``nogil=True``: kernels release the GIL, so threads (a Dask worker, a
  thread pool) run them in parallel.
* ``fastmath``: only the flags that let LLVM reorder and fuse arithmetic
  (``reassoc``, ``contract``, ``nsz``, ``arcp``).  ``nnan`` and ``ninf`` are
  deliberately left out: they let LLVM delete NaN/inf checks (numba#2919), and
  fastbp must report NaN and inf faithfully.  ``afn`` is left out so that
  ``exp``, ``log`` and ``tanh`` stay the accurate libm functions.
"""

from __future__ import annotations

from numba import njit

FASTMATH_FLAGS: frozenset[str] = frozenset({"reassoc", "contract", "nsz", "arcp"})

JIT_OPTIONS: dict = {"cache": True, "nogil": True, "fastmath": set(FASTMATH_FLAGS)}


def jit(func):
    """Compile ``func`` with fastbp's :data:`JIT_OPTIONS` (lazily, on first call)."""
    return njit(**JIT_OPTIONS)(func)
