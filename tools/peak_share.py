"""Issue 12's goal 3 against the drift: an epoch's true GFLOP/s as a share of one core's BLAS matmul rate.

Goal 3 asks the big nets' mini-batch epochs for at least 90 % of the core's measured BLAS matmul
peak, counting a training step's true flops: 4·n0·n1 for the first layer (no dA[0] is formed) plus
6·n_l·n_(l−1) for the others.  ``fastbp bench`` prints a peak once per run and the epochs minutes
later, with nominal flops (6·n0·n1 for the first layer); on this project's Zen 3 VM the peak read
64.8 and 91.2 GFLOP/s (float32) in two runs 16 minutes apart, and an epoch's speed drifts 10-35 %
within minutes, so a share taken that way moves by a tenth or more.  Here each round times the matmul
(an n × n product, best of three calls, BLAS held to one thread) and then one epoch of the
dispatcher's one-thread kernel, and the share is that round's ratio; the median and the range over
the rounds are printed.  Pin the process to one core::

    taskset -c 1 python tools/peak_share.py
    taskset -c 1 python tools/peak_share.py --nets 784-128-10 --dtypes float64 --batches 64 256 --rounds 9

``--step-products`` also times, in the same rounds, the matrix products of the epoch's training steps
alone (Z[l] = W[l] A[l−1], dW[l] = dZ[l] A[l−1]ᵀ and, from the second layer, W[l]ᵀ dZ[l], at the batch's
shapes, operands in cache) by the same BLAS on one thread, called from compiled code
(:func:`_step_products`): what an epoch would run at if the installed BLAS did the products and
nothing else had a cost.  Its share and the epoch ÷ products ratio are printed beside the epoch's::

    taskset -c 1 python tools/peak_share.py --nets 64-32-1 64-64-10 --batches 32 256 --step-products
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit
from numba.typed import List

from fastbp._blas import one_blas_thread
from fastbp._dispatch import run_epoch, select_epoch
from fastbp.activations import get_activation
from fastbp.bench import true_flops_per_example

sys.path.insert(0, str(Path(__file__).resolve().parent))
from columns_sweep import _problem  # noqa: E402  (the sweep's problems: seeded data, a shuffled order)


@njit
def _step_products(W, A, Z, dW, dA, batches):
    """``batches`` steps' matrix products by BLAS (``np.dot`` in compiled code): per layer l,
    Z[l] = W[l] A[l−1], dW[l] = dZ[l] A[l−1]ᵀ (Z[l] standing in for dZ[l]) and, for l ≥ 2,
    dA[l−1] = W[l]ᵀ dZ[l] (``A[0]``: the batch's Xᵀ; ``dA[l]`` the buffer for layer l's)."""
    for _ in range(batches):
        for l in range(len(W)):
            np.dot(W[l], A[l], Z[l])
        for l in range(len(W) - 1, -1, -1):
            np.dot(Z[l], A[l].T, dW[l])
            if l > 0:
                np.dot(W[l].T, Z[l], dA[l])


def _products_problem(sizes: list[int], dtype, batch: int):
    """Operands for :func:`_step_products`: typed lists of W[l], A[l−1], Z[l], dW[l], dA[l−1]."""
    rng = np.random.default_rng(2)
    W, A, Z, dW, dA = List(), List(), List(), List(), List()
    for n_in, n_out in zip(sizes, sizes[1:]):
        W.append(rng.standard_normal((n_out, n_in)).astype(dtype))
        A.append(rng.standard_normal((n_in, batch)).astype(dtype))
        Z.append(np.empty((n_out, batch), dtype))
        dW.append(np.empty((n_out, n_in), dtype))
        dA.append(np.empty((n_in, batch), dtype))
    return W, A, Z, dW, dA


def measure(
    net: str,
    dtype,
    batch: int,
    rounds: int = 7,
    n: int = 1024,
    m: int | None = None,
    products: bool = False,
    stored_order: bool = False,
) -> dict:
    """``{"share": median, "low", "high", "epoch_gflops", "blas_gflops" (medians), "kernel"}`` of one
    net, dtype and batch size: the epoch's true GFLOP/s ÷ the matmul's, round by round; with
    ``products``, also ``"products_gflops"`` and ``"products_share"`` (medians: the step's products
    alone, :func:`_step_products`, over the epoch's whole batches) and ``"epoch_over_products"``
    (median of the rounds' epoch ÷ products speed).  The epoch visits the examples in a shuffled
    order, or with ``stored_order`` in the order they are stored (as ``fastbp bench`` and its peers do)."""
    sizes = [int(v) for v in net.split("-")]
    flops = true_flops_per_example(sizes)
    m = m or max(8 * batch, int(4e9 / flops) // batch * batch)  # ~0.1 s an epoch on the big nets
    p0, s, X, Y, order, out = _problem(net, dtype, m)
    if stored_order:
        order = np.arange(m, dtype=np.int64)
    act = get_activation("tanh")
    lr = np.dtype(dtype).type(0.01)
    rng = np.random.default_rng(1)
    A = rng.standard_normal((n, n)).astype(dtype)
    B = rng.standard_normal((n, n)).astype(dtype)

    def epoch():
        p = p0.copy()
        t = time.perf_counter()
        run_epoch(p, s, X, Y, order, batch, lr, act, out, threads=False)
        return time.perf_counter() - t

    def matmul():
        best = np.inf
        for _ in range(3):
            t = time.perf_counter()
            A @ B
            best = min(best, time.perf_counter() - t)
        return best

    operands = _products_problem(sizes, dtype, batch)
    batches = m // batch

    def step_products():
        t = time.perf_counter()
        _step_products(*operands, batches)
        return time.perf_counter() - t

    with one_blas_thread():
        epoch(), matmul()  # compile, warm
        if products:
            _step_products(*operands, 1)
        ep, mm, pr = [], [], []
        for _ in range(rounds):
            mm.append(2 * n**3 / matmul() / 1e9)
            ep.append(m * flops / epoch() / 1e9)
            if products:
                pr.append(batches * batch * flops / step_products() / 1e9)
    shares = np.asarray(ep) / np.asarray(mm)
    extra = {}
    if products:
        extra = {
            "products_gflops": float(np.median(pr)),
            "products_share": float(np.median(np.asarray(pr) / np.asarray(mm))),
            "epoch_over_products": float(np.median(np.asarray(ep) / np.asarray(pr))),
        }
    return extra | {
        "net": net,
        "dtype": np.dtype(dtype).name,
        "batch": batch,
        "share": float(np.median(shares)),
        "low": float(shares.min()),
        "high": float(shares.max()),
        "epoch_gflops": float(np.median(ep)),
        "blas_gflops": float(np.median(mm)),
        "kernel": select_epoch(s, batch, out, act.code),
    }


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["784-128-10", "256-256-10"])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=1024, help="the matmul's n (n × n by n × n)")
    ap.add_argument("--examples", type=int, default=None, help="examples per epoch (default: ~4e9 true flops)")
    ap.add_argument(
        "--step-products",
        action="store_true",
        help="also time the steps' matrix products alone by BLAS (one thread) and print epoch ÷ products",
    )
    ap.add_argument(
        "--stored-order",
        action="store_true",
        help="visit the examples in the order they are stored (fastbp bench's order), not shuffled",
    )
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.n < 1:
        ap.error("--rounds and --n must be at least 1")
    order = "the order stored" if a.stored_order else "a shuffled order"
    print(
        f"true GFLOP/s of one epoch ({order}) ÷ BLAS's {a.n}×{a.n} matmul, one thread, "
        f"median (range) of {a.rounds} rounds"
    )
    for net in a.nets:
        for dt in a.dtypes:
            for b in a.batches:
                r = measure(net, np.dtype(dt).type, b, a.rounds, a.n, a.examples, a.step_products, a.stored_order)
                line = (
                    f"{net:>11} {dt:>7} batch {b:>4} | share {100 * r['share']:5.1f} % "
                    f"({100 * r['low']:5.1f}-{100 * r['high']:5.1f}) | epoch {r['epoch_gflops']:6.2f} | "
                    f"blas {r['blas_gflops']:6.2f} GFLOP/s | {r['kernel']}"
                )
                if a.step_products:
                    line += (
                        f" | products alone {r['products_gflops']:6.2f} GFLOP/s ({100 * r['products_share']:5.1f} %),"
                        f" epoch ÷ products {r['epoch_over_products']:.2f}"
                    )
                print(line, flush=True)


if __name__ == "__main__":
    main()
