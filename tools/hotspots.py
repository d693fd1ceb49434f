"""Where a training epoch's time goes, function by function, inside the compiled kernels (issue 12).

``perf`` samples the process while it runs epochs of one net, batch size and dtype through
:func:`fastbp._dispatch.run_epoch` (what ``MLP.fit`` and ``fastbp bench`` run: inputs checked
once).  Numba's machine code has no symbols perf can read, so this tool writes the map perf
looks for (``/tmp/perf-PID.map``: address, size and name of every function Numba compiled in
this process) before sampling.  Functions Numba inlines are part of their caller; the ones it
calls (the register tiles' ``_strips``, the row copy and transpose, the activation and cost
loops, ...) get their own line, so the list reads as "products X %, transposes Y %, ...".

Needs Linux ``perf`` (``apt install linux-perf``; ``perf_event_paranoid`` low enough for a
process to sample its own child).  The kernels are compiled afresh into a temporary
``NUMBA_CACHE_DIR`` (a kernel loaded from Numba's cache has no names to map), which takes the
usual cold-start seconds first.  The epochs run pinned to one core (``--cpu``), perf on the others::

    python tools/hotspots.py --net 64-64-10 --dtype float32 --batch 256
    python tools/hotspots.py --net 784-128-10 --dtype float64 --batch 32 --output softmax --seconds 8

Read shares, not absolute times: perf slows the process a little, and the shares of two runs
differ by a few points.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np


def _demangle(name: str) -> str:
    """``_ZN6fastbp5_fast6_tiles7_stripsB...`` -> ``fastbp._fast._tiles._strips`` (Numba's names
    are Itanium-style: a length before each part); other names as they are."""
    rest = name[3:] if name.startswith("_ZN") else ""
    parts = []
    while rest[:1].isdigit():
        digits = re.match(r"\d+", rest).group()
        n = int(digits)
        parts.append(rest[len(digits) : len(digits) + n])
        rest = rest[len(digits) + n :]
    if parts and parts[0] == "cpython":  # the Python-callable wrapper of a kernel
        parts = parts[1:] + ["<wrapper>"]
    return ".".join(parts) or name


def compiled_functions() -> dict[int, str]:
    """{address: name} of every function defined by the code Numba compiled in this process
    (each dispatcher's overloads, with the helpers linked into them)."""
    import gc

    from numba.core.registry import CPUDispatcher

    found: dict[int, str] = {}
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, CPUDispatcher):
                continue
        except ReferenceError:  # a weak proxy whose object is gone
            continue
        for cres in obj.overloads.values():
            module = getattr(cres.library, "_final_module", None)
            if module is None:  # (a library loaded from Numba's cache has an empty module: no names)
                continue
            for fn in module.functions:
                if fn.is_declaration:
                    continue
                addr = cres.library.get_pointer_to_function(fn.name)
                if addr:
                    found.setdefault(addr, _demangle(fn.name))
    return found


def write_perf_map(path: str | None = None) -> tuple[str, int]:
    """Write perf's map of this process's compiled functions (sizes up to the next function);
    returns ``(path, number of functions)``."""
    found = compiled_functions()
    path = path or f"/tmp/perf-{os.getpid()}.map"
    addrs = sorted(found)
    with open(path, "w") as f:
        for i, a in enumerate(addrs):
            size = min(addrs[i + 1] - a, 1 << 20) if i + 1 < len(addrs) else 1 << 16
            f.write(f"{a:x} {size:x} {found[a]}\n")
    return path, len(addrs)


def _epoch(net: str, dtype, batch: int, activation: str, output: str, m: int):
    from fastbp import _validation as v
    from fastbp import kernels
    from fastbp._dispatch import run_epoch
    from fastbp.testing import make_problem

    sizes = [int(n) for n in net.split("-")]
    prob = make_problem(sizes, dtype=dtype, activation=activation, output=output, m=m, seed=0)
    W, b = [w.copy() for w in prob.weights], [x.copy() for x in prob.biases]
    p = kernels._Problem(W, b, activation, output, writes=True)
    X, Y, lr, bs, order = v.check_train_args(p.sizes, p.dtype, p.out, W, b, prob.X, prob.Y, 1e-4, batch, None)
    return lambda: run_epoch(p.params, p.layout.sizes, X, Y, order, bs, lr, p.activation, p.out)


