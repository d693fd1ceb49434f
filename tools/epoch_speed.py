"""Examples/s of the epoch ``MLP.fit`` runs, on a few nets: run it in two checkouts to compare them.

The fast epoch the dispatcher picks (one thread), per example and at batch 32, best of
``--repeats`` runs of one epoch each.  For a before/after comparison of a refactor, alternate
the two checkouts a few times on one pinned core and compare the best of each::

    for i in 1 2 3; do
      PYTHONPATH=/path/to/old taskset -c 1 python tools/epoch_speed.py
      PYTHONPATH=/path/to/new taskset -c 1 python tools/epoch_speed.py
    done

It also runs on commits from before the issue-11 move (``fastbp.fast_kernels.train_epoch``).

On a shared machine a best-of-each comparison is not enough: on this project's Zen 4 VM one
net's speed moved by 15-20 % between two processes a minute apart with the same code, and a
change that read +25 % in two alternated rounds of ``tools/peak_share.py`` read 0.94x in eight
pairs (docs/performance-kernels.md, "Chunks held to the L2: measured, not kept").  ``--compare``
does the alternation itself and reports paired ratios: ``--pairs`` pairs of processes, one per
checkout (each with that checkout first on ``PYTHONPATH``, the first of a pair alternating), each
process pinned to ``--cpu`` (default: the last CPU this process may use), and per case the median
and range of new/old over the pairs (above 1: the new checkout is faster)::

    python tools/epoch_speed.py --compare /path/to/old . --pairs 8 --cpu 1 \
        --cases 784-128-10:float64:256 784-128-10:float64:200

Read a change as real only where its median clears the range of a case it does not touch (put
one among the cases as a control).  Each process reports the file of every ``fastbp`` module it
ran, and the comparison stops unless they all lie in that process's checkout: with fastbp
installed in editable mode, a checkout missing a module would otherwise take it from the
installed tree without a word.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
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


#: The true flops of one ``--cases`` epoch, about (its examples: this over a step's true flops per example).
CASE_FLOPS = 1.5e9

#: ... and at most this many bytes of X (``fastbp bench``'s cap): a 2-4-1 epoch would be 27 M examples.
CASE_MAX_X_BYTES = 256 * 2**20


def parse_case(text: str):
    """``NET:DTYPE:BATCH[:M]`` (``784-128-10:float64:256``) as a :data:`CASES` row: M examples an
    epoch, by default about :data:`CASE_FLOPS` true flops (:func:`fastbp.bench.true_flops_per_example`)
    in whole batches.  ``--compare`` hands its children each case with its M, so that a checkout
    from before that function measures the same epochs."""
    try:
        net, dtype, batch, *rest = text.split(":")
        sizes = [int(n) for n in net.split("-")]
        batch = int(batch)
        dtype = np.dtype(dtype).type
        m = int(rest[0]) if len(rest) == 1 else None
    except (ValueError, TypeError):
        raise ValueError(f"a case is NET:DTYPE:BATCH, e.g. 784-128-10:float64:256; got {text!r}") from None
    bad = len(sizes) < 2 or min(sizes) < 1 or batch < 1 or dtype not in (np.float32, np.float64)
    if bad or len(rest) > 1 or (m is not None and m < batch):
        raise ValueError(f"a case needs 2+ positive layer sizes, float32 or float64, a batch >= 1: {text!r}")
    if m is None:
        from fastbp.bench import true_flops_per_example

        m = min(
            int(CASE_FLOPS / true_flops_per_example(sizes)), CASE_MAX_X_BYTES // (sizes[0] * np.dtype(dtype).itemsize)
        )
        m = max(batch, m // batch * batch)
    return sizes, batch, dtype, m


def case_text(case) -> str:
    """A :data:`CASES` row as ``NET:DTYPE:BATCH:M`` (what :func:`parse_case` reads back)."""
    sizes, batch, dtype, m = case
    return f"{'-'.join(map(str, sizes))}:{np.dtype(dtype).name}:{batch}:{m}"


def _child_rates(root: str, child_args: list[str]) -> dict[str, float]:
    """Run this tool in a process with ``root`` first on ``PYTHONPATH``; its ``{label: examples/s}``
    after checking that every ``fastbp`` module it ran came from ``root``."""
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, os.path.abspath(__file__), "--json", *child_args]
    done = subprocess.run(cmd, cwd=root, env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True)
    try:
        if done.returncode != 0:
            raise ValueError(f"exit status {done.returncode}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rates, files = result["rates"], result["files"]
    except (ValueError, IndexError, KeyError, TypeError) as e:
        raise SystemExit(
            f"epoch_speed.py in {root} failed ({e}):\n{done.stdout[-1000:]}\n{done.stderr[-2000:]}"
        ) from None
    outside = sorted(f for f in files if not os.path.realpath(f).startswith(os.path.join(root, "")))
    if outside:
        raise SystemExit(f"--compare: the process for {root} ran fastbp modules from elsewhere: {outside[:3]}")
    return rates


def _fastbp_files() -> list[str]:
    """The file of every ``fastbp`` module this process has imported."""
    mods = [m for name, m in sys.modules.items() if name == "fastbp" or name.startswith("fastbp.")]
    return sorted({m.__file__ for m in mods if getattr(m, "__file__", None)})


def compare(old: str, new: str, pairs: int, child_args: list[str]) -> list[tuple[str, float, float, float]]:
    """Alternate ``pairs`` pairs of processes of this tool, one per checkout root (``old`` and
    ``new`` first on ``PYTHONPATH``, the first of each pair alternating); print each pair's rates and
    return ``(label, median, min, max)`` of new/old per case."""
    roots = {"old": os.path.realpath(old), "new": os.path.realpath(new)}
    for root in roots.values():
        if not os.path.isfile(os.path.join(root, "fastbp", "__init__.py")):
            raise SystemExit(f"--compare: {root} is not a checkout of fastbp (no fastbp/__init__.py)")
    ratios: dict[str, list[float]] = {}
    for i in range(pairs):
        rates = {}
        for which in ("old", "new") if i % 2 == 0 else ("new", "old"):
            rates[which] = _child_rates(roots[which], child_args)
        print(f"pair {i + 1}: " + " | ".join(
            f"{label}: {rates['old'][label]:,.0f} -> {rates['new'][label]:,.0f}" for label in rates["old"]
        ), flush=True)  # fmt: skip
        for label in rates["old"]:
            ratios.setdefault(label, []).append(rates["new"][label] / rates["old"][label])
    return [(label, statistics.median(r), min(r), max(r)) for label, r in ratios.items()]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="1 %% of the examples, 1 repeat (a smoke run)")
    ap.add_argument(
        "--cases",
        nargs="+",
        metavar="NET:DTYPE:BATCH",
        help="instead of the default cases: 784-128-10:float64:256, ... (~1.5e9 flops an epoch)",
    )
    ap.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="pin the process to this CPU, one of its affinity mask (--compare: default the mask's last)",
    )
    ap.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD_ROOT", "NEW_ROOT"),
        help="alternate processes of the two checkouts and print paired ratios new/old",
    )
    ap.add_argument(
        "--pairs",
        type=int,
        default=8,
        help="--compare: pairs of processes, an even number keeps the order fair (default: 8)",
    )
    ap.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # a --compare child's output
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.pairs < 1:
        ap.error("--repeats and --pairs must be at least 1")
    try:
        cases = [parse_case(c) for c in args.cases] if args.cases else CASES
    except ValueError as e:
        ap.error(str(e))
    mask = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if args.cpu is not None and (mask is None or args.cpu not in mask):
        ap.error(
            f"--cpu {args.cpu}: not a CPU this process may run on ({sorted(mask) if mask else 'no affinity here'})"
        )
    if args.compare:
        if args.cpu is None and mask:
            args.cpu = max(mask)
        child = ["--repeats", str(args.repeats), *(["--quick"] if args.quick else [])]
        child += [*(["--cpu", str(args.cpu)] if args.cpu is not None else []), "--cases", *map(case_text, cases)]
        for label, med, lo, hi in compare(*args.compare, args.pairs, child):
            print(
                f"{label}: new/old median {med:.3f} (range {lo:.3f}-{hi:.3f} over {args.pairs} pairs; >1: new faster)"
            )
        return
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    rows = measure(cases, repeats=1, scale=0.01) if args.quick else measure(cases, repeats=args.repeats)
    if args.json:
        print(json.dumps({"rates": dict(rows), "files": _fastbp_files()}))
        return
    print(" | ".join(f"{label}: {rate:,.0f}" for label, rate in rows), flush=True)


if __name__ == "__main__":
    main()
