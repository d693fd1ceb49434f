"""The command line's data without scikit-learn: the bundled sets read from scikit-learn's files as its
loaders read them, and every set split as its ``train_test_split`` splits it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from fastbp.datasets import BUNDLED, _bundled, _read_bundled_file, split_indices

sklearn_datasets = pytest.importorskip("sklearn.datasets")
from sklearn.model_selection import train_test_split  # noqa: E402


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_sets_are_read_from_scikit_learns_files_as_its_loaders_read_them(name):
    data = getattr(sklearn_datasets, f"load_{name}")()
    read = _read_bundled_file(name)
    assert read is not None, f"{name}: scikit-learn's file was not found or not as expected"
    X, y = read
    assert X.dtype == np.float64 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, data.data)
    np.testing.assert_array_equal(y, data.target)
    assert y.dtype.kind == "i"


def test_bundled_sets_fall_back_to_scikit_learns_loader_without_its_files(monkeypatch):
    import fastbp.datasets as datasets

    monkeypatch.setattr(datasets, "_read_bundled_file", lambda name: None)
    X, y, name = _bundled("iris")
    assert name == "iris" and X.shape == (150, 4) and set(np.unique(y)) == {0, 1, 2}


def _targets() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "ten balanced classes": np.repeat(np.arange(10), 18),
        "unequal classes, tied remainders": np.array([0] * 7 + [1] * 7 + [2] * 5 + [3] * 3 + [4] * 2),
        "two classes": (rng.random(97) < 0.3).astype(int),
        "text labels": rng.choice(np.array(["neg", "pos", "big"]), size=61),
        "shuffled digits labels": rng.permutation(np.repeat(np.arange(10), 9))[:83],
        "values": rng.normal(size=50),
    }


TARGETS = _targets()


@pytest.mark.parametrize("test_size", [0.25, 0.1, 0.5, 0.33, 7])
@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
@pytest.mark.parametrize("case", list(TARGETS))
def test_split_indices_pick_the_rows_train_test_split_picks(case, seed, test_size):
    y = TARGETS[case]
    index = np.arange(len(y))
    for stratify in (False, True) if y.dtype.kind != "f" else (False,):
        try:
            want_train, want_test = train_test_split(
                index, test_size=test_size, random_state=seed, stratify=y if stratify else None
            )
        except ValueError:
            with pytest.raises(ValueError):
                split_indices(y, test_size, seed, stratify)
            continue
        train, test = split_indices(y, test_size, seed, stratify)
        np.testing.assert_array_equal(train, want_train)
        np.testing.assert_array_equal(test, want_test)


def test_split_indices_refuse_a_stratified_split_with_fewer_test_rows_than_classes():
    y = np.repeat(np.arange(6), 2)  # 12 examples, 6 classes: 3 test rows cannot hold every class
    with pytest.raises(ValueError):
        train_test_split(np.arange(12), test_size=0.25, random_state=0, stratify=y)
    with pytest.raises(ValueError, match="too few examples of a class"):
        split_indices(y, 0.25, 0, True)
    train, test = split_indices(y, 0.25, 0, False)
    assert sorted(np.concatenate([train, test])) == list(range(12)) and len(test) == 3


def test_fastbp_train_on_a_bundled_set_does_not_import_scikit_learn():
    code = (
        "import sys\n"
        "from fastbp.cli import main\n"
        "assert main(['train', '--epochs', '1', '--quiet', '--backend', 'numpy']) == 0\n"
        "print('imported' if 'sklearn' in sys.modules else 'not imported')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "not imported"
