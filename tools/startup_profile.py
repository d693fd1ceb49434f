"""Cold start of a first ``fit`` + ``predict``: where the compile time goes, and before/after.

Two commands (run from the repository root; each run is a fresh interpreter with its own
empty ``NUMBA_CACHE_DIR``, so nothing is shared between runs)::

    python tools/startup_profile.py profile [--sizes 4,8,1] [--batch-size 1] [--dtype float64] [--examples 16]
    # the split column kernel's threaded twin against its one-thread twin (issue 12, goal 7):
    NUMBA_NUM_THREADS=2 python tools/startup_profile.py profile --sizes 784,128,10 --batch-size 200 --examples 400
    python tools/startup_profile.py compare OLD_ROOT NEW_ROOT [--runs 5]

``profile`` lists every function Numba compiles for the first ``fit`` and ``predict``
(fastbp's kernels and helpers, the vectorised bodies, Numba's own NumPy implementations),
with its *self* time (its nested compiles subtracted), the part of it spent in LLVM, and how
much of it the first ``fit`` and the first ``predict`` each compiled,
from Numba's ``numba:compile`` / ``numba:llvm_lock`` events.

``compare`` times the first ``fit`` + ``predict`` of the asv benchmark
(``benchmarks/bench_startup.py``: 4-8-1, 16 examples, one epoch, per-example) with an empty
cache (cold) and then with the cache the cold run filled (warm), alternating between two
checkouts (``OLD_ROOT``/``NEW_ROOT`` are put first on ``PYTHONPATH``: e.g. a ``git worktree``
of the old commit and ``.``).  It prints medians of wall and CPU seconds and the ratios
new/old; the machine is shared, so read the ratios, and the CPU seconds (what one idle core
would take), alongside the load that ``uptime`` reports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

_FIRST_CALL = r"""
import json, sys, time
sizes, batch_size, dtype, profile, examples = json.loads(sys.argv[1])
import numpy as np
if profile:
    from collections import defaultdict
    from numba.core import event
    stack, self_s, llvm_s = [], defaultdict(float), defaultdict(float)

    class Compile(event.Listener):
        def on_start(self, ev):
            d = ev.data
            f = d['dispatcher'].py_func
            stack.append([f"{f.__module__ or '<generated>'}.{f.__qualname__}", time.perf_counter(), 0.0])

        def on_end(self, ev):
            name, t0, nested = stack.pop()
            dt = time.perf_counter() - t0
            self_s[name] += dt - nested
            if stack:
                stack[-1][2] += dt

    class Llvm(event.Listener):
        def on_start(self, ev):
            self.t0 = time.perf_counter()

        def on_end(self, ev):
            llvm_s[stack[-1][0] if stack else "(outside a compile)"] += time.perf_counter() - self.t0

    event.register("numba:compile", Compile())
    event.register("numba:llvm_lock", Llvm())
t0 = time.perf_counter()
import fastbp
t_import = time.perf_counter() - t0
rng = np.random.default_rng(0)
X = rng.normal(size=(examples, sizes[0]))
Y = (rng.random((examples, sizes[-1])) < 0.5).astype(float)
net = fastbp.MLP(sizes, seed=0, dtype=dtype)
w0, c0 = time.perf_counter(), time.process_time()
net.fit(X, Y, epochs=1, batch_size=batch_size)
w1, c1 = time.perf_counter(), time.process_time()
fit_s = dict(self_s) if profile else {}
net.predict(X)
w2, c2 = time.perf_counter(), time.process_time()
out = {"import": t_import, "fit": w1 - w0, "predict": w2 - w1, "cpu_fit": c1 - c0, "cpu_predict": c2 - c1,
       "module": fastbp.__file__}
if profile:
    rows = ([k, self_s[k], llvm_s[k], fit_s.get(k, 0.0), self_s[k] - fit_s.get(k, 0.0)] for k in self_s)
    out["functions"] = sorted(rows, key=lambda r: -r[1])
