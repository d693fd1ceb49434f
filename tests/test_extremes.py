"""Numerical extremes: logits, weights and inputs of any finite size give finite costs and gradients.

Costs are computed from the logits Z[L] (softplus / log-sum-exp forms), σ in its
sign-split form, so nothing overflows on the way; both backends must agree with
each other and with an oracle written here with NumPy's own stable functions
(``np.logaddexp``).  Warnings are errors in this file: an overflow warning from
the reference would mean an unstable form.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastbp import kernels, reference
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS, tolerance

pytestmark = pytest.mark.filterwarnings("error")

DTYPES = [np.float32, np.float64]
IMPLS = {"kernels": kernels, "reference": reference}

#: Logit sizes per dtype and output: large, yet with differences (softmax's z − max z)
#: and, for identity, squared errors (computed in float64) that stay representable.
LOGITS = {
    (np.float32, "sigmoid"): [1e3, 1e30, 3e38],
    (np.float32, "softmax"): [1e3, 1e30, 1e38],
    (np.float32, "identity"): [1e3, 1e30, 1e38],
    (np.float64, "sigmoid"): [1e3, 1e30, 1e300],
    (np.float64, "softmax"): [1e3, 1e30, 1e300],
    (np.float64, "identity"): [1e3, 1e30, 1e150],
    # exp (Poisson): e^z itself is the cost's leading term, finite only below float32's 88.7 and
    # float64's 709.8, so its range stops there (beyond it the exact cost is not representable)
    (np.float32, "exp"): [10.0, 50.0, 80.0],
    (np.float64, "exp"): [10.0, 300.0, 700.0],
}


def oracle_costs(Z, Y, output):
    """Per-example costs in float64 from the logits, with NumPy's stable primitives."""
    Z = Z.astype(np.float64)
    Y = Y.astype(np.float64)
    if output == "sigmoid":
        return (np.logaddexp(0.0, Z) - Y * Z).sum(axis=1)  # softplus(z) − y z
    if output == "softmax":
        lse = np.logaddexp.reduce(Z, axis=1, keepdims=True)
        return (Y * (lse - Z)).sum(axis=1)
    if output == "exp":  # e^z − y z + y log y − y
        return (np.exp(Z) - Y * Z + np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0) - Y).sum(axis=1)
    return 0.5 * ((Z - Y) ** 2).sum(axis=1)


def targets(output, m, n_y, rng):
    if output == "softmax":
        return np.eye(n_y)[rng.integers(0, n_y, m)]
    if output == "sigmoid":
        return (rng.random((m, n_y)) < 0.5).astype(float)
    if output == "exp":
        return rng.poisson(1.0, size=(m, n_y)).astype(float)
    return rng.normal(size=(m, n_y))


def assert_close(actual, desired, dtype, err_msg=""):
    """Agreement to ``dtype``'s tolerance, relative to the array's magnitude (rounding scales with it)."""
    tol = tolerance(dtype)
    scale = max(1.0, float(np.max(np.abs(desired)))) if np.size(desired) else 1.0
    np.testing.assert_allclose(actual, desired, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=err_msg)


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_huge_logits_give_the_exact_cost_and_finite_gradients(dtype, output):
    """A one-layer network with W = 0 has Z[L] = b exactly: set the logits to ±1e3 … near the dtype's max."""
    rng = np.random.default_rng(0)
    n_y = 3 if output == "softmax" else 1
    m = 4 * len(LOGITS[dtype, output])
    X = rng.normal(size=(m, 2)).astype(dtype)
    Y = targets(output, m, n_y, rng).astype(dtype)
    for size in LOGITS[dtype, output]:
        for sign in (1, -1):
            logits = (sign * size * np.array([1.0, -1.0, 0.5][:n_y])).astype(dtype)
            W = [np.zeros((n_y, 2), dtype)]
            b = [logits]
            Z = np.broadcast_to(logits, (m, n_y))
            want_J = oracle_costs(Z, Y, output).mean()
            want_A = reference.forward(W, b, X, "tanh", output)[1][-1]
            for name, impl in IMPLS.items():
                J = impl.loss(W, b, X, Y, "tanh", output)
                dW, db = impl.gradients(W, b, X, Y, "tanh", output)
                A = impl.forward(W, b, X, "tanh", output)[1][-1]
                where = f"{name}, logits {sign * size:g}"
                assert np.isfinite(J), where
                assert all(np.isfinite(g).all() for g in dW + db), where
                assert np.isfinite(A).all(), where
                np.testing.assert_allclose(J, want_J, rtol=1e-12, err_msg=where)
                # dZ[L] = A[L] − Y, so db is the mean of A − Y and dW is its product with X.
                dZ = want_A.astype(np.float64) - Y  # in float64: the oracle must not overflow itself
                assert_close(db[0], dZ.mean(axis=0), dtype, where)
                assert_close(dW[0], dZ.T @ X / m, dtype, where)


