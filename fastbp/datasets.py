"""Data for the command line: scikit-learn's bundled sets, or a CSV/NPZ file of your own.

scikit-learn is imported only when a data set is loaded, so ``import fastbp`` does not pay for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

BUNDLED = ("digits", "breast_cancer", "iris")


@dataclass
class Split:
    """A train/test split, features scaled, targets encoded for the network."""

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    y_train: np.ndarray  # class indices (classification) or values (regression)
    y_test: np.ndarray
    Y_train: np.ndarray  # what the network fits: one-hot / 0-1 column / values (m × n_y)
    task: str  # "classification" or "regression"
    classes: np.ndarray | None = None

    @property
    def n_outputs(self) -> int:
        return self.Y_train.shape[1]


class DataError(ValueError):
    """A data set that cannot be read or used; the message is one line."""


def load(source: str, target: str | None = None, seed: int = 0, test_size: float = 0.25) -> Split:
    """Load ``source`` (a bundled name or a ``.csv``/``.npz`` path) and split it.

    Features are scaled with statistics of the training part only (digits: pixel
    values / 16).  ``target`` names the column (CSV header name or 0-based index)
    or the NPZ key holding the targets; default: the CSV's last column, the NPZ's
    ``y``.  Boolean or text targets, and whole-number targets with at most 50
    distinct values, are a classification task; anything else is regression, with
    its targets standardised with the training part's statistics as well.
    """
    if source in BUNDLED:
        if target is not None:
            raise DataError(f"--target applies to a .csv/.npz file, not the bundled {source!r} data set")
        X, y, name = _bundled(source)
    elif source.lower().endswith((".csv", ".npz")):
        X, y = _from_file(source, target)
        name = os.path.basename(source)
    else:
        raise DataError(f"--dataset must be one of {', '.join(BUNDLED)} or a .csv/.npz file, got {source!r}")
    if len(X) < 4:
        raise DataError(f"{source}: needs at least 4 examples, got {len(X)}")
    if X.ndim != 2 or X.shape[1] == 0:
        raise DataError(f"{source}: no feature columns (only the target); the network needs at least one input")
    if not np.isfinite(X).all():
        raise DataError(f"{source}: features contain NaN or inf")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise DataError(f"{source}: targets contain NaN or inf")
    task = _task(y)
    from sklearn.model_selection import train_test_split

    stratify = y if task == "classification" and np.unique(y, return_counts=True)[1].min() >= 2 else None
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError:  # too few examples to put every class in both parts: split without stratifying
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, random_state=seed)
    if source == "digits":
        X_train, X_test = X_train / 16.0, X_test / 16.0
    else:
        X_train, X_test = _standardise(X_train, X_test)
    if not (np.isfinite(X_train).all() and np.isfinite(X_test).all()):  # pragma: no cover - _standardise's promise
        raise DataError(f"{source}: features cannot be standardised (values too large)")
    if task == "classification":
        classes, train_idx = np.unique(y_train, return_inverse=True)
        lookup = {c: i for i, c in enumerate(classes)}
        test_idx = np.array([lookup.get(c, -1) for c in y_test])
        Y = train_idx.reshape(-1, 1).astype(float) if len(classes) == 2 else np.eye(len(classes))[train_idx]
        return Split(name, X_train, X_test, train_idx, test_idx, Y, task, classes)
    # Regression targets are standardised with the training part's statistics too, so the
    # default learning rate suits any target scale (R² is unchanged by this affine map).
    with np.errstate(over="ignore", invalid="ignore"):
        y_mean, y_std = float(y_train.mean()), float(y_train.std()) or 1.0
    if np.isfinite(y_mean) and np.isfinite(y_std):
        y_train = (y_train.astype(float) - y_mean) / y_std
        y_test = (y_test.astype(float) - y_mean) / y_std
    else:  # targets near ±1e308
        y_train, y_test = (a[:, 0] for a in _standardise(y_train.reshape(-1, 1), y_test.reshape(-1, 1)))
    return Split(name, X_train, X_test, y_train, y_test, y_train.reshape(-1, 1), task)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns scaled to mean 0 and standard deviation 1 with the training part's statistics.

    Values near ±1e308 overflow the mean and the standard deviation: their columns are divided
    by their largest magnitude first (an affine map, so the result is the same up to rounding).
    """
    train, test = train.astype(float), test.astype(float)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = train.mean(axis=0), train.std(axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        scale = np.abs(train).max(axis=0)
        scale[scale == 0] = 1.0
        train, test = train / scale, test / scale
        mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    with np.errstate(over="ignore", invalid="ignore"):
        out = (train - mean) / std, (test - mean) / std
    return out


def _bundled(name: str):
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}[
        name
    ]
    data = loader()
    return data.data.astype(float), data.target, name


