"""fastbp's estimators against scikit-learn's: same data, settings and seeds; quality and speed.

    python examples/compare_sklearn.py [--repeats 3]

Digits (test accuracy) and a regression set (test R²), each fitted by
``fastbp.MLPClassifier``/``MLPRegressor`` and by scikit-learn's, interleaved, best
of ``--repeats`` wall times (after one warm-up fit, so Numba compilation is not
timed).  Prints one line per problem: the two scores and the time ratio.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn import neural_network as sk_nn
from sklearn.datasets import load_digits, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import fastbp

PROBLEMS = {
    "digits-small": dict(
        hidden_layer_sizes=(16,), solver="adam", learning_rate_init=1e-2, batch_size=32, max_iter=60, random_state=0
    ),
    "digits": dict(hidden_layer_sizes=(64,), solver="adam", learning_rate_init=1e-3, max_iter=60, random_state=0),
    "regression": dict(
        hidden_layer_sizes=(64,), solver="sgd", learning_rate_init=1e-2, momentum=0.9, max_iter=60, random_state=0
    ),
}


def load(name):
    if name.startswith("digits"):
        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    else:
        X, y = make_regression(n_samples=2000, n_features=20, n_informative=10, noise=10.0, random_state=0)
        y = (y - y.mean()) / y.std()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(Xtr) if name == "regression" else None
    if scaler is not None:
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
    return Xtr, Xte, ytr, yte


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", ConvergenceWarning)
    for name, params in PROBLEMS.items():
        Xtr, Xte, ytr, yte = load(name)
        kind = "Classifier" if name.startswith("digits") else "Regressor"
        makers = {"fastbp": getattr(fastbp, f"MLP{kind}"), "sklearn": getattr(sk_nn, f"MLP{kind}")}
        makers["fastbp"](**{**params, "max_iter": 1}).fit(Xtr, ytr)  # compile (or load the cache)
        best = {k: np.inf for k in makers}
        score = {}
        for _ in range(args.repeats):
            for k, make in makers.items():
                est = make(**params)
                t0 = time.perf_counter()
                est.fit(Xtr, ytr)
                best[k] = min(best[k], time.perf_counter() - t0)
                score[k] = est.score(Xte, yte)
        metric = "accuracy" if name.startswith("digits") else "R2"
        print(
            f"{name:12s} test {metric}: fastbp {score['fastbp']:.4f}  sklearn {score['sklearn']:.4f}  | "
            f"fit time fastbp {best['fastbp']:.3f}s  sklearn {best['sklearn']:.3f}s  "
            f"speed-up x{best['sklearn'] / best['fastbp']:.2f}"
        )


if __name__ == "__main__":
    main()
