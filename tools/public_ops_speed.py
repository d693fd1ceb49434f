"""fastbp's public batch operations against its NumPy reference, side by side (issue 12, goal 4).

``fastbp.kernels.{forward, predict, loss, gradients, backward, train_epoch}`` against the same functions
of ``fastbp.reference`` on one batch of m examples (``train_epoch``: one epoch at ``--batch``;
``backward``: from each module's own ``forward`` of the batch, goal 4 does not list it), both
called as a user calls them (inputs checked each call), BLAS held to one thread (threadpoolctl),
best of ``--repeats`` interleaved calls; prints reference time / fastbp time (above 1: fastbp is
faster).  Pin it to one core::

    taskset -c 1 python tools/public_ops_speed.py
    taskset -c 1 python tools/public_ops_speed.py --nets 64-64-10 --dtypes float32 --m 1024

``--forward-ways`` times ``predict``, ``forward`` and ``loss`` two ways instead, both through
``fastbp.kernels`` as a user calls them: the examples as rows (``fastbp._fast.packed_forward``) and
the column pass (``fastbp._fast.forward``), and prints column time / packed time; it re-measures
``PACKED_MIN_WEIGHTS`` and ``PACKED_MIN_WEIGHTS_SOFTMAX`` of ``fastbp._dispatch``::

    taskset -c 1 python tools/public_ops_speed.py --forward-ways --nets 2-4-1 16-16-1 64-32-1 64-64-10
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastbp import kernels, reference
from fastbp.testing import make_problem

NETS = ("2-4-1", "64-32-1", "64-64-10", "784-128-10", "256-256-10")
OPS = ("forward", "predict", "loss", "gradients", "backward", "train_epoch")


def _calls(module, prob, out: str, batch: int):
    W, b, X, Y = prob.weights, prob.biases, prob.X, prob.Y
    Wc, bc = [w.copy() for w in W], [v.copy() for v in b]
    Z, A = module.forward(W, b, X, "tanh", out)  # each module's own stored pass, in its own memory order
    return {
        "forward": lambda: module.forward(W, b, X, "tanh", out),
        "predict": lambda: module.predict(W, b, X, "tanh", out),
        "loss": lambda: module.loss(W, b, X, Y, "tanh", out),
        "gradients": lambda: module.gradients(W, b, X, Y, "tanh", out),
        "backward": lambda: module.backward(W, b, X, Y, Z, A, "tanh", out),
        "train_epoch": lambda: module.train_epoch(Wc, bc, X, Y, 1e-4, batch_size=batch, activation="tanh", output=out),
    }


def measure(net: str, dtype, m: int, batch: int, repeats: int) -> dict:
    """{op: reference seconds / fastbp seconds}."""
    import scipy.linalg.cython_blas  # noqa: F401  (SciPy's BLAS loaded, so that it is limited too)
    from threadpoolctl import threadpool_limits

    sizes = [int(n) for n in net.split("-")]
    out = "sigmoid" if sizes[-1] == 1 else "softmax"
    prob = make_problem(sizes, dtype=dtype, output=out, m=m, seed=0)
    fast, ref = _calls(kernels, prob, out, batch), _calls(reference, prob, out, batch)
    ratios = {}
    with threadpool_limits(1, "blas"):
        for op in OPS:
            fast[op](), ref[op]()  # compile, warm
            best = {"fast": np.inf, "ref": np.inf}
            for _ in range(repeats):
                for name, f in (("fast", fast[op]), ("ref", ref[op])):
                    t = time.perf_counter()
                    f()
                    best[name] = min(best[name], time.perf_counter() - t)
            ratios[op] = best["ref"] / best["fast"]
    return ratios


FORWARD_OPS = ("predict", "forward", "loss")


def measure_forward_ways(net: str, dtype, m: int, repeats: int) -> dict:
    """{op: column-pass seconds / packed seconds} for predict, forward and loss of ``m`` rows
    (both above the rows kernels' thresholds), calls interleaved, best of ``repeats``."""
    from unittest import mock

    from fastbp import _dispatch

    sizes = [int(n) for n in net.split("-")]
    out = "sigmoid" if sizes[-1] == 1 else "softmax"
    prob = make_problem(sizes, dtype=dtype, output=out, m=m, seed=0)
    calls = _calls(kernels, prob, out, 1)
    ways = {"packed": lambda *a: True, "columns": lambda *a: False}
    best = {(op, way): np.inf for op in FORWARD_OPS for way in ways}
    with mock.patch.object(_dispatch, "FAST_FORWARD_MIN_ROWS", 0):
        for op in FORWARD_OPS:
            for chooser in ways.values():  # compile, warm
                with mock.patch.object(_dispatch, "packed_forward", chooser):
                    calls[op]()
            for _ in range(repeats):
                for way, chooser in ways.items():
                    with mock.patch.object(_dispatch, "packed_forward", chooser):
                        t = time.perf_counter()
                        calls[op]()
                        best[op, way] = min(best[op, way], time.perf_counter() - t)
    return {op: best[op, "columns"] / best[op, "packed"] for op in FORWARD_OPS}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--m", type=int, default=4096, help="examples per call (default 4096)")
    ap.add_argument("--batch", type=int, default=32, help="train_epoch's batch size (default 32)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--forward-ways",
        action="store_true",
        help="predict, forward and loss with the examples as rows against the column pass",
    )
    a = ap.parse_args(argv)
    if a.forward_ways:
        import scipy.linalg.cython_blas  # noqa: F401  (SciPy's BLAS loaded, so that it is limited too)
        from threadpoolctl import threadpool_limits

        print("column-pass time / packed time (above 1: the examples as rows faster), m =", a.m)
        print(f"{'net':>11} {'dtype':>7} | " + " | ".join(f"{op:>9}" for op in FORWARD_OPS))
        with threadpool_limits(1, "blas"):
            for net in a.nets:
                for dt in a.dtypes:
                    r = measure_forward_ways(net, np.dtype(dt).type, a.m, a.repeats)
                    print(f"{net:>11} {dt:>7} | " + " | ".join(f"{r[op]:>8.2f}x" for op in FORWARD_OPS), flush=True)
        return
    print("reference time / fastbp time (above 1: fastbp faster), m =", a.m, "| train_epoch at batch", a.batch)
    print(f"{'net':>11} {'dtype':>7} | " + " | ".join(f"{op:>11}" for op in OPS))
    for net in a.nets:
        for dt in a.dtypes:
            r = measure(net, np.dtype(dt).type, a.m, a.batch, a.repeats)
            print(f"{net:>11} {dt:>7} | " + " | ".join(f"{r[op]:>10.2f}x" for op in OPS), flush=True)


if __name__ == "__main__":
    main()
