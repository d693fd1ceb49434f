"""fastbp's MLPClassifier against scikit-learn's, the same fits timed in one process.

    python tools/estimator_speed.py                   # lbfgs: digits (X/16), (100,), 100 iterations max
    python tools/estimator_speed.py --problem wide    # lbfgs: 20,000 x 100 make_classification, 5 classes
    python tools/estimator_speed.py --hidden 16 --repeats 5
    # scikit-learn's defaults (Adam, batch_size="auto" = 200) for 20 iterations (issue 12, goal 5):
    python tools/estimator_speed.py --solver adam --max-iter 20                             # digits, (100,)
    python tools/estimator_speed.py --solver adam --max-iter 20 --problem wide10 --hidden 64
    python tools/estimator_speed.py --solver adam --max-iter 20 --problem mnist --hidden 128

Same data, settings and seed for both (so the same L-BFGS-B iterations: the script prints both
``n_iter_``), float64, default threads; one untimed warm-up fit (2 iterations on the same data)
compiles fastbp's kernels; then ``--repeats`` fits of each system (in blocks; ``--interleave``:
alternating), best time of each.  Prints the ratio sklearn time / fastbp time (above 1: fastbp
is faster).  Compare ratios from one run, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import time
import warnings

#: (examples, features, informative features, classes) of the make_classification problems.
SYNTHETIC = {"wide": (20_000, 100, 40, 5), "wide10": (20_000, 100, 40, 10), "mnist": (10_000, 784, 100, 10)}


def make_problem(name: str, n: int | None = None):
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    else:
        from sklearn.datasets import make_classification

        m, d, k, c = SYNTHETIC[name]
        X, y = make_classification(n_samples=n or m, n_features=d, n_informative=k, n_classes=c, random_state=0)
    if n is not None:
        X, y = X[:n], y[:n]
    return X, y


def measure(problem="digits", hidden=(100,), max_iter=100, repeats=3, n=None, solver="lbfgs", interleave=False):
    """``{"fastbp": s, "sklearn": s, "fastbp_iter": k, "sklearn_iter": k, "ratio": sklearn / fastbp}``.

    By default each system's ``repeats`` fits run in a block (fastbp's, then scikit-learn's):
    fits interleaved one by one left each system's threads spinning into the other's fit (GNU
    OpenMP's and OpenBLAS's waiting threads on a two-core machine: digits with Adam read
    fastbp 0.049 s interleaved, 0.028 s in a block).  ``interleave`` runs them one by one."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastbp import MLPClassifier

    X, y = make_problem(problem, n)
    kw = dict(hidden_layer_sizes=tuple(hidden), solver=solver, max_iter=max_iter, random_state=0)
    best = {"fastbp": float("inf"), "sklearn": float("inf")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        # compile (or load) the kernels the timed fits run: on all of X, so the same batch size
        # and so the same kernel (a 50-row warm-up ran batches of 50, another kernel than 200's)
        MLPClassifier(**{**kw, "max_iter": 2}).fit(X, y)
        systems = (("fastbp", MLPClassifier), ("sklearn", SkMLP))
        rounds = [systems] * repeats if interleave else [(s,) * repeats for s in systems]
        for round_ in rounds:
            for name, cls in round_:
                t0 = time.perf_counter()
                model = cls(**kw).fit(X, y)
                best[name] = min(best[name], time.perf_counter() - t0)
                best[name + "_iter"] = model.n_iter_
                best[name + "_accuracy"] = model.score(X, y)
    best["ratio"] = best["sklearn"] / best["fastbp"]
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--problem", choices=("digits", *SYNTHETIC), default="digits")
    p.add_argument("--solver", choices=("lbfgs", "adam", "sgd"), default="lbfgs")
    p.add_argument("--hidden", default="100", help="comma-separated hidden widths")
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--interleave", action="store_true", help="alternate the systems fit by fit")
    a = p.parse_args(argv)
    hidden = tuple(int(h) for h in a.hidden.split(","))
    r = measure(a.problem, hidden, a.max_iter, a.repeats, solver=a.solver, interleave=a.interleave)
    print(
        f"{a.problem} {a.solver} hidden={hidden} max_iter={a.max_iter}: "
        f"fastbp {r['fastbp']:.3f} s ({r['fastbp_iter']} it, accuracy {r['fastbp_accuracy']:.4f}), "
        f"sklearn {r['sklearn']:.3f} s ({r['sklearn_iter']} it, accuracy {r['sklearn_accuracy']:.4f}), "
        f"sklearn/fastbp = {r['ratio']:.2f}"
    )


if __name__ == "__main__":
    main()
