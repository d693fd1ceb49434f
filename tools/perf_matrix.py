"""The kernel performance matrix: plain kernel vs fast kernel vs JAX, per-example SGD.

Run from the repository root (takes a few minutes; the machine should be idle)::

    python tools/perf_matrix.py                 # per-example SGD matrix
    python tools/perf_matrix.py --batch         # + mini-batch section vs scikit-learn
    python tools/perf_matrix.py --batch-only    # only the mini-batch section
    python tools/perf_matrix.py --quick         # fewer repeats, smaller data
    python tools/perf_matrix.py --nets 64-32-1 784-128-10 --dtypes float32

What it measures (one thread, tanh hidden units, σ output + binary cross-entropy,
per-example SGD, one epoch over m seeded N(0, 1) examples):

* ``plain``: :data:`fastbp._plain.BUILTIN` ``._train_epoch`` (the scalar-loop reference);
* ``fast``: :func:`fastbp._dispatch.run_epoch` (what ``MLP.fit`` runs: the dispatcher's fast kernel);
* ``jax``: ``jax.jit`` of a ``lax.scan`` over examples doing the same SGD step,
  if jax is installed (forced to one thread with XLA_FLAGS, set before import);

each as examples/s, best of ``--repeats`` runs *interleaved* (plain, fast, jax,
plain, fast, jax, …) so that load from other processes hits all alike.  Compare
the ratios printed (``fast/plain``, ``fast/jax``), not absolute numbers, across runs.

GFLOP/s counts :func:`fastbp.bench.flops_per_example` (6·Σ n_l·n_{l−1} per example: forward,
dW and W^T dZ); ``%peak`` divides it by one core's BLAS matmul rate,
:func:`fastbp.bench.blas_peak_gflops` of two 2048 × 2048 matrices under ``threadpoolctl``
limit 1 in a subprocess *without* ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` (set on some of
these machines for old OpenBLAS builds, they slow a current one down).  Timings are
:func:`fastbp.bench.interleaved_best_seconds`.

``--batch`` adds one epoch of mini-batch SGD at batch 32, 64 and 256 (softmax
output for 10 outputs, to match scikit-learn) against ``MLPClassifier(solver="sgd",
momentum=0, alpha=0)`` for one epoch (``max_iter=1``), BLAS limited to one thread,
and, for batches ≥ 64 when Numba has several threads (``NUMBA_NUM_THREADS``),
``threads=True`` (the split column kernel's threaded twin) against ``threads=False`` (the
one-thread default: the split kernel's one-thread twin where the sizes choose it, else the
whole-batch column kernel).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before NumPy loads its BLAS

import numpy as np  # noqa: E402

from fastbp import bench  # noqa: E402  (imports neither jax nor threadpoolctl)

# JAX/XLA must be told before it is imported: one thread, like the kernels.
os.environ.setdefault("XLA_FLAGS", bench.XLA_ONE_THREAD)

NETS = ["2-4-1", "64-32-1", "64-64-10", "784-128-10", "256-256-10"]
DTYPES = ["float32", "float64"]

_PEAK_CODE = r"""
import json, sys
from threadpoolctl import threadpool_limits, threadpool_info
from fastbp.bench import blas_peak_gflops
with threadpool_limits(1):
    out = {dt: blas_peak_gflops(dt, n=int(sys.argv[1])) for dt in ("float32", "float64")}
out["blas"] = [(i.get("internal_api"), i.get("architecture"), i.get("version")) for i in threadpool_info()]
print(json.dumps(out))
"""


def blas_peak(n: int = 2048) -> dict:
    """One core's matmul GFLOP/s per dtype (:func:`fastbp.bench.blas_peak_gflops` of n × n, BLAS limited
    to one thread), in a subprocess without the OpenBLAS overrides; ``"blas"``: threadpoolctl's view of BLAS."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    res = subprocess.run(
        [sys.executable, "-c", _PEAK_CODE, str(n)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def make_data(sizes, dtype, m, output="sigmoid", seed=0):
    """``fastbp bench``'s data (:func:`fastbp.bench.make_data`: the same weights, X and Y) for tanh hidden units."""
    case = bench.Case(
        sizes=tuple(sizes), activation="tanh", output=output, m=m, dtype=np.dtype(dtype).name, learning_rate=0.01
    )
    return bench.make_data(case, seed)


def jax_epoch_fn(sizes, dtype, lr):
    """A jitted per-example SGD epoch in JAX: lax.scan over examples.

    Kept apart from ``fastbp bench``'s JAX epoch (:data:`fastbp.bench.MAKERS` ``["jax"]``) on purpose,
    for now: that one writes each layer as ``a @ W.T + b`` on rows, which XLA's CPU backend runs
    several times slower per example on the larger nets than this ``W @ a + b``, so the two report
    different JAX speeds; making them one changes one tool's published numbers (issue 11's note).
    """
    import jax
    import jax.numpy as jnp

    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)

    def cost(params, x, y):
        a = x
        for l, (W, b) in enumerate(params):
            z = W @ a + b
            a = jnp.tanh(z) if l < len(params) - 1 else z
        # BCE from the logit
        return jnp.sum(jnp.maximum(a, 0) - y * a + jnp.log1p(jnp.exp(-jnp.abs(a))))

    grad = jax.value_and_grad(cost)

    def step(params, xy):
        x, y = xy
        J, g = grad(params, x, y)
        return jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g), J

    @jax.jit
    def epoch(params, X, Y):
        params, Js = jax.lax.scan(step, params, (X, Y))
        return params, Js.mean()

    return epoch


