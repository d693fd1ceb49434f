"""The main job: ``fastbp train``, ``fastbp predict``, and ``fastbp`` itself."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import fastbp
from fastbp.cli import main


def test_train_prints_losses_accuracies_and_throughput(capsys):
    assert main(["train", "--epochs", "3", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    assert sum(line.lstrip().startswith("epoch") and "loss" in line for line in out.splitlines()) == 3
    assert "train accuracy" in out and "test accuracy" in out and "examples/s" in out
    test_acc = float(out.split("test accuracy")[1].split()[0])
    assert test_acc > 0.8  # three epochs of per-example SGD learn the digits
    # the compile step says what the pause is and how long a first run takes, before it starts (before
    # the first epoch), then each step with its time
    from fastbp.cli import COMPILE_NOTE

    lines = out.splitlines()
    step = [i for i, line in enumerate(lines) if "compiling the kernels" in line]
    first_epoch = next(i for i, line in enumerate(lines) if line.lstrip().startswith("epoch"))
    assert len(step) == 1 and step[0] < first_epoch and COMPILE_NOTE in lines[step[0]]
    progress = lines[step[0] + 1 : first_epoch]
    assert [line.split("]")[0].strip() for line in progress] == ["[1/2", "[2/2"]
    assert "training kernel" in progress[0] and "prediction kernel" in progress[1]
    assert all(line.endswith(" s") and float(line.split()[-2]) >= 0 for line in progress)


@pytest.mark.parametrize("args", [["--quiet"], ["--backend", "numpy"], ["--epochs", "0"]])
def test_no_compile_line_without_a_compile_step(args, capsys):
    # --quiet prints only the header and the summary; numpy and zero epochs compile nothing
    assert main(["train", "--epochs", "1", "--hidden", "8", *args]) == 0
    out = capsys.readouterr().out
    assert "compiling" not in out and "test accuracy" in out
    assert ("epoch " in out.replace("no epochs run", "")) == (args == ["--backend", "numpy"])


def test_a_closed_pipe_ends_train_quietly_with_status_1(monkeypatch):
    """The reader of stdout went away: ``main`` returns 1, no traceback (deterministic: every write
    to this stdout fails as a closed pipe does)."""

    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["train", "--epochs", "1", "--hidden", "8"]) == 1


def test_fastbp_train_piped_into_head_leaves_no_traceback():
    # the real thing: ``fastbp train | head -n 1`` (the reader leaves after the header line, and
    # the compile step's pause makes the next write find the pipe closed)
    run = subprocess.run(
        [
            "bash",
            "-c",
            f"'{sys.executable}' -m fastbp train --epochs 3 --hidden 8 | head -n 1; "
            'echo "status ${PIPESTATUS[0]}" >&2',
        ],
        capture_output=True,
        text=True,
    )
    assert run.stdout.startswith("fastbp train: MLP(")
    assert run.stderr.strip() == "status 1", run.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--backend", "numpy", "--batch-size", "32", "--dtype", "float32", "--epochs", "1"],
        ["--batch-size", "full", "--epochs", "1", "--output", "softmax", "--activation", "relu"],
        ["--hidden", "8", "8", "--epochs", "1", "--quiet"],
    ],
)
def test_train_options(args, capsys):
    assert main(["train", *args]) == 0
    assert "test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--epochs", "-1"],
        ["--learning-rate", "0"],
        ["--learning-rate", "nan"],
        ["--batch-size", "0"],
        ["--hidden", "x"],
        ["--backend", "torch"],
        ["--dtype", "float16"],
        ["--seed", "-1"],
    ],
)
def test_bad_option_is_one_line_and_exit_status_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err


def test_python_dash_m_runs_the_same_command():
    run = subprocess.run(
        [sys.executable, "-m", "fastbp", "train", "--epochs", "1", "--quiet"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "test accuracy" in run.stdout


@pytest.mark.parametrize("dataset, metric", [("iris", "accuracy"), ("breast_cancer", "accuracy")])
def test_bundled_datasets(dataset, metric, capsys):
    assert main(["train", "--dataset", dataset, "--epochs", "2", "--quiet"]) == 0
    assert f"test {metric}" in capsys.readouterr().out


def test_csv_classification_and_npz_regression(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    label = np.where(X[:, 0] > 0, "yes", "no")
    csv = tmp_path / "data.csv"
    csv.write_text("a,b,label,c\n" + "".join(f"{x[0]},{x[1]},{lab},{x[2]}\n" for x, lab in zip(X, label)))
    assert main(["train", "--dataset", str(csv), "--target", "label", "--epochs", "5", "--quiet"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    npz = tmp_path / "reg.npz"
    np.savez(npz, X=X, value=X @ [1.0, -2.0, 0.5])
    assert (
        main(
            ["train", "--dataset", str(npz), "--target", "value", "--epochs", "5", "--quiet", "--learning-rate", "0.01"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test R²" in out and "identity" in out


def test_compare_reports_speed_up_and_weight_difference(capsys):
    assert main(["train", "--epochs", "1", "--quiet", "--compare", "--hidden", "8"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("compare:")][0]
    assert "speed-up" in line
    assert float(line.rsplit("difference", 1)[1]) < 1e-9


def test_plot_writes_a_png(tmp_path, capsys):
    path = tmp_path / "loss.png"
    assert main(["train", "--epochs", "2", "--quiet", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "make_args",
    [
        lambda tmp: ["--dataset", str(tmp / "missing.csv")],
        lambda tmp: ["--dataset", "mnist"],
        lambda tmp: ["--dataset", str(_write(tmp / "bad.csv", "a,b\nx,1\ny,0\nz,1\nw,0\n"))],
        lambda tmp: ["--dataset", str(_write(tmp / "ragged.csv", "a,b\n1,2\n3\n"))],
        lambda tmp: ["--dataset", str(_write(tmp / "junk.npz", "not a zip file"))],
        lambda tmp: ["--dataset", "iris", "--target", "nope"],
        lambda tmp: ["--save", str(tmp / "no-such-dir" / "m.npz")],
        lambda tmp: ["--save", str(tmp / "model.txt")],
        lambda tmp: ["--plot", str(tmp / "loss.jpg")],
    ],
    ids=[
        "missing-file",
        "unknown-name",
        "non-numeric-feature",
        "ragged-csv",
        "corrupt-npz",
        "bad-target",
        "save-dir",
        "save-suffix",
        "plot-suffix",
    ],
)
def test_bad_files_and_paths_are_one_line_and_exit_status_2(make_args, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "1", *make_args(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err, err


def test_non_numeric_feature_column_is_named(tmp_path, capsys):
    path = _write(tmp_path / "pets.csv", "weight,colour,label\n1.5,1,0\n2.5,red,1\n")
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "1", "--dataset", str(path)])
    err = capsys.readouterr().err
    assert "'colour'" in err and "'red'" in err and "--target" in err, err


def _write(path, text):
    path.write_text(text)
    return path


def test_progress_bar_on_a_terminal_and_not_with_quiet(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["train", "--epochs", "2", "--hidden", "8"]) == 0
    captured = capsys.readouterr()
    assert "epoch" in captured.err and "ex_s" in captured.err  # tqdm's bar with the live postfix
    assert captured.out.count("  epoch ") == 2
    assert main(["train", "--epochs", "2", "--hidden", "8", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "  epoch " not in captured.out


def test_save_writes_a_model_that_loads_and_predicts_the_same(tmp_path, capsys):
    import fastbp

    path = tmp_path / "model.npz"
    assert main(["train", "--dataset", "iris", "--epochs", "2", "--quiet", "--save", str(path)]) == 0
    assert f"saved {path}" in capsys.readouterr().out
    net = fastbp.load(path)
    assert net.layer_sizes == (4, 32, 3)
    X = np.random.default_rng(0).normal(size=(5, 4))
    assert net.forward(X).shape == (5, 3)


def test_headerless_csv_with_text_labels_keeps_every_row(tmp_path):
    from fastbp.datasets import load

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    path = tmp_path / "noheader.csv"
    path.write_text("".join(f"{a},{b},{'yes' if a > 0 else 'no'}\n" for a, b in X))
    data = load(str(path))
    assert len(data.X_train) + len(data.X_test) == 40
    assert list(data.classes) == ["no", "yes"]


def test_integer_targets_with_many_values_are_regression_and_standardised(tmp_path):
    from fastbp.datasets import load

    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3))
    path = tmp_path / "counts.npz"
    np.savez(path, X=X, y=np.round(1000 + 300 * X[:, 0]).astype(np.int64))
    data = load(str(path))
    assert data.task == "regression"
    assert abs(data.Y_train.mean()) < 1e-9 and data.Y_train.std() == pytest.approx(1.0)


def test_divergence_is_one_line_and_exit_status_1(tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 3))
    path = tmp_path / "reg.npz"
    np.savez(path, X=X * 1e3, y=X @ [1.0, 2.0, 3.0])
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", str(path), "--learning-rate", "50", "--epochs", "5", "--quiet"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "diverged" in err


def test_fastbp_without_arguments_prints_usage_and_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastbp")
    for command in ("train", "predict", "bench", "conformance"):
        assert f"\n    {command}" in out, command
    assert "fastbp predict --model model.npz --data new.csv" in out


def test_fastbp_version(capsys):
    import fastbp

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"fastbp {fastbp.__version__}"


def test_compile_progress_ticks_on_a_terminal(monkeypatch):
    """On a terminal each compile step's line is rewritten in place (carriage return) with the time so far."""
    import io

    import fastbp.cli as cli

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(cli._Ticker, "_run", lambda self, out, label, t0: print(f"\r{label} ... 1 s", end="", file=out))
    out = Terminal()
    args = cli.build_parser().parse_args(["train", "--epochs", "1", "--hidden", "8"])
    assert cli.train(args, out=out) == 0
    text = out.getvalue()
    assert "    [1/2] training kernel ... 1 s\r    [1/2] training kernel ... " in text


