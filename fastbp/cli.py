"""The ``fastbp`` command line: ``fastbp train`` trains an MLP (by default the derivation's 2-layer
network) on bundled data or a file and can save it; ``fastbp predict`` runs a saved model on raw rows;
``fastbp bench`` compares training speed with the peers (:mod:`fastbp.bench`); ``fastbp conformance``
exports and checks test vectors."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

import numpy as np

from ._argtypes import _batch_size, _non_negative_int, _positive_float, _positive_int, _seed


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse's hook
        self.exit(2, f"{self.prog}: error: {message}\n")


#: What ``fastbp`` with no arguments prints after the usage line.
_EPILOG = """examples:
  fastbp train                                      train the digits, per-example SGD, 10 epochs
  fastbp train --dataset data.csv --save model.npz  train on your CSV (target: last column), save the model
  fastbp predict --model model.npz --data new.csv   predictions for raw rows, as CSV
  fastbp COMMAND --help                             a command's options
"""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="fastbp",
        description="Numba-compiled backpropagation for small networks.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND", title="commands")
    train = sub.add_parser(
        "train",
        help="train an MLP on bundled data (the handwritten digits by default) or your own file",
        description=(
            "Train an MLP [n_x, hidden..., n_y] by backpropagation on scikit-learn's bundled "
            "handwritten digits (no download) or another data set, 75% train / 25% test, and print "
            "the loss per epoch, train and test accuracy (R² for regression) and examples per second."
        ),
    )
    train.add_argument(
        "--dataset", default="digits", help="digits, breast_cancer, iris, or a .csv/.npz file (default: digits)"
    )
    train.add_argument(
        "--target", help="target column of a CSV (header name or 0-based index; default: last) or NPZ key (default: y)"
    )
    train.add_argument(
        "--backend", choices=["numba", "numpy"], default="numba", help="kernels or reference (default: numba)"
    )
    train.add_argument(
        "--epochs", type=_non_negative_int, default=10, help="passes over the training set (default: 10)"
    )
    train.add_argument(
        "--hidden", type=_positive_int, nargs="+", default=[32], help="hidden layer width(s) (default: 32)"
    )
    train.add_argument("--learning-rate", type=_positive_float, default=0.1, help="α in W −= α dW (default: 0.1)")
    train.add_argument(
        "--batch-size",
        type=_batch_size,
        default=1,
        help="examples per update; 1 = per-example SGD, 'full' = full batch (default: 1)",
    )
    train.add_argument(
        "--dtype", choices=["float32", "float64"], default="float64", help="network dtype (default: float64)"
    )
    train.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seed for the split, initial weights and shuffling, in [0, 2**32) (default: 0)",
    )
    train.add_argument(
        "--activation",
        type=str.lower,  # as the Python API takes "Tanh"
        choices=["tanh", "sigmoid", "relu", "leaky_relu", "identity"],
        default="tanh",
        help="hidden activation g (default: tanh)",
    )
    train.add_argument(
        "--output",
        type=str.lower,
        choices=["sigmoid", "softmax"],
        default="sigmoid",
        help=(
            "classification output: σ + binary cross-entropy (the derivation's) or softmax + cross-entropy "
            "(default: sigmoid); regression always uses identity"
        ),
    )
    train.add_argument(
        "--compare",
        action="store_true",
        help="also train the other backend from the same start; print the speed-up and largest weight difference",
    )
    train.add_argument(
        "--save",
        metavar="MODEL.npz",
        help="save the trained network with its feature scaling and labels (fastbp predict, fastbp.load)",
    )
    train.add_argument("--plot", metavar="LOSS.png", help="plot the loss and test-score curves (needs matplotlib)")
    train.add_argument(
        "--quiet",
        action="store_true",
        help="print only the header and the final summary (no progress bar, no per-epoch lines)",
    )
    predict = sub.add_parser(
        "predict",
        help="predict with a model saved by fastbp train --save, from raw rows of a CSV/NPZ file",
        description=(
            "Scale raw feature rows as training scaled them, run the saved network and write one prediction "
            "per row (a class label, or a value for regression) as CSV with a header 'prediction'. A CSV "
            "with one column more than the model's features holds the target too (the last column, or "
            "--target): it is left out of the features and the accuracy (R² for regression) is printed "
            "on stderr."
        ),
    )
    predict.add_argument("--model", required=True, metavar="MODEL.npz", help="a model saved by fastbp train --save")
    predict.add_argument("--data", required=True, metavar="DATA.csv", help="raw rows: a .csv file, or a .npz with X")
    predict.add_argument(
        "--target", help="the target column of the CSV (header name or 0-based index) or NPZ key (default: y)"
    )
    predict.add_argument("--output", metavar="PREDICTIONS.csv", help="write the predictions here (default: stdout)")
    from .bench import add_parser as add_bench_parser  # stdlib + numpy only; peers load lazily

    add_bench_parser(sub)
    from .conformance import add_parser as add_conformance_parser

    add_conformance_parser(sub)
    return parser


def _check_writable(path: str | None, option: str, suffix: str) -> None:
    """Refuse an output path before any training is spent on it."""
    if path is None:
        return
    if not path.lower().endswith(suffix):
        raise _UsageError(f"{option} must name a {suffix} file, got {path!r}")
    if os.path.isdir(path):
        raise _UsageError(f"{option}: {path!r} is a folder, not a file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise _UsageError(f"{option}: cannot write into {folder}")


class _UsageError(Exception):
    """A bad argument found after parsing: one line on stderr, exit status 2."""


def _score(net, X, y, task: str, backend: str) -> float:
    if task == "classification":
        return float((net.predict(X, backend) == y).mean())
    pred = net.forward(X, backend)[:, 0]
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def train(args: argparse.Namespace, out=None) -> int:
    """Run ``fastbp train`` with parsed ``args``, printing to ``out`` (default: stdout)."""
    from ._validation import check_layer_sizes, check_positive_float
    from .datasets import load
    from .network import MLP

    out = sys.stdout if out is None else out
    _check_writable(args.save, "--save", ".npz")
    _check_writable(args.plot, "--plot", ".png")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise _UsageError("--plot needs matplotlib: pip install 'fastbp[plot]'") from None
    data = load(args.dataset, args.target, args.seed)
    regression = data.task == "regression"
    metric = "R²" if regression else "accuracy"
    make = lambda: MLP(  # noqa: E731 - the same network twice for --compare
        [data.X_train.shape[1], *args.hidden, data.n_outputs],
        activation=args.activation,
        output="identity" if regression else (args.output if data.n_outputs > 1 else "sigmoid"),
        dtype=np.dtype(args.dtype),
        seed=args.seed,
    )
    try:  # every setting checked before any training (and before the kernels compile)
        check_layer_sizes([data.X_train.shape[1], *args.hidden, data.n_outputs])
        check_positive_float(args.learning_rate, "learning_rate", np.dtype(args.dtype))
        net = make()
        if args.compare:  # the second network must fit in memory too
            make()
    except ValueError as exc:
        option = "--learning-rate" if str(exc).startswith("learning_rate") else "--hidden"
        raise _UsageError(f"{option}: {exc}") from None
    except MemoryError:
        raise _UsageError(f"--hidden {' '.join(map(str, args.hidden))}: the network does not fit in memory") from None
    print(
        f"fastbp train: {net!r}\n  {data.name}: {len(data.X_train)} train / {len(data.X_test)} test examples "
        f"({data.task}), backend={args.backend}, batch_size={args.batch_size or 'full'}, "
        f"learning_rate={args.learning_rate}",
        file=out,
    )
    t0 = time.perf_counter()
    # The first call compiles the kernels (or loads them from Numba's cache): time it apart.
    if args.backend == "numba" and args.epochs > 0:
        _compile(net, data, args, out)
    compile_s = time.perf_counter() - t0

    scores: list[float] = []
    want_scores = args.plot is not None or not args.quiet
    bar = _progress_bar(args) if not args.quiet else None

    def report(history) -> None:
        seconds = history.seconds[-1]
        rate = len(data.X_train) / seconds if seconds > 0 else float("inf")
        if want_scores:
            scores.append(_score(net, data.X_test, data.y_test, data.task, args.backend))
        if args.quiet:
            return
        line = (
            f"  epoch {len(history):>3}/{args.epochs}  loss {history.loss[-1]:<9.6g}  test {metric} {scores[-1]:.4f}  "
            f"{seconds * 1e3:8.2f} ms  {rate:12,.0f} examples/s"
        )
        if bar is not None:
            bar.set_postfix(loss=f"{history.loss[-1]:.4f}", test=f"{scores[-1]:.3f}", ex_s=f"{rate:,.0f}")
            bar.update(1)
            bar.write(line, file=out)
        else:
            print(line, file=out)

    try:
        history = net.fit(
            data.X_train,
            data.Y_train,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            shuffle=True,
            backend=args.backend,
            callback=report,
        )
    finally:
        if bar is not None:
            bar.close()
    train_score = _score(net, data.X_train, data.y_train, data.task, args.backend)
    test_score = _score(net, data.X_test, data.y_test, data.task, args.backend)
    rate = f"{history.examples_per_second:,.0f} examples/s" if len(history) else "no epochs run"
    print(
        f"train {metric} {train_score:.4f}  test {metric} {test_score:.4f}  {rate} "
        f"(training only; {'compile or cache load' if args.backend == 'numba' else 'start-up'} {compile_s:.2f} s)",
        file=out,
    )
    if args.compare and len(history):
        _compare(make, data, args, history, net, out)
    if args.save:
        net.preprocessing = data.preprocessing  # the scaling and labels: fastbp predict takes raw rows
        try:
            net.save(args.save)
        except (OSError, ValueError) as exc:
            raise _UsageError(f"--save: cannot write {args.save!r}: {exc}") from None
        print(f"saved {args.save} (predict from raw rows: fastbp predict --model {args.save} --data FILE)", file=out)
    if args.plot:
        _plot(history, scores, metric, args.plot, plot_title(data, args, net))
        print(f"plotted {args.plot}", file=out)
    return 0


def plot_title(data, args, net) -> str:
    """The --plot title: the data set and every setting that shaped the curves."""
    hidden = "-".join(str(n) for n in net.layer_sizes)
    batch = (
        "full batch"
        if args.batch_size is None
        else ("per-example SGD" if args.batch_size == 1 else f"batch {args.batch_size}")
    )
    return (
        f"{data.name} ({len(data.X_train)} train / {len(data.X_test)} test): "
        f"{hidden} {net.activation.name}/{net.output}\n"
        f"{batch}, α = {args.learning_rate}, {args.epochs} epochs, seed {args.seed}, {args.backend} {net.dtype.name}"
    )


def predict(args: argparse.Namespace, out=None, err=None) -> int:
    """Run ``fastbp predict``: predictions for raw rows, as CSV on ``out`` (or ``args.output``)."""
    from .datasets import decode, read_rows
    from .network import load

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    _check_writable(args.output, "--output", ".csv")
    if not args.model.lower().endswith(".npz"):
        raise _UsageError(f"--model must name a .npz file saved by fastbp train --save, got {args.model!r}")
    try:
        net = load(args.model)
    except FileNotFoundError:
        raise _UsageError(f"--model: no such file: {args.model}") from None
    except (ValueError, OSError) as exc:
        raise _UsageError(f"--model: {exc}") from None
    pre = net.preprocessing
    if pre is None:
        raise _UsageError(
            f"--model: {args.model} holds no feature scaling or class labels (saved by MLP.save without "
            "preprocessing, or by an older fastbp), so raw rows cannot be predicted: retrain with "
            "fastbp train --save, or scale the features yourself and call fastbp.load(...).predict(X)"
        )
    X, y = read_rows(args.data, net.layer_sizes[0], args.target, pre.feature_names)
    predictions = decode(pre, net, X)
    lines = ["prediction", *(_cell(p) for p in predictions)]
    if args.output:
        with open(args.output, "w", newline="") as fh:
            fh.write("\n".join(lines) + "\n")
    else:
        out.write("\n".join(lines) + "\n")
    if y is not None:
        if pre.task == "classification":
            truth = y if pre.classes.dtype.kind == "U" else y.astype(pre.classes.dtype, copy=False)
            score = f"accuracy {float((predictions == truth).mean()):.4f}"
        else:
            y = y.astype(float)
            ss_tot = float(((y - y.mean()) ** 2).sum())
            score = f"R² {1.0 - float(((y - predictions) ** 2).sum()) / ss_tot if ss_tot > 0 else float('nan'):.4f}"
        print(f"fastbp predict: {score} on {len(X)} rows with targets ({args.data})", file=err)
    if args.output:
        print(f"fastbp predict: {len(X)} predictions written to {args.output}", file=err)
    return 0


def _cell(value) -> str:
    """A prediction as CSV text: whole-number float labels without '.0', other values with full precision."""
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() and abs(value) < 2**53 else repr(float(value))
    text = str(value)
    return f'"{text}"' if any(c in text for c in ',"\n') else text


#: What the first run on a machine costs, said before it starts.  Measured cold (empty
#: NUMBA_CACHE_DIR): ``NUMBA_CACHE_DIR=$(mktemp -d) fastbp train --epochs 1`` compiled in 7.1-11.2 s
#: on a Zen 3 machine of this project with both of its cores (the second process of
#: :class:`fastbp._compile_beside.CompileBeside`), about 10 s on one, and took up to 38 s while
#: other jobs ran, as the README says (7-40 s); see docs/performance.md "Start-up".
COMPILE_NOTE = "the first run on a machine compiles them, 7-40 s; later runs load them from the cache in about a second"


def _compile(net, data, args, out) -> None:
    """Compile (or load from Numba's cache) the kernels training will use, step by step, with progress
    (the prediction kernel in a second process beside the training kernel's:
    :class:`fastbp._compile_beside.CompileBeside`)."""
    from . import kernels
    from ._compile_beside import CompileBeside

    quiet = args.quiet
    if not quiet:
        print(f"  compiling the kernels or loading them from Numba's cache ({COMPILE_NOTE}):", file=out, flush=True)
    # One batch of the real batch size on a scratch copy compiles the kernel training will use;
    # the scores of the test and the training set compile the kernels scoring will use (predict
    # for classification, forward for regression; a few rows or a big net's many multiply-adds
    # take different kernels, fastbp._dispatch._fast_forward), so none compiles mid-run.
    k = len(data.X_train) if args.batch_size is None else min(args.batch_size, len(data.X_train))
    scratch_W, scratch_b = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    steps = [
        (
            "training kernel",
            lambda: kernels.train_epoch(
                scratch_W,
                scratch_b,
                data.X_train[:k],
                data.Y_train[:k],
                args.learning_rate,
                k,
                None,
                net.activation,
                net.output,
            ),
        ),
        (
            "prediction kernel",
            lambda: [
                _score(net, X, y, data.task, "numba")
                for X, y in ((data.X_test, data.y_test), (data.X_train, data.y_train))
            ],
        ),
    ]
    live = not quiet and getattr(out, "isatty", lambda: False)()
    training = "per-example" if args.batch_size == 1 else "mini-batch"
    beside = CompileBeside(net, data, training) if CompileBeside.wanted() else None
    try:  # (from here on the second process, if one starts, is stopped whatever happens)
        if beside is not None:
            train_step, score_step = steps[0][1], steps[1][1]

            def train_then_close():
                try:
                    train_step()
                finally:
                    beside.stop_waiting_to_start()

            def score_after_beside():
                beside.wait()  # then loaded from the cache it filled (or compiled here if it failed)
                score_step()

            steps = [(steps[0][0], train_then_close), (steps[1][0], score_after_beside)]
        for i, (name, step) in enumerate(steps, 1):
            label = f"    [{i}/{len(steps)}] {name}"
            t0 = time.perf_counter()
            ticker = _Ticker(out, label, t0) if live else None
            if not quiet and not live:
                print(f"{label} ...", end="", file=out, flush=True)
            try:
                step()
            finally:
                if ticker is not None:
                    ticker.stop()
            if not quiet:
                done = f"\r{label} ... " if live else " "
                print(f"{done}{time.perf_counter() - t0:.2f} s", file=out, flush=True)
    finally:
        if beside is not None:
            beside.close()


class _Ticker:
    """On a terminal: rewrite ``label ... N s`` once a second while a compile step runs."""

    def __init__(self, out, label: str, t0: float):
        import threading

        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(out, label, t0), daemon=True)
        self._thread.start()

    def _run(self, out, label, t0) -> None:
        while not self._done.wait(1.0):
            print(f"\r{label} ... {time.perf_counter() - t0:.0f} s", end="", file=out, flush=True)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _progress_bar(args):
    """A tqdm bar over epochs on a terminal; None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=args.epochs, unit="epoch", desc="training", leave=False)


