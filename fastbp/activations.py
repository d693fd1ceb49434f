"""Hidden-layer activations g: the scalar formula and its vectorised twin, side by side.

Each built-in activation has

* a scalar ``@njit`` function of one pre-activation ``z`` (used by the kernels,
  one unit at a time),
* its derivative written as a function of ``z`` *and* of the already computed
  activation ``a = g(z)`` (``tanh' = 1 - a**2`` needs no second ``tanh``),
* a NumPy function of a whole array (used by the reference).

Kernels select a built-in by an integer code (:data:`SIGMOID`, :data:`TANH`, ...),
so one compiled kernel serves every built-in and Numba's on-disk cache hits.
A *custom* activation is a pair of ``@numba.njit`` scalar functions ``g(z)`` and
``g_prime(z)`` wrapped in :class:`Activation`; the kernels are then re-compiled
once for it (see :func:`fastbp.kernels.kernels_for`).

Literals are written through the argument's own type (``T = type(z); T(1)``) so a
float32 network computes in float32: a bare ``1.0`` would silently promote the
whole loop to float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._jit import jit

# Integer codes the kernels branch on.  CUSTOM means "call the re-bound user function".
SIGMOID, TANH, RELU, LEAKY_RELU, IDENTITY, CUSTOM = range(6)

#: Slope of ``leaky_relu`` for negative inputs.
LEAKY_SLOPE = 0.01


# --------------------------------------------------------------------------- scalar


@jit
def sigmoid(z):
    """σ(z) = 1 / (1 + e^(−z)), in the sign-split form that never overflows."""
    T = type(z)
    if z >= 0:
        return T(1) / (T(1) + np.exp(-z))
    e = np.exp(z)  # z < 0 (or NaN): e in (0, 1), no overflow
    return e / (T(1) + e)


@jit
def hidden_activation(z, act):
    """A = g(Z) for one unit; ``act`` is one of the integer codes above."""
    T = type(z)
    if act == TANH:
        return np.tanh(z)
    if act == SIGMOID:
        return sigmoid(z)
    if act == RELU:
        return T(0) if z < 0 else z  # NaN propagates, as np.maximum does
    if act == LEAKY_RELU:
        return z * T(LEAKY_SLOPE) if z < 0 else z
    return z  # IDENTITY


@jit
def hidden_derivative(z, a, act):
    """g'(Z) for one unit, given Z and the activation A = g(Z) already computed."""
    T = type(z)
    if act == TANH:
        return T(1) - a * a  # tanh' = 1 − tanh²
    if act == SIGMOID:
        return a * (T(1) - a)  # σ' = σ (1 − σ)
    if act == RELU:
        return T(1) if z > 0 else T(0)
    if act == LEAKY_RELU:
        return T(1) if z > 0 else T(LEAKY_SLOPE)
    return T(1)  # IDENTITY


# ------------------------------------------------------------------------ vectorised


def sigmoid_array(Z: np.ndarray) -> np.ndarray:
    """σ(Z) elementwise, sign-split so that no ``exp`` overflows."""
    e = np.exp(-np.abs(Z))
    one = Z.dtype.type(1)
    return np.where(Z >= 0, one / (one + e), e / (one + e))


def _relu_array(Z):
    return np.maximum(Z, Z.dtype.type(0))


def _relu_prime_array(Z, A):
    return (Z > 0).astype(Z.dtype)


def _leaky_array(Z):
    return np.where(Z < 0, Z * Z.dtype.type(LEAKY_SLOPE), Z)


def _leaky_prime_array(Z, A):
    return np.where(Z > 0, Z.dtype.type(1), Z.dtype.type(LEAKY_SLOPE))


_VECTORISED: dict[int, tuple[Callable, Callable]] = {
    SIGMOID: (sigmoid_array, lambda Z, A: A * (1 - A)),
    TANH: (np.tanh, lambda Z, A: 1 - A * A),
    RELU: (_relu_array, _relu_prime_array),
    LEAKY_RELU: (_leaky_array, _leaky_prime_array),
    IDENTITY: (lambda Z: Z.copy(), lambda Z, A: np.ones_like(Z)),
}