def _csv(path, X, y, header=True):
    lines = [",".join([f"f{j}" for j in range(X.shape[1])] + ["label"])] if header else []
    lines += [",".join([repr(float(v)) for v in row] + [str(t)]) for row, t in zip(X, y)]
    return _write(path, "\n".join(lines) + "\n")


def _reported(out: str, metric: str) -> float:
    return float(out.split(f"test {metric}")[-1].split()[0])


@pytest.mark.parametrize("dataset", ["text-labels.csv", "digits"])
def test_train_save_predict_on_the_raw_test_rows_gives_the_reported_accuracy(dataset, tmp_path, capsys):
    """The round trip of the main job: train and save, then predict from the raw (unscaled) test rows:
    the same accuracy as training reported, and the labels as they were in the data."""
    from fastbp.datasets import _bundled, load

    if dataset == "digits":
        X, y, _ = _bundled("digits")
        source = "digits"
    else:  # features far from standard scale, text labels
        rng = np.random.default_rng(1)
        X = rng.normal(loc=[100.0, -5.0, 0.0], scale=[30.0, 0.01, 2.0], size=(240, 3))
        y = np.where(X[:, 0] / 30 + X[:, 2] / 2 > 3.3, "big", np.where(X[:, 2] > 0, "pos", "neg"))
        source = str(_csv(tmp_path / dataset, X, y))
    model = tmp_path / "model.npz"
    assert main(["train", "--dataset", source, "--epochs", "4", "--quiet", "--save", str(model)]) == 0
    reported = _reported(capsys.readouterr().out, "accuracy")
    test_rows = load(source, None, 0).test_index
    raw = _csv(tmp_path / "raw-test.csv", X[test_rows], y[test_rows])
    predictions = tmp_path / "predictions.csv"
    assert main(["predict", "--model", str(model), "--data", str(raw), "--output", str(predictions)]) == 0
    err = capsys.readouterr().err
    assert f"accuracy {reported:.4f} on {len(test_rows)} rows" in err
    written = predictions.read_text().splitlines()
    assert written[0] == "prediction" and len(written) == len(test_rows) + 1
    labels = [str(int(t)) if dataset == "digits" else t for t in y[test_rows]]
    assert np.mean(np.array(written[1:]) == np.array(labels)) == pytest.approx(reported, abs=5e-5)
    assert set(written[1:]) <= set(labels) | set(map(str, y))
    # without the target column: features only, predictions on stdout, no score
    features = tmp_path / "features.csv"
    features.write_text("\n".join(",".join(repr(float(v)) for v in row) for row in X[test_rows]) + "\n")
    assert main(["predict", "--model", str(model), "--data", str(features)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == written and captured.err == ""


def test_predict_takes_a_csvs_columns_by_name_when_the_training_csv_had_a_header(tmp_path, capsys):
    """A model trained on a CSV with a header keeps its feature names: a CSV to predict with the same
    columns in another order (the target anywhere) gives the same predictions, one whose header names
    other columns is refused naming them, and a file without a header is read by position."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(120, 3)) * [1.0, 10.0, 100.0]
    y = np.where(X[:, 0] + X[:, 1] / 10 > 0, "yes", "no")

    def table(name, header, columns):
        rows = [",".join(header)] if header else []
        rows += [",".join(str(c[i]) for c in columns) for i in range(len(X))]
        return _write(tmp_path / name, "\n".join(rows) + "\n")

    a, b, c = X.T
    model = tmp_path / "m.npz"
    train = table("train.csv", ["a", "b", "c", "label"], [a, b, c, y])
    assert main(["train", "--dataset", str(train), "--epochs", "3", "--quiet", "--save", str(model)]) == 0
    capsys.readouterr()
    outputs = {}
    for name, header, columns in [
        ("same.csv", ["a", "b", "c"], [a, b, c]),
        ("reordered.csv", ["c", "a", "b"], [c, a, b]),
        ("label-first.csv", ["label", "b", "c", "a"], [y, b, c, a]),
        ("no-header.csv", None, [a, b, c]),
    ]:
        assert main(["predict", "--model", str(model), "--data", str(table(name, header, columns))]) == 0
        outputs[name] = capsys.readouterr().out
    assert len(set(outputs.values())) == 1 and outputs["same.csv"].count("\n") == len(X) + 1
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(model), "--data", str(table("other.csv", ["a", "b", "d"], [a, b, c]))])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "missing 'c'" in err and "not features 'd'" in err
    ragged = _write(tmp_path / "ragged.csv", "a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(model), "--data", str(ragged)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("--data") == 1 and "rows have different numbers of columns" in err


def test_train_save_predict_regression_from_npz_gives_values_in_the_targets_units(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 3)) * [1.0, 50.0, 0.1]
    y = 1000.0 + 300.0 * np.tanh(X[:, 0]) + 2.0 * X[:, 1] + rng.normal(size=200)
    data = tmp_path / "reg.npz"
    np.savez(data, X=X, y=y)
    model = tmp_path / "reg-model.npz"
    assert main(["train", "--dataset", str(data), "--epochs", "20", "--quiet", "--save", str(model)]) == 0
    reported = _reported(capsys.readouterr().out, "R²")
    from fastbp.datasets import load

    rows = load(str(data), None, 0).test_index
    raw = tmp_path / "raw.npz"
    np.savez(raw, X=X[rows], y=y[rows])
    assert main(["predict", "--model", str(model), "--data", str(raw)]) == 0
    captured = capsys.readouterr()
    values = np.array([float(v) for v in captured.out.splitlines()[1:]])
    assert f"R² {reported:.4f} on {len(rows)} rows" in captured.err
    assert np.abs(values - y[rows]).mean() < 0.5 * np.abs(y[rows] - y[rows].mean()).mean()  # in the targets' units


@pytest.mark.parametrize(
    "make_args, says",
    [
        (lambda tmp, model: ["--model", str(tmp / "missing.npz"), "--data", str(tmp / "d.csv")], "no such file"),
        (
            lambda tmp, model: ["--model", str(_write(tmp / "junk.npz", "junk")), "--data", str(tmp / "d.csv")],
            "--model",
        ),
        (lambda tmp, model: ["--model", str(model), "--data", str(tmp / "missing.csv")], "--data: no such file"),
        (lambda tmp, model: ["--model", str(model), "--data", str(_write(tmp / "w.csv", "1,2\n3,4\n"))], "columns"),
        (lambda tmp, model: ["--model", str(model), "--data", str(tmp / "d.txt")], "--data must be"),
        (lambda tmp, model: ["--model", str(model), "--data", str(tmp / "d.csv"), "--output", "p.txt"], "--output"),
    ],
    ids=["missing-model", "corrupt-model", "missing-data", "wrong-columns", "data-suffix", "output-suffix"],
)
def test_predict_bad_input_is_one_line_and_exit_status_2(make_args, says, tmp_path, capsys):
    import fastbp

    model = tmp_path / "m.npz"
    net = fastbp.MLP([4, 3, 3], seed=0)
    from fastbp.io import Preprocessing

    net.preprocessing = Preprocessing("classification", np.zeros(4), np.ones(4), np.array(["a", "b", "c"]))
    net.save(model)
    _write(tmp_path / "d.csv", "1,2,3,4\n5,6,7,8\n")
    with pytest.raises(SystemExit) as exc:
        main(["predict", *make_args(tmp_path, model)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def test_predict_refuses_a_model_without_scaling_and_says_what_to_do(tmp_path, capsys):
    import fastbp

    model = tmp_path / "bare.npz"
    fastbp.MLP([2, 3, 1], seed=0).save(model)
    data = _write(tmp_path / "d.csv", "1,2\n3,4\n")
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--model", str(model), "--data", str(data)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "no feature scaling" in err and "fastbp train --save" in err


def test_plot_title_names_the_data_and_settings_and_accuracy_spans_0_to_1(tmp_path):
    """A changed test example must not look like a swing: the accuracy axis is the whole 0-1 scale."""
    import fastbp.cli as cli
    from fastbp.datasets import load
    from fastbp.network import History

    args = cli.build_parser().parse_args(
        ["train", "--dataset", "iris", "--hidden", "8", "--batch-size", "4", "--learning-rate", "0.05", "--seed", "3"]
    )
    data = load("iris", None, 3)
    net = fastbp.MLP([4, 8, 3], seed=3)
    title = cli.plot_title(data, args, net)
    for part in ("iris", "112 train / 38 test", "4-8-3", "tanh/sigmoid", "batch 4", "α = 0.05", "10 epochs", "seed 3"):
        assert part in title, part
    history = History(n_examples=112, loss=[0.9, 0.5, 0.4], seconds=[0.1, 0.1, 0.1])
    fig = cli._plot(history, [0.947, 0.974, 0.947], "accuracy", str(tmp_path / "p.png"), title)
    assert fig.axes[1].get_ylim() == (0.0, 1.0) and fig.axes[0].get_title() == title
    fig = cli._plot(history, [-0.5, 0.2, 0.6], "R²", str(tmp_path / "r.png"), title)
    assert fig.axes[1].get_ylim() == (-0.5, 1.0)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_compile_step_runs_every_scoring_kernel_the_run_uses(task, monkeypatch, tmp_path, capsys):
    """``fastbp train``'s compile step runs the forward kernels its scores will use (predict for
    classification, forward for regression; the rows kernels or the column pass, by the number of
    rows and multiply-adds), so nothing compiles between epochs.  The regression data's 2,250
    training rows take the column pass and its 750 test rows the rows kernels."""
    from fastbp import _dispatch, cli

    phase, used = ["run"], {"compile": set(), "run": set()}
    rows_kernel, run_forward, compile_step = _dispatch._rows_kernel, _dispatch._run_forward, cli._compile

    def spy_rows(name):
        used[phase[0]].add(name)
        return rows_kernel(name)

    def spy_columns(name, params, sizes, X, *args):
        used[phase[0]].add((name, _dispatch.uses_tiles(sizes, X.shape[0])))
        return run_forward(name, params, sizes, X, *args)

    def spy_compile(*args):
        phase[0] = "compile"
        try:
            compile_step(*args)
        finally:
            phase[0] = "run"

    monkeypatch.setattr(_dispatch, "_rows_kernel", spy_rows)
    monkeypatch.setattr(_dispatch, "_run_forward", spy_columns)
    monkeypatch.setattr(cli, "_compile", spy_compile)
    if task == "classification":
        dataset = ["--dataset", "digits", "--hidden", "8"]
    else:
        X = np.random.default_rng(0).normal(size=(3000, 3))
        np.savez(tmp_path / "reg.npz", X=X, y=X @ [1.0, -2.0, 0.5])
        dataset = ["--dataset", str(tmp_path / "reg.npz"), "--hidden", "4", "--learning-rate", "0.01"]
    assert main(["train", *dataset, "--epochs", "2"]) == 0
    assert "epoch   2/2" in capsys.readouterr().out
    assert used["run"] and used["run"] <= used["compile"], used
    if task == "regression":
        assert {type(k) for k in used["run"]} == {str, tuple}  # both the rows kernels and the column pass ran


def test_activation_and_output_names_are_case_insensitive_as_in_python():
    """``MLP(activation="Tanh")`` works, so ``--activation Tanh`` does too; a wrong name is still refused."""
    import fastbp.cli as cli

    args = cli.build_parser().parse_args(["train", "--activation", "Tanh", "--output", "SoftMax"])
    assert (args.activation, args.output) == ("tanh", "softmax")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["train", "--activation", "Swish"])
