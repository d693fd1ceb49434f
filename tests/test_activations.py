"""Activations by name, custom ones, and their validation."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

import fastbp
from fastbp import kernels
from fastbp.activations import get_activation, make_custom
from fastbp.testing import make_problem, tolerance

from .conftest import SOFTSIGN, softsign, softsign_prime


def test_a_pair_gives_the_same_activation_and_kernels_every_time():
    a = get_activation((softsign, softsign_prime))
    assert a is get_activation((softsign, softsign_prime)) is make_custom(softsign, softsign_prime)
    assert a.name == "softsign" and a.is_custom
    assert kernels.kernels_for(a) is kernels.kernels_for(get_activation((softsign, softsign_prime)))
    assert kernels.kernels_for(get_activation("tanh")) is kernels.BUILTIN


@pytest.mark.parametrize("name", sorted(fastbp.activations.NAMES))
def test_a_builtin_name_gives_one_activation_object(name):
    """Every public call looks its activation up by name: one object per name, made once."""
    a = get_activation(name)
    assert a is get_activation(name) is get_activation(name.upper())
    assert not a.is_custom and a.code == fastbp.activations.NAMES[name]
    assert a.name == ("sigmoid" if name == "logistic" else name)


def test_custom_kernels_inline_the_users_function():
    W, b = [np.array([[2.0]]), np.array([[1.0]])], [np.zeros(1), np.zeros(1)]
    Z, A = kernels.forward(W, b, np.array([[3.0]]), SOFTSIGN, "identity")
    assert A[0][0, 0] == pytest.approx(6 / 7)  # softsign(2·3)


@pytest.mark.parametrize(
    "make",
    [
        lambda: fastbp.Activation(lambda z: z, lambda z: 1.0),
        lambda: fastbp.Activation(),
        lambda: fastbp.Activation(softsign, np.tanh),
        lambda: fastbp.MLP([2, 2, 1], activation=(np.tanh, softsign_prime)),
    ],
    ids=["plain-python", "empty", "numpy-ufunc-derivative", "tuple-in-mlp"],
)
def test_custom_activation_must_be_njit_functions(make):
    with pytest.raises(TypeError, match="activation"):
        make()


@njit
def _two_arguments(z, c):
    return z * c


@njit
def _pair(z):
    return z, -z


@njit
def _untypable(z):
    return z + "a"


@pytest.mark.parametrize(
    "g, g_prime, match",
    [
        (_two_arguments, softsign_prime, r"custom g must take one scalar argument \(Signature mismatch"),
        (softsign, _pair, r"custom g_prime must return one real number, g_prime\(float64\) returns UniTuple"),
        (_untypable, softsign_prime, r"custom g does not compile for one float64 argument"),
    ],
    ids=["two-arguments", "returns-a-tuple", "body-does-not-type"],
)
def test_custom_activation_of_the_wrong_signature_is_refused_when_made(g, g_prime, match):
    """Refused by MLP(...) itself, naming the function, not by a Numba typing error in the first fit."""
    with pytest.raises(TypeError, match=match) as info:
        fastbp.MLP([2, 2, 1], activation=(g, g_prime))
    assert info.value.__cause__ is not None or "returns" in str(info.value)  # Numba's own error kept as the cause


@pytest.mark.parametrize("bad, error", [("softplus", ValueError), (3, TypeError), ((softsign,), TypeError)])
def test_unknown_activation_is_refused(bad, error):
    with pytest.raises(error, match="activation"):
        get_activation(bad)


def test_logistic_is_sigmoid():
    assert get_activation("logistic").name == "sigmoid"


# ---------------------------------------------------------- one home per formula: the tables

import re  # noqa: E402
from pathlib import Path  # noqa: E402

from fastbp import activations as acts  # noqa: E402
from fastbp import losses  # noqa: E402

ACT_CODES = sorted(set(acts.NAMES.values()))
OUT_CODES = sorted(set(losses.NAMES.values()))
UNKNOWN = 99  # a code no table knows


@njit(cache=False)
def _activation_forms(z, act):
    """The exact scalar form and the loop form of g and g' for every element of z."""
    a_exact = np.empty_like(z)
    d_exact = np.empty_like(z)
    for i in range(z.shape[0]):
        a_exact[i] = acts.hidden_activation(z[i], act)
        d_exact[i] = acts.hidden_derivative(z[i], a_exact[i], act)
    a_loop = np.empty_like(z)
    acts.activate_loop(z, a_loop, z.shape[0], act)
    d_loop = np.ones_like(z)
    acts.times_derivative_loop(d_loop, z, a_loop, z.shape[0], act)
    return a_exact, d_exact, a_loop, d_loop


