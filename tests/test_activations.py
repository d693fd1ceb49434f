"""Activations by name, custom ones, and their validation."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp
from fastbp import kernels
from fastbp.activations import get_activation, make_custom

from .conftest import SOFTSIGN, softsign, softsign_prime


def test_a_pair_gives_the_same_activation_and_kernels_every_time():
    a = get_activation((softsign, softsign_prime))
    assert a is get_activation((softsign, softsign_prime)) is make_custom(softsign, softsign_prime)
    assert a.name == "softsign" and a.is_custom
    assert kernels.kernels_for(a) is kernels.kernels_for(get_activation((softsign, softsign_prime)))
    assert kernels.kernels_for(get_activation("tanh")) is kernels.BUILTIN


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


@pytest.mark.parametrize("bad, error", [("softplus", ValueError), (3, TypeError), ((softsign,), TypeError)])
def test_unknown_activation_is_refused(bad, error):
    with pytest.raises(error, match="activation"):
        get_activation(bad)


def test_logistic_is_sigmoid():
    assert get_activation("logistic").name == "sigmoid"
