"""The plain kernels (layer L2a): the readable scalar-loop reference.

:mod:`fastbp._plain.loops` holds the kernels; this package adds the one thing that is
not a loop, :func:`kernels_for`, the kernel set for an activation.  Never imports
:mod:`fastbp._fast` (the fast kernels are tested against these, not the other way round).
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace

from .._jit import jit_uncached, recompile_with
from ..activations import Activation
from . import loops

__all__ = ["BUILTIN", "KERNEL_NAMES", "kernels_for"]

KERNEL_NAMES = loops.KERNEL_NAMES

#: The kernels for every built-in activation (selected at run time by an integer code).
BUILTIN = SimpleNamespace(**{name: getattr(loops, name) for name in KERNEL_NAMES})

_custom_kernels: "weakref.WeakKeyDictionary[Activation, SimpleNamespace]" = weakref.WeakKeyDictionary()


def kernels_for(activation: Activation) -> SimpleNamespace:
    """The plain kernel set for ``activation`` (attributes named as :data:`KERNEL_NAMES`).

    Built-ins share :data:`BUILTIN`, compiled once and cached on disk.  A custom
    activation gets the *same* kernel source re-compiled with ``hidden_activation``
    and ``hidden_derivative`` bound to the user's functions, so the user's g is
    inlined into the loops (never called through a function pointer per unit).
    These are compiled once per custom activation and process, and cached on disk
    under a hash of the source of g and g′ (:func:`fastbp._jit.recompile_with`), so
    a new process with the same functions loads them.
    """
    if not activation.is_custom:
        return BUILTIN
    if activation in _custom_kernels:
        return _custom_kernels[activation]
    user_g, user_g_prime = activation.g, activation.g_prime

    def custom_g(z, act):
        return type(z)(user_g(z))

    def custom_g_prime(z, a, act):
        return type(z)(user_g_prime(z))

    rebound = recompile_with(
        {name: getattr(loops, name) for name in KERNEL_NAMES},
        vars(loops),
        {"hidden_activation": jit_uncached(custom_g), "hidden_derivative": jit_uncached(custom_g_prime)},
    )
    kset = SimpleNamespace(**rebound)
    _custom_kernels[activation] = kset
    return kset
