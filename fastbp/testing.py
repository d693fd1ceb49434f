"""The registry of implementations, seeded problem makers and tolerances.

One table, :data:`IMPLEMENTATIONS`, maps each operation to its kernel and its
NumPy reference (``{name: (kernel, reference)}``, numbagg's ``COMPARISONS``
idea).  fastbp's agreement tests and its pytest-benchmark suite both iterate
over it, and so can anyone checking another implementation (a GPU kernel, a
port to another language, a student's code) against fastbp::

    from fastbp.testing import make_problem, assert_agree, IMPLEMENTATIONS
    prob = make_problem([4, 8, 3], dtype=np.float32, output="softmax", m=16)
    _, reference = IMPLEMENTATIONS["gradients"]
    assert_agree(my_gradients(*prob.args("gradients")), reference(*prob.args("gradients")), np.float32)

Tolerances are stated once, per dtype, in :data:`TOLERANCE`.

From any language, check against files instead: :func:`check_conformance` compares another
implementation's results with the conformance vectors ``fastbp conformance export DIR`` writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import kernels, reference
from .activations import NAMES as ACTIVATION_NAMES
from .losses import NAMES as OUTPUT_NAMES

#: ``{name: (kernel, reference)}``: same names, same arguments.
IMPLEMENTATIONS: dict[str, tuple[Callable, Callable]] = {
    name: (getattr(kernels, name), getattr(reference, name))
    for name in ("forward", "predict", "backward", "gradients", "loss", "update", "train_epoch")
}

#: Agreement tolerances (relative, absolute) per dtype, for one call or one epoch.
TOLERANCE: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.float32): (2e-4, 2e-5),
    np.dtype(np.float64): (1e-9, 1e-11),
}

HIDDEN_ACTIVATIONS = tuple(name for name in ACTIVATION_NAMES if name != "logistic")  # derived from the name tables:
OUTPUTS = tuple(name for name in OUTPUT_NAMES if name != "logistic")  # a new entry is tested everywhere


def tolerance(dtype: Any) -> dict[str, float]:
    """``{"rtol": ..., "atol": ...}`` for ``dtype``, for ``numpy.testing.assert_allclose``."""
    rtol, atol = TOLERANCE[np.dtype(dtype)]
    return {"rtol": rtol, "atol": atol}


#: What :func:`make_problem` scales the learning rate by for the ``exp`` (Poisson) output.
EXP_LEARNING_RATE_SCALE = 0.2


def make_targets(rng: np.random.Generator, m: int, n_y: int, output: str) -> np.ndarray:
    """Valid targets for ``output``: binary for sigmoid, one-hot for softmax, Gaussian for identity,
    Poisson counts (mean 1) for exp."""
    if output == "sigmoid":
        return (rng.random((m, n_y)) < 0.5).astype(np.float64)
    if output == "softmax":
        return np.eye(n_y)[rng.integers(0, n_y, size=m)]
    if output == "exp":
        return rng.poisson(1.0, size=(m, n_y)).astype(np.float64)
    return rng.normal(size=(m, n_y))


@dataclass
class Problem:
    """A seeded network and data set: what every registered implementation is called with."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    activation: Any
    output: str
    learning_rate: float = 0.1
    batch_size: int | None = 1
    order: np.ndarray | None = None

    def copy_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        return [w.copy() for w in self.weights], [b.copy() for b in self.biases]

    def args(self, name: str, weights=None, biases=None) -> tuple:
        """The positional arguments of ``IMPLEMENTATIONS[name]`` for this problem.

        ``update`` and ``train_epoch`` change the parameters in place: pass fresh
        copies (:meth:`copy_params`) for each implementation.
        """
        W = self.weights if weights is None else weights
        b = self.biases if biases is None else biases
        a, o = self.activation, self.output
        if name in ("forward", "predict"):
            return (W, b, self.X, a, o)
        if name in ("gradients", "loss"):
            return (W, b, self.X, self.Y, a, o)
        if name == "backward":
            Z, A = reference.forward(W, b, self.X, a, o)
            return (W, b, self.X, self.Y, Z, A, a, o)
        if name == "update":
            dW, db = reference.gradients(self.weights, self.biases, self.X, self.Y, a, o)
            return (W, b, dW, db, self.learning_rate)
        if name == "train_epoch":
            return (W, b, self.X, self.Y, self.learning_rate, self.batch_size, self.order, a, o)
        raise KeyError(name)