def _compare(make, data, args, history, net, out) -> None:
    """Train the other backend from the same start and report speed and agreement."""
    other_backend = "numpy" if args.backend == "numba" else "numba"
    other = make()
    other_history = other.fit(
        data.X_train,
        data.Y_train,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        shuffle=True,
        backend=other_backend,
    )
    speeds = {args.backend: history.examples_per_second, other_backend: other_history.examples_per_second}
    diff = float(np.abs(net.params - other.params).max())
    print(
        f"compare: numba {speeds['numba']:,.0f} examples/s, numpy reference {speeds['numpy']:,.0f} examples/s, "
        f"speed-up {speeds['numba'] / speeds['numpy']:.1f}x; largest weight difference {diff:.3g}",
        file=out,
    )


def _plot(history, scores, metric, path, title) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history) + 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, history.loss, "o-", color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss", color="tab:blue")
    if scores:
        ax2 = ax.twinx()
        ax2.plot(epochs, scores, "s--", color="tab:orange", label=f"test {metric}")
        ax2.set_ylabel(f"test {metric}", color="tab:orange")
        # The whole scale (0 to 1), not matplotlib's zoom on the data: one test example more or less
        # right must not look like a swing.  R² can be negative: then down to its lowest value.
        ax2.set_ylim(min(0.0, float(np.nanmin(scores)) if np.isfinite(scores).any() else 0.0), 1.0)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return fig


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # plain `fastbp`: what it can do, not an error
        parser.print_help()
        return 0
    from .datasets import DataError
    from .errors import DivergenceError

    try:
        if args.command == "train":
            status = train(args)
        elif args.command == "predict":
            status = predict(args)
        elif args.command == "bench":
            from . import bench

            status = bench.main(args)
        elif args.command == "conformance":
            from . import conformance

            status = conformance.main(args)
        else:  # pragma: no cover - argparse rejects unknown commands
            return 2
        sys.stdout.flush()  # (a closed pipe surfaces here, not at interpreter exit)
        return status
    except BrokenPipeError:
        # The reader went away (``fastbp train | head``, or ``2>&1 | head`` with bench's progress on
        # stderr): stop quietly, as Unix tools do, with stdout and stderr pointed at devnull so that
        # the interpreter's own last flush cannot fail again (Python's documented recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):  # a stream without a file descriptor (tests)
                pass
        os.close(devnull)
        return 1
    except (_UsageError, DataError) as exc:
        parser.exit(2, f"fastbp {args.command}: error: {_one_line(exc)}\n")
    except DivergenceError as exc:  # a run that blew up is a result, not a crash: one line, status 1
        parser.exit(1, f"fastbp {args.command}: {_one_line(exc)}\n")
    except (ValueError, TypeError, OSError, MemoryError) as exc:
        # Anything the checks above did not foresee (an unreadable file, a value NumPy refuses):
        # still one line and status 2, never a traceback.
        parser.exit(2, f"fastbp {args.command}: error: {type(exc).__name__}: {_one_line(exc)}\n")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] if text else type(exc).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
