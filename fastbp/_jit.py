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
* ``no_cfunc_wrapper=True``: Numba otherwise also builds a C-callable wrapper of
  every compiled function (for ``cfunc``-style first-class function use, which
  fastbp never does); leaving it out makes every cold compile lighter
  (``docs/performance.md``, start-up).  Kernels are still called
  from Python through their ordinary CPython wrapper.
"""

from __future__ import annotations

import types

from numba import njit

FASTMATH_FLAGS: frozenset[str] = frozenset({"reassoc", "contract", "nsz", "arcp"})

JIT_OPTIONS: dict = {
    "cache": True,
    "nogil": True,
    "fastmath": set(FASTMATH_FLAGS),
    "no_cfunc_wrapper": True,
}


def jit(func):
    """Compile ``func`` with fastbp's :data:`JIT_OPTIONS` (lazily, on first call)."""
    return njit(**JIT_OPTIONS)(func)


def recompile_with(kernels: dict, module_globals: dict, overrides: dict) -> dict:
    """Re-compile ``kernels`` (name → dispatcher) from their own source, with globals re-bound.

    Each kernel is rebuilt from its ``py_func``'s code object over a copy of
    ``module_globals`` updated with ``overrides`` (e.g. ``hidden_activation`` bound
    to a user's function) and with the other re-compiled kernels, so calls between
    them stay inside the new set.  Not cached on disk: the result depends on the
    overrides, which are usually a user's functions.
    """
    namespace = dict(module_globals)
    namespace.update(overrides)
    options = {key: value for key, value in JIT_OPTIONS.items() if key != "cache"}
    out = {}
    for name, dispatcher in kernels.items():
        py = dispatcher.py_func
        clone = types.FunctionType(py.__code__, namespace, py.__name__, py.__defaults__, py.__closure__)
        clone.__doc__ = py.__doc__
        namespace[name] = out[name] = njit(**options)(clone)
    return out
