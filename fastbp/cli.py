"""The ``fastbp`` command line: ``fastbp train`` trains the seed's network on bundled data;
``fastbp bench`` compares training speed with the peers (:mod:`fastbp.bench`)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def _batch_size(text: str) -> int | None:
    if text.lower() in ("full", "none", "all"):
        return None
    return _positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastbp", description="Numba-compiled backpropagation for small networks.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, required=True)
    train = sub.add_parser(
        "train",
        help="train the seed's 2-layer network on scikit-learn's bundled handwritten digits",
        description=(
            "Train an MLP [64, hidden, 10] on scikit-learn's handwritten digits (bundled, no "
            "download), 75%% train / 25%% test, and print the loss per epoch, train and test "
            "accuracy and examples per second."
        ),
    )
    train.add_argument("--backend", choices=["numba", "numpy"], default="numba", help="kernels or reference (default: numba)")
    train.add_argument("--epochs", type=_non_negative_int, default=10, help="passes over the training set (default: 10)")
    train.add_argument("--hidden", type=_positive_int, nargs="+", default=[32], help="hidden layer width(s) (default: 32)")
    train.add_argument("--learning-rate", type=_positive_float, default=0.1, help="α in W −= α dW (default: 0.1)")
    train.add_argument(
        "--batch-size", type=_batch_size, default=1, help="examples per update; 1 = per-example SGD, 'full' = full batch (default: 1)"
    )
    train.add_argument("--dtype", choices=["float32", "float64"], default="float64", help="network dtype (default: float64)")
    train.add_argument("--seed", type=int, default=0, help="seed for the split, initial weights and shuffling (default: 0)")
    train.add_argument(
        "--activation", choices=["tanh", "sigmoid", "relu", "leaky_relu", "identity"], default="tanh", help="hidden activation g (default: tanh)"
    )
    train.add_argument(
        "--output", choices=["sigmoid", "softmax"], default="sigmoid", help="output layer: σ + BCE (the seed's) or softmax + CE (default: sigmoid)"
    )
    train.add_argument("--quiet", action="store_true", help="print only the final summary")
    from .bench import add_parser as add_bench_parser  # stdlib + numpy only; peers load lazily

    add_bench_parser(sub)
    return parser


def _load_digits(seed: int):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    X = data.data / 16.0  # pixel intensities 0..16 → [0, 1]
    y = data.target
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def train(args: argparse.Namespace, out=sys.stdout) -> int:
    from .network import MLP

    X_train, X_test, y_train, y_test = _load_digits(args.seed)
    n_classes = int(y_train.max()) + 1
    Y_train = np.eye(n_classes)[y_train]  # one-hot targets
    net = MLP(
        [X_train.shape[1], *args.hidden, n_classes],
        activation=args.activation,
        output=args.output,
        dtype=np.dtype(args.dtype),
        seed=args.seed,
    )
    print(
        f"fastbp train: {net!r}\n  digits: {len(X_train)} train / {len(X_test)} test examples, "
        f"backend={args.backend}, batch_size={args.batch_size or 'full'}, learning_rate={args.learning_rate}",
        file=out,
    )
    t0 = time.perf_counter()
    # The first call compiles the kernels (or loads them from Numba's cache): time it apart.
    if args.backend == "numba" and args.epochs > 0:
        from . import kernels

        scratch_W, scratch_b = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
        kernels.train_epoch(scratch_W, scratch_b, X_train[:1], Y_train[:1], args.learning_rate, 1, None, net.activation, net.output)
        kernels.forward(scratch_W, scratch_b, X_train[:1], net.activation, net.output)
    compile_s = time.perf_counter() - t0

    def report(history) -> None:
        if not args.quiet:
            seconds = history.seconds[-1]
            rate = len(X_train) / seconds if seconds > 0 else float("inf")
            print(
                f"  epoch {len(history):>3}/{args.epochs}  loss {history.loss[-1]:.5f}  "
                f"{seconds * 1e3:8.2f} ms  {rate:12,.0f} examples/s",
                file=out,
            )

    history = net.fit(
        X_train,
        Y_train,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        shuffle=True,
        backend=args.backend,
        callback=report,
    )
    train_acc = float((net.predict(X_train, args.backend) == y_train).mean())
    test_acc = float((net.predict(X_test, args.backend) == y_test).mean())
    rate = f"{history.examples_per_second:,.0f} examples/s" if len(history) else "no epochs run"
    print(
        f"train accuracy {train_acc:.4f}  test accuracy {test_acc:.4f}  {rate} "
        f"(training only; {'compile or cache load' if args.backend == 'numba' else 'start-up'} {compile_s:.2f} s)",
        file=out,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return train(args)
    if args.command == "bench":
        from . import bench

        return bench.main(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
