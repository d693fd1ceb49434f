"""Compile into Numba's cache, from a second process, the helpers a per-example training kernel compiles last:
:func:`compile_late_helpers`.

Why: Numba compiles on one thread.  A cold ``fastbp train`` (per-example SGD on the digits) first
compiles its training kernel's helpers, one after the other as type inference meets them, then the
kernel itself; the second core is idle.  ``fastbp._compile_beside.CompileBeside`` runs this in a second process
meanwhile, **in the reverse order** of the kernel's first calls (recorded from the ``numba:compile``
events of a cold run: ``activate_loop``, ``output_loop``, ``cost_loop``, ``times_derivative_loop``,
``defer_cost``, ``flush_costs``), so the two processes meet in the middle: each helper the second
process has saved by the time the kernel's compile reaches it is loaded from the cache instead of
compiled again.  The argument types are those of the kernels' calls (1-D C-contiguous arrays of the
network's dtype, ``int64`` sizes and codes), so the cache entries are the ones the kernels look up;
``tests/test_cli_compile_beside.py`` compiles a training kernel after this and checks that none of
these helpers is compiled again.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..activations import activate_loop, times_derivative_loop
from ..losses import cost_loop, defer_cost, flush_costs, output_loop

#: The helpers :func:`compile_late_helpers` compiles, in the order it compiles them.
LATE_HELPERS = (flush_costs, defer_cost, times_derivative_loop, cost_loop, output_loop, activate_loop)


@njit(cache=False)  # its own compile is a few calls; the helpers it calls are cached (JIT_INNER)
def _call_late_helpers(z, a, d, y, Zc, Yc, cnt, n, act, out):
    """Each helper of :data:`LATE_HELPERS` once, in that order (type inference compiles them in it)."""
    total = flush_costs(Zc, Yc, cnt, n, out)
    defer_cost(z, y, Zc, Yc, cnt)
    times_derivative_loop(d, z, a, n, act)
    total += cost_loop(z, y, out)
    output_loop(z, a, out)
    activate_loop(z, a, n, act)
    return total


def compile_late_helpers(dtype, act: int, out: int) -> None:
    """Compile (or load) :data:`LATE_HELPERS` for networks of ``dtype`` into Numba's cache: one call of
    each on one-element arrays, with a built-in activation's code ``act`` and an output's code ``out``
    (the codes are run-time values: any valid pair compiles the same machine code)."""
    dtype = np.dtype(dtype)
    z, a, d, y, Zc, Yc = (np.zeros(1, dtype) for _ in range(6))
    _call_late_helpers(z, a, d, y, Zc, Yc, np.zeros(1, np.int64), 1, int(act), int(out))