def report(data: str, top: int) -> list[tuple[float, str]]:
    """perf's samples of ``data`` summed by function name: ``[(percent, name)]``, largest first."""
    text = subprocess.run(
        ["perf", "report", "-i", data, "--stdio", "--sort", "symbol"], capture_output=True, text=True, check=True
    ).stdout
    shares: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[\.\]\s+(.+?)\s*(-\s+-\s*)?$", line)
        if m:
            name = m.group(2).strip()
            name = "(code with no symbol)" if name.startswith("0x") else name
            shares[name] = shares.get(name, 0.0) + float(m.group(1))
    return sorted(((v, k) for k, v in shares.items()), reverse=True)[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="64-64-10")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--output", default=None, help="default: sigmoid for one output unit, else softmax")
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--cpu",
        type=int,
        default=None,
        help="the core the epochs run on (default: the last this process may use); perf gets the others",
    )
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    if not re.fullmatch(r"\d+(-\d+)+", args.net) or min(args.batch, args.examples, args.top) < 1 or args.seconds <= 0:
        ap.error("--net like 64-64-10; --batch, --examples, --top at least 1; --seconds above 0")
    allowed = sorted(os.sched_getaffinity(0))
    args.cpu = allowed[-1] if args.cpu is None else args.cpu
    if args.cpu not in allowed:
        ap.error(f"--cpu {args.cpu}: this process may run on CPUs {allowed}")
    if shutil.which("perf") is None:
        ap.error("needs Linux perf on PATH (apt install linux-perf)")
    if "_FASTBP_HOTSPOTS_CACHE" not in os.environ or os.environ["_FASTBP_HOTSPOTS_CACHE"] != os.environ.get(
        "NUMBA_CACHE_DIR"
    ):
        # compile afresh in a child with an empty cache, so that every kernel has its names
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache, "_FASTBP_HOTSPOTS_CACHE": cache}
            argv = argv if argv is not None else sys.argv[1:]
            return subprocess.run([sys.executable, __file__, *argv], env=env).returncode
    from fastbp.bench import cpu_info, describe_cpu

    out = args.output or ("sigmoid" if args.net.endswith("-1") else "softmax")
    others = set(allowed) - {args.cpu} or {args.cpu}
    os.sched_setaffinity(0, {args.cpu})
    run = _epoch(args.net, np.dtype(args.dtype).type, args.batch, args.activation, out, args.examples)
    run()  # compile
    map_path, n = write_perf_map()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "perf.data")
            perf = subprocess.Popen(["perf", "record", "-q", "-o", data, "-p", str(os.getpid())])
            try:
                os.sched_setaffinity(perf.pid, others)
                time.sleep(0.5)
                if perf.poll() is not None:
                    raise SystemExit(
                        f"perf record exited ({perf.returncode}): is /proc/sys/kernel/perf_event_paranoid "
                        "too high for a process to sample itself?"
                    )
                t0, epochs = time.perf_counter(), 0
                while time.perf_counter() - t0 < args.seconds:
                    run()
                    epochs += 1
                rate = epochs * args.examples / (time.perf_counter() - t0)
            finally:
                if perf.poll() is None:
                    perf.send_signal(signal.SIGINT)
                perf.wait()
            rows = report(data, args.top)
    finally:
        os.remove(map_path)
    print(f"# {describe_cpu(cpu_info())}")
    print(
        f"# {args.net} {args.dtype} batch {args.batch} {args.activation}/{out}: {rate:,.0f} examples/s under perf, "
        f"{n} compiled functions mapped; share of samples:"
    )
    for share, name in rows:
        print(f"{share:6.2f} %  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