def per_example_matrix(nets, dtypes, repeats, target_s, use_jax, peak):
    from fastbp._dispatch import run_epoch
    from fastbp._plain import BUILTIN
    from fastbp.activations import ACT_TANH as TANH
    from fastbp.activations import get_activation
    from fastbp.losses import OUT_SIGMOID as SIGMOID

    tanh = get_activation("tanh")
    from fastbp.params import Layout

    rows = []
    for net in nets:
        sizes = [int(s) for s in net.split("-")]
        for dt in dtypes:
            fpe = bench.flops_per_example(sizes)
            # about target_s seconds for the plain kernel at ~1.5 GFLOP/s, at least 2000 examples
            m = int(min(max(2000, target_s * 1.5e9 / fpe), 400_000))
            prob = make_data(sizes, dt, m)
            lay = Layout(sizes)
            p0 = lay.pack(prob.weights, prob.biases, np.dtype(dt))
            X, Y = prob.X, prob.Y
            order = np.arange(m, dtype=np.int64)
            lr = np.dtype(dt).type(0.01)
            s = lay.sizes

            def plain(p):
                return BUILTIN._train_epoch(p, s, X, Y, order, 1, lr, TANH, SIGMOID, np.empty(0, p.dtype))

            def fast(p):
                return run_epoch(p, s, X, Y, order, 1, lr, tanh, SIGMOID)

            # warm up (compile) on a copy
            plain(p0.copy())
            fast(p0.copy())
            fns = {"plain": plain, "fast": fast}
            if use_jax:
                import jax
                import jax.numpy as jnp

                ep = jax_epoch_fn(sizes, dt, float(lr))
                jp = [(jnp.asarray(W), jnp.asarray(b)) for W, b in zip(prob.weights, prob.biases)]
                jX, jY = jnp.asarray(X), jnp.asarray(Y)
                jax.block_until_ready(ep(jp, jX, jY))
                fns["jax"] = lambda p: jax.block_until_ready(ep(jp, jX, jY))  # (from the same start each time)
            best = bench.interleaved_best_seconds(fns, repeats, setup=lambda: (p0.copy(),))
            row = {"net": net, "dtype": dt, "m": m}
            for k in fns:
                row[k] = m / best[k]
            row["gflops"] = row["fast"] * fpe / 1e9
            row["peak_frac"] = row["gflops"] / peak[dt] if peak else float("nan")
            rows.append(row)
            print(_fmt_row(row), flush=True)
    return rows


def _fmt_row(r):
    jax = r.get("jax")
    parts = [
        f"{r['net']:>11} {r['dtype']:>7}",
        f"plain {r['plain']:>11,.0f}",
        f"fast {r['fast']:>11,.0f}",
        f"jax {jax:>11,.0f}" if jax else "jax         n/a",
        f"fast/plain {r['fast'] / r['plain']:5.1f}x",
        f"fast/jax {r['fast'] / jax:5.2f}x" if jax else "fast/jax   n/a",
        f"{r['gflops']:6.1f} GFLOP/s",
        f"{100 * r['peak_frac']:5.1f}% peak",
    ]
    return " | ".join(parts)


