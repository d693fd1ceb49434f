"""Hidden-layer activations g: the scalar formula and its vectorised twin, side by side.

Each built-in activation has

* a scalar ``@njit`` function of one pre-activation ``z`` (used by the kernels,
  one unit at a time),
* its derivative written as a function of ``z`` *and* of the already computed
  activation ``a = g(z)`` (``tanh' = 1 - a**2`` needs no second ``tanh``),
* a NumPy function of a whole array (used by the reference).

Kernels select a built-in by an integer code (:data:`ACT_SIGMOID`, :data:`ACT_TANH`, ...),
so one compiled kernel serves every built-in and Numba's on-disk cache hits.

**One home per formula.**  Every form of a built-in g lives here, side by side:

=====================  ==================================  ==========================
form                   where                               used by
=====================  ==================================  ==========================
exact scalar           :func:`hidden_activation`,          the plain kernels
                       :func:`hidden_derivative`           (:mod:`fastbp._plain`)
loop (vectorisable)    :func:`activate_loop`,              the fast kernels
                       :func:`times_derivative_loop`       (:mod:`fastbp._fast`)
NumPy                  :data:`ARRAY_FORMS`                 :mod:`fastbp.reference`
traits                 :data:`TRAITS`                      initialisation, dispatch
=====================  ==================================  ==========================

Every if-chain names each code and ends in a failing path (``ValueError``), never an
implicit identity: a code added to :data:`NAMES` but forgotten in one form is refused
where it would run, and ``tests/test_activations.py`` (whose grid is derived from
:data:`NAMES`) fails.  To add an activation: a code, a name, each form, its traits.
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
from numba import float64, types
from numba.core.errors import TypingError

from ._jit import jit, jit_inner
from .vmath import vsigmoid, vtanh

# Integer codes the kernels branch on.  ACT_CUSTOM means "call the re-bound user function".
ACT_SIGMOID, ACT_TANH, ACT_RELU, ACT_LEAKY_RELU, ACT_IDENTITY, ACT_CUSTOM = range(6)

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
    if act == ACT_TANH:
        return np.tanh(z)
    if act == ACT_SIGMOID:
        return sigmoid(z)
    if act == ACT_RELU:
        return T(0) if z < 0 else z  # NaN propagates, as np.maximum does
    if act == ACT_LEAKY_RELU:
        return z * T(LEAKY_SLOPE) if z < 0 else z
    if act == ACT_IDENTITY:
        return z
    raise ValueError("hidden_activation: unknown activation code")


@jit
def hidden_derivative(z, a, act):
    """g'(Z) for one unit, given Z and the activation A = g(Z) already computed."""
    T = type(z)
    if act == ACT_TANH:
        return T(1) - a * a  # tanh' = 1 − tanh²
    if act == ACT_SIGMOID:
        return a * (T(1) - a)  # σ' = σ (1 − σ)
    if act == ACT_RELU:
        return T(1) if z > 0 else T(0)
    if act == ACT_LEAKY_RELU:
        return T(1) if z > 0 else T(LEAKY_SLOPE)
    if act == ACT_IDENTITY:
        return T(1)
    raise ValueError("hidden_derivative: unknown activation code")


# ----------------------------------------------------------------------------- loop
#
# The fast kernels' forms: one branch per layer, then a loop over the layer's units that
# LLVM vectorises (fastbp.vmath's tanh and σ are pure arithmetic, no libm call).


@jit_inner
def activate_loop(z, a, n, act):
    """a[:n] = g(z[:n]) for a built-in g (one branch per layer, a vectorised loop)."""
    T = z.dtype.type
    if act == ACT_TANH:
        for j in range(n):
            a[j] = vtanh(z[j])
    elif act == ACT_SIGMOID:
        for j in range(n):
            a[j] = vsigmoid(z[j])
    elif act == ACT_RELU:
        for j in range(n):
            zj = z[j]
            a[j] = T(0) if zj < T(0) else zj
    elif act == ACT_LEAKY_RELU:
        for j in range(n):
            zj = z[j]
            a[j] = zj * T(LEAKY_SLOPE) if zj < T(0) else zj
    elif act == ACT_IDENTITY:
        for j in range(n):
            a[j] = z[j]
    else:
        raise ValueError("activate_loop: unknown activation code")


@jit_inner
def times_derivative_loop(d, z, a, n, act):
    """d[:n] ∗= g'(Z) (given A = g(Z)): dZ[l] = dA[l] ∗ g'(Z[l])."""
    T = z.dtype.type
    if act == ACT_TANH:
        for k in range(n):
            d[k] *= T(1) - a[k] * a[k]
    elif act == ACT_SIGMOID:
        for k in range(n):
            d[k] *= a[k] * (T(1) - a[k])
    elif act == ACT_RELU:
        for k in range(n):  # times g′ ∈ {0, 1}, not a select: inf · 0 is NaN, as in the plain kernel
            d[k] *= T(1) if z[k] > T(0) else T(0)
    elif act == ACT_LEAKY_RELU:
        for k in range(n):
            d[k] = d[k] if z[k] > T(0) else d[k] * T(LEAKY_SLOPE)
    elif act == ACT_IDENTITY:
        pass  # g' = 1
    else:
        raise ValueError("times_derivative_loop: unknown activation code")


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


#: ``code: (g, g')`` in NumPy, over whole arrays (g' given Z and A = g(Z)).
ARRAY_FORMS: dict[int, tuple[Callable, Callable]] = {
    ACT_SIGMOID: (sigmoid_array, lambda Z, A: A * (1 - A)),
    ACT_TANH: (np.tanh, lambda Z, A: 1 - A * A),
    ACT_RELU: (_relu_array, _relu_prime_array),
    ACT_LEAKY_RELU: (_leaky_array, _leaky_prime_array),
    ACT_IDENTITY: (lambda Z: Z.copy(), lambda Z, A: np.ones_like(Z)),
}


