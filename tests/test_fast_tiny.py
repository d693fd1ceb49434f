"""fastbp._fast.tiny: its activations against NumPy, float32 kept, dispatch and lazy compilation.

The kernel's agreement with the plain kernel and the NumPy reference (sizes in and around
the tiny range, every activation and output, both dtypes, m = 1, the divergence contract)
is tested with the other fast kernels, in tests/test_fast_kernels.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from fastbp import _dispatch
from fastbp._dispatch import run_epoch
from fastbp._fast import tiny as fast_tiny
from fastbp._jit import JIT_VEC
from fastbp.activations import get_activation
from fastbp.testing import make_problem
from tests.test_vmath import _check, _points

_OPTS = {**JIT_VEC, "cache": False}


def _array_loop(fn):
    """The compiled loop ``out[i] = fn(x[i])`` (vectorised as in the kernels)."""

    @njit(**_OPTS)
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])

    return loop


_tanh_array = _array_loop(fast_tiny.ttanh)
_sigmoid_array = _array_loop(fast_tiny.tsigmoid)

#: The tiny kernels' activations: form -> (the loop that applies it to an array, the function's name).
FORMS = {
    "ttanh": (_tanh_array, "tanh"),
    "ttanh_scalar": (_array_loop(fast_tiny.ttanh_scalar), "tanh"),
    "tsigmoid": (_sigmoid_array, "sigmoid"),
    "tsigmoid_scalar": (_array_loop(fast_tiny.tsigmoid_scalar), "sigmoid"),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", FORMS)
def test_activations_against_numpy(form, dtype):
    """Over the whole real line and the edges (NaN, ±inf, ±0, huge, tiny): within the dtype's
    agreement tolerance (exactly ±1 from where the rounded tanh is ±1)."""
    fn, name = FORMS[form]
    x = _points(dtype)
    with np.errstate(all="ignore"):
        x64 = x.astype(np.float64)
        desired = (np.tanh(x64) if name == "tanh" else 1.0 / (1.0 + np.exp(-x64))).astype(dtype)
    out = np.empty_like(x)
    fn(x, out)
    assert out.dtype == dtype
    np.testing.assert_array_equal(np.isnan(out), np.isnan(desired))
    finite = ~np.isnan(desired)
    _check(out[finite], np.where(np.isinf(desired), np.sign(desired), desired)[finite].astype(dtype), dtype)


@pytest.mark.parametrize("form", FORMS)
def test_float32_tails_are_within_a_few_ulp(form):
    """On the tails, where g′ = 1 − tanh² or σ(1 − σ) is a few ulp of 1 (or σ itself is tiny), the
    float32 forms are within 2 ulp of the correctly rounded tanh and 4.5 ulp of σ, as vmath's, the
    plain kernel's, are (the rational tanh alone was 5.5 ulp off there, so g′ up to 11x;
    ½ tanh(x/2) + ½ gave σ(−18) = 0).  In between, the scalar forms' rational is within 3e-7 (g′
    within 6e-5 where |x| < 3)."""
    fn, name = FORMS[form]
    ulps = 2 if name == "tanh" else 4.5
    split = fast_tiny.TANH_SPLIT if name == "tanh" else 2 * fast_tiny.TANH_SPLIT
    end = 12 if name == "tanh" else 80
    x = np.linspace(-end, end, 1_600_001, dtype=np.float32)
    mine = np.empty_like(x)
    fn(x, mine)
    x64 = x.astype(np.float64)
    exact = np.tanh(x64) if name == "tanh" else 1 / (1 + np.exp(-x64))
    err = np.abs(mine - exact)
    tails = np.abs(x) >= split
    np.testing.assert_array_less(err[tails], ulps * np.spacing(np.abs(exact[tails]).astype(np.float32)))
    np.testing.assert_array_less(err, 3e-7)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_float64_activations_are_vmaths_to_a_few_ulp(name):
    """float64: vmath's forms with the polynomial by Estrin's scheme, within 8 ulp of vmath's
    (Horner) results everywhere, the same NaN, ±inf, ±0 and flushed-to-0 edges."""
    from fastbp import vmath

    x = _points(np.float64)
    mine, theirs = np.empty_like(x), np.empty_like(x)
    (_tanh_array if name == "tanh" else _sigmoid_array)(x, mine)
    (vmath.tanh_array if name == "tanh" else vmath.sigmoid_array)(x, theirs)
    np.testing.assert_array_equal(np.isnan(mine), np.isnan(theirs))
    exact = ~np.isfinite(theirs) | (theirs == 0)
    if name == "tanh":
        exact |= np.abs(x) < 1e-9  # tanh x = x there
    np.testing.assert_array_equal(mine[exact & ~np.isnan(theirs)], theirs[exact & ~np.isnan(theirs)])
    rest = ~exact
    np.testing.assert_array_less(np.abs(mine[rest] - theirs[rest]), 8 * np.spacing(np.abs(theirs[rest])))


def test_tanh32_keeps_sign_of_zero_and_tiny_inputs():
    x = np.array([0.0, -0.0, 1e-30, -1e-30, 3e-4], np.float32)
    out = np.empty_like(x)
    _tanh_array(x, out)
    np.testing.assert_array_equal(out[:4], x[:4])
    assert np.signbit(out[1])


@pytest.mark.parametrize("form", FORMS)
def test_float32_activations_have_no_float64_arithmetic(form):
    """The float32 activations compile to float32 arithmetic only (LLVM IR)."""
    import re

    fn = FORMS[form][0]
    x = np.zeros(8, np.float32)
    fn(x, np.empty_like(x))
    sig = [s for s in fn.signatures if str(s[0].dtype) == "float32"][0]
    body = fn.inspect_llvm(sig)
    body = body[body.index("define") :]
    assert re.search(r"= f(add|sub|mul|div)[a-z ]* (float|<\d+ x float>) ", body)
    assert not re.search(r"= f(add|sub|mul|div)[a-z ]* (double|<\d+ x double>) ", body), "stray float64"


@pytest.mark.parametrize(
    "sizes, batch_size, output, used",
    [
        ([2, 4, 1], 1, "sigmoid", "_tiny4_epoch"),
        ([3, 3, 1], 1, "identity", "_tiny4_epoch"),
        ([2, 5, 1], 1, "sigmoid", "_tiny_epoch"),  # more than 4 hidden units
        ([2, 4, 2], 1, "softmax", "_tiny_epoch"),  # more than one output
        ([5, _dispatch.TINY_MAX_HIDDEN, 3], 1, "sigmoid", "_tiny_epoch"),
        ([128, 4, 1], 1, "sigmoid", "_tiny4_epoch"),  # n_0 n_1 = TINY4_MAX_WEIGHTS
        ([129, 4, 1], 1, "sigmoid", None),
        ([_dispatch.TINY_MAX_INPUTS + 1, 8, 2], 1, "softmax", None),  # too many inputs for _tiny_epoch
        ([2, _dispatch.TINY_MAX_HIDDEN + 1, 1], 1, "sigmoid", None),  # hidden layer too wide
        ([2, 4, 3, 1], 1, "sigmoid", None),  # two hidden layers
        ([2, 4, 1], 2, "sigmoid", None),  # mini-batches
    ],
)
def test_dispatch(sizes, batch_size, output, used):
    """select_epoch picks a tiny kernel exactly for per-example SGD with one hidden layer of
    at most TINY_MAX_HIDDEN units; the all-registers one for ≤ 4 units and one output."""
    from fastbp.activations import NAMES as ACT
    from fastbp.losses import NAMES as OUT

    name = _dispatch.select_epoch(sizes, batch_size, OUT[output], ACT["tanh"])
    if used:
        assert name == used
    else:
        assert name not in ("_tiny_epoch", "_tiny4_epoch") and name != _dispatch.PLAIN


_LAZY_SCRIPT = """
import sys, numpy as np
from fastbp import MLP
from fastbp.testing import make_problem
prob = make_problem([6, 20, 1], m=8)
MLP([6, 20, 1], seed=0).fit(prob.X, prob.Y, epochs=1, batch_size=1)
print("fastbp._fast.tiny" in sys.modules)
"""


def test_not_loaded_by_other_nets():
    """A first fit of a net outside the tiny range neither imports nor compiles the tiny kernel
    (the cold start pays nothing for it)."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", _LAZY_SCRIPT], capture_output=True, text=True, check=True, timeout=300)
    assert res.stdout.strip().splitlines()[-1] == "False"