def batch_section(nets, dtypes, repeats, target_s):
    """Mini-batch SGD epochs at batch 32 and 256 against scikit-learn's MLPClassifier."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from fastbp import _dispatch
    from fastbp._dispatch import run_epoch
    from fastbp._plain import BUILTIN
    from fastbp.activations import ACT_TANH as TANH
    from fastbp.activations import get_activation
    from fastbp.losses import OUT_SIGMOID as SIGMOID
    from fastbp.losses import OUT_SOFTMAX as SOFTMAX

    tanh = get_activation("tanh")
    import numba
    from threadpoolctl import threadpool_limits

    from fastbp.params import Layout

    threads = numba.get_num_threads()
    print(
        f"\nmini-batch SGD, one epoch, examples/s (one thread; the last column: the split kernel on threads "
        f"with {threads} Numba threads against one thread, for batches ≥ {_dispatch.SPLIT_MIN_BATCH_LARGE})"
    )
    for net in nets:
        sizes = [int(s) for s in net.split("-")]
        out_name = "softmax" if sizes[-1] > 1 else "sigmoid"
        out = SOFTMAX if sizes[-1] > 1 else SIGMOID
        for dt in dtypes:
            fpe = bench.flops_per_example(sizes)
            m = int(min(max(4000, target_s * 5e9 / fpe), 400_000))
            prob = make_data(sizes, dt, m, output=out_name)
            lay = Layout(sizes)
            p0 = lay.pack(prob.weights, prob.biases, np.dtype(dt))
            X, Y = prob.X, prob.Y
            y_lab = Y.argmax(axis=1) if sizes[-1] > 1 else Y[:, 0].astype(int)
            order = np.arange(m, dtype=np.int64)
            lr = np.dtype(dt).type(0.01)
            for bs in (32, 64, 256):

                def plain(p):
                    return BUILTIN._train_epoch(p, lay.sizes, X, Y, order, bs, lr, TANH, out, np.empty(0, p.dtype))

                def fast(p):
                    return run_epoch(p, lay.sizes, X, Y, order, bs, lr, tanh, out, threads=False)

                def fast2(p):
                    return run_epoch(p, lay.sizes, X, Y, order, bs, lr, tanh, out, threads=True)

                def sk(_p):
                    clf = MLPClassifier(
                        hidden_layer_sizes=tuple(sizes[1:-1]),
                        activation="tanh",
                        solver="sgd",
                        momentum=0.0,
                        alpha=0.0,
                        batch_size=bs,
                        learning_rate_init=0.01,
                        max_iter=1,
                        shuffle=False,
                        random_state=0,
                    )
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        clf.fit(X, y_lab)

                plain(p0.copy())
                fast(p0.copy())
                fast2(p0.copy())
                calls = {"plain": plain, "fast": fast, "sklearn": sk}
                if threads > 1:
                    calls["fast2"] = fast2
                with threadpool_limits(1):
                    best = bench.interleaved_best_seconds(calls, repeats, setup=lambda: (p0.copy(),))
                r = {k: m / v for k, v in best.items()}
                thr = (
                    f" | {threads} threads {r['fast2']:>11,.0f} ({r['fast2'] / r['fast']:4.2f}x)"
                    if threads > 1 and bs >= _dispatch.SPLIT_MIN_BATCH_LARGE
                    else ""
                )
                print(
                    f"{net:>11} {dt:>7} batch {bs:>3} | plain {r['plain']:>11,.0f} | fast {r['fast']:>11,.0f} | "
                    f"sklearn {r['sklearn']:>11,.0f} | fast/sklearn {r['fast'] / r['sklearn']:5.2f}x | "
                    f"fast/plain {r['fast'] / r['plain']:5.1f}x{thr}",
                    flush=True,
                )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=NETS)
    ap.add_argument("--dtypes", nargs="+", default=DTYPES, choices=DTYPES)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.3, help="rough length of one plain-kernel epoch")
    ap.add_argument("--quick", action="store_true", help="3 repeats, shorter epochs")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--batch", action="store_true", help="add the mini-batch section vs scikit-learn")
    ap.add_argument("--batch-only", action="store_true", help="only the mini-batch section (implies --batch)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.seconds = 3, 0.1
    use_jax = not args.no_jax
    if use_jax:
        try:
            import jax  # noqa: F401
        except ImportError:
            use_jax = False
    cpu = bench.describe_cpu(bench.cpu_info())
    peak = blas_peak()
    print(
        f"CPU: {cpu}; BLAS single-thread peak: float32 {peak['float32']:.1f}, float64 {peak['float64']:.1f} "
        f"GFLOP/s ({peak['blas']})"
    )
    if not args.batch_only:
        print("per-example SGD, tanh hidden, sigmoid + BCE, examples/s (best of %d, interleaved)" % args.repeats)
        rows = per_example_matrix(args.nets, args.dtypes, args.repeats, args.seconds, use_jax, peak)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"cpu": cpu, "peak": peak, "rows": rows}, f, indent=1)
    if args.batch or args.batch_only:
        batch_section(args.nets, args.dtypes, args.repeats, args.seconds)


if __name__ == "__main__":
    main()