def sparse_rows(rows: int, cols: int, density: float = 0.001, seed: int = 0):
    """A ``scipy.sparse.csr_matrix`` of ``rows`` × ``cols`` with about ``cols · density`` (at least
    one) standard-normal entries a row, at seeded random columns.  Built row by row, in time
    linear in its entries: ``scipy.sparse.random(16000, 5000, density=0.001)`` took 9.5-9.9 s on
    this project's Zen 3, drawing positions out of all rows × cols, and this 0.01 s."""
    import scipy.sparse as sp

    if rows < 1 or cols < 1 or not 0 < density <= 1:
        raise ValueError(f"sparse_rows: need rows, cols >= 1 and 0 < density <= 1, got {rows}, {cols}, {density}")
    rng = np.random.default_rng(seed)
    k = max(1, round(cols * density))
    indices = np.sort(rng.integers(0, cols, size=(rows, k)), axis=1).ravel()
    X = sp.csr_matrix((rng.normal(size=rows * k), indices, np.arange(0, rows * k + 1, k)), shape=(rows, cols))
    X.sum_duplicates()
    return X


def make_problem(
    layer_sizes,
    dtype: Any = np.float64,
    activation: Any = "tanh",
    output: str = "sigmoid",
    m: int = 8,
    seed: int = 0,
    batch_size: int | None = 1,
    learning_rate: float = 0.1,
    shuffle: bool = True,
) -> Problem:
    """A seeded :class:`Problem`: Glorot-scaled weights, small random biases, N(0, 1) inputs.

    For the ``exp`` output the learning rate is scaled by :data:`EXP_LEARNING_RATE_SCALE`: its
    dZ[L] = e^z − Y grows with the logit, and at the rates the grids use for the other outputs
    deep linear nets diverge (the agreement tests are about arithmetic, not about divergence)."""
    if output == "exp":
        learning_rate = learning_rate * EXP_LEARNING_RATE_SCALE
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    weights, biases = [], []
    for n_in, n_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        limit = np.sqrt(6.0 / (n_in + n_out))
        weights.append(rng.uniform(-limit, limit, size=(n_out, n_in)).astype(dt))
        biases.append(rng.normal(0.0, 0.1, size=n_out).astype(dt))
    X = rng.normal(size=(m, layer_sizes[0])).astype(dt)
    Y = make_targets(rng, m, layer_sizes[-1], output).astype(dt)
    order = rng.permutation(m) if shuffle else None
    return Problem(weights, biases, X, Y, activation, output, learning_rate, batch_size, order)


def _leaves(result) -> list:
    if result is None:
        return []
    if isinstance(result, (list, tuple)):
        return [leaf for item in result for leaf in _leaves(item)]
    return [np.asarray(result)]


def assert_agree(actual, desired, dtype: Any, err_msg: str = "") -> None:
    """Assert that two results (arrays, floats, nested lists of them) agree to ``dtype``'s tolerance."""
    a, d = _leaves(actual), _leaves(desired)
    assert len(a) == len(d), f"{err_msg}: {len(a)} arrays against {len(d)}"
    for i, (x, y) in enumerate(zip(a, d)):
        np.testing.assert_allclose(x, y, **tolerance(dtype), err_msg=f"{err_msg} [item {i}]")


