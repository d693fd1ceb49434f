"""Data for the command line: scikit-learn's bundled sets, or a CSV/NPZ file of your own.

The bundled sets are read from the files scikit-learn ships, and every set is split as
scikit-learn's ``train_test_split`` splits it (:func:`split_indices`), without importing
scikit-learn: loading the digits through it took 2.1 s of a 2.4 s warm ``fastbp train``, nearly
all of it the import (``python -m cProfile -s cumtime -m fastbp train --quiet``), more than
loading the compiled kernels from Numba's cache.  Where its files are not where this module
looks, scikit-learn's own loaders read them.
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass

import numpy as np

from .io import Preprocessing

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
    preprocessing: Preprocessing | None = None  # the scaling and labels, for MLP.save and fastbp predict
    test_index: np.ndarray | None = None  # the test rows' positions in the data as read

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
        feature_names = None
    elif source.lower().endswith((".csv", ".npz")):
        X, y, feature_names = _from_file(source, target)
        name = os.path.basename(source)
    else:
        raise DataError(f"--dataset must be one of {', '.join(BUNDLED)} or a .csv/.npz file, got {source!r}")
    if len(X) < 4:
        raise DataError(f"{source}: needs at least 4 examples, got {len(X)}")
    if X.ndim != 2 or X.shape[1] == 0:
        hint = ""
        if source.lower().endswith(".csv") and any(sep in _first_line(source) for sep in ";\t"):
            hint = " (fastbp reads comma-separated files; this one seems to use ';' or tabs)"
        raise DataError(f"{source}: no feature columns (only the target); the network needs at least one input{hint}")
    if not np.isfinite(X).all():
        raise DataError(f"{source}: features contain NaN or inf")
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise DataError(f"{source}: targets contain NaN or inf")
    task = _task(y)
    counts = np.unique(y, return_counts=True)[1] if task == "classification" else None
    if counts is not None and len(counts) < 2:
        raise DataError(
            f"{source}: the target has one class ({np.asarray(y[0]).item()!r}); a classifier needs two or more"
        )
    stratify = counts is not None and counts.min() >= 2
    try:
        train_index, test_index = split_indices(y, test_size, seed, stratify)
    except ValueError:  # too few examples to put every class in both parts: split without stratifying
        train_index, test_index = split_indices(y, test_size, seed, False)
    X_train, X_test, y_train, y_test = X[train_index], X[test_index], y[train_index], y[test_index]
    if source == "digits":  # pixels 0..16
        mean, std = np.zeros(X.shape[1]), np.full(X.shape[1], 16.0)
    else:
        mean, std = _scaling(X_train)
    X_train, X_test = scale_features(X_train, mean, std), scale_features(X_test, mean, std)
    if not (np.isfinite(X_train).all() and np.isfinite(X_test).all()):  # pragma: no cover - _scaling's promise
        raise DataError(f"{source}: features cannot be standardised (values too large)")
    if task == "classification":
        classes, train_idx = np.unique(y_train, return_inverse=True)
        if len(classes) < 2:  # every example of the other classes went to the test part
            raise DataError(
                f"{source}: the training part holds one class ({np.asarray(classes[0]).item()!r}): every "
                "example of the others went to the test part; give more examples of each class"
            )
        lookup = {c: i for i, c in enumerate(classes)}
        test_idx = np.array([lookup.get(c, -1) for c in y_test])
        Y = train_idx.reshape(-1, 1).astype(float) if len(classes) == 2 else np.eye(len(classes))[train_idx]
        pre = Preprocessing(task, mean, std, classes, feature_names=feature_names)
        return Split(name, X_train, X_test, train_idx, test_idx, Y, task, classes, pre, test_index)
    # Regression targets are standardised with the training part's statistics too, so the
    # default learning rate suits any target scale (R² is unchanged by this affine map).
    y_mean, y_std = (float(v[0]) for v in _scaling(y_train.reshape(-1, 1)))
    y_train = scale_features(y_train.reshape(-1, 1), y_mean, y_std)[:, 0]
    y_test = scale_features(y_test.reshape(-1, 1), y_mean, y_std)[:, 0]
    pre = Preprocessing(task, mean, std, None, y_mean, y_std, feature_names)
    return Split(name, X_train, X_test, y_train, y_test, y_train.reshape(-1, 1), task, None, pre, test_index)


def scale_features(X: np.ndarray, offset, scale) -> np.ndarray:
    """``(X - offset) / scale``: the one place features (and regression targets) are scaled, for
    training and for ``fastbp predict``; computed as X/scale − offset/scale, so that values near
    ±1e308 do not overflow."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(X, dtype=float) / scale - np.asarray(offset, dtype=float) / scale


