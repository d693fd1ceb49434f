"""fastbp.vmath's exp, tanh and σ: the worst error in ulp and the time per value, per dtype.

The exact values are NumPy's in long double (80-bit on x86-64).  Pin it to one core::

    taskset -c 1 python tools/vmath_accuracy.py
    taskset -c 1 python tools/vmath_accuracy.py --points 4000000

Run it in two checkouts (``PYTHONPATH=...``) to compare a change to the range reduction or
the polynomials; tests/test_vmath.py holds the ulp bounds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastbp import vmath

#: The exact σ (in the precision of its argument).
EXACT_SIGMOID = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731

FUNCTIONS = {
    "tanh": (vmath.tanh_array, np.tanh, {np.float64: 25.0, np.float32: 12.0}),
    "exp": (vmath.exp_array, np.exp, {np.float64: 700.0, np.float32: 87.0}),
    "sigmoid": (vmath.sigmoid_array, EXACT_SIGMOID, {np.float64: 700.0, np.float32: 87.0}),
}


def ulp_error(out, exact, dtype) -> float:
    """The largest |out − exact| in ulp of ``dtype`` (``exact`` in a wider or equal precision),
    over the results of at least twice the smallest normal number (not the flushed tail)."""
    normal = np.abs(exact) >= 2 * np.finfo(dtype).tiny
    ulp = np.spacing(np.abs(exact[normal]).astype(dtype)).astype(exact.dtype)
    return float(np.max(np.abs(out[normal].astype(exact.dtype) - exact[normal]) / ulp))


def worst_ulp(fn, reference, dtype, top: float, points: int) -> float:
    """:func:`ulp_error` of ``fn`` against ``reference`` in long double over x uniform in
    [−top, top] and [−3, 3]."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-top, top, points), rng.uniform(-3, 3, points)]).astype(dtype)
    out = np.empty_like(x)
    fn(x, out)
    return ulp_error(out, reference(x.astype(np.longdouble)), dtype)


def ns_per_value(fn, dtype, n: int = 4096, calls: int = 2000, repeats: int = 5) -> float:
    x = np.random.default_rng(1).uniform(-3, 3, n).astype(dtype)
    out = np.empty_like(x)
    fn(x, out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(x, out)
        best = min(best, (time.perf_counter() - t0) / calls / n)
    return best * 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=2_000_000)
    args = ap.parse_args(argv)
    print(f"{'dtype':8} {'function':8} {'worst ulp':>9} {'ns/value':>9}")
    for dtype in (np.float64, np.float32):
        for name, (fn, reference, tops) in FUNCTIONS.items():
            ulp = worst_ulp(fn, reference, dtype, tops[dtype], args.points)
            print(f"{np.dtype(dtype).name:8} {name:8} {ulp:9.2f} {ns_per_value(fn, dtype):9.3f}")


if __name__ == "__main__":
    main()