def bounds_check_missing() -> str | None:
    """Why a kernel run in this interpreter would *not* stop at an out-of-range index, or ``None``
    when it would: run it before trusting a bounds-checked run (``tests/test_boundscheck.py``,
    ``tools/boundscheck_sweep.py``).

    Numba checks indexed accesses only with ``NUMBA_BOUNDSCHECK=1`` set before Python starts, and
    only in kernels compiled so: its on-disk cache does not key on the switch, so a
    ``NUMBA_CACHE_DIR`` warmed without it hands back unchecked kernels.  Two probes, each of which
    must raise ``IndexError``: a function compiled here reading one element past its array, and a
    cached fastbp kernel handed an input narrower than its layer sizes claim (what the public
    wrappers refuse, so only these probes can make it read past a row)."""
    import numba

    if not numba.config.BOUNDSCHECK:
        return "Numba's bounds checking is off: set NUMBA_BOUNDSCHECK=1 before Python starts"

    @numba.njit
    def past_the_end(a):
        return a[a.shape[0]]

    try:
        past_the_end(np.zeros(3))
    except IndexError:
        pass
    else:
        return "a function compiled in this interpreter read past its array unnoticed"
    from ._plain import BUILTIN
    from .params import Layout

    layout = Layout((4, 3, 1))  # four inputs a row; X below has three
    try:
        BUILTIN._loss_batch(np.zeros(layout.n_params), layout.sizes, np.zeros((2, 3)), np.zeros((2, 1)), 1, 0)
    except IndexError:
        return None
    return (
        "a cached fastbp kernel read past the end of a row unnoticed: NUMBA_CACHE_DIR holds kernels "
        "compiled without bounds checking; give bounds-checked runs a cache directory of their own"
    )


# ------------------------------------------------------------------ conformance vectors: the check
#
# ``fastbp conformance export DIR`` (:mod:`fastbp.conformance`, which builds on this module) writes a
# set of cases as ``.npy`` files and a JSON manifest; what reads a set and checks results against it
# lives here.  Format and tolerances: ``docs/conformance.md``.

#: The manifest's file name and the layout version this module reads.
CONFORMANCE_MANIFEST = "manifest.json"
CONFORMANCE_SCHEMA_VERSION = 1


class ConformanceError(Exception):
    """A set or a results folder that cannot be used (missing manifest, non-empty export folder ...)."""


def _flat(files) -> list[str]:
    return list(files) if isinstance(files, list) else [files]


