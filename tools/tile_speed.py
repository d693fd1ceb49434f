"""A register-tiled product against the column kernels' loops and BLAS (issue 12, goals 2 and 3).

The column kernels (``fastbp/_fast/_columns.py``) hold a chunk of a batch as matrices with one
column per example and compute Z[l] = W[l] A[l−1] + b[l] as sums of scaled rows
(``_affine_rows``, this tool's "loops"): every step of the sum loads and stores the output row,
so at best one FMA per store.  This tool measures the shape a BLAS micro-kernel has instead: a tile of the output,
R rows by one strip of 64 bytes of columns (16 float32 or 8 float64 examples), kept in vector
registers for the whole sum (an LLVM vector type built in a Numba ``@intrinsic``; LLVM splits it
into two ymm registers on AVX2).  Per step: one load of a strip of A, R broadcasts of a weight,
R FMAs.  Each element is the loops' sum in their order (b, then + w·a for k = 0, 1, …, fused as
their ``contract`` fastmath fuses it), so the tool also checks that the bits are the loops'.

It prints GFLOP/s of the three on one core (pin it), for each product shape::

    taskset -c 1 python tools/tile_speed.py
    taskset -c 1 python tools/tile_speed.py --rows 6 --shapes 64x64x32     # 6 rows, still AVX-512 code
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= OPENBLAS_CORETYPE=Haswell taskset -c 1 python tools/tile_speed.py

(the last holds Numba and OpenBLAS to AVX2 on an AVX-512 machine; the empty
``NUMBA_CPU_FEATURES`` is needed, see docs/performance-kernels.md).  The results and why the
tiles are not (yet) in the kernels: docs/performance-kernels.md, "Register tiles for the
column products".
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from fastbp._jit import FASTMATH_FLAGS

#: Bytes of columns in one tile: one AVX-512 vector, two AVX2 vectors.
STRIP_BYTES = 64

#: (n_out, n_in, examples): the products of 64-64-10, 64-32-1, 784-128-10 and 256-256-10.
SHAPES = ("64x64x32", "64x64x256", "32x64x32", "10x64x32", "128x784x32", "128x784x256", "256x256x32")


def make_tile(R: int):
    """An intrinsic ``tile(Z, z0, ldz, W, w0, ldw, A, a0, lda, n_sum, B, b0)``: for r < R and the
    strip's V columns v, Z[z0 + r·ldz + v] = B[b0 + r] + Σ_{k < n_sum} W[w0 + r·ldw + k] · A[a0 + k·lda + v]
    (flat element offsets into C-contiguous arrays of one float dtype), the R accumulators in registers."""

    @intrinsic
    def tile(typingctx, Z, z0, ldz, W, w0, ldw, A, a0, lda, n_sum, B, b0):
        arrays = (Z, W, A, B)
        if not all(isinstance(a, types.Array) and a.layout == "C" and a.dtype == Z.dtype for a in arrays):
            return None
        if Z.dtype not in (types.float32, types.float64):
            return None
        i = types.intp
        sig = types.void(Z, i, i, W, i, i, A, i, i, i, B, i)

        def codegen(context, builder, signature, args):
            Zv, zo, ldz_, Wv, wo, ldw_, Av, ao, lda_, nsum, Bv, bo = args
            T = context.get_value_type(Z.dtype)
            itemsize = context.get_abi_sizeof(T)
            lanes = STRIP_BYTES // itemsize
            vec = ir.VectorType(T, lanes)
            vptr = vec.as_pointer()
            intp = context.get_value_type(types.intp)
            i32 = ir.IntType(32)

            def data(k, value):
                return context.make_array(signature.args[k])(context, builder, value).data

            zd, wd, ad, bd = data(0, Zv), data(3, Wv), data(6, Av), data(10, Bv)

            def broadcast(x):
                v = builder.insert_element(ir.Constant(vec, ir.Undefined), x, ir.Constant(i32, 0))
                mask = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
                return builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined), mask)

            # stack slots that LLVM promotes to registers (their address never escapes)
            acc = [cgutils.alloca_once(builder, vec) for _ in range(R)]
            for r in range(R):
                b = builder.load(builder.gep(bd, [builder.add(bo, ir.Constant(intp, r))]))
                builder.store(broadcast(b), acc[r])
            with cgutils.for_range(builder, nsum) as loop:
                k = loop.index
                src = builder.gep(ad, [builder.add(ao, builder.mul(k, lda_))])
                x = builder.load(builder.bitcast(src, vptr), align=itemsize)
                for r in range(R):
                    w_at = builder.add(builder.add(wo, builder.mul(ir.Constant(intp, r), ldw_)), k)
                    prod = builder.fmul(broadcast(builder.load(builder.gep(wd, [w_at]))), x, flags=("contract",))
                    builder.store(builder.fadd(builder.load(acc[r]), prod, flags=("contract",)), acc[r])
            for r in range(R):
                dst = builder.gep(zd, [builder.add(zo, builder.mul(ir.Constant(intp, r), ldz_))])
                builder.store(builder.load(acc[r]), builder.bitcast(dst, vptr), align=itemsize)
            return context.get_dummy_value()

        return sig, codegen

    return tile


def make_kernels(R: int):
    """``(tiles, loops, blas)``: Z = W A + b repeated ``reps`` times, three ways, on ``params`` packed as
    the kernels pack a layer (W row by row, then b).  ``loops`` is the column kernels' own
    :func:`fastbp._fast._columns._affine_rows`, which also takes the rows after the tiles' last whole
    tile of R rows."""
    from fastbp._fast._columns import _affine_rows

    tile = make_tile(R)
    options = {"fastmath": set(FASTMATH_FLAGS), "error_model": "numpy"}

    @njit(**options)
    def tiles(params, n_in, n_out, A, Z, reps):
        nc = A.shape[1]
        strip = STRIP_BYTES // A.itemsize
        bo = n_in * n_out
        shapes_ok = A.shape[0] == n_in and Z.shape[0] == n_out and Z.shape[1] == nc
        if nc % strip != 0 or not shapes_ok or params.shape[0] != bo + n_out:
            raise ValueError("tiles: A must be n_in x (a whole number of strips), Z n_out x the same, params W and b")
        rows = n_out // R * R
        for _ in range(reps):
            for t in range(0, nc, strip):
                for j in range(0, rows, R):
                    tile(Z, j * nc + t, nc, params, j * n_in, n_in, A, t, nc, n_in, params, bo + j)
            if rows < n_out:  # the rows after the last whole tile, by the kernels' loops
                _affine_rows(params, rows * n_in, bo + rows, n_in, n_out - rows, A, Z[rows:], nc)

    @njit(**options)
    def loops(params, n_in, n_out, A, Z, reps):
        for _ in range(reps):
            _affine_rows(params, 0, n_in * n_out, n_in, n_out, A, Z, A.shape[1])

    @njit
    def blas(params, n_in, n_out, A, Z, reps):
        W = params[: n_in * n_out].reshape((n_out, n_in))
        b = params[n_in * n_out :]
        for _ in range(reps):
            np.dot(W, A, Z)
            for j in range(n_out):
                Z[j] += b[j]

    return tiles, loops, blas


def parse_shape(shape: str, dtype) -> tuple[int, int, int]:
    """``"n_outxn_inxexamples"`` as three positive ints, the examples a whole number of strips of
    ``dtype`` (16 float32 or 8 float64); ValueError naming the shape otherwise."""
    strip = STRIP_BYTES // np.dtype(dtype).itemsize
    try:
        n_out, n_in, nc = (int(v) for v in shape.split("x"))
    except ValueError:
        raise ValueError(f"shape {shape!r}: expected n_out x n_in x examples, e.g. 64x64x32") from None
    if min(n_out, n_in, nc) < 1 or nc % strip:
        raise ValueError(
            f"shape {shape!r}: sizes must be positive and the examples a multiple of {strip} ({np.dtype(dtype).name})"
        )
    return n_out, n_in, nc


def measure(shape: str, dtype, repeats: int, kernels) -> dict:
    """GFLOP/s of the three kernels on ``shape`` (``n_outxn_inxexamples``), whether the tiles gave
    the loops' bits, and whether both match NumPy's W @ A + b to the dtype's rounding."""
    n_out, n_in, nc = parse_shape(shape, dtype)
    rng = np.random.default_rng(0)
    W = rng.standard_normal((n_out, n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    params = np.concatenate([W.ravel(), b])
    A = rng.standard_normal((n_in, nc)).astype(dtype)
    flops = 2 * n_out * n_in * nc
    reps = max(1, int(3e8 / flops))
    rates, outs = {}, {}
    for name, kernel in zip(("tiles", "loops", "blas"), kernels):
        Z = np.zeros((n_out, nc), dtype)
        kernel(params, n_in, n_out, A, Z, 1)  # compile
        outs[name] = Z.copy()
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            kernel(params, n_in, n_out, A, Z, reps)
            best = min(best, time.perf_counter() - t)
        rates[name] = flops * reps / best / 1e9
    rates["same_bits"] = bool(np.array_equal(outs["tiles"], outs["loops"]))
    expected = W.astype(np.float64) @ A.astype(np.float64) + b.astype(np.float64)[:, None]
    tol = 1e-4 if np.dtype(dtype) == np.float32 else 1e-12
    rates["matches_numpy"] = all(np.allclose(outs[k], expected, rtol=tol, atol=tol * n_in) for k in ("tiles", "loops"))
    return rates


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=8, help="rows per tile (8: AVX-512's best here; 6: AVX2's)")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), help="n_out x n_in x examples")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if not 1 <= args.rows <= 16:
        ap.error(f"--rows must be 1-16, got {args.rows}")
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    for dtype in args.dtypes:
        for shape in args.shapes:
            try:
                parse_shape(shape, dtype)
            except ValueError as e:
                ap.error(f"--shapes: {e}")
    from threadpoolctl import threadpool_limits

    from fastbp.bench import cpu_info, describe_cpu

    print(f"# {describe_cpu(cpu_info())}; NUMBA_CPU_NAME={os.environ.get('NUMBA_CPU_NAME', '(host)')}; R = {args.rows}")
    print("# GFLOP/s of Z = W A + b, one thread, best of", args.repeats)
    kernels = make_kernels(args.rows)
    with threadpool_limits(1):
        for dtype in args.dtypes:
            for shape in args.shapes:
                r = measure(shape, np.dtype(dtype), args.repeats, kernels)
                print(
                    f"{dtype:8s} {shape:12s} | tiles {r['tiles']:6.1f} | loops {r['loops']:6.1f}"
                    f" | blas {r['blas']:6.1f}"
                    f" | tiles/blas {r['tiles'] / r['blas']:5.2f} | same bits as the loops: {r['same_bits']}"
                    f" | both match NumPy: {r['matches_numpy']}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