def _from_file(path: str, target: str | None):
    if not os.path.isfile(path):
        raise DataError(f"--dataset: no such file: {path}")
    try:
        if path.lower().endswith(".npz"):
            return _from_npz(path, target)
        return _from_csv(path, target)
    except DataError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"--dataset: cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def _from_npz(path: str, target: str | None):
    data = np.load(path, allow_pickle=False)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"--dataset: {path} is a single .npy array, not a .npz archive of 'X' and 'y'")
    with data:
        key = target or "y"
        if key not in data.files or "X" not in data.files:
            raise DataError(
                f"--dataset: {path} must hold arrays 'X' and {key!r} (has {', '.join(data.files) or 'nothing'})"
            )
        X, y = data["X"], data[key]
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise DataError(
            f"--dataset: {path}: X must be 2-D and {key!r} 1-D with as many rows, got {X.shape} and {y.shape}"
        )
    if X.dtype.kind not in "biuf":
        raise DataError(f"--dataset: {path}: X must be numeric, got dtype {X.dtype}")
    return X.astype(float), y


def _from_csv(path: str, target: str | None):
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:  # (a byte-order mark is not part of a name)
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataError(f"--dataset: {path} has no data rows")
    header = rows[0]
    # Row 0 is a header when some column is numeric below it but not in it (a text label
    # column alone does not make a header).
    has_header = any(not _is_number(h) and _is_number(c) for h, c in zip(header, rows[1]))
    body = rows[1:] if has_header else rows
    names = header if has_header else [str(i) for i in range(len(header))]
    if any(len(r) != len(names) for r in body):
        raise DataError(f"--dataset: {path}: rows have different numbers of columns")
    if target is None:
        col = len(names) - 1
    elif target in names:
        col = names.index(target)
    elif target.lstrip("-").isdigit() and -len(names) <= int(target) < len(names):
        col = int(target) % len(names)
    else:
        raise DataError(f"--target: no column {target!r} in {path} (columns: {', '.join(names)})")
    features = [[r[i] for i in range(len(names)) if i != col] for r in body]
    try:
        X = np.array(features, dtype=float)
    except ValueError:
        name, value = next(
            ((names[j], cell) for row in body for j, cell in enumerate(row) if j != col and not _is_number(cell)),
            ("?", "?"),
        )
        raise DataError(
            f"--dataset: {path}: feature column {name!r} is not numeric (it holds {value!r}); "
            "choose the label column with --target"
        ) from None
    labels = [r[col].strip() for r in body]
    y = np.array([float(v) for v in labels]) if all(_is_number(v) for v in labels) else np.array(labels)
    return X, y


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _task(y: np.ndarray) -> str:
    """Booleans and text are classes; whole numbers with at most 50 values too; the rest is regression."""
    if y.dtype.kind in "bUSO":
        return "classification"
    if y.dtype.kind in "iuf" and np.all(y == np.round(y)) and len(np.unique(y)) <= 50:
        return "classification"
    return "regression"