# the generic per-example kernel ([2, 20, 1], [6, 20, 3]) beside the tiny ones, held to the same
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sizes", [[2, 3, 1], [2, 5, 2], [2, 20, 1]])  # tiny4, tiny, per-example
def test_non_finite_start_fails_first_step(dtype, sizes):
    """NaN in the parameters: the first step is not applied, nothing changes."""
    from fastbp.losses import NAMES as OUT
    from fastbp.params import Layout

    prob = make_problem(sizes, dtype=dtype, m=5)
    lay = Layout(sizes)
    p0 = lay.pack(prob.weights, prob.biases, np.dtype(dtype))
    p0[0] = np.nan
    p = p0.copy()
    J, failed = run_epoch(
        p,
        lay.sizes,
        prob.X,
        prob.Y,
        np.asarray(prob.order, np.int64),
        1,
        np.dtype(dtype).type(prob.learning_rate),
        get_activation(prob.activation),
        OUT[prob.output],
    )
    assert failed == 0 and J == 0.0
    np.testing.assert_array_equal(p, p0)


@pytest.mark.parametrize("sizes", [[6, 3, 1], [6, 5, 3], [6, 20, 3]])  # tiny4, tiny, per-example
def test_no_allocation_per_example(sizes):
    """Numba's allocation count of a per-example epoch does not grow with m."""
    from numba.core.runtime import _nrt_python, rtsys

    from fastbp.losses import NAMES as OUT
    from fastbp.params import Layout

    _nrt_python.memsys_enable_stats()
    lay = Layout(sizes)
    counts = []
    for m in (16, 800):
        prob = make_problem(sizes, dtype=np.float32, m=m)
        p0 = lay.pack(prob.weights, prob.biases, np.float32)
        args = (lay.sizes, prob.X, prob.Y, np.arange(m), 1, np.float32(0.1), get_activation("tanh"), OUT[prob.output])
        run_epoch(p0.copy(), *args)  # compiled
        before = rtsys.get_allocation_stats().alloc
        run_epoch(p0.copy(), *args)
        counts.append(rtsys.get_allocation_stats().alloc - before)
    assert counts[0] == counts[1] and counts[0] < 20


