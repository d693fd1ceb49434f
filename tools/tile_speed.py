"""The column kernels' register-tiled product against their loops and BLAS (issue 12, goals 2, 3).

The column kernels (``fastbp/_fast/_columns.py``) hold a chunk of a batch as matrices with one
column per example.  Their plain loops compute Z[l] = W[l] A[l−1] + b[l] as sums of scaled rows
(``_affine_rows``, this tool's "loops"): every step of the sum loads and stores the output row,
so at best one FMA per store.  Their ``_tiles`` twins run ``_affine_tiles`` instead
(``fastbp/_fast/_tiles.py``): a tile of the output, R rows by one strip of 64 bytes of columns (16
float32 or 8 float64 examples), kept in vector registers for the whole sum, the shape of a BLAS
micro-kernel (R = 8 with AVX-512, 6 without; on Intel's AVX-512 cores a float32 tile spans two
strips).  Each element is the loops' sum in their order, so the tool also checks that the bits are
the loops'.

It prints GFLOP/s of the three on one core (pin it), for each product shape::

    taskset -c 1 python tools/tile_speed.py
    taskset -c 1 python tools/tile_speed.py --transposes   # the 8 x 8 block transposes instead
    taskset -c 1 python tools/tile_speed.py --lead   # rows nc apart against the tiled workspace's stride
    NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= OPENBLAS_CORETYPE=Haswell taskset -c 1 python tools/tile_speed.py

(the second holds Numba and OpenBLAS to AVX2 on an AVX-512 machine; the empty
``NUMBA_CPU_FEATURES`` is needed, see docs/performance-kernels.md).  The results:
docs/performance-kernels.md, "Register tiles for the column products".
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from numba import njit

from fastbp._jit import FASTMATH_FLAGS

#: (n_out, n_in, examples): the products of 64-64-10, 64-32-1, 784-128-10 and 256-256-10.
SHAPES = ("64x64x32", "64x64x256", "32x64x32", "10x64x32", "128x784x32", "128x784x256", "256x256x32")


def tile_rows() -> int:
    """R, the rows per register tile on Numba's compile target (8 with AVX-512, else 6)."""
    from numba.core.registry import cpu_target

    from fastbp._fast._tiles import tile_rows as rows_for

    return rows_for(cpu_target.target_context.codegen())


def tile_strips() -> int:
    """Strips of 64 bytes per float32 register tile on Numba's compile target (2 on Intel's AVX-512 cores,
    else 1; float64 tiles: 1)."""
    from numba.core.registry import cpu_target

    from fastbp._fast._tiles import tile_strips as strips_for

    return strips_for(cpu_target.target_context.codegen())


