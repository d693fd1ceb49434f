"""The command line under bad input (issue 14): every bad argument or file is one line on stderr and
exit status 2, found before any training; nothing the command line accepts ends in a traceback."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastbp.cli import main


def _csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return str(path)


def _text(path, text):
    path.write_text(text)
    return str(path)


def _ok_csv(tmp_path):
    return _csv(tmp_path / "ok.csv", ["a", "b", "y"], [(i, i % 3, i % 2) for i in range(20)])


def _one_line_status_2(argv, capsys, names):
    try:
        status = main(argv)  # (bench returns its status; train and argparse exit with it)
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert names in err, err
    assert "epoch" not in captured.out  # refused before any training
    return err


def _cases(tmp_path):
    ok = _ok_csv(tmp_path)
    (tmp_path / "dir.npz").mkdir()
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "dir.json").mkdir()
    np.save(tmp_path / "x.npy", np.zeros((5, 3)))
    os.rename(tmp_path / "x.npy", tmp_path / "fake.npz")
    base = ["train", "--dataset", ok, "--epochs", "1", "--quiet"]
    return {
        "seed 2**32": (["train", "--seed", str(2**32), "--quiet"], "--seed"),
        "seed -1": (["train", "--seed", "-1", "--quiet"], "--seed"),
        "no feature columns": (
            ["train", "--dataset", _csv(tmp_path / "nofeat.csv", ["y"], [(i % 2,) for i in range(8)])],
            "no feature columns",
        ),
        "--save folder": ([*base, "--save", str(tmp_path / "dir.npz")], "--save"),
        "--plot folder": ([*base, "--plot", str(tmp_path / "dir.png")], "--plot"),
        "--json folder": (["bench", "--quick", "--json", str(tmp_path / "dir.json")], "--json"),
        "huge --hidden": ([*base, "--hidden", str(2**40)], "--hidden"),
        "--hidden beyond memory": ([*base, "--hidden", "1000000", "1000000", "1000000"], "--hidden"),
        "npy renamed npz": (["train", "--dataset", str(tmp_path / "fake.npz")], "fake.npz"),
        "bench --seed -1": (["bench", "--seed", "-1"], "--seed"),
        "bench --seed 2**32": (["bench", "--seed", str(2**32)], "--seed"),
        "learning rate overflowing float32": (
            [*base, "--dtype", "float32", "--learning-rate", "1e39"],
            "--learning-rate",
        ),
        "learning rate rounding to 0 in float32": (
            [*base, "--dtype", "float32", "--learning-rate", "1e-46"],
            "--learning-rate",
        ),
        "infinite targets": (
            [
                "train",
                "--dataset",
                _csv(tmp_path / "inf.csv", ["a", "y"], [(i, "inf" if i == 3 else i) for i in range(8)]),
            ],
            "targets",
        ),
        "nan targets": (
            [
                "train",
                "--dataset",
                _csv(tmp_path / "nan.csv", ["a", "y"], [(i, "nan" if i == 3 else i) for i in range(8)]),
            ],
            "targets",
        ),
        "one class": (
            ["train", "--dataset", _csv(tmp_path / "one.csv", ["a", "y"], [(i, "cat") for i in range(8)])],
            "one class",
        ),
        "missing value": (
            [
                "train",
                "--dataset",
                _csv(tmp_path / "gap.csv", ["a", "b", "y"], [(i, "" if i == 3 else i, 1) for i in range(8)]),
            ],
            "feature column 'b' has an empty cell (data row 4)",
        ),
        "semicolons": (
            [
                "train",
                "--dataset",
                _text(tmp_path / "semi.csv", "a;b;y\n" + "".join(f"{i};{i};{i % 2}\n" for i in range(8))),
            ],
            "fastbp reads comma-separated files",
        ),
        "--target index out of range": (
            ["train", "--dataset", ok, "--target", "9"],
            "index 9 is out of range: " + ok + " has 3 columns (0-2)",
        ),
    }


CASES = [
    "seed 2**32",
    "seed -1",
    "no feature columns",
    "--save folder",
    "--plot folder",
    "--json folder",
    "huge --hidden",
    "--hidden beyond memory",
    "npy renamed npz",
    "bench --seed -1",
    "bench --seed 2**32",
    "learning rate overflowing float32",
    "learning rate rounding to 0 in float32",
    "infinite targets",
    "nan targets",
    "one class",
    "missing value",
    "semicolons",
    "--target index out of range",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_status_2_before_training(case, tmp_path, capsys):
    argv, names = _cases(tmp_path)[case]
    _one_line_status_2(argv, capsys, names)


def test_a_class_left_out_of_the_training_part_is_refused(tmp_path):
    """Seven examples of one class and one of another (too few to stratify): where the split puts the
    single example in the test part, the training part holds one class, refused by name."""
    from fastbp.datasets import DataError, load

    path = _csv(tmp_path / "lone.csv", ["a", "y"], [(i, "b" if i == 5 else "a") for i in range(8)])
    refused = 0
    for seed in range(12):
        try:
            assert list(load(path, None, seed).classes) == ["a", "b"]
        except DataError as exc:
            assert "the training part holds one class ('a')" in str(exc)
            refused += 1
    assert 0 < refused < 12


def test_a_four_row_two_class_file_trains(tmp_path, capsys):
    path = _csv(tmp_path / "four.csv", ["a", "y"], [(1, 0), (2, 1), (3, 0), (4, 1)])
    assert main(["train", "--dataset", path, "--epochs", "1", "--quiet"]) == 0
    assert "accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("column", ["a", "y"])
def test_features_and_targets_near_the_float64_limit_train(tmp_path, capsys, column):
    rows = [(1e308 * (-1) ** i * (0.5 + i / 40), i % 2 if column == "a" else i) for i in range(20)]
    if column == "y":
        rows = [(i, 1e308 * (-1) ** i * (0.5 + i / 40)) for i in range(20)]
    path = _csv(tmp_path / "big.csv", ["a", "y"], rows)
    assert main(["train", "--dataset", path, "--epochs", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower()


def test_a_csv_with_a_byte_order_mark_keeps_its_first_column_name(tmp_path, capsys):
    path = tmp_path / "excel.csv"
    path.write_text("first,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)), encoding="utf-8-sig")
    assert main(["train", "--dataset", str(path), "--target", "first", "--epochs", "1", "--quiet"]) == 0
    assert main(["train", "--dataset", str(path), "--target", "y", "--epochs", "1", "--quiet"]) == 0