NAMES: dict[str, int] = {
    "sigmoid": SIGMOID,
    "logistic": SIGMOID,  # scikit-learn's name
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "identity": IDENTITY,
}


@dataclass(frozen=True, eq=False)
class Activation:
    """A hidden-layer activation g and its derivative g'.

    Built-ins are looked up by name with :func:`get_activation`.  For a custom
    one pass two ``@numba.njit`` scalar functions::

        @numba.njit
        def softsign(z): return z / (1 + abs(z))
        @numba.njit
        def softsign_prime(z): return 1 / (1 + abs(z)) ** 2
        net = fastbp.MLP([4, 8, 1], activation=fastbp.Activation(softsign, softsign_prime))

    (a plain ``(g, g_prime)`` tuple works too).  Both backends use them: the
    kernels call them one unit at a time, the reference through a NumPy ufunc
    built from them with :func:`numba.vectorize`.
    """

    g: Callable | None = None
    g_prime: Callable | None = None
    name: str = "custom"
    code: int = CUSTOM
    _ufuncs: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.code != CUSTOM:
            return
        for label, f in (("g", self.g), ("g_prime", self.g_prime)):
            if not hasattr(f, "py_func"):
                raise TypeError(
                    f"activation: custom {label} must be a @numba.njit function of one "
                    f"scalar, got {type(f).__name__}"
                )
        if self.name == "custom":
            object.__setattr__(self, "name", getattr(self.g, "__name__", "custom"))

    @property
    def is_custom(self) -> bool:
        return self.code == CUSTOM

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        """g(Z) on a whole array (the reference's form)."""
        if not self.is_custom:
            return _VECTORISED[self.code][0](Z)
        return self._ufunc("g")(Z).astype(Z.dtype, copy=False)

    def derivative(self, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
        """g'(Z) on a whole array, given A = g(Z)."""
        if not self.is_custom:
            return _VECTORISED[self.code][1](Z, A)
        return self._ufunc("g_prime")(Z).astype(Z.dtype, copy=False)

    def _ufunc(self, which: str):
        if which not in self._ufuncs:
            import numba  # a lazily compiled DUFunc of the user's scalar function

            scalar = getattr(self, which)
            self._ufuncs[which] = numba.vectorize(getattr(scalar, "py_func", scalar))
        return self._ufuncs[which]


def get_activation(activation: "str | Activation | tuple") -> Activation:
    """Turn a name, an :class:`Activation` or a ``(g, g_prime)`` pair into an :class:`Activation`.

    Raises ``ValueError`` for an unknown name and ``TypeError`` for anything else.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        key = activation.lower()
        if key not in NAMES:
            raise ValueError(
                f"activation must be one of {sorted(set(NAMES) - {'logistic'})} or a "
                f"fastbp.Activation(g, g_prime); got {activation!r}"
            )
        return Activation(name=key if key != "logistic" else "sigmoid", code=NAMES[key])
    if isinstance(activation, tuple) and len(activation) == 2:
        g, g_prime = activation
        return make_custom(g, g_prime)
    raise TypeError(
        "activation must be a name such as 'tanh', a fastbp.Activation, or a "
        f"(g, g_prime) pair of numba.njit functions; got {type(activation).__name__}"
    )


_CUSTOM_CACHE: dict[tuple, Activation] = {}


def make_custom(g, g_prime, name: str | None = None) -> Activation:
    """Wrap two ``@numba.njit`` scalar functions as a custom :class:`Activation`.

    The same pair (and name) always gives the same object, so the kernels compiled
    for it are reused: passing ``(g, g_prime)`` to every call compiles once.
    """
    key = (g, g_prime, name)
    try:
        return _CUSTOM_CACHE[key]
    except TypeError:  # unhashable: not a dispatcher; let Activation say so
        return Activation(g=g, g_prime=g_prime, name=name or "custom")
    except KeyError:
        pass
    activation = Activation(g=g, g_prime=g_prime, name=name or "custom")
    _CUSTOM_CACHE[key] = activation
    return activation