HUGE_WEIGHT = {  # saturating activations tolerate any weight; unbounded ones grow with each layer
    "sigmoid": 1e15,
    "tanh": 1e15,
    "relu": 1e5,
    "leaky_relu": 1e5,
    "identity": 1e5,
}


@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_huge_weights_give_finite_costs_and_gradients_that_agree(dtype, activation, output):
    if output == "exp":
        pytest.skip("exp's cost is e^z: huge weights give logits whose exact cost is not representable")
    rng = np.random.default_rng(1)
    sizes = [3, 5, 4, 3 if output == "softmax" else 2]
    scale = HUGE_WEIGHT[activation]
    W = [(rng.normal(size=(o, i)) * scale).astype(dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    b = [(rng.normal(size=o) * scale).astype(dtype) for o in sizes[1:]]
    X = rng.normal(size=(6, 3)).astype(dtype)
    Y = targets(output, 6, sizes[-1], rng).astype(dtype)
    results = {}
    for name, impl in IMPLS.items():
        J = impl.loss(W, b, X, Y, activation, output)
        dW, db = impl.gradients(W, b, X, Y, activation, output)
        assert np.isfinite(J), name
        assert all(np.isfinite(g).all() for g in dW + db), name
        results[name] = (J, dW, db)
    (Jk, dWk, dbk), (Jr, dWr, dbr) = results["kernels"], results["reference"]
    assert_close(Jk, Jr, dtype, "J")
    for l, (a, c) in enumerate(zip(dWk + dbk, dWr + dbr)):
        assert_close(a, c, dtype, f"gradient {l}")


@pytest.mark.parametrize("magnitude", ["float32 max-ish", "tiny", "subnormal"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_extreme_inputs_give_finite_results_that_agree(dtype, output, magnitude):
    """Inputs near float32's largest value (given as float64, converted) or tiny/subnormal ones."""
    rng = np.random.default_rng(2)
    n_y = 3 if output == "softmax" else 1
    x_scale, w_scale = {
        "float32 max-ish": (3e38, 0.3),  # |Σ w x| ≤ 2 · 0.3 · |x|max stays below float32's max
        "tiny": (1e-30, 1.0),
        "subnormal": (1e-40 if dtype == np.float32 else 1e-310, 1.0),
    }[magnitude]
    X = np.clip(rng.normal(size=(5, 2)), -1, 1) * x_scale  # float64, converted by the wrappers
    W = [(rng.uniform(-1, 1, size=(4, 2)) * w_scale).astype(dtype), rng.normal(size=(n_y, 4)).astype(dtype)]
    b = [np.zeros(4, dtype), np.zeros(n_y, dtype)]
    Y = targets(output, 5, n_y, rng).astype(dtype)
    J = {n: i.loss(W, b, X, Y, "tanh", output) for n, i in IMPLS.items()}
    G = {n: i.gradients(W, b, X, Y, "tanh", output) for n, i in IMPLS.items()}
    for n in IMPLS:
        assert np.isfinite(J[n]) and all(np.isfinite(g).all() for g in G[n][0] + G[n][1]), n
    assert_close(J["kernels"], J["reference"], dtype)
    for a, c in zip(G["kernels"][0] + G["kernels"][1], G["reference"][0] + G["reference"][1]):
        assert_close(a, c, dtype)