# ---------------------------------------------------------------------------- traits


@dataclass(frozen=True)
class Traits:
    """What the rest of the package may assume about a built-in g.

    ``bounded``: |g(z)| ≤ 1 for every z (the tiny kernel then bounds Σ|A[1]| by n_1
    instead of summing it).  ``slope_bounded``: |g′(z)| ≤ 1 for every z; the fast
    kernels' divergence bound (|dZ[l−1]| ≤ max|W[l]| · Σ|dZ[l]|) assumes it, so an
    activation without it never runs a fast kernel (:mod:`fastbp._dispatch`).
    ``init``: ``"glorot"`` (uniform) or ``"he"`` (normal) initialisation.
    """

    bounded: bool
    slope_bounded: bool
    init: str


TRAITS: dict[int, Traits] = {
    ACT_SIGMOID: Traits(bounded=True, slope_bounded=True, init="glorot"),
    ACT_TANH: Traits(bounded=True, slope_bounded=True, init="glorot"),
    ACT_RELU: Traits(bounded=False, slope_bounded=True, init="he"),
    ACT_LEAKY_RELU: Traits(bounded=False, slope_bounded=True, init="he"),
    ACT_IDENTITY: Traits(bounded=False, slope_bounded=True, init="glorot"),
}

#: A custom activation's traits: nothing is assumed (the plain kernels run it).
CUSTOM_TRAITS = Traits(bounded=False, slope_bounded=False, init="glorot")

#: The codes of the bounded activations (|g| ≤ 1), as a constant the kernels can test.
BOUNDED_CODES: tuple[int, ...] = tuple(code for code, traits in TRAITS.items() if traits.bounded)

NAMES: dict[str, int] = {
    "sigmoid": ACT_SIGMOID,
    "logistic": ACT_SIGMOID,  # scikit-learn's name
    "tanh": ACT_TANH,
    "relu": ACT_RELU,
    "leaky_relu": ACT_LEAKY_RELU,
    "identity": ACT_IDENTITY,
}


def _check_scalar_function(f, label: str) -> None:
    """A custom g or g′ compiled now for one float64 argument (nothing run), so that one of the
    wrong shape is refused when the activation is made, naming it, rather than by a Numba typing
    error from inside the first kernel that calls it: it must take one scalar and return one
    real number (or a bool, which the kernels convert)."""
    try:
        f.compile((float64,))
    except TypingError as exc:  # (a TypeError too: caught first)
        raise TypeError(
            f"activation: custom {label} does not compile for one float64 argument (Numba's error is the "
            "cause above); it must be a function of one scalar returning one"
        ) from exc
    except TypeError as exc:  # Numba's "Signature mismatch": not one argument
        raise TypeError(f"activation: custom {label} must take one scalar argument ({exc})") from exc
    returned = f.overloads[(float64,)].signature.return_type
    if not isinstance(returned, (types.Float, types.Integer, types.Boolean)):
        raise TypeError(f"activation: custom {label} must return one real number, {label}(float64) returns {returned}")


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
    code: int = ACT_CUSTOM
    _ufuncs: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self):
        if self.code != ACT_CUSTOM:
            if self.code not in TRAITS or self.code not in ARRAY_FORMS:
                raise ValueError(
                    f"activation: code {self.code!r} is not a built-in activation (one of "
                    f"{sorted(TRAITS)}); a custom g is fastbp.Activation(g, g_prime)"
                )
            return
        for label, f in (("g", self.g), ("g_prime", self.g_prime)):
            if not hasattr(f, "py_func"):
                raise TypeError(
                    f"activation: custom {label} must be a @numba.njit function of one scalar, got {type(f).__name__}"
                )
        for label, f in (("g", self.g), ("g_prime", self.g_prime)):
            _check_scalar_function(f, label)
        if self.name == "custom":
            object.__setattr__(self, "name", getattr(self.g, "__name__", "custom"))

    @property
    def is_custom(self) -> bool:
        return self.code == ACT_CUSTOM

    @property
    def traits(self) -> Traits:
        """What may be assumed about this g (:data:`TRAITS`; nothing for a custom one)."""
        return CUSTOM_TRAITS if self.is_custom else TRAITS[self.code]

    def __call__(self, Z: np.ndarray) -> np.ndarray:
        """g(Z) on a whole array (the reference's form)."""
        if not self.is_custom:
            return ARRAY_FORMS[self.code][0](Z)
        return self._ufunc("g")(Z).astype(Z.dtype, copy=False)

    def derivative(self, Z: np.ndarray, A: np.ndarray) -> np.ndarray:
        """g'(Z) on a whole array, given A = g(Z)."""
        if not self.is_custom:
            return ARRAY_FORMS[self.code][1](Z, A)
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
        if key not in _BUILTIN_CACHE:  # one object per built-in: every public call looks one up
            _BUILTIN_CACHE[key] = Activation(name=key if key != "logistic" else "sigmoid", code=NAMES[key])
        return _BUILTIN_CACHE[key]
    if isinstance(activation, tuple) and len(activation) == 2:
        g, g_prime = activation
        return make_custom(g, g_prime)
    raise TypeError(
        "activation must be a name such as 'tanh', a fastbp.Activation, or a "
        f"(g, g_prime) pair of numba.njit functions; got {type(activation).__name__}"
    )


_CUSTOM_CACHE: dict[tuple, Activation] = {}
_BUILTIN_CACHE: dict[str, Activation] = {}


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
