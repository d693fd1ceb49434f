"""Bad input: a clear error naming the argument, raised before anything changes.

Every case asserts the error type, that the message names the argument
(``pytest.raises(match=...)``), and that the parameters (and the network's
random generator) are bit for bit what they were.  Accepted-and-converted input
(integers, bools, other float widths, Fortran-ordered, strided, read-only arrays,
lists of lists) must give results identical, to the bit, to the plain
C-contiguous array of the network's dtype.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fastbp
from fastbp import kernels, reference
from fastbp.testing import make_problem

BACKENDS = ["numba", "numpy"]
IMPLS = {"kernels": kernels, "reference": reference}

# --------------------------------------------------------------------------- data


def data(output: str = "sigmoid", m: int = 6, n_x: int = 3, n_y: int | None = None, dtype=np.float64):
    rng = np.random.default_rng(1)
    n_y = n_y or (3 if output == "softmax" else 1)
    X = rng.normal(size=(m, n_x)).astype(dtype)
    if output == "softmax":
        Y = np.eye(n_y)[rng.integers(0, n_y, m)]
    elif output == "sigmoid":
        Y = (rng.random((m, n_y)) < 0.5).astype(float)
    else:
        Y = rng.normal(size=(m, n_y))
    return X, Y.astype(dtype)


def make_net(output="sigmoid", dtype=np.float64, seed=0):
    n_y = 3 if output == "softmax" else 1
    return fastbp.MLP([3, 4, n_y], output=output, dtype=dtype, seed=seed)


def snapshot(net):
    return net.params.copy(), net.rng.bit_generator.state


def assert_unchanged(net, snap):
    params, state = snap
    assert net.params.tobytes() == params.tobytes(), "parameters changed by a refused call"
    assert net.rng.bit_generator.state == state, "the generator advanced in a refused call"


def bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ------------------------------------------------------------- X and Y, every method

X0, Y0 = data()


def _with(a, index, value):
    a = a.astype(float).copy()
    a[index] = value
    return a


BAD_X = {
    "nan": (_with(X0, (2, 1), np.nan), ValueError, "X contains NaN"),
    "+inf": (_with(X0, (0, 0), np.inf), ValueError, "X contains inf"),
    "-inf": (_with(X0, (5, 2), -np.inf), ValueError, "X contains inf"),
    "1-D": (X0[:, 0], ValueError, "X must be 2-dimensional"),
    "3-D": (X0[None], ValueError, "X must be 2-dimensional"),
    "scalar": (1.0, ValueError, "X must be 2-dimensional"),
    "columns": (X0[:, :2], ValueError, "X must have 3 columns"),
    "no rows": (X0[:0], ValueError, "X has no rows"),
    "complex": (X0.astype(complex), TypeError, "X must be real"),
    "object": (X0.astype(object), TypeError, "X must be a numeric array"),
    "strings": (X0.astype(str), TypeError, "X must be a numeric array"),
    "a string": ("1,2,3", TypeError, "X must be a numeric array"),
    "datetime": (np.zeros((6, 3), "datetime64[s]"), TypeError, "X must be a numeric array"),
    "ragged list": ([[1.0, 2.0, 3.0], [1.0, 2.0]], ValueError, "X could not be read"),
    "None": (None, TypeError, "X must be a numeric array"),
}

BAD_Y = {
    "nan": (_with(Y0, (1, 0), np.nan), ValueError, "Y contains NaN"),
    "inf": (_with(Y0, (3, 0), np.inf), ValueError, "Y contains inf"),
    "below 0": (_with(Y0, (0, 0), -0.1), ValueError, r"Y must lie in \[0, 1\]"),
    "above 1": (_with(Y0, (0, 0), 1.5), ValueError, r"Y must lie in \[0, 1\]"),
    "3-D": (Y0[None], ValueError, "Y must be 2-dimensional"),
    "columns": (np.hstack([Y0, Y0]), ValueError, "Y must have 1 columns"),
    "rows": (Y0[:4], ValueError, "X and Y must have the same number of rows"),
    "no rows": (Y0[:0], ValueError, "Y has no rows"),
    "complex": (Y0.astype(complex), TypeError, "Y must be real"),
    "object": (Y0.astype(object), TypeError, "Y must be a numeric array"),
    "strings": (Y0.astype(str), TypeError, "Y must be a numeric array"),
    "ragged list": ([[0.0], [1.0, 0.0], [0.0], [1.0], [1.0], [0.0]], ValueError, "Y could not be read"),
}

Xs, Ys = data("softmax")
BAD_Y_SOFTMAX = {
    "negative": (_with(Ys, (0, 0), -0.5) + np.eye(3)[[0] + [1] * 5] * 0, ValueError, "Y must be non-negative"),
    "rows not summing to 1": (Ys * 0.5, ValueError, "Y rows must sum to 1"),
    "labels": (np.arange(6) % 3, ValueError, r"one-hot encode class indices 0\.\.2 with np\.eye\(3\)\[y\]"),
    "columns": (Ys[:, :2], ValueError, "Y must have 3 columns"),
}

METHODS_X = {
    "forward": lambda net, X, b: net.forward(X, backend=b),
    "predict": lambda net, X, b: net.predict(X, backend=b),
    "loss": lambda net, X, b: net.loss(X, Y0, backend=b),
    "gradients": lambda net, X, b: net.gradients(X, Y0, backend=b),
    "fit": lambda net, X, b: net.fit(X, Y0, epochs=2, backend=b),
}
METHODS_Y = {
    "loss": lambda net, X, Y, b: net.loss(X, Y, backend=b),
    "gradients": lambda net, X, Y, b: net.gradients(X, Y, backend=b),
    "fit": lambda net, X, Y, b: net.fit(X, Y, epochs=2, backend=b),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS_X)
@pytest.mark.parametrize("case", BAD_X)
def test_bad_X_is_refused_by_every_method(case, method, backend):
    X, exc, match = BAD_X[case]
    net = make_net()
    snap = snapshot(net)
    with pytest.raises(exc, match=match):
        METHODS_X[method](net, X, backend)
    assert_unchanged(net, snap)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS_Y)
@pytest.mark.parametrize("case", BAD_Y)
def test_bad_Y_is_refused(case, method, backend):
    Y, exc, match = BAD_Y[case]
    net = make_net()
    snap = snapshot(net)
    with pytest.raises(exc, match=match):
        METHODS_Y[method](net, X0, Y, backend)
    assert_unchanged(net, snap)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS_Y)
@pytest.mark.parametrize("case", BAD_Y_SOFTMAX)
def test_bad_softmax_targets_are_refused(case, method, backend):
    Y, exc, match = BAD_Y_SOFTMAX[case]
    net = make_net("softmax")
    snap = snapshot(net)
    with pytest.raises(exc, match=match):
        METHODS_Y[method](net, Xs, Y, backend)
    assert_unchanged(net, snap)


def test_float64_beyond_float32_range_is_refused_by_a_float32_network():
    net = make_net(dtype=np.float32)
    snap = snapshot(net)
    with pytest.raises(ValueError, match="X overflows float32"):
        net.fit(_with(X0, (0, 0), 1e39), Y0)
    assert_unchanged(net, snap)


# ------------------------------------------------------------------- fit's options

BAD_FIT = {
    "learning_rate=0": ({"learning_rate": 0}, ValueError, "learning_rate must be a finite positive"),
    "learning_rate<0": ({"learning_rate": -0.1}, ValueError, "learning_rate must be a finite positive"),
    "learning_rate=nan": ({"learning_rate": float("nan")}, ValueError, "learning_rate must be a finite positive"),
    "learning_rate=inf": ({"learning_rate": float("inf")}, ValueError, "learning_rate must be a finite positive"),
    "learning_rate str": ({"learning_rate": "0.1"}, TypeError, "learning_rate must be a positive number"),
    "learning_rate bool": ({"learning_rate": True}, TypeError, "learning_rate must be a positive number"),
    "learning_rate complex": ({"learning_rate": 0.1j}, TypeError, "learning_rate must be a positive number"),
    "batch_size=0": ({"batch_size": 0}, ValueError, "batch_size must be at least 1"),
    "batch_size<0": ({"batch_size": -3}, ValueError, "batch_size must be at least 1"),
    "batch_size float": ({"batch_size": 2.0}, TypeError, "batch_size must be an integer"),
    "batch_size str": ({"batch_size": "2"}, TypeError, "batch_size must be an integer"),
    "epochs<0": ({"epochs": -1}, ValueError, "epochs must be at least 0"),
    "epochs float": ({"epochs": 1.5}, TypeError, "epochs must be an integer"),
    "epochs None": ({"epochs": None}, TypeError, "epochs must be an integer"),
    "shuffle str": ({"shuffle": "yes"}, TypeError, "shuffle must be True or False"),
    "shuffle int": ({"shuffle": 1}, TypeError, "shuffle must be True or False"),
    "backend unknown": ({"backend": "torch"}, ValueError, "backend must be one of"),
    "backend int": ({"backend": 3}, TypeError, "backend must be one of"),
    "callback": ({"callback": 3}, TypeError, "callback must be callable"),
}


@pytest.mark.parametrize("case", BAD_FIT)
def test_bad_fit_options_are_refused(case):
    kwargs, exc, match = BAD_FIT[case]
    net = make_net()
    snap = snapshot(net)
    with pytest.raises(exc, match=match):
        net.fit(X0, Y0, epochs=kwargs.pop("epochs", 2), **kwargs)
    assert_unchanged(net, snap)


@pytest.mark.parametrize("method", ["forward", "predict", "loss", "gradients"])
@pytest.mark.parametrize("backend", ["torch", "", None, 0])
def test_unknown_backend_is_refused_by_every_method(method, backend):
    net = make_net()
    snap = snapshot(net)
    with pytest.raises((ValueError, TypeError), match="backend must be one of"):
        METHODS_X[method](net, X0, backend)
    assert_unchanged(net, snap)


# -------------------------------------------------------------------- constructor

BAD_CONSTRUCTOR = {
    "one layer": ({"layer_sizes": [3]}, ValueError, "layer_sizes needs at least two"),
    "no layers": ({"layer_sizes": []}, ValueError, "layer_sizes needs at least two"),
    "zero width": ({"layer_sizes": [3, 0, 1]}, ValueError, "layer_sizes must be positive"),
    "negative width": ({"layer_sizes": [3, -2, 1]}, ValueError, "layer_sizes must be positive"),
    "float width": ({"layer_sizes": [3.0, 2]}, TypeError, "layer_sizes must hold integers"),
    "bool width": ({"layer_sizes": [3, True]}, TypeError, "layer_sizes must hold integers"),
    "string": ({"layer_sizes": "3,4,1"}, TypeError, "layer_sizes must be a sequence"),
    "int": ({"layer_sizes": 5}, TypeError, "layer_sizes must be a sequence"),
    "activation unknown": ({"activation": "swish"}, ValueError, "activation must be one of"),
    "activation None": ({"activation": None}, TypeError, "activation must be a name"),
    "activation plain functions": ({"activation": (np.tanh, np.cosh)}, TypeError, "activation: custom g must be"),
    "output unknown": ({"output": "tanh"}, ValueError, "output must be one of"),
    "output None": ({"output": None}, TypeError, "output must be a string"),
    "softmax of one unit": ({"output": "softmax"}, ValueError, "softmax' needs at least 2 output units"),
    "dtype float16": ({"dtype": np.float16}, ValueError, "dtype must be float32 or float64"),
    "dtype int": ({"dtype": np.int32}, ValueError, "dtype must be float32 or float64"),
    "dtype complex": ({"dtype": complex}, ValueError, "dtype must be float32 or float64"),
    "dtype nonsense": ({"dtype": "floaty"}, TypeError, "dtype must be float32 or float64"),
    "seed negative": ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
    "seed float": ({"seed": 1.5}, TypeError, "seed must be a non-negative integer"),
    "seed str": ({"seed": "0"}, TypeError, "seed must be a non-negative integer"),
    "seed bool": ({"seed": True}, TypeError, "seed must be a non-negative integer"),
}


@pytest.mark.parametrize("case", BAD_CONSTRUCTOR)
def test_bad_constructor_arguments_are_refused(case):
    kwargs, exc, match = BAD_CONSTRUCTOR[case]
    kwargs = {"layer_sizes": [3, 4, 1], **kwargs}
    with pytest.raises(exc, match=match):
        fastbp.MLP(**kwargs)


def test_numpy_integer_sizes_and_seed_are_accepted():
    a = fastbp.MLP(np.array([3, 4, 1]), seed=np.int64(7))
    b = fastbp.MLP([3, 4, 1], seed=7)
    assert a.layer_sizes == (3, 4, 1) and a.seed == 7
    assert bits_equal(a.params, b.params)


# --------------------------------------------------------- public kernel wrappers


def wrapper_problem(dtype=np.float64):
    net = make_net(dtype=dtype)
    W = [w.copy() for w in net.weights]
    b = [c.copy() for c in net.biases]
    X, Y = data(dtype=dtype)
    return W, b, X, Y


def call(impl, name, *problem, **kw):
    """Call ``impl.name`` with the problem ``(W, b, X, Y)``, overriding any argument by keyword."""
    W, b, X, Y = problem
    args = {"weights": W, "biases": b, "X": X, "Y": Y, "activation": "tanh", "output": "sigmoid"}
    args.update(kw)
    a = (args["weights"], args["biases"])
    opts = {"activation": args["activation"], "output": args["output"]}
    if name == "forward":
        return impl.forward(*a, args["X"], **opts)
    if name in ("gradients", "loss"):
        return getattr(impl, name)(*a, args["X"], args["Y"], **opts)
    if name == "backward":
        Z, A = reference.forward(W, b, X)
        return impl.backward(*a, args["X"], args["Y"], args.get("Z", Z), args.get("A", A), **opts)
    if name == "update":
        dW, db = reference.gradients(W, b, X, Y)
        return impl.update(*a, args.get("dW", dW), args.get("db", db), args.get("learning_rate", 0.1))
    if name == "train_epoch":
        return impl.train_epoch(
            *a,
            args["X"],
            args["Y"],
            args.get("learning_rate", 0.1),
            args.get("batch_size", 2),
            args.get("order"),
            **opts,
        )
    raise KeyError(name)


ALL = ["forward", "backward", "gradients", "loss", "update", "train_epoch"]
WITH_X = ["forward", "backward", "gradients", "loss", "train_epoch"]
WITH_Y = ["backward", "gradients", "loss", "train_epoch"]
WITH_ACT = WITH_X

_W, _b, _, _ = wrapper_problem()


def _ro(arrays):
    out = [a.copy() for a in arrays]
    for a in out:
        a.flags.writeable = False
    return out


WRAPPER_CASES = [
    # (id, functions, overrides, exception, match)
    ("weights not a list", ALL, {"weights": _W[0]}, TypeError, "weights and biases must be lists"),
    ("lists of lists", ALL, {"weights": [w.tolist() for w in _W]}, TypeError, r"weights\[0\] must be a NumPy array"),
    ("bias shape", ALL, {"biases": [_b[0][:2], _b[1]]}, ValueError, r"biases\[0\] must have shape"),
    ("layer mismatch", ALL, {"weights": [_W[0], _W[1][:, :2]]}, ValueError, r"weights\[1\] has 2 columns"),
    ("W[1] transposed", ALL, {"weights": [_W[0].T.copy(), _W[1]]}, ValueError, r"biases\[0\] .*: transposed\?"),
    ("W[2] transposed", ALL, {"weights": [_W[0], _W[1].T.copy()]}, ValueError, r"biases\[1\] .*: transposed\?"),
    (
        "different lengths",
        ALL,
        {"biases": _b[:1]},
        ValueError,
        "weights and biases must be non-empty lists of equal length",
    ),
    (
        "int weights",
        ALL,
        {"weights": [w.astype(int) for w in _W]},
        TypeError,
        "weights and biases must all be float32 or all float64",
    ),
    (
        "mixed dtypes",
        ALL,
        {"weights": [_W[0].astype(np.float32), _W[1]]},
        TypeError,
        "weights and biases must all be float32",
    ),
    (
        "float16 weights",
        ALL,
        {"weights": [w.astype(np.float16) for w in _W], "biases": [c.astype(np.float16) for c in _b]},
        TypeError,
        "weights and biases must all be float32",
    ),
    ("NaN weight", ALL, {"weights": [_with(_W[0], (0, 0), np.nan), _W[1]]}, ValueError, r"weights\[0\] contains NaN"),
    ("inf bias", ALL, {"biases": [_b[0], _with(_b[1], 0, np.inf)]}, ValueError, r"biases\[1\] contains NaN or inf"),
    ("read-only weights", ["update", "train_epoch"], {"weights": _ro(_W)}, ValueError, r"weights\[0\] is read-only"),
    (
        "read-only bias",
        ["update", "train_epoch"],
        {"biases": [_b[0].copy(), _ro(_b)[1]]},
        ValueError,
        r"biases\[1\] is read-only",
    ),
    ("X nan", WITH_X, {"X": BAD_X["nan"][0]}, ValueError, "X contains NaN"),
    ("X columns", WITH_X, {"X": BAD_X["columns"][0]}, ValueError, "X must have 3 columns"),
    ("X complex", WITH_X, {"X": BAD_X["complex"][0]}, TypeError, "X must be real"),
    ("X empty", WITH_X, {"X": BAD_X["no rows"][0]}, ValueError, "X has no rows"),
    ("Y outside [0, 1]", WITH_Y, {"Y": BAD_Y["above 1"][0]}, ValueError, r"Y must lie in \[0, 1\]"),
    ("Y rows", WITH_Y, {"Y": BAD_Y["rows"][0]}, ValueError, "X and Y must have the same number of rows"),
    ("Y object", WITH_Y, {"Y": BAD_Y["object"][0]}, TypeError, "Y must be a numeric array"),
    ("activation", WITH_ACT, {"activation": "swish"}, ValueError, "activation must be one of"),
    ("output", WITH_ACT, {"output": "hinge"}, ValueError, "output must be one of"),
    ("output type", WITH_ACT, {"output": 1}, TypeError, "output must be a string"),
    (
        "learning_rate",
        ["update", "train_epoch"],
        {"learning_rate": -1.0},
        ValueError,
        "learning_rate must be a finite positive",
    ),
    (
        "learning_rate nan",
        ["update", "train_epoch"],
        {"learning_rate": float("nan")},
        ValueError,
        "learning_rate must be a finite positive",
    ),
    ("batch_size", ["train_epoch"], {"batch_size": 0}, ValueError, "batch_size must be at least 1"),
    ("order float", ["train_epoch"], {"order": np.arange(6.0)}, TypeError, "order must hold integer"),
    ("order 2-D", ["train_epoch"], {"order": np.arange(6).reshape(2, 3)}, ValueError, "order must be a non-empty 1-D"),
    ("order empty", ["train_epoch"], {"order": np.arange(0)}, ValueError, "order must be a non-empty 1-D"),
    ("order empty list", ["train_epoch"], {"order": []}, ValueError, "order must be a non-empty 1-D"),
    ("order past int64", ["train_epoch"], {"order": np.array([2**63], np.uint64)}, ValueError, r"outside \[0, 6\)"),
    ("order out of range", ["train_epoch"], {"order": [0, 1, 6]}, ValueError, r"order holds indices outside \[0, 6\)"),
    ("order negative", ["train_epoch"], {"order": [0, -1]}, ValueError, r"order holds indices outside"),
    ("dW shape", ["update"], {"dW": [_W[0][:, :2], _W[1]]}, ValueError, r"dW\[0\] must have shape"),
    ("dW count", ["update"], {"dW": [_W[0]]}, ValueError, "dW must have one array per layer"),
    ("dW not a list", ["update"], {"dW": _W[0]}, TypeError, "dW must be a list"),
    ("db NaN", ["update"], {"db": [_b[0], _with(_b[1], 0, np.nan)]}, ValueError, r"db\[1\] contains NaN"),
    ("dW complex", ["update"], {"dW": [_W[0].astype(complex), _W[1]]}, TypeError, r"dW\[0\] must be real"),
    ("Z count", ["backward"], {"Z": [np.zeros((6, 4))]}, ValueError, "Z must be a list of 2 arrays"),
    (
        "Z shape",
        ["backward"],
        {"Z": [np.zeros((6, 4)), np.zeros((5, 1))]},
        ValueError,
        r"Z\[1\] must have shape \(6, 1\)",
    ),
    ("A NaN", ["backward"], {"A": [np.full((6, 4), np.nan), np.zeros((6, 1))]}, ValueError, r"A\[0\] contains NaN"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    "name,case",
    [(name, case) for case in WRAPPER_CASES for name in case[1]],
    ids=[f"{name}-{case[0]}" for case in WRAPPER_CASES for name in case[1]],
)
def test_public_wrappers_refuse_bad_input(impl, name, case):
    _, _, overrides, exc, match = case
    W, b, X, Y = wrapper_problem()
    before = [a.copy() for a in W + b]
    with pytest.raises(exc, match=match):
        call(IMPLS[impl], name, W, b, X, Y, **overrides)
    for a, c in zip(W + b, before):
        assert a.tobytes() == c.tobytes()


def test_refused_overrides_leave_their_own_arrays_unchanged():
    """The read-only and non-finite overrides are module constants: nothing wrote into them."""
    W, b, _, _ = wrapper_problem()
    assert all(bits_equal(x, y) for x, y in zip(W + b, _W + _b))


# -------------------------------------------------------- accepted and converted


def _strided(a):
    big = np.zeros((a.shape[0] * 2, a.shape[1] * 3), a.dtype)
    big[::2, ::3] = a
    out = big[::2, ::3]
    assert not out.flags.c_contiguous
    return out


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


XI = np.random.default_rng(3).integers(-3, 4, size=(6, 3))

#: name -> (make the variant from a float array, the plain array it must equal)
VARIANTS = {
    "int64": (lambda a, dt: XI, lambda dt: XI.astype(dt)),
    "int8": (lambda a, dt: XI.astype(np.int8), lambda dt: XI.astype(dt)),
    "uint8": (lambda a, dt: (XI + 3).astype(np.uint8), lambda dt: (XI + 3).astype(dt)),
    "bool": (lambda a, dt: XI > 0, lambda dt: (XI > 0).astype(dt)),
    "float16": (lambda a, dt: X0.astype(np.float16), lambda dt: X0.astype(np.float16).astype(dt)),
    "float32": (lambda a, dt: X0.astype(np.float32), lambda dt: X0.astype(np.float32).astype(dt)),
    "float64": (lambda a, dt: X0, lambda dt: X0.astype(dt)),
    "fortran": (lambda a, dt: np.asfortranarray(X0), lambda dt: X0.astype(dt)),
    "strided": (lambda a, dt: _strided(X0), lambda dt: X0.astype(dt)),
    "reversed": (lambda a, dt: X0[::-1][::-1], lambda dt: X0.astype(dt)),
    "read-only": (lambda a, dt: _readonly(X0.astype(dt)), lambda dt: X0.astype(dt)),
    "list of lists": (lambda a, dt: X0.tolist(), lambda dt: X0.astype(dt)),
    "tuple of tuples": (lambda a, dt: tuple(map(tuple, X0.tolist())), lambda dt: X0.astype(dt)),
}
Y_VARIANTS = {
    "int": lambda Y: Y.astype(int),
    "bool": lambda Y: Y.astype(bool),
    "1-D": lambda Y: Y[:, 0],
    "list": lambda Y: Y.tolist(),
    "fortran strided": lambda Y: _strided(np.asfortranarray(Y)),
    "float16": lambda Y: Y.astype(np.float16),
    "read-only": _readonly,
}
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_converted_X_gives_the_same_bits(variant, dtype, backend):
    make, plain = VARIANTS[variant]
    Xv, Xp = make(X0, dtype), plain(dtype)
    net = make_net(dtype=dtype)
    assert bits_equal(net.forward(Xv, backend), net.forward(Xp, backend))
    assert net.loss(Xv, Y0, backend) == net.loss(Xp, Y0, backend)
    for g, h in zip(sum(net.gradients(Xv, Y0, backend), []), sum(net.gradients(Xp, Y0, backend), [])):
        assert bits_equal(g, h)
    a, b = make_net(dtype=dtype), make_net(dtype=dtype)
    ha = a.fit(Xv, Y0, epochs=2, batch_size=2, backend=backend)
    hb = b.fit(Xp, Y0, epochs=2, batch_size=2, backend=backend)
    assert bits_equal(a.params, b.params) and ha.loss == hb.loss


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", Y_VARIANTS)
def test_converted_Y_gives_the_same_bits(variant, backend):
    Yv = Y_VARIANTS[variant](Y0)
    net = make_net()
    assert net.loss(X0, Yv, backend) == net.loss(X0, Y0, backend)
    a, b = make_net(), make_net()
    a.fit(X0, Yv, epochs=2, backend=backend)
    b.fit(X0, Y0, epochs=2, backend=backend)
    assert bits_equal(a.params, b.params)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("variant", ["int64", "float16", "fortran", "strided", "read-only", "list of lists"])
@pytest.mark.parametrize("name", ["forward", "gradients", "loss", "train_epoch"])
def test_wrappers_convert_X_to_the_same_bits(impl, variant, name):
    make, plain = VARIANTS[variant]
    results = []
    for Xin in (make(X0, np.float64), plain(np.float64)):
        W, b, _, Y = wrapper_problem()
        out = call(IMPLS[impl], name, W, b, Xin, Y)
        results.append([np.asarray(r) for r in _flatten(out)] + [w.copy() for w in W + b])
    assert all(bits_equal(r, s) for r, s in zip(*results))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", ["fortran", "strided", "read-only"])
def test_wrappers_accept_parameters_in_any_layout(impl, layout):
    """W[l] that are Fortran-ordered, strided or read-only give the same results (read-only: not for training)."""
    W, b, X, Y = wrapper_problem()
    if layout == "fortran":
        Wv = [np.asfortranarray(w) for w in W]
    elif layout == "strided":
        Wv = [_strided(w) for w in W]
    else:
        Wv = [_readonly(w) for w in W]
    for name in ("forward", "gradients", "loss", "backward"):
        got = _flatten(call(IMPLS[impl], name, Wv, b, X, Y))
        want = _flatten(call(IMPLS[impl], name, W, b, X, Y))
        assert all(bits_equal(g, w) for g, w in zip(got, want))
    if layout != "read-only":
        W2 = [w.copy() for w in W]
        call(IMPLS[impl], "train_epoch", Wv, b, X, Y)
        call(IMPLS[impl], "train_epoch", W2, [c.copy() for c in _b], X, Y)
        assert all(bits_equal(np.ascontiguousarray(g), w) for g, w in zip(Wv, W2))


def _flatten(result):
    if isinstance(result, (list, tuple)):
        return [leaf for item in result for leaf in _flatten(item)]
    return [np.asarray(result)]


def _signature_counts() -> dict:
    """Compiled specialisations of every fastbp dispatcher, by module and name."""
    from numba.core.dispatcher import Dispatcher

    return {
        f"{modname}.{name}": len(obj.signatures)
        for modname, mod in list(sys.modules.items())
        if modname.startswith("fastbp.")
        for name, obj in vars(mod).items()
        if isinstance(obj, Dispatcher)
    }


def test_read_only_input_does_not_compile_the_kernels_again():
    """Read-only X is copied: Numba would otherwise compile a second, read-only specialisation."""
    net = make_net()
    net.forward(X0)
    net.fit(X0, Y0, epochs=1)
    before = _signature_counts()
    Xr, Yr = _readonly(X0), _readonly(Y0)
    net.forward(Xr)
    net.fit(Xr, Yr, epochs=1)
    assert _signature_counts() == before


# ------------------------------------------------------- finite_contiguous: what it passes through

_CONVERSIONS = {  # name: (array, dtype, returned as it is)
    "C float64 as float64": (np.arange(6.0).reshape(2, 3), np.float64, True),
    "C float32 as float32": (np.arange(6, dtype=np.float32).reshape(2, 3), np.float32, True),
    "float64 as float32": (np.arange(6.0).reshape(2, 3), np.float32, False),
    "Fortran float64": (np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.float64, False),
    "strided float64": (np.arange(12.0).reshape(2, 6)[:, ::2], np.float64, False),
    "read-only float64": (_readonly(np.arange(6.0).reshape(2, 3)), np.float64, False),
    "int64 as float64": (np.arange(6).reshape(2, 3), np.float64, False),
}


@pytest.mark.parametrize("checked", [False, True])
@pytest.mark.parametrize("case", _CONVERSIONS)
def test_finite_contiguous_copies_only_what_needs_converting(case, checked):
    from fastbp._validation import finite_contiguous

    arr, dtype, same = _CONVERSIONS[case]
    out = finite_contiguous(arr, "X", np.dtype(dtype), checked=checked)
    assert (out is arr) == same
    assert out.dtype == dtype and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out, arr.astype(dtype))


def test_finite_contiguous_checked_skips_only_the_nan_pass():
    """``checked=True`` (the caller's validate_data refused NaN and inf) leaves out the pass over the
    input for them, not the check of a float32 overflow that the conversion makes."""
    from fastbp._validation import finite_contiguous

    nan = np.array([[1.0, np.nan]])
    with pytest.raises(ValueError, match="^X contains NaN"):
        finite_contiguous(nan, "X", np.dtype(np.float64))
    assert np.isnan(finite_contiguous(nan, "X", np.dtype(np.float64), checked=True)[0, 1])
    with pytest.raises(ValueError, match="^X overflows float32"):
        finite_contiguous(np.array([[1e300]]), "X", np.dtype(np.float32), checked=True)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize(
    "sizes, out", [([64, 32, 1], "sigmoid"), ([2, 4, 1], "sigmoid"), ([5, 3, 7, 2], "softmax")], ids=str
)
def test_fast_forward_kernels_refuse_non_finite_X_that_the_wrappers_left_to_them(sizes, out, bad, monkeypatch):
    """kernels.predict, forward and loss on batches that run the fast forward kernels (the packed
    ones for 64-32-1, the column pass for the others: ``_dispatch.forward_refuses_non_finite``)
    skip NumPy's pass over X for NaN and inf and raise its error from the kernels' own look, with
    NaN or inf in the last row; a kernel that said "finite" would let it through (the check before
    the kernel is gone), and a flag with no NaN behind it (X changed by another thread while the
    kernel ran) is still a ValueError, not a result."""
    from fastbp import _dispatch
    from fastbp import _validation as val
    from fastbp.activations import get_activation

    monkeypatch.setattr(_dispatch, "FAST_FORWARD_MIN_ROWS", 0)
    m = 515  # the column pass's chunks of 256 and the packed blocks of 128, and a short last one
    prob = make_problem(sizes, np.float64, "tanh", out, m=m, seed=2)
    assert _dispatch.forward_refuses_non_finite(get_activation("tanh"), np.array(sizes), m)
    X = prob.X.copy()
    X[m - 1, sizes[0] - 1] = bad
    calls = [
        lambda: kernels.predict(prob.weights, prob.biases, X, "tanh", out),
        lambda: kernels.forward(prob.weights, prob.biases, X, "tanh", out),
        lambda: kernels.loss(prob.weights, prob.biases, X, prob.Y, "tanh", out),
    ]
    for f in calls:
        with pytest.raises(ValueError, match=f"^X contains {'NaN' if np.isnan(bad) else 'inf'}"):
            f()
    real = val.refuse_non_finite

    def refuse(arr, name):  # Y's check stays the wrappers'
        assert name != "X", "X checked before the kernel"
        real(arr, name)

    monkeypatch.setattr(val, "refuse_non_finite", refuse)
    monkeypatch.setattr(_dispatch, "refuse_non_finite", lambda arr, name: None)
    for f in calls:
        with pytest.raises(ValueError, match="^X contained NaN or inf while the kernel read it"):
            f()


@pytest.mark.parametrize("order", [np.arange(6, dtype=np.int64), np.arange(6, dtype=np.int32), [5, 4, 3]])
def test_check_order_hands_the_kernels_a_copy_checked_after_copying(order):
    """The kernels index X and Y with ``order`` without the GIL: the validated array is never the
    caller's (another thread could change it between the range check and the kernel's reads)."""
    from fastbp._validation import check_order

    idx = check_order(order, 6)
    assert idx.dtype == np.int64 and idx.flags.c_contiguous and np.array_equal(idx, np.asarray(order))
    if isinstance(order, np.ndarray):
        assert not np.shares_memory(idx, order)
