"""Fuzzing the public surface under Numba's bounds checking (issue 14).

A fresh interpreter with ``NUMBA_BOUNDSCHECK=1`` and the bounds-checked runs' own
``NUMBA_CACHE_DIR`` (never the unchecked kernels' cache: every kernel compiled with the checks,
here or by ``tests/test_boundscheck.py``; ``tests/conftest.py``) runs hypothesis over shapes
(zero-sized included), strides, dtypes, aliasing between arguments and writes to a network's
attributes, through every public kernel wrapper and :class:`fastbp.MLP`.  Each call must either
return finite results or raise ``ValueError``/``TypeError``/``AttributeError``/``DivergenceError``;
an ``IndexError`` (a kernel stepping outside its arrays, which bounds checking turns into an
exception) or anything else fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("hypothesis")

SCRIPT = r"""
import numba
import numpy as np
assert numba.config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK was not picked up"

from hypothesis import HealthCheck, given, settings, strategies as st

import fastbp
from fastbp import MLP, kernels, reference
from fastbp.errors import DivergenceError

ALLOWED = (ValueError, TypeError, AttributeError, DivergenceError)
DTYPES = [np.float64, np.float64, np.float64, np.float32, np.int64, np.float16, np.complex128]
FUNCTIONS = ["forward", "predict", "loss", "gradients", "backward", "update", "train_epoch"]
calls = {"ok": 0, "refused": 0}


def make_array(draw, shape, dtype=None):
    dtype = dtype or draw(st.sampled_from(DTYPES))
    layout = draw(st.sampled_from(["c", "f", "strided", "readonly"]))
    shape = tuple(max(n, 0) for n in shape)  # a width of 0 drawn one short stays 0
    size = int(np.prod(shape)) if shape else 1
    values = draw(st.lists(st.floats(-3, 3, width=32), min_size=size, max_size=size))
    a = np.array(values, dtype=np.float64).reshape(shape)
    if a.size and draw(st.integers(0, 9)) == 0:
        a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, 1e300]))
    if np.dtype(dtype).kind in "iu":
        a = np.nan_to_num(a).round()
    a = a.astype(dtype)
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "strided" and a.ndim >= 1:
        big = np.zeros((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
        big[::2] = a
        a = big[::2]
    elif layout == "readonly":
        a.flags.writeable = False
    return a


@st.composite
def problems(draw):
    depth = draw(st.integers(1, 3))
    sizes = [draw(st.integers(0, 4)) for _ in range(depth + 1)]
    if draw(st.integers(0, 3)):  # mostly consistent sizes, sometimes anything
        sizes = [max(s, 1) for s in sizes]
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32]))
    mixed = draw(st.integers(0, 9)) == 0
    W = [make_array(draw, (sizes[l + 1], sizes[l] + draw(st.sampled_from([0, 0, 0, 1, -1]))),
                    None if mixed else dtype) for l in range(depth)]
    b = [make_array(draw, (sizes[l + 1] + draw(st.sampled_from([0, 0, 0, 1])),), None if mixed else dtype)
         for l in range(depth)]
    m = draw(st.integers(0, 5))
    X = make_array(draw, (m, sizes[0] + draw(st.sampled_from([0, 0, 0, 1, -1]))))
    Y = make_array(draw, (m + draw(st.sampled_from([0, 0, 0, 1])), sizes[-1]))
    alias = draw(st.sampled_from(["none"] * 4 + ["w_twice", "x_is_w", "y_is_b", "grad_is_w", "b_in_w"]))
    if alias == "w_twice" and depth > 1:
        W[1] = W[0]
    elif alias == "x_is_w":
        X = W[0]
    elif alias == "y_is_b":
        Y = b[-1].reshape(-1, 1) if b[-1].ndim == 1 else b[-1]
    elif alias == "b_in_w" and W[0].size:
        flat = W[0].reshape(-1)
        if flat.base is not None or flat is W[0]:
            b[0] = flat[: b[0].shape[0]]
    fn = draw(st.sampled_from(FUNCTIONS))
    extra = {
        "learning_rate": draw(st.sampled_from([0.1, 1e39, 1e-46, 0.0, -1.0, float("nan"), 10**400, True, 1])),
        "batch_size": draw(st.sampled_from([1, 2, 3, None, 0, -1, 10**20, 2.5])),
        "order": draw(st.sampled_from([None, "perm", "bad", "empty", "float"])),
        "activation": draw(st.sampled_from(["tanh", "relu", "sigmoid", "identity", "leaky_relu"])),
        "output": draw(st.sampled_from(["sigmoid", "softmax", "identity"])),
        "grad_is_w": alias == "grad_is_w",
    }
    return fn, W, b, X, Y, extra


def order_for(kind, m):
    return {"perm": np.arange(m)[::-1].copy(), "bad": np.array([0, m + 3]), "empty": np.array([], np.int64),
            "float": np.array([0.0, 1.0]), None: None}[kind]