print(json.dumps(out))
"""


def _run(case, root: str | None, cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    if root is not None:
        env["PYTHONPATH"] = os.path.abspath(root) + os.pathsep + env.get("PYTHONPATH", "")
    # cwd: the cache directory, so that ``python -c`` does not import ./fastbp ahead of root's
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_CALL, json.dumps(case)], env=env, capture_output=True, text=True, cwd=cache_dir
    )
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result = json.loads(out.stdout.splitlines()[-1])
    if root is not None and not os.path.realpath(result["module"]).startswith(os.path.realpath(root) + os.sep):
        raise SystemExit(f"{root}: imported fastbp from {result['module']} instead")
    return result


def _load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        return "load average unknown"


def profile(args) -> None:
    cache = tempfile.mkdtemp(prefix="fastbp-cold-")
    try:
        r = _run([args.sizes, args.batch_size, args.dtype, True, args.examples], None, cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(
        f"{r['module']}: first fit {r['fit']:.2f} s (CPU {r['cpu_fit']:.2f} s), "
        f"first predict {r['predict']:.2f} s (CPU {r['cpu_predict']:.2f} s); {_load()}"
    )
    print(
        f"{'self s':>7} {'LLVM s':>7} {'in fit':>7} {'predict':>7}  function "
        "(self = minus the compiles nested in it; split by the call that compiled it)"
    )
    for name, self_s, llvm_s, in_fit, in_predict in r["functions"]:
        if self_s >= args.min_seconds:
            print(f"{self_s:7.2f} {llvm_s:7.2f} {in_fit:7.2f} {in_predict:7.2f}  {name}")
    f = r["functions"]
    print(
        f"{sum(x[1] for x in f):7.2f} {sum(x[2] for x in f):7.2f} {sum(x[3] for x in f):7.2f} "
        f"{sum(x[4] for x in f):7.2f}  all {len(f)} compiles"
    )


def compare(args) -> None:
    case = [[4, 8, 1], 1, "float64", False, 16]  # benchmarks/bench_startup.py's first fit
    keys = ("cold", "cold_cpu", "warm", "fit", "predict")
    res = {root: {k: [] for k in keys} for root in args.roots}
    print(_load())
    for i in range(args.runs):
        for root in args.roots:  # interleaved, so that load hits both alike
            cache = tempfile.mkdtemp(prefix="fastbp-cold-")
            try:
                cold = _run(case, root, cache)
                warm = _run(case, root, cache)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            r = res[root]
            r["cold"].append(cold["fit"] + cold["predict"])
            r["cold_cpu"].append(cold["cpu_fit"] + cold["cpu_predict"])
            r["fit"].append(cold["fit"])
            r["predict"].append(cold["predict"])
            r["warm"].append(warm["fit"] + warm["predict"])
            print(
                f"run {i + 1} {root}: cold {r['cold'][-1]:.2f} s (fit {cold['fit']:.2f}, predict "
                f"{cold['predict']:.2f}; CPU {r['cold_cpu'][-1]:.2f}), warm {r['warm'][-1]:.3f} s",
                flush=True,
            )
    print(_load())
    med = {root: {k: statistics.median(v) for k, v in res[root].items()} for root in args.roots}
    for root in args.roots:
        m = med[root]
        print(
            f"{root}: median cold fit+predict {m['cold']:.2f} s (fit {m['fit']:.2f}, predict {m['predict']:.2f}; "
            f"CPU {m['cold_cpu']:.2f} s), warm {m['warm']:.3f} s"
        )
    if len(args.roots) == 2:
        old, new = (med[r] for r in args.roots)
        print("new/old: " + ", ".join(f"{k} {new[k] / old[k]:.2f}" for k in keys))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("profile", help="per-function compile times of a cold first fit + predict")
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[4, 8, 1])
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--examples", type=int, default=16, help="rows of X (a batch that large runs its own kernel)")
    p.add_argument("--min-seconds", type=float, default=0.05)
    c = sub.add_parser("compare", help="cold and warm first fit + predict of two checkouts, interleaved")
    c.add_argument("roots", nargs=2, help="directories holding the fastbp package to compare (old, new)")
    c.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    (profile if args.cmd == "profile" else compare)(args)


if __name__ == "__main__":
    main()
