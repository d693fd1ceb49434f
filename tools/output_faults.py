"""Page faults and time of a loop of ``kernels.forward`` (or ``backward``) calls, each case in a fresh process.

``fastbp.kernels.forward`` returns new Z and A buffers (m × n_units each) on every call, and
``backward`` builds buffers of that size too.  Whether a loop of calls reuses the memory the last
call freed, or maps and faults in fresh pages every time, is decided by the C library's allocator
and by what the process allocated before, so each case here runs in a process of its own: one
untimed call, then ``--calls`` timed ones, printing the median and best time and the minor page
faults per call (``getrusage``), for fastbp's operation and ``fastbp.reference``'s (BLAS held to
one thread).  Pin it to one core::

    taskset -c 1 python tools/output_faults.py
    taskset -c 1 python tools/output_faults.py --cases 64-64-10:4096:float64 --ops backward

It measured why ``fastbp._dispatch.forward`` and ``kernels.backward`` take their Z and A from one
allocation (their comments).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

CASES = ("64-64-10:4096:float64", "256-256-10:4096:float64", "64-64-10:16384:float32", "64-32-1:8192:float64")


def one(case: str, system: str, op: str, calls: int) -> dict:
    """``{"median_ms", "best_ms", "faults"}`` of ``calls`` calls of ``op`` in this process."""
    from threadpoolctl import threadpool_limits

    from fastbp import kernels, reference
    from fastbp.testing import make_problem

    net, m, dtype = case.split(":")
    sizes = [int(n) for n in net.split("-")]
    prob = make_problem(sizes, dtype=np.dtype(dtype), m=int(m), seed=0)
    module = kernels if system == "fastbp" else reference
    W, b, X, Y = prob.weights, prob.biases, prob.X, prob.Y
    with threadpool_limits(1, "blas"):
        Z, A = module.forward(W, b, X)  # compile, warm
        call = (lambda: module.forward(W, b, X)) if op == "forward" else (lambda: module.backward(W, b, X, Y, Z, A))
        call()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            result = call()
            times.append(time.perf_counter() - t)
            del result  # as a loop that keeps no result does
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls
    return {"median_ms": 1e3 * float(np.median(times)), "best_ms": 1e3 * min(times), "faults": faults}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), help="net:rows:dtype, e.g. 64-64-10:4096:float64")
    ap.add_argument("--ops", nargs="+", choices=["forward", "backward"], default=["forward", "backward"])
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--one", nargs=3, metavar=("CASE", "SYSTEM", "OP"), help=argparse.SUPPRESS)  # the child process
    a = ap.parse_args(argv)
    if a.calls < 1:
        ap.error("--calls must be at least 1")
    for case in a.cases:
        parts = case.split(":")
        if len(parts) != 3 or parts[2] not in ("float32", "float64") or not parts[1].isdigit():
            ap.error(f"--cases: {case!r} is not net:rows:dtype (e.g. 64-64-10:4096:float64)")
    if a.one:
        print(json.dumps(one(*a.one, a.calls)))
        return
    print(f"{a.calls} calls in a fresh process per cell: median / best ms, minor page faults per call")
    for case in a.cases:
        for op in a.ops:
            cells = []
            for system in ("fastbp", "reference"):
                run = subprocess.run(
                    [sys.executable, __file__, "--one", case, system, op, "--calls", str(a.calls)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(run.stdout.strip().splitlines()[-1])
                cells.append(f"{system} {r['median_ms']:8.2f} / {r['best_ms']:8.2f} ms, {r['faults']:7.0f} faults")
            print(f"{case:>24} {op:>8} | " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