def run_wrapper(impl, fn, W, b, X, Y, extra):
    act, out = extra["activation"], extra["output"]
    if fn in ("forward", "predict"):
        return getattr(impl, fn)(W, b, X, act, out)
    if fn in ("loss", "gradients"):
        return getattr(impl, fn)(W, b, X, Y, act, out)
    if fn == "backward":
        Z, A = impl.forward(W, b, X, act, out)
        return impl.backward(W, b, X, Y, Z, A, act, out)
    if fn == "update":
        dW = list(W) if extra["grad_is_w"] else [np.ones_like(w) for w in W]
        db = [np.ones_like(c) for c in b]
        return impl.update(W, b, dW, db, extra["learning_rate"])
    order = order_for(extra["order"], X.shape[0] if hasattr(X, "shape") and X.ndim else 0)
    return impl.train_epoch(W, b, X, Y, extra["learning_rate"], extra["batch_size"], order, act, out)


def all_finite(result):
    if isinstance(result, (list, tuple)):
        return all(all_finite(r) for r in result)
    if result is None:
        return True
    return bool(np.all(np.isfinite(result)))


@settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
          derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(problems(), st.sampled_from(["numba", "numpy"]))
def fuzz_wrappers(problem, backend):
    fn, W, b, X, Y, extra = problem
    impl = kernels if backend == "numba" else reference
    try:
        result = run_wrapper(impl, fn, W, b, X, Y, extra)
    except ALLOWED:
        calls["refused"] += 1
        return
    calls["ok"] += 1
    assert all_finite(result), (fn, result)
    assert all(np.isfinite(np.asarray(P, dtype=np.float64)).all() for P in list(W) + list(b))


@st.composite
def attribute_attacks(draw):
    depth = draw(st.integers(1, 2))
    sizes = [draw(st.integers(1, 5)) for _ in range(depth + 1)]
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    attacks = draw(st.lists(st.sampled_from(
        ["params_short", "params_long", "params_nan", "params_ok", "weights_item", "weights_item_bad",
         "weights_list", "biases_item_bad", "layer_sizes", "dtype", "params_view_shape", "params_resize",
         "rng", "output", "weights_nan"]), max_size=3))
    seed = draw(st.integers(0, 3))
    m = draw(st.integers(1, 6))
    batch = draw(st.sampled_from([1, 2, 4, None]))
    backend = draw(st.sampled_from(["numba", "numpy"]))
    optimizer = draw(st.sampled_from(["sgd", "sgd_momentum", "adam"]))
    return sizes, dtype, attacks, seed, m, batch, backend, optimizer


def attack(net, what, rng):
    n = net.params.size
    if what == "params_short":
        net.params = np.zeros(max(n - 3, 0))
    elif what == "params_long":
        net.params = np.zeros(n + 3)
    elif what == "params_nan":
        net.params = np.full(n, np.nan)
    elif what == "params_ok":
        net.params = rng.normal(size=n)
    elif what == "weights_item":
        net.weights[0] = rng.normal(size=net.weights[0].shape)
    elif what == "weights_item_bad":
        net.weights[0] = np.ones((net.weights[0].shape[0] + 1, 2))
    elif what == "weights_list":
        net.weights = [np.ones((1, 1))]
    elif what == "biases_item_bad":
        net.biases[-1] = np.ones(7)
    elif what == "layer_sizes":
        net.layer_sizes = (1, 1)
    elif what == "dtype":
        net.dtype = np.float16
    elif what == "params_view_shape":
        view = net.params
        view.shape = (1, n)
    elif what == "params_resize":
        net.params.resize(1, refcheck=False)
    elif what == "rng":
        net.rng = None
    elif what == "output":
        net.output = "softmax"
    elif what == "weights_nan":
        net.weights[-1][0, 0] = np.nan


@settings(max_examples=int(__import__("os").environ.get("FUZZ_EXAMPLES", "300")) // 2, deadline=None,
          derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(attribute_attacks())
def fuzz_attributes(case):
    from fastbp.optimizers import SGD, Adam
    sizes, dtype, attacks, seed, m, batch, backend, optimizer = case
    net = MLP(sizes, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    for what in attacks:
        before = net.params.copy()
        try:
            attack(net, what, rng)
        except ALLOWED:
            assert net.params.tobytes() == before.tobytes(), what
    assert net.params.shape == (sum(sizes[l + 1] * (sizes[l] + 1) for l in range(len(sizes) - 1)),)
    for P in net.weights + net.biases:
        assert np.shares_memory(P, net.params)
    X = rng.normal(size=(m, sizes[0]))
    Y = (rng.random((m, sizes[-1])) > 0.5).astype(float)
    opt = {"sgd": "sgd", "sgd_momentum": SGD(momentum=0.9), "adam": Adam()}[optimizer]
    try:
        net.fit(X, Y, epochs=2, batch_size=batch, backend=backend, optimizer=opt)
        A = net.forward(X, backend)
    except ALLOWED:
        calls["refused"] += 1
        return
    calls["ok"] += 1
    assert np.isfinite(A).all() and A.shape == (m, sizes[-1])


fuzz_wrappers()
fuzz_attributes()
print("calls", calls["ok"], calls["refused"])
"""


@pytest.mark.start_first
def test_no_public_call_steps_outside_an_array_under_bounds_checking(boundscheck_cache):
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(boundscheck_cache)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-8000:]
    ok, refused = map(int, out.stdout.split()[-2:])
    assert ok > 20 and refused > 20, (ok, refused)  # both paths were exercised