@njit(cache=False)
def _output_forms(z, y, out):
    a_exact = np.empty_like(z)
    losses.output_activation(z, a_exact, out)
    a_loop = np.empty_like(z)
    losses.output_loop(z, a_loop, out)
    return a_exact, a_loop, losses.example_cost(z, y, out), losses.cost_loop(z, y, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("code", ACT_CODES, ids=lambda c: next(k for k, v in acts.NAMES.items() if v == c))
def test_every_activation_has_every_form_and_its_traits(code, dtype):
    """Each name of the activation table has its exact, loop and NumPy forms (and they agree)
    and its traits; a missing branch would raise in the compiled forms."""
    z = np.linspace(-6, 6, 41).astype(dtype)
    a_exact, d_exact, a_loop, d_loop = _activation_forms(z, code)
    g, g_prime = acts.ARRAY_FORMS[code]
    a_np = g(z)
    tol = tolerance(dtype)
    np.testing.assert_allclose(a_exact, a_np, **tol)
    np.testing.assert_allclose(a_loop, a_np, **tol)
    np.testing.assert_allclose(d_exact, g_prime(z, a_np), **tol)
    np.testing.assert_allclose(d_loop, g_prime(z, a_np), **tol)
    traits = acts.TRAITS[code]
    assert traits.init in ("glorot", "he")
    if traits.bounded:
        assert np.abs(a_np).max() <= 1
    if traits.slope_bounded:
        assert np.abs(g_prime(z, a_np)).max() <= 1


@pytest.mark.parametrize("code", OUT_CODES)
def test_every_output_has_every_form(code):
    z = np.array([-3.0, 0.5, 2.0])
    y = np.array([0.2, 0.3, 0.5])
    a_exact, a_loop, cost_exact, cost_loop = _output_forms(z, y, code)
    np.testing.assert_allclose(a_exact, losses.output_activation_array(z[None], code)[0], rtol=1e-12)
    np.testing.assert_allclose(a_loop, a_exact, rtol=1e-12)
    np.testing.assert_allclose(cost_loop, cost_exact, rtol=1e-12)
    np.testing.assert_allclose(cost_exact, losses.example_costs_array(z[None], y[None], code)[0], rtol=1e-12)


def test_an_unknown_code_is_refused_not_trained_as_the_identity():
    """Every if-chain ends in a failing path: a code missing from a form raises there."""
    z = np.zeros(3)
    with pytest.raises(ValueError, match="unknown activation code"):
        _activation_forms(z, UNKNOWN)
    with pytest.raises(ValueError, match="unknown output code"):
        _output_forms(z, z, UNKNOWN)
    for f in (losses.output_activation_array, lambda Z, c: losses.example_costs_array(Z, Z, c)):
        with pytest.raises(ValueError, match="unknown output code"):
            f(np.zeros((1, 3)), UNKNOWN)


def test_a_deliberately_incomplete_activation_is_refused_before_training():
    """An Activation carrying a code without forms and traits never reaches a kernel."""
    with pytest.raises(ValueError, match="not a built-in activation"):
        acts.Activation(name="incomplete", code=UNKNOWN)
    prob = make_problem([3, 4, 1], m=5)
    W, b = prob.copy_params()
    before = [w.copy() for w in W]
    with pytest.raises(ValueError, match="unknown activation code"):
        from fastbp._plain import BUILTIN
        from fastbp.params import Layout

        lay = Layout([3, 4, 1])
        p = lay.pack(W, b, np.float64)
        BUILTIN._train_epoch(p, lay.sizes, prob.X, prob.Y, np.arange(5), 1, 0.1, UNKNOWN, 0, np.empty(0, p.dtype))
    np.testing.assert_array_equal(W[0], before[0])


def test_the_tiny_kernels_bounded_test_matches_the_traits():
    """The tiny kernels bound Σ|A[1]| by n_1 for the bounded activations; that test is written
    out as comparisons in their source (a tuple ``in`` changed their float32 bits), so this
    holds it to :data:`fastbp.activations.TRAITS`."""
    source = (Path(acts.__file__).parent / "_fast" / "tiny.py").read_text(encoding="utf-8")
    lines = re.findall(r"bounded = (act == .*?)(?:  #|$)", source, flags=re.M)
    assert len(lines) == 2
    for line in lines:
        codes = {getattr(acts, name) for name in re.findall(r"act == (ACT_\w+)", line)}
        assert codes == set(acts.BOUNDED_CODES)
