"""Sparse X in the estimators: peak memory of a fit on a large CSR matrix, against its dense size.

    python tools/sparse_memory.py                                   # 100,000 x 10,000, 0.1 % density
    python tools/sparse_memory.py --rows 20000 --cols 5000 --epochs 2

Fits ``MLPRegressor(hidden_layer_sizes=(8,), solver="adam")`` for ``--epochs`` epochs and predicts,
then prints tracemalloc's peak (NumPy and SciPy allocations during fit + predict), the process's
maximum resident set size (and how much it grew during fit + predict), the CSR matrix's own size and
the size a dense float64 copy would have.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc
import warnings


def measure(rows=100_000, cols=10_000, density=0.001, epochs=1, hidden=8):
    import numpy as np

    from fastbp import MLPRegressor
    from fastbp.testing import sparse_rows

    X = sparse_rows(rows, cols, density, seed=0)
    y = np.asarray(X[:, :50].sum(axis=1)).ravel() + 0.01 * np.random.default_rng(0).normal(size=rows)
    reg = MLPRegressor(hidden_layer_sizes=(hidden,), max_iter=epochs, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        reg.fit(X[:300], y[:300])  # compile outside the measurement
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        t0 = time.perf_counter()
        reg.fit(X, y)
        reg.predict(X)
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "peak_traced_MB": peak / 1e6,
        "max_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,
        "max_rss_growth_MB": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1e3,
        "csr_MB": (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 1e6,
        "dense_MB": rows * cols * 8 / 1e6,
        "seconds": seconds,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--cols", type=int, default=10_000)
    p.add_argument("--density", type=float, default=0.001)
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args(argv)
    r = measure(a.rows, a.cols, a.density, a.epochs)
    print(
        f"{a.rows} x {a.cols} CSR, density {a.density}: fit ({a.epochs} epoch) + predict in {r['seconds']:.1f} s; "
        f"peak traced {r['peak_traced_MB']:.1f} MB, max RSS {r['max_rss_MB']:.0f} MB "
        f"(+{r['max_rss_growth_MB']:.0f} MB during fit + predict); "
        f"the CSR matrix {r['csr_MB']:.1f} MB, a dense float64 copy {r['dense_MB']:.0f} MB"
    )


if __name__ == "__main__":
    main()