def make_kernels():
    """``(tiles, loops, blas)``: Z = W A + b repeated ``reps`` times, three ways, on ``params`` packed as
    the kernels pack a layer (W row by row, then b): the column kernels' own
    :func:`fastbp._fast._columns._affine_tiles` and :func:`fastbp._fast._columns._affine_rows`, and
    BLAS (``np.dot``)."""
    from fastbp._fast._columns import _affine_rows, _affine_tiles
    from fastbp._fast._tiles import STRIP_BYTES

    options = {"fastmath": set(FASTMATH_FLAGS), "error_model": "numpy"}

    @njit(**options)
    def tiles(params, n_in, n_out, A, Z, reps):
        nc = A.shape[1]
        shapes_ok = A.shape[0] == n_in and Z.shape[0] == n_out and Z.shape[1] == nc
        if nc % (STRIP_BYTES // A.itemsize) != 0 or not shapes_ok or params.shape[0] != n_in * n_out + n_out:
            raise ValueError("tiles: A must be n_in x (a whole number of strips), Z n_out x the same, params W and b")
        Af = A.reshape(A.size)
        Zf = Z.reshape(Z.size)
        for _ in range(reps):
            _affine_tiles(params, 0, n_in * n_out, n_in, n_out, Af, 0, Zf, 0, nc, nc)

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


#: (rows, columns) of M for ``--transposes``: a chunk's rows of X (256 examples of 64, 128, 784
#: inputs) into Xᵀ, and a layer's A[l] (64, 128, 256 units of 256 examples) into A[l]ᵀ for dW[l+1].
TRANSPOSE_SHAPES = ("256x64", "256x128", "256x784", "64x256", "128x256", "256x256")


def make_lead_kernels():
    """``(forward, back)``: Z = W A + b and dA = Wᵀ dZ repeated ``reps`` times by the kernels' own
    :func:`fastbp._fast._columns._affine_tiles` and ``_back_tiles`` on flat matrices whose rows lie
    ``ld`` elements apart (the chunk's ``nc`` columns first)."""
    from fastbp._fast._columns import _affine_tiles, _back_tiles

    options = {"fastmath": set(FASTMATH_FLAGS), "error_model": "numpy"}

    @njit(**options)
    def forward(params, n_in, n_out, Af, Zf, nc, ld, reps):
        for _ in range(reps):
            _affine_tiles(params, 0, n_in * n_out, n_in, n_out, Af, 0, Zf, 0, nc, ld)

    @njit(**options)
    def back(params, n_in, n_out, Df, _dst, nc, ld, reps):  # dA is written into Df, after dZ
        for _ in range(reps):
            _back_tiles(params, 0, n_in, n_out, Df, 0, n_out * ld, nc, ld)

    return forward, back


def measure_lead(shape: str, dtype, repeats: int, kernels) -> dict:
    """GFLOP/s of :func:`make_lead_kernels`' two products on ``shape`` (``n_outxn_inxexamples``)
    with the rows nc apart and ``_lead(nc)`` apart (the tiled workspace's stride), the two
    alternated ``repeats`` times (medians), and whether each product gave the same bits both ways."""
    from fastbp._fast._columns import _lead

    n_out, n_in, nc = parse_shape(shape, dtype)
    rng = np.random.default_rng(0)
    params = (rng.standard_normal(n_in * n_out + n_out) * 0.1).astype(dtype)
    flops = 2 * n_out * n_in * nc
    reps = max(1, int(1e8 / flops))
    strides = {"nc": nc, "lead": _lead(nc, np.dtype(dtype).itemsize)}
    out = {"ld": strides["lead"]}
    for name, kernel in zip(("forward", "back"), kernels):
        n_src, n_dst = (n_in, n_out) if name == "forward" else (n_out, n_in)
        src = rng.standard_normal((n_src, nc)).astype(dtype)
        cases = {}
        for key, ld in strides.items():
            S = np.zeros((n_src, ld), dtype)
            S[:, :nc] = src
            flat = S.ravel() if name == "forward" else np.concatenate([S.ravel(), np.zeros(n_dst * ld, dtype)])
            dst = np.zeros(n_dst * ld, dtype) if name == "forward" else flat
            kernel(params, n_in, n_out, flat, dst, nc, ld, 1)  # compile, and the result to compare
            got = (dst if name == "forward" else flat[n_src * ld :]).reshape((n_dst, ld))[:, :nc].copy()
            cases[key] = (flat, dst, ld, got, [])
        for _ in range(repeats):
            for flat, dst, ld, _got, times in cases.values():
                t = time.perf_counter()
                kernel(params, n_in, n_out, flat, dst, nc, ld, reps)
                times.append(time.perf_counter() - t)
        for key, (_f, _d, _ld, _got, times) in cases.items():
            out[f"{name}_{key}"] = flops * reps / float(np.median(times)) / 1e9
        out[f"{name}_same_bits"] = bool(np.array_equal(cases["nc"][3], cases["lead"][3]))
    return out


def make_transposes():
    """``(kernel, rows_first, columns_first)``: Mᵀ repeated ``reps`` times by the kernels' own
    :func:`fastbp._fast._columns._transpose` and by each of its two loop orders forced (8 × 8 blocks
    along M's rows inside, or along its columns inside)."""
    from fastbp._fast._columns import _transpose
    from fastbp._fast._tiles import _transpose8

    @njit
    def kernel(M, MT, reps):
        for _ in range(reps):
            _transpose(M, MT, M.shape[0], M.shape[1])

    @njit
    def order(M, MT, reps, columns_inside):
        n, nc = M.shape
        ldt = MT.shape[1]
        for _ in range(reps):
            for a in range(0, n if columns_inside else nc, 8):
                for b in range(0, nc if columns_inside else n, 8):
                    k, t = (a, b) if columns_inside else (b, a)
                    _transpose8(M, k * nc + t, nc, MT, t * ldt + k, ldt)

    return kernel, (lambda M, MT, reps: order(M, MT, reps, True)), (lambda M, MT, reps: order(M, MT, reps, False))


def measure_transposes(shape: str, dtype, repeats: int, kernels) -> dict:
    """Nanoseconds per row of M (an example's inputs or a unit's 256 examples) for each of
    :func:`make_transposes`' three, and whether all gave Mᵀ."""
    n, nc = (int(v) for v in shape.split("x"))
    if n % 8 or nc % 8:
        raise ValueError(f"transpose shape {shape!r}: both sizes must be multiples of 8")
    M = np.random.default_rng(0).standard_normal((n, nc)).astype(dtype)
    reps = max(1, int(2e7 / M.size))
    out = {}
    exact = True
    MT = np.zeros((nc, n), dtype)  # one output for all three: where MT lies against M matters (4 KiB aliasing)
    for name, f in zip(("kernel", "columns_inside", "rows_inside"), kernels):
        MT[...] = 0
        f(M, MT, 1)
        exact = exact and np.array_equal(MT, M.T)
        best = np.inf
        for _ in range(repeats):
            t = time.perf_counter()
            f(M, MT, reps)
            best = min(best, time.perf_counter() - t)
        out[name] = best / reps / n * 1e9
    out["exact"] = exact
    return out


def parse_shape(shape: str, dtype) -> tuple[int, int, int]:
    """``"n_outxn_inxexamples"`` as three positive ints, the examples a whole number of strips of
    ``dtype`` (16 float32 or 8 float64); ValueError naming the shape otherwise."""
    from fastbp._fast._tiles import STRIP_BYTES

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
    ap.add_argument("--shapes", nargs="+", default=None, help="n_out x n_in x examples (--transposes: rows x columns)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--transposes",
        action="store_true",
        help="time the 8 x 8 block transposes (shapes rows x columns of M) instead of the products",
    )
    ap.add_argument(
        "--lead",
        action="store_true",
        help="time the tiles' Z = W A + b and dA = W^T dZ with rows nc apart and at the tiled workspace's stride",
    )
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.transposes:
        return _main_transposes(args)
    if args.lead:
        return _main_lead(args)
    args.shapes = args.shapes or list(SHAPES)
    for dtype in args.dtypes:
        for shape in args.shapes:
            try:
                parse_shape(shape, dtype)
            except ValueError as e:
                ap.error(f"--shapes: {e}")
    from threadpoolctl import threadpool_limits

    from fastbp.bench import cpu_info, describe_cpu

    print(
        f"# {describe_cpu(cpu_info())}; NUMBA_CPU_NAME={os.environ.get('NUMBA_CPU_NAME', '(host)')}; "
        f"R = {tile_rows()}; strips per float32 tile = {tile_strips()}"
    )
    print("# GFLOP/s of Z = W A + b, one thread, best of", args.repeats)
    kernels = make_kernels()
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


#: The shapes of ``--lead``: the big nets' products at a chunk of 256 and 64 examples.
LEAD_SHAPES = ("128x784x256", "256x256x256", "10x128x256", "10x256x256", "128x784x64", "256x256x64")


def _main_lead(args) -> int:
    """``--lead``: GFLOP/s of the tiles with the rows nc apart and ``_lead(nc)`` apart, alternated."""
    from threadpoolctl import threadpool_limits

    from fastbp.bench import cpu_info, describe_cpu

    shapes = args.shapes or list(LEAD_SHAPES)
    for dtype in args.dtypes:
        for shape in shapes:
            try:
                parse_shape(shape, dtype)
            except ValueError as e:
                raise SystemExit(f"--shapes: {e}") from None
    print(f"# {describe_cpu(cpu_info())}; NUMBA_CPU_NAME={os.environ.get('NUMBA_CPU_NAME', '(host)')}")
    print(f"# GFLOP/s, one thread, median of {args.repeats} alternated runs: rows nc apart | rows ld apart")
    kernels = make_lead_kernels()
    with threadpool_limits(1):
        for dtype in args.dtypes:
            for shape in shapes:
                r = measure_lead(shape, np.dtype(dtype), args.repeats, kernels)
                nc = shape.split("x")[2]
                print(
                    f"{dtype:8s} {shape:12s} ld {r['ld']:4d}"
                    f" | Z = W A + b {r['forward_nc']:6.1f} -> {r['forward_lead']:6.1f}"
                    f" ({r['forward_lead'] / r['forward_nc']:4.2f}x)"
                    f" | dA = W^T dZ {r['back_nc']:6.1f} -> {r['back_lead']:6.1f}"
                    f" ({r['back_lead'] / r['back_nc']:4.2f}x)"
                    f" | same bits at nc = {nc}: {r['forward_same_bits'] and r['back_same_bits']}"
                )
    return 0


def _main_transposes(args) -> int:
    """``--transposes``: ns per row of M for the kernels' ``_transpose`` and its two loop orders."""
    from fastbp.bench import cpu_info, describe_cpu

    shapes = args.shapes or list(TRANSPOSE_SHAPES)
    for shape in shapes:
        parts = shape.split("x")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 and int(p) % 8 == 0 for p in parts):
            raise SystemExit(f"--shapes: {shape!r}: expected rows x columns, both positive multiples of 8")
    print(f"# {describe_cpu(cpu_info())}; NUMBA_CPU_NAME={os.environ.get('NUMBA_CPU_NAME', '(host)')}")
    print("# ns per row of M for M -> Mᵀ, one thread, best of", args.repeats)
    kernels = make_transposes()
    for dtype in args.dtypes:
        for shape in shapes:
            r = measure_transposes(shape, np.dtype(dtype), args.repeats, kernels)
            print(
                f"{dtype:8s} {shape:9s} | kernel {r['kernel']:7.1f} | columns inside {r['columns_inside']:7.1f}"
                f" | rows inside {r['rows_inside']:7.1f} | exact: {r['exact']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
