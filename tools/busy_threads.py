"""fastbp's thread choice on an idle machine and beside a busy process, the same fits timed in one process.

    python tools/busy_threads.py                       # MLPClassifier((32,)) on the digits, 7 fits a cell
    python tools/busy_threads.py --hidden 100 --repeats 5 --max-iter 20

Three ways, interleaved fit by fit (``--repeats`` rounds; the median of each):

* ``default``: fastbp's choice (:func:`fastbp._dispatch._threaded`): the threaded twins while the
  machine's load leaves room (:func:`fastbp._dispatch._room_for_threads`), else the one-thread ones;
* ``threads``: the threaded twins regardless (``FASTBP_BUSY_CHECK=0``);
* ``one``: one Numba thread (``numba.set_num_threads(1)``, as ``NUMBA_NUM_THREADS=1``).

first with the machine idle, then with a busy loop (a child process spinning) on every CPU of this
process's affinity mask but the first.  Each fit starts as in a fresh process that imported fastbp
one load window (:data:`fastbp._busy.WINDOW_S`) before (:mod:`fastbp._busy`'s figures forgotten,
its window begun again), and the last column is the share of the
default fits' epochs that fastbp ran on two threads.  The fits give the same bits every way
(checked: the script fails if not), so the table is about speed only.  Compare within one run: the
VM's neighbours move absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

#: A busy loop pinned to one CPU; it stops by itself after ten minutes or when its parent is gone.
SPINNER = """import os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
parent, end = os.getppid(), time.monotonic() + 600
while os.getppid() == parent and time.monotonic() < end:
    pass
"""


def _spinners(cpus: list[int]) -> list[subprocess.Popen]:
    """One busy-looping child pinned to each of ``cpus``."""
    return [subprocess.Popen([sys.executable, "-c", SPINNER, str(c)]) for c in cpus]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=32, help="hidden units (default 32)")
    ap.add_argument("--max-iter", type=int, default=200, help="epochs (scikit-learn's max_iter, default 200)")
    ap.add_argument("--repeats", type=int, default=7, help="fits of each way in each condition (default 7)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.hidden < 1 or args.max_iter < 1:
        ap.error("--hidden, --max-iter and --repeats must be at least 1")

    import numba
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning

    from fastbp import MLPClassifier, _busy, _dispatch
    from fastbp.bench import cpu_info, describe_cpu

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or numba.config.NUMBA_NUM_THREADS < 2:
        print("busy_threads: needs two CPUs and two Numba threads", file=sys.stderr)
        return 2
    X, y = load_digits(return_X_y=True)
    X = X / 16.0

    def fit() -> tuple[float, bytes]:
        clf = MLPClassifier(hidden_layer_sizes=(args.hidden,), max_iter=args.max_iter, random_state=0)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        return time.perf_counter() - t, np.concatenate([c.ravel() for c in clf.coefs_]).tobytes()

    ways = {
        "default": {"FASTBP_BUSY_CHECK": "1", "threads": numba.config.NUMBA_NUM_THREADS},
        "threads": {"FASTBP_BUSY_CHECK": "0", "threads": numba.config.NUMBA_NUM_THREADS},
        "one": {"FASTBP_BUSY_CHECK": "1", "threads": 1},
    }

    choices: list[bool] = []  # what fastbp's thread choice said at each epoch of the fit
    choose = _dispatch._threaded

    def spy(threads):
        choices.append(choose(threads))
        return choices[-1]

    def run(way: str) -> tuple[float, bytes, float]:
        os.environ["FASTBP_BUSY_CHECK"] = ways[way]["FASTBP_BUSY_CHECK"]
        numba.set_num_threads(ways[way]["threads"])
        _busy._window.start, _busy._window.last = None, (0.0, 0.0)  # as a fresh process imports fastbp,
        _busy.load()
        time.sleep(_busy.WINDOW_S)  # then reads its data (one window, untimed)
        choices.clear()
        seconds, bits = fit()
        return seconds, bits, sum(choices) / max(len(choices), 1)

    print(
        f"# {describe_cpu(cpu_info())}; CPUs {cpus}; MLPClassifier(hidden_layer_sizes=({args.hidden},)), digits, "
        f"max_iter={args.max_iter}; median of {args.repeats} fits, seconds"
    )
    print("| machine | " + " | ".join(ways) + " | default's epochs on two threads |")
    print("|---|" + "---:|" * (len(ways) + 1))
    before = os.environ.get("FASTBP_BUSY_CHECK"), numba.get_num_threads()
    _dispatch._threaded = spy
    try:
        return _table(run, ways, cpus, args.repeats)
    finally:  # this process's settings as they were
        _dispatch._threaded = choose
        if before[0] is None:
            os.environ.pop("FASTBP_BUSY_CHECK", None)
        else:
            os.environ["FASTBP_BUSY_CHECK"] = before[0]
        numba.set_num_threads(before[1])


def _table(run, ways: dict, cpus: list[int], repeats: int) -> int:
    """The table's rows: each condition, each way ``repeats`` times, interleaved."""
    run("default")  # compile (or load) the kernels, untimed
    reference_bits = None
    for condition in ("idle", "busy loop on the other CPUs"):
        children = _spinners(cpus[1:]) if condition != "idle" else []
        try:
            time.sleep(0.3)  # the spinners running
            times: dict[str, list[float]] = {way: [] for way in ways}
            threaded = []
            for _ in range(repeats):
                for way in ways:
                    seconds, bits, share = run(way)
                    times[way].append(seconds)
                    if way == "default":
                        threaded.append(share)
                    if reference_bits is None:
                        reference_bits = bits
                    elif bits != reference_bits:
                        print(f"busy_threads: {way} ({condition}) gave other bits", file=sys.stderr)
                        return 1
        finally:
            for child in children:
                child.kill()
                child.wait()
        cells = " | ".join(f"{statistics.median(times[way]):.3f}" for way in ways)
        print(f"| {condition} | {cells} | {100 * statistics.mean(threaded):.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
