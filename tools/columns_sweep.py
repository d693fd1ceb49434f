"""Mini-batch speed against the per-example path, and the column kernels' thresholds.

For each net, dtype and batch size: examples/s of one epoch of the dispatcher's per-example
epoch (batch 1) and of the column kernel ``_columns_epoch`` four ways (its loops for every
layer, BLAS for every layer, its ``_tiles`` twin: register tiles for every layer, and as
dispatched: the twin where ``_dispatch.uses_tiles``, else BLAS from ``_dispatch.blas_min_weights``),
of the per-example-pass batch kernel ``_batch_epoch`` it replaced, of the deferred-update kernel
``_deferred_tiles_epoch`` and of the tiny batch kernels; the
last column is what the dispatcher runs over the per-example path (issue 12's goal 1: at least
1).  Best of ``--repeats`` epochs, tanh hidden units, σ output (softmax for several outputs).  Pin it to one core::

    taskset -c 1 python tools/columns_sweep.py
    taskset -c 1 python tools/columns_sweep.py --nets 2-4-1 16-16-1 --batches 4 8 --dtypes float32

It re-measures the thresholds ``BLAS_MIN_WEIGHTS``, ``TILES_MIN_BATCH``, ``DEFERRED_MAX_BATCH``
(and ``_DEEP``, ``_LARGE``) and ``TINY_MAX_BATCH_NARROW`` of :mod:`fastbp._dispatch`.  With ``--optimizer``
(Adam, the estimators' default) it times the optimizer rows instead, ``_columns_epoch_opt``
against ``_batch_epoch_opt`` and what :func:`fastbp._dispatch.run_epoch_opt` dispatches,
which re-measures ``COLUMNS_OPT_MIN_BATCH``::

    taskset -c 1 python tools/columns_sweep.py --optimizer --nets 5-16-3 64-64-10 --batches 2 3 4 8

With ``--interleave`` it measures goal 1 alone on a machine whose speed drifts: per net and dtype, the
per-example epoch and the dispatched epoch at each batch size, one after the other in each of
``--repeats`` rounds, and prints the median over the rounds of each round's ratio (batch's
examples/s ÷ the same round's per-example examples/s), with the lowest.  A ratio taken from
neighbouring epochs is not moved by the drift (on this project's Zen 3 VM, 10-35 % within minutes)
that can flip a comparison of two cells timed minutes apart::

    taskset -c 1 python tools/columns_sweep.py --interleave --repeats 7
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastbp import _dispatch
from fastbp._blas import one_blas_thread
from fastbp._dispatch import run_epoch, run_epoch_opt
from fastbp.activations import get_activation
from fastbp.losses import OUT_SIGMOID, OUT_SOFTMAX
from fastbp.optimizers import Adam
from fastbp.params import Layout
from fastbp.testing import make_problem

NETS = ("2-4-1", "8-8-1", "16-16-1", "64-32-1", "64-64-10", "784-128-10", "256-256-10")
BATCHES = (4, 8, 32, 128, 256, 1024)


def _problem(net: str, dtype, m: int):
    sizes = [int(n) for n in net.split("-")]
    out = "sigmoid" if sizes[-1] == 1 else "softmax"
    prob = make_problem(sizes, dtype=dtype, output=out, m=m, seed=0, learning_rate=0.01)
    lay = Layout(sizes)
    p0 = lay.pack(prob.weights, prob.biases, np.dtype(dtype))
    order = np.random.default_rng(0).permutation(m).astype(np.int64)
    return p0, lay.sizes, prob.X, prob.Y, order, OUT_SIGMOID if out == "sigmoid" else OUT_SOFTMAX


def _sweep_problem(net: str, dtype, m: int | None):
    """One net and dtype's problem: ``(m, p0, sizes, X, Y, order, out, act, lr)``, m examples (default
    about 2e8 flops an epoch, 2,000-100,000), tanh hidden units, α = 0.01."""
    sizes = [int(n) for n in net.split("-")]
    flops = sum(a * b for a, b in zip(sizes, sizes[1:]))
    m = m or max(2_000, min(100_000, int(2e8 / (6 * flops))))
    p0, s, X, Y, order, out = _problem(net, dtype, m)
    return m, p0, s, X, Y, order, out, get_activation("tanh"), np.dtype(dtype).type(0.01)


def _rate(run, p0, m: int, repeats: int) -> float:
    run(p0.copy())  # compile, warm
    best = np.inf
    for _ in range(repeats):
        p = p0.copy()
        t = time.perf_counter()
        run(p)
        best = min(best, time.perf_counter() - t)
    return m / best


def measure(net: str, dtype, batch_sizes, repeats: int = 3, m: int | None = None) -> list[dict]:
    """One row per batch size: examples/s of each way (see the module docstring)."""
    m, p0, s, X, Y, order, out, act, lr = _sweep_problem(net, dtype, m)
    limit = float(np.finfo(dtype).max) / 4
    row = _dispatch._ROWS["_columns_epoch"]
    one = _rate(lambda p: run_epoch(p, s, X, Y, order, 1, lr, act, out, threads=False), p0, m, repeats)
    rows = []
    for bs in batch_sizes:

        def col(blas_min, tiles=False, bs=bs):
            columns = row.kernel(tiles=tiles)

            def run(p):
                with one_blas_thread():
                    columns(p, s, X, Y, order, bs, lr, act.code, out, limit, blas_min, False)

            return run

        r = {"net": net, "dtype": np.dtype(dtype).name, "batch": bs, "per_example": one}
        r["loops"] = _rate(col(_dispatch.NO_BLAS), p0, m, repeats)
        r["blas"] = _rate(col(0), p0, m, repeats)
        r["tiles"] = _rate(col(_dispatch.NO_BLAS, True), p0, m, repeats)
        r["columns"] = _rate(col(_dispatch.blas_min_weights(s, bs), _dispatch.uses_tiles(s, bs)), p0, m, repeats)
        r["batch_epoch"] = _rate(
            lambda p, bs=bs: run_epoch(p, s, X, Y, order, bs, lr, act, out, threads=False, epoch="_batch_epoch"),
            p0,
            m,
            repeats,
        )
        r["deferred"] = (
            _rate(
                lambda p, bs=bs: run_epoch(
                    p, s, X, Y, order, bs, lr, act, out, threads=False, epoch="_deferred_tiles_epoch"
                ),
                p0,
                m,
                repeats,
            )
            if 1 < bs <= _dispatch.DEFERRED_BATCH_CAP
            else float("nan")
        )
        case = _dispatch._case(s, bs, out, None)
        tiny = next((n for n in ("_tiny4_batch_epoch", "_tiny_batch_epoch") if _dispatch._ROWS[n].requires(case)), "")
        r["tiny"] = (
            _rate(
                lambda p, bs=bs: run_epoch(p, s, X, Y, order, bs, lr, act, out, threads=False, epoch=tiny),
                p0,
                m,
                repeats,
            )
            if tiny
            else float("nan")
        )
        r["kernel"] = _dispatch.select_epoch(s, bs, out, act.code)
        r["dispatched"] = _rate(
            lambda p, bs=bs: run_epoch(p, s, X, Y, order, bs, lr, act, out, threads=False), p0, m, repeats
        )
        rows.append(r)
    return rows


def measure_interleaved(net: str, dtype, batch_sizes, rounds: int = 7, m: int | None = None) -> list[dict]:
    """Goal 1 against the drift: one row per batch size with ``ratio`` (the median over ``rounds``
    of the dispatched epoch's examples/s at that batch ÷ the per-example epoch's, both timed in the
    same round, per-example first), ``lowest`` (the round with the lowest ratio) and both rates
    (best of the rounds)."""
    m, p0, s, X, Y, order, out, act, lr = _sweep_problem(net, dtype, m)

    def epoch(bs):
        return lambda p: run_epoch(p, s, X, Y, order, bs, lr, act, out, threads=False)

    runs = {bs: epoch(bs) for bs in (1, *batch_sizes)}
    times: dict[int, list[float]] = {bs: [] for bs in runs}
    for run in runs.values():
        run(p0.copy())  # compile, warm
    for _ in range(rounds):
        for bs, run in runs.items():
            p = p0.copy()
            t = time.perf_counter()
            run(p)
            times[bs].append(time.perf_counter() - t)
    one = np.asarray(times[1])
    rows = []
    for bs in batch_sizes:
        ratios = one / np.asarray(times[bs])  # same m: the time ratio is the examples/s ratio
        rows.append(
            {
                "net": net,
                "dtype": np.dtype(dtype).name,
                "batch": bs,
                "per_example": m / one.min(),
                "dispatched": m / min(times[bs]),
                "ratio": float(np.median(ratios)),
                "lowest": float(ratios.min()),
                "kernel": _dispatch.select_epoch(s, bs, out, act.code),
            }
        )
    return rows


def measure_optimizer(net: str, dtype, batch_sizes, repeats: int = 3, m: int | None = None) -> list[dict]:
    """One row per batch size: examples/s of an Adam epoch on ``_columns_epoch_opt``, on
    ``_batch_epoch_opt`` and as dispatched (one thread; the state is reset for every epoch)."""
    m, p0, s, X, Y, order, out, act, _ = _sweep_problem(net, dtype, m)

    def adam_epoch(bs, epoch=None):
        def run(p):
            opt = Adam(0.001)
            opt.bind(s, np.dtype(dtype))
            tail = (opt.kind, opt.hyper(), opt.state, opt.counter, 0.0, 1.0)
            run_epoch_opt(p, s, X, Y, order, bs, act, out, *tail, epoch=epoch, threads=False)

        return run

    rows = []
    for bs in batch_sizes:
        r = {"net": net, "dtype": np.dtype(dtype).name, "batch": bs}
        r["columns_opt"] = _rate(adam_epoch(bs, "_columns_epoch_opt"), p0, m, repeats)
        r["batch_epoch_opt"] = _rate(adam_epoch(bs, "_batch_epoch_opt"), p0, m, repeats)
        r["kernel"] = _dispatch.select_optimizer_epoch(s, bs, out, act.code)
        r["dispatched"] = _rate(adam_epoch(bs), p0, m, repeats)
        rows.append(r)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--examples", type=int, default=None, help="examples per epoch (default: ~2e8 flops)")
    ap.add_argument("--optimizer", action="store_true", help="time the Adam rows (COLUMNS_OPT_MIN_BATCH)")
    ap.add_argument(
        "--interleave",
        action="store_true",
        help="goal 1 alone: per-example and each batch alternated, --repeats rounds",
    )
    args = ap.parse_args(argv)
    if args.interleave:
        header = (
            f"goal 1, interleaved: dispatched epoch at each batch ÷ per-example epoch, median (lowest) of "
            f"{args.repeats} rounds; examples/s best of the rounds"
        )
        measure_fn, line = measure_interleaved, _interleaved_line
    elif args.optimizer:
        header = f"examples/s, one Adam epoch, best of {args.repeats} | ratio: columns / _batch_epoch_opt"
        measure_fn, line = measure_optimizer, _optimizer_line
    else:
        header = (
            f"examples/s, one epoch, best of {args.repeats} | columns: the column kernel, tiles or BLAS as "
            "dispatched | dispatched: what run_epoch runs (one thread) | ratio: dispatched / per-example"
        )
        measure_fn, line = measure, _sweep_line
    print(header)
    for net in args.nets:
        for dt in args.dtypes:
            for r in measure_fn(net, np.dtype(dt).type, args.batches, args.repeats, args.examples):
                print(f"{net:>11} {dt:>7} batch {r['batch']:>4} | " + line(r), flush=True)


def _interleaved_line(r: dict) -> str:
    return (
        f"ratio {r['ratio']:5.2f} (lowest {r['lowest']:5.2f}) | per-example {r['per_example']:>12,.0f} | "
        f"dispatched {r['dispatched']:>12,.0f} ({r['kernel']})"
    )


def _optimizer_line(r: dict) -> str:
    return (
        f"columns_opt {r['columns_opt']:>12,.0f} | _batch_epoch_opt {r['batch_epoch_opt']:>12,.0f} | "
        f"dispatched {r['dispatched']:>12,.0f} ({r['kernel']}) | ratio {r['columns_opt'] / r['batch_epoch_opt']:5.2f}"
    )


def _sweep_line(r: dict) -> str:
    return (
        f"per-example {r['per_example']:>12,.0f} | loops {r['loops']:>12,.0f} | blas {r['blas']:>12,.0f} | "
        f"tiles {r['tiles']:>12,.0f} | columns {r['columns']:>12,.0f} | _batch_epoch {r['batch_epoch']:>12,.0f} | "
        f"deferred {r['deferred']:>12,.0f} | tiny {r['tiny']:>12,.0f} | "
        f"dispatched {r['dispatched']:>12,.0f} ({r['kernel']}) | ratio {r['dispatched'] / r['per_example']:5.2f}"
    )


if __name__ == "__main__":
    main()