def _scaling(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation (1 where it is 0), from the training part.

    Values near ±1e308 overflow the plain mean and standard deviation: such columns are divided
    by their largest magnitude first, and the statistics scaled back (both stay finite).
    """
    train = np.asarray(train, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = train.mean(axis=0), train.std(axis=0)
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        big = np.abs(train).max(axis=0)
        big[big == 0] = 1.0
        mean, std = (train / big).mean(axis=0) * big, (train / big).std(axis=0) * big
    std[std == 0] = 1.0
    return mean, std


def decode(pre: Preprocessing, net, X_raw: np.ndarray) -> np.ndarray:
    """Predictions for raw rows ``X_raw`` from ``net`` and its saved ``pre``: class labels or target values."""
    X = scale_features(X_raw, pre.x_offset, pre.x_scale)
    if pre.task == "classification":
        return pre.classes[net.predict(X)]
    return net.forward(X)[:, 0].astype(float) * pre.y_scale + pre.y_offset


def read_rows(path: str, n_features: int, target: str | None = None, feature_names=None):
    """Raw rows of a ``.csv``/``.npz`` file for prediction: ``(X, y)``, ``y`` ``None`` when there is no target.

    A CSV with ``n_features`` columns is all features; with one more, the target column (``target``, default
    the last, or the one column whose name is not a feature's) is set apart.  Given the model's
    ``feature_names`` (trained on a CSV with a header), a CSV with a header must name those features, in
    any order: its columns are taken by name (a ``DataError`` names what is missing); without a header, or
    for a model without names, by position.  An NPZ holds ``X`` and, optionally, the targets under
    ``target`` (default ``y``), by position.
    """
    if not path.lower().endswith((".csv", ".npz")):
        raise DataError(f"--data must be a .csv or .npz file, got {path!r}")
    if not os.path.isfile(path):
        raise DataError(f"--data: no such file: {path}")
    if path.lower().endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                if "X" not in data.files:
                    raise DataError(f"--data: {path} must hold an array 'X' (has {', '.join(data.files) or 'nothing'})")
                key = target or "y"
                X, y = data["X"], (data[key] if key in data.files else None)
        except DataError:
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"--data: cannot read {path}: {str(exc).splitlines()[0]}") from None
        if X.ndim != 2 or X.dtype.kind not in "biuf":
            raise DataError(f"--data: {path}: X must be a numeric 2-D array, got {X.dtype} {X.shape}")
        if target is not None and y is None:
            raise DataError(f"--target: no array {target!r} in {path}")
        X = X.astype(float)
    else:
        try:
            names, body, has_header = _csv_table(path, "--data")
        except DataError:  # already says which option and file
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"--data: cannot read {path}: {str(exc).splitlines()[0]}") from None
        by_name = has_header and feature_names is not None
        if len(names) == n_features and target is None:
            col = None
        elif len(names) == n_features + 1:
            col = len(names) - 1 if target is None else _column(names, target, path)
            if by_name and target is None:  # the target: the one column that is not a feature, if there is one
                known = {str(n) for n in feature_names}
                others = [i for i, name in enumerate(names) if name not in known]
                col = others[0] if len(others) == 1 else col
        else:
            raise DataError(
                f"--data: {path} has {len(names)} columns; the model takes {n_features} features "
                f"(give {n_features} columns, or {n_features + 1} with the target, chosen by --target)"
            )
        X = _features(path, names, body, col, "--data")
        y = None if col is None else _labels([r[col] for r in body])
        if by_name:
            X = X[
                :, _by_name(path, [name for i, name in enumerate(names) if i != col], [str(n) for n in feature_names])
            ]
    if X.shape[1] != n_features:
        raise DataError(f"--data: {path}: X has {X.shape[1]} features; the model takes {n_features}")
    if not np.isfinite(X).all():
        raise DataError(f"--data: {path}: features contain NaN or inf")
    return X, y


def split_indices(y: np.ndarray, test_size: float | int, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """The training and test rows that ``sklearn.model_selection.train_test_split(..., test_size=test_size,
    random_state=seed, stratify=y if stratify else None)`` picks: the same draws from
    ``numpy.random.RandomState(seed)`` in the same order (its ``ShuffleSplit`` and
    ``StratifiedShuffleSplit``), so the same split; ``ValueError`` where it refuses one
    (tests/test_datasets.py holds the two to each other)."""
    n = len(y)
    if isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        if not 0 < test_size < n:  # a number of rows, as scikit-learn reads an integer
            raise ValueError(f"test_size must be a number of rows in 1 … {n - 1} or a fraction, got {test_size!r}")
        n_test = int(test_size)
    elif 0.0 < test_size < 1.0:
        n_test = math.ceil(test_size * n)
    else:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a number of rows, got {test_size!r}")
    n_train = n - n_test
    if n_train == 0:
        raise ValueError(f"{n} examples leave no training examples with test_size={test_size}")
    rng = np.random.RandomState(seed)
    if not stratify:
        permutation = rng.permutation(n)
        return permutation[n_test:], permutation[:n_test]
    _, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if class_counts.min() < 2 or min(n_train, n_test) < len(class_counts):
        raise ValueError("too few examples of a class to put it in both parts")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list = []
    test: list = []
    for i, indices in enumerate(class_indices):
        shuffled = indices.take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(shuffled[: n_i[i]])
        test.extend(shuffled[n_i[i] : n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of ``n_draws`` examples each class gives (scikit-learn's ``_approximate_mode``): the
    proportional share rounded down, the rest to the largest remainders, ties drawn from ``rng``."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


#: The files scikit-learn ships the bundled sets in (sklearn/datasets/data/): digits as plain rows
#: (64 pixels, then the digit), the others after a header line "n_samples,n_features,names...".
_BUNDLED_FILES = {
    "digits": ("digits.csv.gz", False),
    "breast_cancer": ("breast_cancer.csv", True),
    "iris": ("iris.csv", True),
}


def _bundled(name: str):
    """X (float64) and the integer targets of a bundled set, as scikit-learn's ``load_<name>`` gives them."""
    read = _read_bundled_file(name)
    if read is None:
        from sklearn import datasets

        loader = {
            "digits": datasets.load_digits,
            "breast_cancer": datasets.load_breast_cancer,
            "iris": datasets.load_iris,
        }[name]
        data = loader()
        read = data.data.astype(float), data.target
    return (*read, name)


def _read_bundled_file(name: str):
    """``(X, y)`` from scikit-learn's file for ``name``, found without importing scikit-learn, or
    ``None`` where the file is not there or not as expected."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    file_name, header = _BUNDLED_FILES[name]
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "datasets", "data", file_name)
        if not os.path.isfile(path):
            continue
        try:
            data = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, ndmin=2)
            if header:
                with open(path, encoding="utf-8") as f:
                    n_samples, n_features = (int(v) for v in f.readline().split(",")[:2])
                if data.shape != (n_samples, n_features + 1):
                    return None
        except (OSError, ValueError):
            return None
        return np.ascontiguousarray(data[:, :-1]), data[:, -1].astype(int)
    return None


def _from_file(path: str, target: str | None):
    if not os.path.isfile(path):
        raise DataError(f"--dataset: no such file: {path}")
    try:
        if path.lower().endswith(".npz"):
            return (*_from_npz(path, target), None)
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


def _by_name(path: str, columns: list[str], wanted: list[str]) -> list[int]:
    """Where each of the model's features ``wanted`` is among a CSV's feature ``columns`` (by name)."""
    missing = [name for name in wanted if name not in columns]
    if missing or len(set(columns)) != len(columns):
        extra = [name for name in columns if name not in wanted]
        raise DataError(
            f"--data: {path}'s header does not name the model's {len(wanted)} features ({_names(wanted)}): "
            f"missing {_names(missing)}; not features {_names(extra)}; a repeated name is refused too "
            "(a file with a header is read by name, one without by position)"
        )
    return [columns.index(name) for name in wanted]


def _names(names: list[str], most: int = 8) -> str:
    """Up to ``most`` names for a message, quoted, then how many more."""
    if not names:
        return "none"
    shown = ", ".join(repr(str(n)) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _csv_table(path: str, option: str = "--dataset") -> tuple[list[str], list[list[str]], bool]:
    """Column names, data rows and whether row 0 was a header (it is when some column is numeric below
    it but not in it; a text label column alone does not make a header); without a header the
    names are the columns' indices."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:  # (a byte-order mark is not part of a name)
        rows = [r for r in csv.reader(fh) if r and any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataError(f"{option}: {path} has no data rows")
    header = rows[0]
    has_header = any(not _is_number(h) and _is_number(c) for h, c in zip(header, rows[1]))
    body = rows[1:] if has_header else rows
    names = [h.strip() for h in header] if has_header else [str(i) for i in range(len(header))]
    if any(len(r) != len(names) for r in body):
        raise DataError(f"{option}: {path}: rows have different numbers of columns")
    return names, body, has_header


def _column(names: list[str], target: str, path: str) -> int:
    if target in names:
        return names.index(target)
    if target.lstrip("-").isdigit():
        if -len(names) <= int(target) < len(names):
            return int(target) % len(names)
        raise DataError(
            f"--target: index {target} is out of range: {path} has {len(names)} columns (0-{len(names) - 1})"
        )
    raise DataError(f"--target: no column {target!r} in {path} (columns: {_names(names, 20)})")


def _features(
    path: str, names: list[str], body: list[list[str]], col: int | None, option: str = "--dataset"
) -> np.ndarray:
    features = [[r[i] for i in range(len(names)) if i != col] for r in body]
    try:
        return np.array(features, dtype=float)
    except ValueError:
        line, name, value = next(
            (
                (i, names[j], cell)
                for i, row in enumerate(body)
                for j, cell in enumerate(row)
                if j != col and not _is_number(cell)
            ),
            (0, "?", "?"),
        )
        if not value.strip():  # a missing value, not a text column
            raise DataError(
                f"{option}: {path}: feature column {name!r} has an empty cell (data row {line + 1}): "
                "fill in or drop the rows with missing values"
            ) from None
        raise DataError(
            f"{option}: {path}: feature column {name!r} is not numeric (it holds {value!r}); "
            "choose the label column with --target"
        ) from None


def _labels(cells: list[str]) -> np.ndarray:
    labels = [cell.strip() for cell in cells]
    return np.array([float(v) for v in labels]) if all(_is_number(v) for v in labels) else np.array(labels)


def _from_csv(path: str, target: str | None):
    """``(X, y, feature_names)``: the names from the CSV's header (``None`` without one, or names a
    model file cannot keep: empty, repeated or longer than :data:`fastbp.io.MAX_FEATURE_NAME`)."""
    from .io import MAX_FEATURE_NAME

    names, body, has_header = _csv_table(path)
    col = len(names) - 1 if target is None else _column(names, target, path)
    features = [name for i, name in enumerate(names) if i != col]
    keep = has_header and all(0 < len(n) <= MAX_FEATURE_NAME for n in features) and len(set(features)) == len(features)
    return _features(path, names, body, col), _labels([r[col] for r in body]), (np.array(features) if keep else None)


def _first_line(path: str) -> str:
    """The file's first line (up to 4 KB), for a hint in a message; empty if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.readline(4096)
    except OSError:
        return ""


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