def _tiny_chain_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "tiny_chain.py"
    spec = importlib.util.spec_from_file_location("tiny_chain", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_chain_script_runs(capsys):
    """tools/tiny_chain.py (the latency floor, and the generic kernel against the tiny one)
    runs and prints a line per chain and per kernel case (a smoke run: tiny sizes, one repeat)."""
    mod = _tiny_chain_script()
    mod.main(["--n", "64", "--repeats", "1"])
    mod.kernels_before_after(repeats=1, m=16)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 * (1 + len(mod.CHAINS) + len(mod.NETS)) + 6
    assert all(" ns" in line for line in lines)


def test_tiny_chain_stripped_bound_takes_the_kernels_steps():
    """tools/tiny_chain.py's ``stripped_241`` (the bound quoted for 2-4-1 float32 in
    docs/performance.md) takes the tiny kernel's steps: after an epoch its parameters are the
    kernel's, to float32 rounding, so the bound times the same work minus the guard and the cost."""
    from fastbp.activations import NAMES as ACT
    from fastbp.losses import OUT_SIGMOID
    from fastbp.params import Layout
    from fastbp.testing import TOLERANCE

    mod = _tiny_chain_script()
    prob = make_problem(
        [2, 4, 1], dtype=np.float32, activation="tanh", output="sigmoid", m=64, learning_rate=0.1, shuffle=False
    )
    lay = Layout([2, 4, 1])
    p0 = lay.pack(prob.weights, prob.biases, np.dtype(np.float32))
    order = np.random.default_rng(0).permutation(64)
    kernel, bound = p0.copy(), p0.copy()
    fast_tiny._tiny4_epoch(kernel, lay.sizes, prob.X, prob.Y, order, np.float32(0.1), ACT["tanh"], OUT_SIGMOID, 1e30)
    mod.stripped_241(bound, prob.X, prob.Y, order, np.float32(0.1))
    rtol, atol = TOLERANCE[np.dtype(np.float32)]
    np.testing.assert_allclose(bound, kernel, rtol=rtol, atol=atol)
    assert np.abs(bound - p0).max() > 100 * atol  # it did train


def test_float32_tanh_and_sigmoid_saturate_exactly_where_the_rounded_tanh_is_one():
    """From the least float32 whose tanh rounds to 1 (9.0109…), ttanh is exactly ±1 (the rational alone
    gives ±(1 − 2.4e-7), whose g′ ≈ 4.8e-7 moved W[1] at raw-scale inputs); σ is exactly 1 above 18.02
    and, below −18.02, vmath's σ (1.5e-8 and less: ½ tanh(x/2) + ½ gave 0 there)."""
    from fastbp import vmath

    one = np.float32(fast_tiny.TANH_ONE)
    x = np.array([one, -one, 10, -10, 1e4, -1e6, np.inf, -np.inf, 3e38], np.float32)
    out = np.empty_like(x)
    _tanh_array(x, out)
    np.testing.assert_array_equal(out, np.sign(x))
    below = np.array([np.nextafter(one, np.float32(0))], np.float32)
    _tanh_array(below, below_out := np.empty_like(below))
    # just below, within an ulp of the correctly rounded 1 − 2^−24 (1 − tanh is a hair above 2^−25)
    assert np.float32(np.tanh(np.float64(below[0]))) == np.float32(1 - 2**-24)
    assert abs(below_out[0] - np.float32(1 - 2**-24)) <= 2**-24
    with np.errstate(over="ignore"):  # 2 · 3e38 is inf: σ(inf) = 1
        _sigmoid_array(2 * x, out)
        vmath.sigmoid_array(2 * x, accurate := np.empty_like(x))
    np.testing.assert_array_equal(out[x > 0], 1)
    assert 1e-8 < accurate[1] < 1.6e-8  # σ(−18.02) ≈ 1.5e-8
    np.testing.assert_allclose(out[x < 0], accurate[x < 0], rtol=1e-6, atol=0)
    nan = np.array([np.nan], np.float32)
    _tanh_array(nan, nan_out := np.empty_like(nan))
    assert np.isnan(nan_out[0])


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("hidden", [3, 8])  # _tiny4_epoch, _tiny_epoch
def test_raw_scale_inputs_train_the_same_on_both_backends_in_float32(activation, hidden):
    """Inputs of magnitude 1e4 to 1e6 saturate every hidden unit: the tiny kernels' epochs end where
    the NumPy backend's do (they ended far apart while the float32 tanh stopped at 1 − 2.4e-7)."""
    from fastbp import MLP
    from fastbp._dispatch import select_epoch
    from fastbp.activations import get_activation
    from fastbp.losses import OUT_SIGMOID
    from fastbp.testing import tolerance

    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 3)) * 10.0 ** rng.integers(4, 7, size=(64, 1))
    Y = (rng.random((64, 1)) > 0.5).astype(float)
    expected = "_tiny4_epoch" if hidden <= 4 else "_tiny_epoch"
    assert select_epoch((3, hidden, 1), 1, OUT_SIGMOID, get_activation(activation).code) == expected
    nets = {b: MLP([3, hidden, 1], activation=activation, dtype=np.float32, seed=1) for b in ("numba", "numpy")}
    losses = {b: net.fit(X, Y, epochs=3, learning_rate=0.05, backend=b).loss for b, net in nets.items()}
    np.testing.assert_allclose(nets["numba"].params, nets["numpy"].params, **tolerance(np.float32))
    np.testing.assert_allclose(losses["numba"], losses["numpy"], **tolerance(np.float32))


