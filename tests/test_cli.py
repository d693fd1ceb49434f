"""The main job: ``fastbp train``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fastbp.cli import main


def test_train_prints_losses_accuracies_and_throughput(capsys):
    assert main(["train", "--epochs", "3", "--hidden", "16"]) == 0
    out = capsys.readouterr().out
    assert sum(line.lstrip().startswith("epoch") and "loss" in line for line in out.splitlines()) == 3
    assert "train accuracy" in out and "test accuracy" in out and "examples/s" in out
    test_acc = float(out.split("test accuracy")[1].split()[0])
    assert test_acc > 0.8  # three epochs of per-example SGD learn the digits


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
    ],
)
def test_bad_option_is_one_line_and_exit_status_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error" in err


def test_python_dash_m_runs_the_same_command():
    run = subprocess.run([sys.executable, "-m", "fastbp", "train", "--epochs", "1", "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "test accuracy" in run.stdout
