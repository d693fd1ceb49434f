"""fastbp.vmath against NumPy: millions of points over the whole real line, and the edges."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fastbp import vmath
from fastbp._jit import JIT_VEC
from fastbp.testing import tolerance

from ._targets import host_runs

EDGES = [
    0.0,
    -0.0,
    np.inf,
    -np.inf,
    np.nan,
    1e-300,
    -1e-300,
    1e-30,
    -1e-30,
    1e-8,
    -1e-8,
    0.5,
    -0.5,
    1e300,
    -1e300,
    3e38,
    -3e38,
    709.78,
    709.79,
    -708.04,  # exp's flush edge: round(x / ln 2) = 2 − 1023, below √2 · 2^−1022 = 3.1e-308
    -708.06,
    -708.3,
    -708.4,
    -745.1,
    -745.2,
    88.72,
    88.73,
    -86.98,  # float32's: √2 · 2^−126
    -87.0,
    -87.3,
    -87.4,
    -103.9,
    -104.0,
    9.0,
    10.0,
    19.0,
    20.0,
    21.0,
    -20.0,
]


def _points(dtype, n=1_000_000):
    rng = np.random.default_rng(1)
    x = np.concatenate(
        [
            rng.normal(0.0, 4.0, n),  # where the activations live
            rng.uniform(-800.0, 800.0, n // 4),  # across exp's whole range
            10.0 ** rng.uniform(-40, 40, n // 4) * rng.choice([-1, 1], n // 4),  # every magnitude
            EDGES,
        ]
    )
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(x.astype(dtype))


def _check(actual, desired, dtype):
    # NaN where NumPy gives NaN, the same infinities, and within the dtype's tolerance elsewhere.
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(desired))
    inf = np.isinf(desired)
    np.testing.assert_array_equal(actual[inf], desired[inf])
    ok = ~np.isnan(desired) & ~inf
    np.testing.assert_allclose(actual[ok], desired[ok], **tolerance(dtype))


CASES = {
    "exp": (vmath.exp_array, np.exp, lambda x: x),
    "tanh": (vmath.tanh_array, np.tanh, lambda x: x),
    "sigmoid": (vmath.sigmoid_array, vmath.vsigmoid, lambda x: x),
    "log1p_unit": (vmath.log1p_unit_array, np.log1p, lambda x: np.abs(np.tanh(x))),  # domain [0, 1]
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_against_numpy(name, dtype):
    fn, ref, domain = CASES[name]
    with np.errstate(all="ignore"):
        x = np.ascontiguousarray(domain(_points(dtype)))
        desired = ref(x.astype(np.float64)).astype(dtype)  # the truth, rounded once to dtype
    out = np.empty_like(x)
    fn(x, out)
    assert out.dtype == dtype
    _check(out, desired, dtype)


def _accuracy_tool():
    """tools/vmath_accuracy.py, whose ulp measure the test shares."""
    path = Path(__file__).resolve().parents[1] / "tools" / "vmath_accuracy.py"
    spec = importlib.util.spec_from_file_location("vmath_accuracy", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


#: The most ulp (of the result's dtype) each function may be from the exact value, and where it is
#: checked: exp over its whole normal range, where the range reduction carries the accuracy.
ULP_BOUND = {"exp": 2.0, "tanh": 4.0, "sigmoid": 4.0}
ULP_RANGE = {
    np.float64: {"exp": 700.0, "tanh": 20.0, "sigmoid": 700.0},
    np.float32: {"exp": 87.0, "tanh": 10.0, "sigmoid": 87.0},
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ULP_BOUND))
def test_within_a_few_ulp_across_the_range(name, dtype):
    """Against the exact value (NumPy in long double where it is wider than float64), in ulp.
    Regression: a Numba overload inherits its caller's fastmath flags, and with ``reassoc`` LLVM
    folded the range reduction's (x − n·ln2_hi) − n·ln2_lo back into x − n·ln 2: float64 e^x was
    200 ulp off at |x| = 700 and σ 13 ulp, inside the relative tolerance that test_against_numpy
    checks."""
    tool = _accuracy_tool()
    exact_type = np.longdouble if np.finfo(np.longdouble).nmant > 52 else np.float64
    fn, reference, _ = tool.FUNCTIONS[name]
    top = ULP_RANGE[dtype][name]
    x = np.random.default_rng(7).uniform(-top, top, 400_000).astype(dtype)
    out = np.empty_like(x)
    fn(x, out)
    worst = tool.ulp_error(out, reference(x.astype(exact_type)), dtype)
    assert worst <= ULP_BOUND[name] + (0 if exact_type is np.longdouble else 1), f"{name} {worst:.1f} ulp"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exact_edges(dtype):
    T = np.dtype(dtype).type
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1e-30], dtype)
    out = np.empty_like(x)
    vmath.exp_array(x, out)
    np.testing.assert_array_equal(out[:4], [1, 1, np.inf, 0])
    assert np.isnan(out[4])
    vmath.tanh_array(x, out)
    np.testing.assert_array_equal(out[:4], [0, 0, 1, -1])
    assert np.signbit(out[1]) and np.isnan(out[4]) and out[5] == T(-1e-30)
    vmath.sigmoid_array(x, out)
    np.testing.assert_array_equal(out[:4], [0.5, 0.5, 1, 0])
    assert np.isnan(out[4])
    big = np.array([1e4, -1e4, 50.0, -50.0], dtype)
    vmath.tanh_array(big, out[:4])
    np.testing.assert_array_equal(out[:4], [1, -1, 1, -1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_stays_float32(dtype):
    """The compiled loop has no stray float64 arithmetic for float32 input (LLVM IR)."""
    x = np.linspace(-3, 3, 64).astype(dtype)
    out = np.empty_like(x)
    vmath.tanh_array(x, out)
    if dtype is np.float32:
        fn = vmath.tanh_array.py_func
        from numba import njit

        ir = njit(**JIT_VEC | {"cache": False})(fn)
        ir(x, out)
        text = ir.inspect_llvm(ir.signatures[0])
        body = text[text.index("define") :]
        import re

        assert re.search(r"= f(add|sub|mul|div)[a-z ]* float ", body)  # float32 arithmetic is there
        assert not re.search(r"= f(add|sub|mul|div)[a-z ]* double ", body), "stray float64 arithmetic"


@pytest.mark.skipif(not host_runs(("avx2", "fma")), reason="needs an x86-64 CPU with AVX2 and FMA")
def test_every_check_here_passes_with_avx2_code(tmp_path):
    """This file's checks again in a fresh process compiled for an AVX2 target (NUMBA_CPU_NAME=haswell,
    no AVX-512), with its own cache: the range reduction's integer steps (the shifter's bits, a 64-bit
    subtract and shift per lane, ``fastbp/vmath.py``) are other instructions there, and the speed that
    rounding by the shifter bought was AVX2's."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "", "NUMBA_CACHE_DIR": str(tmp_path)}
    args = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__, "-k", "not avx2_code"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
