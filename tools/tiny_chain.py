"""The latency floor of per-example SGD on a tiny net: the dependency chain alone.

Per-example SGD is sequential: example t+1's forward pass needs example t's update,
which needs example t's whole forward pass.  For one hidden layer the shortest
chain is

    Z[1] (one FMA: the Gram correction) → g → Z[2] (a dot product) → σ → dZ[2] → back,

so no kernel can do an example faster than the latency of g + σ + a few FMAs.  This
script times such chains on scalars (nothing else in the loop: a floor, not a kernel),
one thread, best of ``--repeats``::

    python tools/tiny_chain.py

and prints ns per link for: one FMA; fastbp.vmath's tanh and σ (range reduction +
polynomial); the tiny kernel's float32 tanh (rational, Estrin) and σ = ½ tanh(x/2) + ½;
and the whole 2-4-1 chain (FMA → g on 4 units → dot → σ → FMA), for tanh, σ and relu.

``--epochs`` then times one epoch of 2-4-1 per-example SGD (tanh, σ output, ``fastbp bench``'s
data, m = 1024 and 16384), interleaved, best of ``--repeats``, through each layer of the call::

    python tools/tiny_chain.py --epochs --dtype float32

* ``jax``: ``fastbp bench``'s JAX epoch (``jit`` of ``lax.scan``; its data converted once, up front);
* ``public``: ``fastbp.kernels.train_epoch`` (what ``fastbp bench`` times: validates and converts
  the parameters, X and Y on every call);
* ``checked once``: ``fastbp._dispatch.run_epoch`` on inputs validated once (what ``MLP.fit`` runs
  per epoch);
* ``kernel``: the compiled tiny kernel alone.

``--stripped`` times, on the same long epoch (2-4-1 float32, tanh, σ output, m = 16384), JAX, the tiny
kernel and :func:`stripped_241`: the same Gram-corrected chain without the divergence guard and the
cost, which a shippable kernel must keep, and specialised (no activation dispatch, n_0 = 2 fixed, all
parameters in registers). It is not a kernel fastbp could ship (it would train on through a divergence
and report no loss), but it bounds what any kernel of this design can reach::

    python tools/tiny_chain.py --stripped

``--kernels`` times the generic per-example kernel (``fastbp._fast.sgd._sgd_epoch``, what
2-4-1 ran before ``fastbp/_fast/tiny.py``) against the tiny kernel on a 2-4-1 epoch of
m = 16384 (σ output), both dtypes, tanh, σ and relu hidden units, interleaved, best of
``--repeats``::

    python tools/tiny_chain.py --kernels
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from numba import njit

from fastbp._fast.tiny import tsigmoid, tsigmoid_scalar, ttanh, ttanh_scalar
from fastbp._jit import JIT_VEC
from fastbp.bench import XLA_ONE_THREAD, best_seconds, interleaved_best_seconds
from fastbp.vmath import vsigmoid, vtanh

OPTS = {**JIT_VEC, "cache": False}


@njit(**OPTS)
def fma4(n, c, k):
    """Four dependent FMAs per iteration (the latency of one FMA × 4)."""
    z = k
    for _ in range(n):
        z = z * c + k
        z = z * c + k
        z = z * c + k
        z = z * c + k
    return z


def _unary(fn):
    @njit(**OPTS)
    def chain(n, c, k):
        z = k
        for _ in range(n):
            z = fn(z) * c + k
        return z

    return chain


CHAINS = {
    "vmath tanh + FMA": _unary(vtanh),
    "vmath sigmoid + FMA": _unary(vsigmoid),
    "tiny tanh + FMA": _unary(ttanh),
    "tiny sigmoid + FMA": _unary(tsigmoid),
    "tiny scalar tanh + FMA": _unary(ttanh_scalar),
    "tiny scalar sigmoid + FMA": _unary(tsigmoid_scalar),
}


def _net_chain(g):
    @njit(**OPTS)
    def chain(n, c, k):
        T = type(c)
        w0, w1, w2, w3 = T(0.3), T(-0.2), T(0.5), T(0.1)
        u0, u1, u2, u3 = T(0.01), T(-0.02), T(0.03), T(0.015)
        d = k
        for _ in range(n):
            # Z[1] = P − d·u (Gram correction), A[1] = g(Z[1]), Z[2] = W[2] A[1], dZ[2] = σ(Z[2]) − y
            a0, a1, a2, a3 = g(c - d * u0), g(k - d * u1), g(c - d * u2), g(k - d * u3)
            d = tsigmoid_scalar((a0 * w0 + a1 * w1) + (a2 * w2 + a3 * w3)) - T(0.5)
        return d

    return chain


@njit(**OPTS)
def _relu(z):
    return z if z > type(z)(0) else type(z)(0)


NETS = {  # the four-unit kernel's scalar forms
    "2-4-1 tanh": _net_chain(ttanh_scalar),
    "2-4-1 sigmoid": _net_chain(tsigmoid_scalar),
    "2-4-1 relu": _net_chain(_relu),
}


@njit(**OPTS)
def stripped_241(params, X, Y, order, lr):
    """2-4-1 float32 per-example SGD, tanh hidden, σ output, with nothing but the chain: a bound.

    The arithmetic of :func:`fastbp._fast.tiny._tiny4_epoch` (the next Z[1] from the old weights,
    corrected by one FMA) on the layout W[1] (4 × 2), b[1], W[2], b[2];
    returns Σ Z[2] (not a cost) so that every example's output is used.
    """
    T = np.float32
    w00, w01, w10, w11, w20, w21, w30, w31 = (
        params[0],
        params[1],
        params[2],
        params[3],
        params[4],
        params[5],
        params[6],
        params[7],
    )
    b10, b11, b12, b13 = params[8], params[9], params[10], params[11]
    v0, v1, v2, v3, b2 = params[12], params[13], params[14], params[15], params[16]
    c0 = c1 = c2 = c3 = T(0)  # the pending α dZ[1]
    u0 = u1 = u2 = u3 = T(0)  # its correction of the next Z[1], per unit of dZ[2]
    dp = T(0)
    m = order.shape[0]
    xp0, xp1 = X[order[0], 0], X[order[0], 1]
    total = 0.0
    for t in range(m):
        i = order[t]
        x0, x1 = X[i, 0], X[i, 1]
        j = order[t + 1] if t + 1 < m else i
        gn = T(1) + X[j, 0] * x0 + X[j, 1] * x1
        p0, p1 = b10 + w00 * x0 + w01 * x1, b11 + w10 * x0 + w11 * x1
        p2, p3 = b12 + w20 * x0 + w21 * x1, b13 + w30 * x0 + w31 * x1
        w00, w01, w10, w11 = w00 - c0 * xp0, w01 - c0 * xp1, w10 - c1 * xp0, w11 - c1 * xp1
        w20, w21, w30, w31 = w20 - c2 * xp0, w21 - c2 * xp1, w30 - c3 * xp0, w31 - c3 * xp1
        b10, b11, b12, b13 = b10 - c0, b11 - c1, b12 - c2, b13 - c3
        a0, a1 = ttanh_scalar(p0 - dp * u0), ttanh_scalar(p1 - dp * u1)
        a2, a3 = ttanh_scalar(p2 - dp * u2), ttanh_scalar(p3 - dp * u3)
        z2 = b2 + ((v0 * a0 + v1 * a1) + (v2 * a2 + v3 * a3))
        d = tsigmoid_scalar(z2) - Y[i, 0]
        total += np.float64(z2)
        q0, q1 = v0 * (lr * (T(1) - a0 * a0)), v1 * (lr * (T(1) - a1 * a1))
        q2, q3 = v2 * (lr * (T(1) - a2 * a2)), v3 * (lr * (T(1) - a3 * a3))
        c0, c1, c2, c3 = d * q0, d * q1, d * q2, d * q3
        u0, u1, u2, u3 = q0 * gn, q1 * gn, q2 * gn, q3 * gn
        dp = d
        cd = lr * d
        v0, v1, v2, v3, b2 = v0 - cd * a0, v1 - cd * a1, v2 - cd * a2, v3 - cd * a3, b2 - cd
        xp0, xp1 = x0, x1
    w00, w01, w10, w11 = w00 - c0 * xp0, w01 - c0 * xp1, w10 - c1 * xp0, w11 - c1 * xp1
    w20, w21, w30, w31 = w20 - c2 * xp0, w21 - c2 * xp1, w30 - c3 * xp0, w31 - c3 * xp1
    params[0], params[1], params[2], params[3] = w00, w01, w10, w11
    params[4], params[5], params[6], params[7] = w20, w21, w30, w31
    params[8], params[9], params[10], params[11] = b10 - c0, b11 - c1, b12 - c2, b13 - c3
    params[12], params[13], params[14], params[15], params[16] = v0, v1, v2, v3, b2
    return total


def _epoch_inputs(dtype: str, m: int):
    """``fastbp bench``'s 2-4-1 tanh epoch of m examples (one JAX thread): ``(case, data, layout,
    packed parameters, order, divergence limit)``."""
    os.environ.setdefault("XLA_FLAGS", XLA_ONE_THREAD)  # before jax is first imported
    from fastbp import bench
    from fastbp.params import Layout

    case = bench.Case(sizes=(2, 4, 1), activation="tanh", m=m, dtype=dtype)
    d = bench.make_data(case)
    lay = Layout([2, 4, 1])
    p = lay.pack(d.weights, d.biases, np.dtype(dtype))
    return case, d, lay, p, np.arange(m), float(np.finfo(dtype).max) / 4


def stripped(repeats: int, m: int = 16384) -> None:
    """ns per 2-4-1 float32 example on a long epoch: JAX, the tiny kernel, :func:`stripped_241`."""
    from fastbp import bench
    from fastbp._fast import tiny as fast_tiny
    from fastbp.activations import get_activation
    from fastbp.losses import OUT_SIGMOID as SIGMOID

    case, d, lay, p0, order, limit = _epoch_inputs("float32", m)
    lr = np.float32(case.learning_rate)
    code = get_activation("tanh").code
    jax_epoch = bench.MAKERS["jax"](case, d)
    calls = {
        "jax": lambda p: jax_epoch(),
        "tiny kernel": lambda p: fast_tiny._tiny4_epoch(p, lay.sizes, d.X, d.Y, order, lr, code, SIGMOID, limit),
        "stripped": lambda p: stripped_241(p, d.X, d.Y, order, lr),
    }
    pa, pb = p0.copy(), p0.copy()
    calls["tiny kernel"](pa)
    calls["stripped"](pb)  # (the same steps: the parameters agree to float32 rounding)
    print(
        f"after one epoch, max |kernel − stripped| = {np.abs(pa - pb).max():.2g} (max |param| {np.abs(pa).max():.2g})"
    )
    best = interleaved_best_seconds(calls, repeats, setup=lambda: (p0.copy(),))
    for name, sec in best.items():
        print(
            f"float32 2-4-1 tanh m={m}: {name:12s} {sec / m * 1e9:6.1f} ns per example  {best['jax'] / sec:5.2f}× JAX"
        )


def best_ns(fn, n: int, c, k, repeats: int) -> float:
    fn(10, c, k)
    return best_seconds(lambda: fn(n, c, k), repeats) / n * 1e9


def epochs(dtype: str, repeats: int) -> None:
    """One 2-4-1 epoch through each layer of the call (see the module docstring)."""
    from fastbp import bench
    from fastbp._dispatch import run_epoch
    from fastbp._fast import tiny as fast_tiny
    from fastbp.activations import get_activation
    from fastbp.losses import OUT_SIGMOID as SIGMOID

    for m in (1024, 16384):
        case, d, lay, p, order, limit = _epoch_inputs(dtype, m)
        T = np.dtype(dtype).type
        act = get_activation("tanh")
        calls = {
            "jax": bench.MAKERS["jax"](case, d),
            "public": bench.MAKERS["numba"](case, d),
            "checked once": lambda: run_epoch(p, lay.sizes, d.X, d.Y, order, 1, T(0.01), act, SIGMOID),
            "kernel": lambda: fast_tiny._tiny4_epoch(p, lay.sizes, d.X, d.Y, order, T(0.01), act.code, SIGMOID, limit),
        }
        for call in calls.values():
            call()
        best = interleaved_best_seconds(calls, repeats)
        for name, sec in best.items():
            print(
                f"{dtype} 2-4-1 tanh m={m}: {name:13s} {sec * 1e6:8.1f} µs  {m / sec / 1e6:6.2f} M examples/s  "
                f"{best['jax'] / sec:5.2f}× JAX"
            )


def kernels_before_after(repeats: int, m: int = 16384) -> None:
    """ns per 2-4-1 example: the generic per-example kernel against the tiny one."""
    from fastbp._fast import sgd as fast_sgd
    from fastbp._fast import tiny as fast_tiny
    from fastbp.activations import NAMES as ACT
    from fastbp.losses import OUT_SIGMOID as SIGMOID
    from fastbp.params import Layout
    from fastbp.testing import make_problem

    lay = Layout([2, 4, 1])
    for dtype in (np.float32, np.float64):
        for act in ("tanh", "sigmoid", "relu"):
            prob = make_problem(
                [2, 4, 1], dtype=dtype, activation=act, output="sigmoid", m=m, learning_rate=0.01, shuffle=False
            )
            p0 = lay.pack(prob.weights, prob.biases, np.dtype(dtype))
            args = (
                lay.sizes,
                prob.X,
                prob.Y,
                np.arange(m),
                np.dtype(dtype).type(0.01),
                ACT[act],
                SIGMOID,
                float(np.finfo(dtype).max) / 4,
            )
            calls = {"generic": fast_sgd._sgd_epoch, "tiny": fast_tiny._tiny4_epoch}
            best = interleaved_best_seconds(
                {name: (lambda p, k=kernel: k(p, *args)) for name, kernel in calls.items()},
                repeats,
                setup=lambda: (p0.copy(),),
            )
            print(
                f"{np.dtype(dtype).name} 2-4-1 {act:7s}: generic {best['generic'] / m * 1e9:6.1f} ns, "
                f"tiny {best['tiny'] / m * 1e9:6.1f} ns per example ({best['generic'] / best['tiny']:.2f}×)"
            )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1 << 20, help="links per timing")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--epochs", action="store_true", help="then time 2-4-1 epochs through each layer of the call")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="for --epochs")
    ap.add_argument("--kernels", action="store_true", help="then the generic and the tiny kernel on 2-4-1 epochs")
    ap.add_argument(
        "--stripped",
        action="store_true",
        help="then JAX, the tiny kernel and a kernel stripped to the chain on a long 2-4-1 epoch",
    )
    args = ap.parse_args(argv)
    if args.stripped:
        stripped(max(args.repeats, 15))
        return
    if args.kernels:
        kernels_before_after(args.repeats)
        return
    if args.epochs:
        epochs(args.dtype, max(args.repeats, 20))
        return
    for T in (np.float32, np.float64):
        c, k = T(0.37), T(0.2)
        print(f"{T.__name__}: 1 FMA {best_ns(fma4, args.n, c, k, args.repeats) / 4:.2f} ns")
        for name, fn in {**CHAINS, **NETS}.items():
            print(f"{T.__name__}: {name:22s} {best_ns(fn, args.n, c, k, args.repeats):6.2f} ns per link")


if __name__ == "__main__":
    main()
