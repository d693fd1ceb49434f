"""Property tests (hypothesis) over shapes, dtypes, memory layouts and magnitudes.

For ``forward``, ``gradients`` and ``fit`` on both backends:

* nothing but the documented errors (``ValueError``/``TypeError`` for bad input,
  ``fastbp.DivergenceError`` from training) ever escapes;
* finite input gives finite output whenever the result is representable (the
  magnitudes drawn are bounded so that no intermediate value can overflow:
  a bound is computed for each example, see :func:`bound`);
* the two backends agree (``fastbp.testing.tolerance``, with the absolute part
  scaled by that bound, since rounding errors scale with the terms summed);
* a converted input (other dtype, Fortran-ordered, strided, read-only, nested
  lists) gives the same bits as the plain C-contiguous array.

Values come from a seeded generator (hypothesis draws the seed, the shapes and
the magnitudes): continuous values keep relu's kink at 0 out of the way of an
agreement test, which is about arithmetic, not about ties.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, note
from hypothesis import strategies as st

import fastbp
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS, make_targets, tolerance

from . import _hypothesis_profiles  # noqa: F401  (registers and loads the profile)

BACKENDS = ("numba", "numpy")
BOUNDED = {"tanh", "sigmoid"}
#: Largest bound (see :func:`bound`) for which no intermediate value can overflow, per dtype.
SAFE = {np.dtype(np.float32): 1e15, np.dtype(np.float64): 1e120}
LAYOUTS = ("C", "fortran", "strided", "read-only", "list", "float16", "other float")


def bound(net: fastbp.MLP, x_max: float) -> float:
    """A bound on every |Z[l]|, |A[l]| and |dZ[l]| for inputs up to ``x_max`` (gradients: its square).

    The largest pre-activation bound over the layers, times the product of the
    layers' gains (n_{l−1} max|W[l]| + 1), which bounds what backpropagation
    multiplies dZ[L] by on its way down.
    """
    B = x_max + 1.0  # bound on |A[l−1]|
    largest = B
    gain = 1.0
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        w = W.shape[1] * float(np.abs(W).max())
        z = w * B + float(np.abs(b).max()) + 1.0  # bound on |Z[l]|
        largest = max(largest, z)
        gain *= w + 1.0
        hidden = l < net.n_layers - 1
        B = 1.0 if hidden and net.activation.name in BOUNDED else z
    if net.output == "exp":  # A[L] = e^Z[L] (and dZ[L] = A[L] − Y) up to e^(bound on |Z[L]|)
        largest = max(largest, float(np.exp(min(z, 800.0))))
    return largest * gain


def layout(X: np.ndarray, how: str, dtype) -> tuple[object, np.ndarray]:
    """``X`` in the layout ``how``, and the plain C-contiguous array of ``dtype`` it must equal."""
    if how == "float16":
        X16 = np.clip(X, -6e4, 6e4).astype(np.float16)
        return X16, X16.astype(dtype)
    if how == "other float":
        other = np.float64 if np.dtype(dtype) == np.float32 else np.float32
        Xo = X.astype(other)
        return Xo, Xo.astype(dtype)
    plain = np.ascontiguousarray(X, dtype=dtype)
    if how == "fortran":
        return np.asfortranarray(plain), plain
    if how == "strided":
        big = np.zeros((X.shape[0], 2 * X.shape[1]), dtype)
        big[:, ::2] = plain
        return big[:, ::2], plain
    if how == "read-only":
        ro = plain.copy()
        ro.flags.writeable = False
        return ro, plain
    if how == "list":
        return plain.tolist(), plain
    return plain, plain


@st.composite
def problems(draw, x_exponents=(-30, 6), w_exponents=(-30, 2)):
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    depth = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 5), min_size=depth + 1, max_size=depth + 1))
    output = draw(st.sampled_from(OUTPUTS))
    if output == "softmax":
        sizes[-1] = max(sizes[-1], 2)
    activation = draw(st.sampled_from(HIDDEN_ACTIVATIONS))
    m = draw(st.integers(1, 7))
    x_exp = draw(st.integers(*x_exponents))
    w_exp = draw(st.integers(*w_exponents))
    seed = draw(st.integers(0, 2**32 - 1))
    how = draw(st.sampled_from(LAYOUTS))
    rng = np.random.default_rng(seed)
    net = fastbp.MLP(sizes, activation=activation, output=output, dtype=dtype, seed=seed)
    net.params[...] = net.params * dtype.type(10.0**w_exp)
    for b in net.biases:
        b[...] = rng.normal(size=b.shape) * 10.0**w_exp
    X = rng.normal(size=(m, sizes[0])) * 10.0**x_exp
    Y = make_targets(rng, m, sizes[-1], output)
    B = bound(net, float(np.abs(X).max()))
    note(f"sizes={sizes} {dtype} {activation}/{output} m={m} x=1e{x_exp} w=1e{w_exp} layout={how} bound={B:.3g}")
    assume(B < SAFE[dtype] and np.isfinite(net.params).all())
    return net, X, Y, how, B


def assert_agree(a, b, dtype, scale, what):
    tol = tolerance(dtype)
    np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=what)


@given(problems())
def test_forward_is_finite_agrees_and_ignores_layout(problem):
    net, X, _, how, B = problem
    Xv, Xp = layout(X, how, net.dtype)
    out = {}
    for backend in BACKENDS:
        A = net.forward(Xv, backend)
        assert A.dtype == net.dtype and A.shape == (Xp.shape[0], net.layer_sizes[-1])
        assert np.isfinite(A).all(), backend
        assert A.tobytes() == net.forward(Xp, backend).tobytes(), f"{backend}: layout {how} changed the bits"
        out[backend] = A
    assert_agree(out["numba"], out["numpy"], net.dtype, B, "forward")


@given(problems())
def test_gradients_are_finite_agree_and_ignore_layout(problem):
    net, X, Y, how, B = problem
    Xv, Xp = layout(X, how, net.dtype)
    out = {}
    for backend in BACKENDS:
        J = net.loss(Xv, Y, backend)
        dW, db = net.gradients(Xv, Y, backend)
        assert np.isfinite(J), backend
        assert all(np.isfinite(g).all() for g in dW + db), backend
        dWp, dbp = net.gradients(Xp, Y, backend)
        assert all(g.tobytes() == h.tobytes() for g, h in zip(dW + db, dWp + dbp)), f"{backend}: layout {how}"
        assert J == net.loss(Xp, Y, backend)
        out[backend] = (J, dW + db)
    assert_agree(out["numba"][0], out["numpy"][0], net.dtype, B * B, "loss")
    for l, (g, h) in enumerate(zip(out["numba"][1], out["numpy"][1])):
        assert_agree(g, h, net.dtype, B * B, f"gradient {l}")


def _copy(net: fastbp.MLP) -> fastbp.MLP:
    twin = fastbp.MLP(net.layer_sizes, net.activation, net.output, net.dtype, seed=0)
    twin.params[...] = net.params
    twin.rng.bit_generator.state = net.rng.bit_generator.state
    return twin


fit_options = st.fixed_dictionaries(
    {
        "epochs": st.integers(0, 2),
        "batch_size": st.one_of(st.none(), st.integers(1, 8)),
        "shuffle": st.booleans(),
    }
)


@given(problems(), fit_options, st.floats(1e-4, 10.0))
def test_fit_returns_finite_parameters_or_a_divergence_error(problem, options, learning_rate):
    """Any magnitudes, any learning rate: finite parameters, or DivergenceError (with finite parameters)."""
    net, X, Y, how, _ = problem
    Xv, _ = layout(X, how, net.dtype)
    for backend in BACKENDS:
        twin = _copy(net)
        try:
            history = twin.fit(Xv, Y, learning_rate=learning_rate, backend=backend, **options)
        except fastbp.DivergenceError as err:
            assert err.epoch is not None and 0 <= err.epoch < options["epochs"]
        else:
            assert len(history) == options["epochs"]
            assert np.isfinite(history.loss).all()
        assert np.isfinite(twin.params).all(), backend


@given(problems(x_exponents=(-2, 0), w_exponents=(-2, 0)), fit_options, st.floats(1e-3, 0.05))
def test_fit_agrees_across_backends_when_well_conditioned(problem, options, learning_rate):
    """Moderate magnitudes and step sizes (rounding differences are not amplified): the backends agree.
    An exp output can still overflow here (weights of magnitude 1 on a deep net): then every backend
    stops at the same epoch and batch, with the parameters from before that step."""
    net, X, Y, how, B = problem
    Xv, Xp = layout(X, how, net.dtype)
    results = []
    stops = []
    for backend in BACKENDS:
        twin, plain = _copy(net), _copy(net)
        try:
            h = twin.fit(Xv, Y, learning_rate=learning_rate, backend=backend, **options)
        except fastbp.DivergenceError as err:
            stops.append((err.epoch, err.batch))
            results.append((twin.params, None))
            continue
        plain.fit(Xp, Y, learning_rate=learning_rate, backend=backend, **options)
        assert twin.params.tobytes() == plain.params.tobytes(), f"{backend}: layout {how}"
        assert np.isfinite(twin.params).all()
        results.append((twin.params, h.loss))
    if stops:
        assert len(stops) == len(BACKENDS) and len(set(stops)) == 1, f"diverged at {stops} of {BACKENDS}"
    scale = B * B * max(1, options["epochs"])
    assert_agree(results[0][0], results[1][0], net.dtype, scale, "parameters after fit")
    if stops:
        return
    assert_agree(results[0][1], results[1][1], net.dtype, scale, "loss history")


@given(problems(x_exponents=(-1, 1), w_exponents=(-1, 0)), st.data())
def test_non_finite_input_is_refused_and_changes_nothing(problem, data):
    net, X, Y, _, _ = problem
    i = data.draw(st.integers(0, X.shape[0] - 1))
    j = data.draw(st.integers(0, X.shape[1] - 1))
    X = X.copy()
    X[i, j] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    before = net.params.copy()
    state = net.rng.bit_generator.state
    backend = data.draw(st.sampled_from(BACKENDS))
    call = data.draw(st.sampled_from(["forward", "gradients", "fit"]))
    with pytest.raises(ValueError, match="^X contains"):
        if call == "forward":
            net.forward(X, backend)
        elif call == "gradients":
            net.gradients(X, Y, backend)
        else:
            net.fit(X, Y, epochs=1, backend=backend)
    assert net.params.tobytes() == before.tobytes()
    assert net.rng.bit_generator.state == state