def load_conformance_manifest(directory: str | os.PathLike) -> dict:
    """The manifest of an exported set (checks its format and schema version)."""
    path = os.path.join(os.fspath(directory), CONFORMANCE_MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ConformanceError(
            f"no {CONFORMANCE_MANIFEST} in {os.fspath(directory)} (write a set with: fastbp conformance export DIR)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConformanceError(f"{path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "fastbp-conformance":
        raise ConformanceError(f"{path}: not a fastbp conformance manifest")
    if manifest.get("schema_version") != CONFORMANCE_SCHEMA_VERSION:
        raise ConformanceError(
            f"{path}: schema version {manifest.get('schema_version')}, "
            f"this fastbp reads version {CONFORMANCE_SCHEMA_VERSION}"
        )
    return manifest


def _load_inputs(directory: str, case: dict) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]:
    get = lambda f: np.load(os.path.join(directory, f), allow_pickle=False)  # noqa: E731
    inp = case["inputs"]
    return [get(f) for f in inp["W"]], [get(f) for f in inp["b"]], get(inp["X"]), get(inp["Y"]), get(inp["order"])


def conformance_results(directory: str | os.PathLike, implementation, case: dict) -> dict[str, np.ndarray]:
    """``{file name: array}``: one case's results from a Python implementation with fastbp's API.

    ``implementation`` is anything with the functions of :mod:`fastbp.kernels` / :mod:`fastbp.reference`
    (``forward``, ``backward``, ``gradients``, ``loss``, ``update``, ``train_epoch``, same arguments).
    ``backward`` gets the implementation's own forward pass; ``update`` its own ``gradients``.
    """
    directory = os.fspath(directory)
    W, b, X, Y, order = _load_inputs(directory, case)
    a, o, lr, bs = case["activation"], case["output"], case["learning_rate"], case["batch_size"]
    copy = lambda arrays: [x.copy() for x in arrays]  # noqa: E731
    Z, A = implementation.forward(copy(W), copy(b), X, a, o)
    values: dict[str, dict[str, Any]] = {"forward": {"Z": Z, "A": A}}
    values["loss"] = {"J": implementation.loss(copy(W), copy(b), X, Y, a, o)}
    dZ, dW, db = implementation.backward(copy(W), copy(b), X, Y, Z, A, a, o)
    values["backward"] = {"dZ": dZ, "dW": dW, "db": db}
    Wu, bu = copy(W), copy(b)
    gW, gb = implementation.gradients(copy(W), copy(b), X, Y, a, o)
    implementation.update(Wu, bu, gW, gb, lr)
    values["update"] = {"W": Wu, "b": bu}
    We, be = copy(W), copy(b)
    Je = implementation.train_epoch(We, be, X, Y, lr, bs, order, a, o)
    values["epoch"] = {"W": We, "b": be, "J": Je}
    out = {}
    for op, files in case["expected"].items():
        for name, file_or_files in files.items():
            got = values[op][name]
            for file, arr in zip(_flat(file_or_files), got if isinstance(got, (list, tuple)) else [got]):
                out[file] = np.asarray(arr, np.float64) if name == "J" else np.asarray(arr)
    return out


@dataclass
class OperationResult:
    """One case's one operation: ``status`` is ``"pass"``, ``"fail"`` or ``"missing"`` (no file of it)."""

    case: str
    operation: str
    status: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    worst: str = ""  # the array with the largest error relative to what is allowed
    details: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class ConformanceReport:
    """What :func:`check` found: one :class:`OperationResult` per case and operation with results."""

    results: list[OperationResult]
    absent_cases: list[str]  # cases with no result file at all (not reported, unless require_all)
    require_all: bool = False

    @property
    def failures(self) -> list[OperationResult]:
        return [r for r in self.results if r.status == "fail" or (r.status == "missing" and self.require_all)]

    @property
    def ok(self) -> bool:
        checked = [r for r in self.results if r.status != "missing"]
        return bool(checked) and not self.failures and not (self.require_all and self.absent_cases)

    def failed(self) -> set[tuple[str, str]]:
        """``{(case, operation)}`` of every failure."""
        return {(r.case, r.operation) for r in self.failures}

    def summary(self) -> str:
        n = {s: sum(r.status == s for r in self.results) for s in ("pass", "fail", "missing")}
        cases_seen = len({r.case for r in self.results})
        text = f"{cases_seen} cases, {n['pass'] + n['fail']} operations checked: {n['pass']} passed, {n['fail']} failed"
        if n["missing"]:
            text += f"; {n['missing']} operations without results"
        if self.absent_cases:
            text += f"; {len(self.absent_cases)} cases without results"
        if not any(r.status != "missing" for r in self.results):
            text += " (nothing checked: no result files found)"
        elif self.require_all and (n["missing"] or self.absent_cases):
            text += " (--require-all: every case and operation must have results)"
        return text

    def lines(self, failures_only: bool = False) -> list[str]:
        width = max([len(r.case) for r in self.results] + [4])
        out = [f"{'case':<{width}}  {'operation':<9}  {'result':<7}  {'max abs err':>11}  {'max rel err':>11}  worst"]
        failing = {id(r) for r in self.failures}
        for r in self.results:
            if failures_only and id(r) not in failing:
                continue
            if r.status == "missing":
                status = "FAIL" if self.require_all else "-"
                out.append(f"{r.case:<{width}}  {r.operation:<9}  {status:<7}  {'':>11}  {'':>11}  no results")
                continue
            status = r.status.upper() if r.status == "fail" else r.status
            line = (
                f"{r.case:<{width}}  {r.operation:<9}  {status:<7}  {r.max_abs:>11.3g}  {r.max_rel:>11.3g}  {r.worst}"
            )
            out.append(line + ("  " + "; ".join(r.details) if r.details else ""))
        return out if len(out) > 1 else []  # (no header over no rows)

    def __str__(self) -> str:
        return "\n".join(self.lines() + [self.summary()])


def compare_to_expected(
    got: np.ndarray, want: np.ndarray, rtol: float, atol: float
) -> tuple[bool, float, float, float]:
    """``(ok, max abs err, max rel err, how far past the allowance)``.

    Passes when |got − want| ≤ atol · max(1, max |want|) + rtol · |want| elementwise: the absolute part is
    scaled by the array's largest magnitude because a sum's rounding error scales with its largest terms,
    not with the (possibly cancelled) result.  The relative error counts the elements where want ≠ 0.
    """
    g = got.astype(np.float64)
    w = want.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - w)
        err = np.where(np.isnan(err), np.inf, err)  # a NaN result is as wrong as can be
        scale = max(1.0, float(np.abs(w).max())) if w.size else 1.0
        allowed = atol * scale + rtol * np.abs(w)
        nz = w != 0
        rel = err[nz] / np.abs(w[nz])
        ratio = float((err / allowed).max()) if w.size else 0.0
    max_abs = float(err.max()) if err.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    return bool((err <= allowed).all()), max_abs, max_rel, ratio


class _Folder:
    """Results read from ``.npy`` files under a folder; a missing file is None."""

    def __init__(self, path: str):
        if not os.path.isdir(path):
            raise ConformanceError(f"{path} is not a folder of results")
        self.path = path
        self.names = set(os.listdir(path))

    def case(self, directory: str, case: dict) -> Callable[[str], Any]:
        def get(file: str):
            if file not in self.names:
                return None
            try:
                return np.load(os.path.join(self.path, file), allow_pickle=False)
            except Exception as exc:  # a malformed file is that operation's failure, not a crash
                return exc

        return get


class _Python:
    """Results computed in memory by a Python implementation with fastbp's API."""

    def __init__(self, implementation):
        self.implementation = implementation

    def case(self, directory: str, case: dict) -> Callable[[str], Any]:
        try:
            results = conformance_results(directory, self.implementation, case)
        except Exception as exc:  # the case fails (every operation), the check goes on
            error = exc
            return lambda file: error
        return results.get


def check_conformance(directory: str | os.PathLike, results, *, require_all: bool = False) -> ConformanceReport:
    """Compare results with the expected values of the set in ``directory``.

    ``results`` is a folder of ``.npy`` files named as the expected ones (another implementation's
    output, any language), or a Python object with fastbp's kernel API (``forward``, ``backward``,
    ``gradients``, ``loss``, ``update``, ``train_epoch``), run in memory.  Cases without any result
    file are left out of the report (an implementation may support part of the grid) unless
    ``require_all``.  ``Report.ok`` is true when something was checked and nothing failed.
    """
    directory = os.fspath(directory)
    manifest = load_conformance_manifest(directory)
    source = _Folder(os.fspath(results)) if isinstance(results, (str, os.PathLike)) else _Python(results)
    report = ConformanceReport([], [], require_all)
    for case in manifest["cases"]:
        rtol, atol = manifest["tolerance"][case["dtype"]]["rtol"], manifest["tolerance"][case["dtype"]]["atol"]
        get = source.case(directory, case)
        found_any = False
        rows = []
        for op, files in case["expected"].items():
            row = OperationResult(case["id"], op, "pass")
            n_found = 0
            worst_ratio = -1.0
            for name, file_or_files in files.items():
                for file in _flat(file_or_files):
                    got = get(file)
                    label = file[len(case["id"]) + len(op) + 2 : -len(".npy")]  # e.g. dW2
                    if got is None:
                        row.details.append(f"{label}: no file")
                        continue
                    n_found += 1
                    if isinstance(got, Exception):
                        row.status = "fail"
                        row.details.append(f"{label}: {type(got).__name__}: {got}")
                        continue
                    want = np.load(os.path.join(directory, file), allow_pickle=False)
                    dtypes = ("float32", "float64") if name == "J" else (case["dtype"],)
                    if got.dtype.name not in dtypes:
                        row.status = "fail"
                        row.details.append(
                            f"{label}: dtype {got.dtype}, "
                            f"expected {case['dtype'] if name != 'J' else 'float32 or float64'}"
                        )
                        continue
                    if got.shape != want.shape and not (name == "J" and got.size == 1):
                        row.status = "fail"
                        row.details.append(f"{label}: shape {got.shape}, expected {want.shape}")
                        continue
                    ok, max_abs, max_rel, ratio = compare_to_expected(got.reshape(want.shape), want, rtol, atol)
                    row.max_abs, row.max_rel = max(row.max_abs, max_abs), max(row.max_rel, max_rel)
                    if ratio > worst_ratio:
                        worst_ratio, row.worst = ratio, label
                    if not ok:
                        row.status = "fail"
                        row.details.append(f"{label}: beyond tolerance")
            if n_found == 0:
                row.status, row.details = "missing", []
            else:
                found_any = True
                if any(d.endswith("no file") for d in row.details):
                    row.status = "fail"  # part of an operation's results is as wrong as a wrong value
            rows.append(row)
        if found_any:
            report.results.extend(rows)
        else:
            report.absent_cases.append(case["id"])
    return report