def _huge_relu_divergence(scale: float, hidden: int) -> tuple[dict, dict]:
    """Where a relu net on inputs of magnitude ``scale`` (unshuffled, float32) diverges on each backend:
    ``(epoch, batch)`` and the parameters the error left, by backend."""
    from fastbp import MLP, DivergenceError
    from fastbp._dispatch import tiny_inputs_safe

    rng = np.random.default_rng(0)
    X = (rng.normal(size=(32, 3)) * scale).astype(np.float32)
    Y = (rng.random((32, 1)) > 0.5).astype(float)
    assert not tiny_inputs_safe(X) and tiny_inputs_safe(X / scale * 1e6)
    where, params = {}, {}
    for backend in ("numba", "numpy"):
        net = MLP([3, hidden, 1], activation="relu", dtype=np.float32, seed=1)
        with pytest.raises(DivergenceError) as info:
            net.fit(X, Y, epochs=3, learning_rate=0.01, shuffle=False, backend=backend)
        where[backend], params[backend] = (info.value.epoch, info.value.batch), net.params
    return where, params


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NumPy reference overflowing on its way
@pytest.mark.parametrize("scale", [1e20, 1e21])
@pytest.mark.parametrize("hidden", [3, 8])
def test_huge_relu_inputs_diverge_at_the_same_batch_on_both_backends(scale, hidden):
    """Inputs so large that the tiny kernels' Gram term xᵀx' would overflow run ``_sgd_epoch``
    instead (:func:`fastbp._dispatch.tiny_inputs_safe`): the divergence the reference reports is
    reported at the same epoch and batch (the tiny kernels ended such epochs without one).  (Unshuffled:
    at the overflow edge a step's float32 sum can overflow in one summation order and not in another,
    BLAS's and the loop's, so a shuffled run may stop one batch apart; that edge is not the tiny kernels'.)"""
    where, params = _huge_relu_divergence(scale, hidden)
    assert where["numba"] == where["numpy"]
    np.testing.assert_allclose(params["numba"], params["numpy"], rtol=1e-4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NumPy reference overflowing on its way
@pytest.mark.parametrize("scale", [1e25, 1e35])
@pytest.mark.parametrize("hidden", [3, 8])
def test_relu_inputs_near_float32_max_diverge_in_the_first_epoch_on_both_backends(scale, hidden):
    """From about 1e22 a hidden unit's pre-activation overflows to −inf one example before the
    divergence and relu absorbs it (the loss and parameters stay finite, so that step is no divergence).
    The next example then sums +inf and −inf products: NaN where the product is rounded first (the
    NumPy reference on a Zen 3's OpenBLAS, and the kernels compiled without FMA), −inf where a fused
    multiply-add adds the unrounded product (the kernels compiled for AVX2 + FMA on a Zen 3), so the
    backends may stop one example (batch_size 1: one batch) apart, depending on the machine (on a Zen 4
    they stopped at the same one).  What holds everywhere: both stop in the first epoch, at most one
    batch apart, and the kernels leave finite parameters."""
    where, params = _huge_relu_divergence(scale, hidden)
    assert where["numba"][0] == where["numpy"][0] == 0
    assert abs(where["numba"][1] - where["numpy"][1]) <= 1
    assert np.isfinite(params["numba"]).all()
