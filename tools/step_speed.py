"""Microseconds per optimizer step (:mod:`fastbp.steps`) on a parameter vector of a given size.

    python tools/step_speed.py                      # 784-128-10's 101,770 parameters, both dtypes
    python tools/step_speed.py --params 7510 --repeats 2000

Each step kernel runs on the same vector ``--repeats`` times after one warm-up call (compiles);
best of 5 such loops.  Adam's first pass checks that the step is finite (the pass without √ and
÷, the exact pass only where its bound cannot tell), the second applies it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastbp.steps import _adam_step, _sgd_step


def measure(n: int, dtype, repeats: int = 200) -> dict[str, float]:
    """``{"adam": µs, "momentum": µs}`` per step on ``n`` parameters of ``dtype``."""
    rng = np.random.default_rng(0)
    p = rng.random(n).astype(dtype)
    g = (rng.random(n) * 1e-3).astype(dtype)
    a, b = np.zeros(n, dtype), np.zeros(n, dtype)
    steps = {
        "adam": lambda t: _adam_step(p, g, a, b, t, 0.001, 0.9, 0.999, 1e-8),
        "momentum": lambda t: _sgd_step(p, g, a, 0.001, 0.9, False),
    }
    out = {}
    for name, step in steps.items():
        step(1)
        best = np.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for t in range(repeats):
                step(t + 2)
            best = min(best, (time.perf_counter() - t0) / repeats)
        out[name] = best * 1e6
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=int, default=784 * 128 + 128 + 128 * 10 + 10)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args(argv)
    for dt in args.dtypes:
        r = measure(args.params, np.dtype(dt).type, args.repeats)
        print(
            f"{args.params} parameters {dt:>7}: adam {r['adam']:8.1f} µs | momentum {r['momentum']:8.1f} µs", flush=True
        )


if __name__ == "__main__":
    main()
