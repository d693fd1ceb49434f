"""The split column kernels (issue 12, goal 6): each batch in two halves, on one thread and on two.

For each net, dtype, batch size and optimizer (``sgd``: plain gradient descent, the
``_columns_epoch*`` rows; ``adam``: the estimators' default, the ``_columns_epoch_opt*`` rows),
examples/s of one epoch:

* ``whole``: the column kernel with each batch whole (``_columns_epoch[_opt]``), one thread;
* ``split/1``: the split kernel on its one-thread twin (``threads=False``);
* ``split/N``: the split kernel on its threaded twin, ``--threads`` Numba threads.

Best of ``--repeats`` one-epoch runs (~1e9 flops each, at least 8 batches), tanh hidden units, softmax output;
BLAS held to one thread as the dispatcher holds it.  Run it on an idle machine, unpinned
(the threads need the cores)::

    NUMBA_NUM_THREADS=2 python tools/split_speed.py
    NUMBA_NUM_THREADS=2 python tools/split_speed.py --nets 64-100-10 --batches 200 --opt adam

It re-measures ``SPLIT_MIN_BATCH``, ``SPLIT_MIN_BATCH_LARGE`` and ``SPLIT_MIN_WEIGHTS`` of :mod:`fastbp._dispatch`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numba
import numpy as np

from fastbp import _dispatch
from fastbp.activations import get_activation
from fastbp.optimizers import Adam

sys.path.insert(0, str(Path(__file__).resolve().parent))
from columns_sweep import _problem, _rate  # noqa: E402  (the same problems and timing as the sweep)

NETS = ("64-100-10", "100-64-10", "784-128-10", "256-256-10")
BATCHES = (64, 200, 256, 1024)


def measure(net: str, dtype, batch: int, opt: str, repeats: int = 3, m: int | None = None) -> dict:
    """examples/s of each way (see the module docstring) for one net, dtype, batch and optimizer."""
    sizes = [int(n) for n in net.split("-")]
    flops = sum(a * b for a, b in zip(sizes, sizes[1:]))
    m = m or max(8 * batch, min(200_000, int(1e9 / (6 * flops))))
    p0, s, X, Y, order, out = _problem(net, dtype, m)
    act = get_activation("tanh")
    lr = np.dtype(dtype).type(0.01)
    r = {"net": net, "dtype": np.dtype(dtype).name, "batch": batch, "opt": opt}
    if opt == "sgd":

        def way(epoch, threads):
            return lambda p: _dispatch.run_epoch(p, s, X, Y, order, batch, lr, act, out, threads=threads, epoch=epoch)

        whole, split = "_columns_epoch", "_columns_epoch_split"
    else:

        def way(epoch, threads):
            adam = Adam(0.001)

            def run(p):
                adam.reset()
                adam.bind(s, p.dtype)
                tail = (adam.kind, adam.hyper(), adam.state, adam.counter, 0.0, 1.0)
                _dispatch.run_epoch_opt(p, s, X, Y, order, batch, act, out, *tail, epoch=epoch, threads=threads)

            return run

        whole, split = "_columns_epoch_opt", "_columns_epoch_opt_split"
    r["whole"] = _rate(way(whole, False), p0, m, repeats)
    r["split/1"] = _rate(way(split, False), p0, m, repeats)
    r["split/N"] = _rate(way(split, True), p0, m, repeats)
    return r


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    ap.add_argument("--opt", nargs="+", choices=["sgd", "adam"], default=["sgd", "adam"])
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--examples", type=int, default=None, help="examples per epoch (default: ~1e9 flops)")
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    n = args.threads
    print(f"examples/s, one epoch, best of {args.repeats}; N = {n} Numba threads")
    for net in args.nets:
        for dt in args.dtypes:
            for opt in args.opt:
                for bs in args.batches:
                    r = measure(net, np.dtype(dt).type, bs, opt, args.repeats, args.examples)
                    print(
                        f"{net:>10} {dt:>7} {opt:>4} batch {bs:>4} | whole {r['whole']:>10,.0f} | "
                        f"split/1 {r['split/1']:>10,.0f} | split/{n} {r['split/N']:>10,.0f} | "
                        f"split/1 / whole {r['split/1'] / r['whole']:4.2f} | split/{n} / whole "
                        f"{r['split/N'] / r['whole']:4.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
