"""Examples/s of the epoch ``MLP.fit`` runs, on a few nets: run it in two checkouts to compare them.

The fast epoch the dispatcher picks (one thread), per example and at batch 32, best of
``--repeats`` runs of one epoch each.  For a before/after comparison of a refactor, alternate
the two checkouts a few times on one pinned core and compare the best of each::

    for i in 1 2 3; do
      PYTHONPATH=/path/to/old taskset -c 1 python tools/epoch_speed.py
      PYTHONPATH=/path/to/new taskset -c 1 python tools/epoch_speed.py
    done

It also runs on commits from before the issue-11 move (``fastbp.fast_kernels.train_epoch``).
"""

from __future__ import annotations

import argparse
import importlib
import time

import numpy as np

from fastbp.params import Layout
from fastbp.testing import make_problem

#: (layer sizes, batch size, dtype, examples per epoch)
CASES = (
    ([2, 4, 1], 1, np.float32, 100_000),
    ([64, 32, 1], 1, np.float32, 20_000),
    ([64, 32, 1], 1, np.float64, 20_000),
    ([784, 128, 10], 1, np.float32, 2_000),
    ([64, 32, 1], 32, np.float32, 20_000),
    ([784, 128, 10], 32, np.float32, 4_000),
)


def _epoch_function():
    """The dispatcher's epoch (tanh hidden units, σ output, one thread), in either layout."""
    try:
        old = importlib.import_module("fastbp.fast_kernels")
    except ImportError:
        from fastbp._dispatch import run_epoch
        from fastbp.activations import get_activation

        tanh = get_activation("tanh")
        return lambda p, s, X, Y, o, bs, lr: run_epoch(p, s, X, Y, o, bs, lr, tanh, 0, threads=False)
    return lambda p, s, X, Y, o, bs, lr: old.train_epoch(p, s, X, Y, o, bs, lr, 1, 0, threads=False)


def measure(cases=CASES, repeats: int = 7, scale: float = 1.0) -> list[tuple[str, float]]:
    """``(label, examples/s)`` per case: the best of ``repeats`` epochs after one untimed epoch."""
    run = _epoch_function()
    out = []
    for sizes, batch, dtype, m in cases:
        m = max(batch, int(m * scale))
        prob = make_problem(sizes, dtype=dtype, m=m, learning_rate=0.001, output="sigmoid")
        lay = Layout(sizes)
        p0 = lay.pack(prob.weights, prob.biases, np.dtype(dtype))
        order = np.arange(m)
        lr = dtype(0.001)
        run(p0.copy(), lay.sizes, prob.X, prob.Y, order, batch, lr)
        best = np.inf
        for _ in range(repeats):
            p = p0.copy()
            t0 = time.perf_counter()
            run(p, lay.sizes, prob.X, prob.Y, order, batch, lr)
            best = min(best, time.perf_counter() - t0)
        out.append((f"{'-'.join(map(str, sizes))} {np.dtype(dtype).name} batch {batch}", m / best))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="1 %% of the examples, 1 repeat (a smoke run)")
    args = ap.parse_args(argv)
    rows = measure(repeats=1, scale=0.01) if args.quick else measure(repeats=args.repeats)
    print(" | ".join(f"{label}: {rate:,.0f}" for label, rate in rows), flush=True)


if __name__ == "__main__":
    main()
