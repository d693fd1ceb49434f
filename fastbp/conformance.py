"""Conformance vectors: check any backpropagation implementation against fastbp, in any language.

``fastbp conformance export DIR`` writes a versioned set of cases: for each, a network (layer
sizes, hidden activation g, output layer), a dtype, the parameters W[l], b[l], the data X, Y, a
learning rate α, a batch size and a visiting order, and the expected result of every operation:

* ``forward``:  Z[l] and A[l] for l = 1 … L, every example;
* ``loss``:     J, the mean cost over the m examples;
* ``backward``: dZ[l] (per example, not divided by m), dW[l] and db[l] (means over the examples);
* ``update``:   W[l], b[l] after one step W −= α dW, b −= α db with the full-batch gradients;
* ``epoch``:    W[l], b[l] after one epoch of mini-batch gradient descent in the given order, and
  the epoch's J (each example's cost measured before its batch's update).

Arrays are ``.npy`` files (little-endian, C order) in one flat folder, named
``<case>.<name>.npy`` for inputs and ``<case>.<operation>.<name>.npy`` for expected results;
``manifest.json`` describes the cases and their files (its JSON Schema is written beside it as
``manifest.schema.json``) and ``index.tsv`` lists the cases one per line for languages without a
JSON parser.  ``fastbp conformance check DIR RESULTS`` reads another implementation's results,
written under RESULTS with the same file names as the expected ones, and reports per case and
operation.  The format is described for implementers in ``docs/conformance.md``.

The expected values are computed by :mod:`fastbp.reference` (the equations as written, in the
case's dtype); fastbp's own kernels are held to pass the set by the tests.  This module writes the
set; reading it and checking results (the CLI's ``check`` too) is :func:`fastbp.testing.check_conformance`,
which this module builds on, never the other way round.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from . import reference
from .activations import LEAKY_SLOPE
from .errors import DivergenceError
from .testing import (
    CONFORMANCE_MANIFEST,
    CONFORMANCE_SCHEMA_VERSION,
    HIDDEN_ACTIVATIONS,
    OUTPUTS,
    TOLERANCE,
    ConformanceError,
    check_conformance,
    compare_to_expected,
    make_problem,
)

__all__ = ["SCHEMA", "SCHEMA_VERSION", "SET_VERSION", "OPERATIONS", "CaseSpec", "cases", "export", "add_parser", "main"]

#: Version of the layout and of the manifest's schema: bumped when a reader would need changing
#: (the reader, :func:`fastbp.testing.check_conformance`, holds the number).
SCHEMA_VERSION = CONFORMANCE_SCHEMA_VERSION
#: Version of the set of cases (the grid, seeds and values): bumped when the exported cases change.
SET_VERSION = 1

MANIFEST = CONFORMANCE_MANIFEST
SCHEMA_FILE = "manifest.schema.json"
INDEX = "index.tsv"

#: What each operation computes, and from what (written into the manifest too).
OPERATIONS: dict[str, str] = {
    "forward": (
        "Z[l] = A[l-1] W[l]^T + b[l] and A[l] = g(Z[l]) (A[L] by the output layer) for l = 1..L, "
        "every example (m x n_l)"
    ),
    "loss": "J = (1/m) sum over the m examples of the output layer's cost, from the parameters, X and Y",
    "backward": "dZ[l] = dJ_i/dZ[l] per example (m x n_l, not divided by m); "
    "dW[l] = (1/m) dZ[l]^T A[l-1] and db[l] = (1/m) sum_i dZ[l], "
    "from the parameters, X and Y (the implementation's own forward pass)",
    "update": "W[l] - alpha dW[l] and b[l] - alpha db[l] with the full-batch gradients of 'backward'",
    "epoch": "W[l], b[l] after one epoch: examples visited in 'order', consecutive batches of batch_size "
    "(the last may be short), one step W -= alpha * mean dW per batch; "
    "J = mean over the m examples of each example's cost before its batch's step",
}

#: The arrays each operation produces: per-layer names (``Z`` → Z1 … ZL) and scalars (float64 J).
_PER_LAYER = {
    "forward": ("Z", "A"),
    "loss": (),
    "backward": ("dZ", "dW", "db"),
    "update": ("W", "b"),
    "epoch": ("W", "b"),
}
_SCALARS = {"forward": (), "loss": ("J",), "backward": (), "update": (), "epoch": ("J",)}

# ------------------------------------------------------------------------------ the grid

#: Depths 1 to 4, widths including 1 (the agreement tests' layer sizes).
LAYER_SIZES = ((1, 1), (3, 5, 2), (4, 1, 3, 2), (5, 7, 6, 4, 3))
#: (m, batch size): one example; per-example SGD (the derivation's); m not a multiple of the batch; the full batch.
M_BATCH = ((1, 1), (7, 1), (7, 3), (7, 7))
DTYPES = ("float32", "float64")
#: Logit sizes per dtype for the extreme cases: e^|z| overflows the dtype for all of them, so only the
#: stable forms (σ sign-split, costs from the logit, softmax with the max subtracted) pass.
EXTREME_LOGITS = {"float32": (1e3, 1e30), "float64": (1e3, 1e300)}
#: The outputs the vector set covers: every output of :mod:`fastbp.losses` but ``exp`` (scikit-learn's
#: Poisson output, added after this set's schema was published: adding it is a new schema version,
#: and the C example in ``examples/c`` would have to implement it first).
OUTPUTS = tuple(o for o in OUTPUTS if o != "exp")
#: Outputs whose A[L] saturates, so that huge logits still give bounded gradients (identity's dZ[L] = Z[L] − Y
#: would grow with the logit and the epoch would diverge: no extreme cases for it).
_SATURATING = tuple(o for o in OUTPUTS if o != "identity")
LEARNING_RATE = 0.1


@dataclass(frozen=True)
class CaseSpec:
    """One case of the grid, before its values are drawn."""

    layer_sizes: tuple[int, ...]
    dtype: str
    activation: str
    output: str
    m: int
    batch_size: int
    seed: int
    logits: float | None = None  # b[L] set to ±logits (extreme cases)
    learning_rate: float = LEARNING_RATE

    @property
    def id(self) -> str:
        net = "x".join(map(str, self.layer_sizes))
        name = f"f{self.dtype[-2:]}-{self.activation}-{self.output}-{net}-m{self.m}-b{self.batch_size}"
        if self.logits is not None:
            name += f"-logits1e{round(math.log10(self.logits))}"
        return name


def cases() -> list[CaseSpec]:
    """The set's cases, in a fixed order (which also fixes their seeds).

    Every (dtype, activation, output, layer sizes) combination once, its (m, batch size) rotating so
    that each network meets each (m, batch) pair and each activation/output pair meets all four;
    then extreme-logit cases for the saturating outputs.
    """
    specs: list[CaseSpec] = []
    for dtype in DTYPES:
        for a, act in enumerate(HIDDEN_ACTIVATIONS):
            for o, out in enumerate(OUTPUTS):
                for s, sizes in enumerate(LAYER_SIZES):
                    m, bs = M_BATCH[(s + a + o) % len(M_BATCH)]
                    specs.append(CaseSpec(sizes, dtype, act, out, m, bs, seed=len(specs)))
    k = 0
    for dtype in DTYPES:
        for out in _SATURATING:
            for size in EXTREME_LOGITS[dtype]:
                act = HIDDEN_ACTIVATIONS[k % len(HIDDEN_ACTIVATIONS)]
                sizes = LAYER_SIZES[1 + k % 2]  # two or three layers, output width 2
                specs.append(CaseSpec(sizes, dtype, act, out, 7, 3, seed=len(specs), logits=size))
                k += 1
    return specs


# ----------------------------------------------------------------------------- file names


def _layer_files(prefix: str, names: Iterable[str], L: int) -> dict[str, list[str]]:
    return {name: [f"{prefix}.{name}{l}.npy" for l in range(1, L + 1)] for name in names}


def _files(case_id: str, L: int) -> tuple[dict, dict]:
    inputs: dict[str, Any] = _layer_files(case_id, ("W", "b"), L)
    for name in ("X", "Y", "order"):
        inputs[name] = f"{case_id}.{name}.npy"
    expected = {}
    for op in OPERATIONS:
        files: dict[str, Any] = _layer_files(f"{case_id}.{op}", _PER_LAYER[op], L)
        for name in _SCALARS[op]:
            files[name] = f"{case_id}.{op}.{name}.npy"
        expected[op] = files
    return inputs, expected


def _flat(files) -> list[str]:
    return list(files) if isinstance(files, list) else [files]


# --------------------------------------------------------------------------------- schema

_FILE = {"type": "string", "pattern": r"^[A-Za-z0-9_.+-]+\.npy$"}
_FILES = {"type": "array", "items": _FILE, "minItems": 1}


def _op_schema(op: str) -> dict:
    names = list(_PER_LAYER[op]) + list(_SCALARS[op])
    props = {n: _FILES for n in _PER_LAYER[op]} | {n: _FILE for n in _SCALARS[op]}
    return {"type": "object", "required": names, "properties": props, "additionalProperties": False}


#: JSON Schema (draft 2020-12) of ``manifest.json``; written beside it by :func:`export`.
SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://fastbp.invalid/conformance/manifest-v{SCHEMA_VERSION}.schema.json",
    "title": "fastbp conformance vectors: manifest",
    "type": "object",
    "required": [
        "format",
        "schema_version",
        "set_version",
        "generator",
        "tolerance",
        "activations",
        "operations",
        "index",
        "cases",
    ],
    "additionalProperties": False,
    "properties": {
        "format": {"const": "fastbp-conformance"},
        "schema_version": {"const": SCHEMA_VERSION},
        "set_version": {"type": "integer", "minimum": 1},
        "generator": {"type": "string"},
        "tolerance": {
            "type": "object",
            "required": list(DTYPES),
            "additionalProperties": False,
            "properties": {
                dt: {
                    "type": "object",
                    "required": ["rtol", "atol"],
                    "additionalProperties": False,
                    "properties": {
                        "rtol": {"type": "number", "exclusiveMinimum": 0},
                        "atol": {"type": "number", "exclusiveMinimum": 0},
                    },
                }
                for dt in DTYPES
            },
        },
        "activations": {"type": "object", "additionalProperties": {"type": "object"}},
        "operations": {
            "type": "object",
            "required": list(OPERATIONS),
            "additionalProperties": False,
            "properties": {op: {"type": "string"} for op in OPERATIONS},
        },
        "index": {"const": INDEX},
        "cases": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": [
                    "id",
                    "dtype",
                    "layer_sizes",
                    "activation",
                    "output",
                    "m",
                    "learning_rate",
                    "batch_size",
                    "extreme_logits",
                    "inputs",
                    "expected",
                ],
                "additionalProperties": False,
                "properties": {
                    "id": {"type": "string", "pattern": r"^[A-Za-z0-9_+-]+$"},
                    "dtype": {"enum": list(DTYPES)},
                    "layer_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2},
                    "activation": {"enum": list(HIDDEN_ACTIVATIONS)},
                    "output": {"enum": list(OUTPUTS)},
                    "m": {"type": "integer", "minimum": 1},
                    "learning_rate": {"type": "number", "exclusiveMinimum": 0},
                    "batch_size": {"type": "integer", "minimum": 1},
                    "extreme_logits": {"type": ["number", "null"]},
                    "inputs": {
                        "type": "object",
                        "required": ["W", "b", "X", "Y", "order"],
                        "additionalProperties": False,
                        "properties": {"W": _FILES, "b": _FILES, "X": _FILE, "Y": _FILE, "order": _FILE},
                    },
                    "expected": {
                        "type": "object",
                        "required": list(OPERATIONS),
                        "additionalProperties": False,
                        "properties": {op: _op_schema(op) for op in OPERATIONS},
                    },
                },
            },
        },
    },
}


# --------------------------------------------------------------------------------- export


def _problem(spec: CaseSpec, seed: int, dtype: str):
    prob = make_problem(
        spec.layer_sizes,
        np.dtype(dtype),
        spec.activation,
        spec.output,
        m=spec.m,
        seed=seed,
        batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        shuffle=True,
    )
    if spec.logits is not None:
        # Z[L] = W[L] A[L−1] + b[L] with |b[L]| huge: logits of both signs (and, for softmax, far apart).
        pattern = np.array([1.0, -1.0, 0.5])[np.arange(spec.layer_sizes[-1]) % 3]
        prob.biases[-1][...] = (pattern * spec.logits).astype(dtype)
    return prob


#: A case is kept only if its float32 rounding error stays below this fraction of the float32 tolerance.
_CONDITIONING = 0.05


def _rounding_ratio(spec: CaseSpec, seed: int) -> float:
    """How far the case computed in float32 lands from the same inputs computed in float64, as a
    fraction of what the float32 tolerance allows (the worst array of any operation).

    Some draws are ill-conditioned: a deep linear network trained example by example can amplify
    rounding 10⁵-fold within one epoch, so two correct float32 implementations would disagree beyond
    any sensible tolerance.  Such a draw is replaced (see :func:`_well_conditioned`).  The float64 cases
    are screened the same way: their rounding is 2⁻²⁹ times float32's, against a tolerance only
    5·10⁻⁶ times as large, so a draw that passes here has ample room in float64 too.
    """
    rtol, atol = TOLERANCE[np.dtype(np.float32)]
    p32 = _problem(spec, seed, "float32")
    p64 = _problem(spec, seed, "float32")
    for name in ("weights", "biases"):
        setattr(p64, name, [x.astype(np.float64) for x in getattr(p64, name)])
    p64.X, p64.Y = p64.X.astype(np.float64), p64.Y.astype(np.float64)
    try:
        e32, e64 = _expected(spec, p32), _expected(spec, p64)
    except DivergenceError:  # (an epoch that blows up is as ill-conditioned as it gets)
        return math.inf
    worst = 0.0
    for op, arrays in e32.items():
        for name, got in arrays.items():
            want = e64[op][name]
            for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
                worst = max(worst, compare_to_expected(np.asarray(g), np.asarray(w), rtol, atol)[3])
    return worst


def _well_conditioned(spec: CaseSpec):
    """The case's problem, from the first seed (spec.seed, then + 1000, + 2000 …) whose draw is well-conditioned."""
    for k in range(10):
        seed = spec.seed + 1000 * k
        fits_float32 = spec.logits is None or spec.logits < float(np.finfo(np.float32).max)
        if not fits_float32 or _rounding_ratio(spec, seed) <= _CONDITIONING:
            return _problem(spec, seed, spec.dtype)
    raise ConformanceError(f"{spec.id}: no well-conditioned draw in ten seeds")  # pragma: no cover


def _expected(spec: CaseSpec, prob) -> dict[str, dict[str, Any]]:
    """Every operation's expected arrays, from :mod:`fastbp.reference` in the case's dtype."""
    a, o, lr = spec.activation, spec.output, spec.learning_rate
    W, b = prob.copy_params()
    Z, A = reference.forward(W, b, prob.X, a, o)
    J = reference.loss(W, b, prob.X, prob.Y, a, o)
    dZ, dW, db = reference.backward(W, b, prob.X, prob.Y, Z, A, a, o)
    Wu, bu = prob.copy_params()
    reference.update(Wu, bu, dW, db, lr)
    We, be = prob.copy_params()
    Je = reference.train_epoch(We, be, prob.X, prob.Y, lr, spec.batch_size, prob.order, a, o)
    return {
        "forward": {"Z": Z, "A": A},
        "loss": {"J": np.float64(J)},
        "backward": {"dZ": dZ, "dW": dW, "db": db},
        "update": {"W": Wu, "b": bu},
        "epoch": {"W": We, "b": be, "J": np.float64(Je)},
    }


def _save(path: str, array) -> None:
    array = np.asarray(array)
    if not array.flags.c_contiguous:  # (np.save would write a Fortran-ordered header for a transposed view)
        array = array.copy(order="C")
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=(1, 0), allow_pickle=False)


def export(directory: str | os.PathLike) -> dict:
    """Write the conformance set into ``directory`` (created; must be empty); returns the manifest."""
    directory = os.fspath(directory)
    if os.path.exists(directory) and (not os.path.isdir(directory) or os.listdir(directory)):
        raise ConformanceError(f"{directory} exists and is not an empty folder")
    os.makedirs(directory, exist_ok=True)
    entries = []
    index_lines = ["# id\tdtype\tactivation\toutput\tlearning_rate\tbatch_size\tm\tL\tn0 ... nL"]
    for spec in cases():
        prob = _well_conditioned(spec)
        L = len(spec.layer_sizes) - 1
        inputs, expected_files = _files(spec.id, L)
        values = _expected(spec, prob)
        arrays = {}
        for name, arr in (
            ("W", prob.weights),
            ("b", prob.biases),
            ("X", prob.X),
            ("Y", prob.Y),
            ("order", prob.order.astype("<i8")),
        ):
            for file, a in zip(_flat(inputs[name]), arr if isinstance(arr, list) else [arr]):
                arrays[file] = a
        for op, files in expected_files.items():
            for name, file_or_files in files.items():
                got = values[op][name]
                for file, a in zip(_flat(file_or_files), got if isinstance(got, list) else [got]):
                    arrays[file] = a
        for file, a in arrays.items():
            if not np.isfinite(a).all():  # pragma: no cover - the grid is chosen so that this never happens
                raise ConformanceError(f"{spec.id}: {file} is not finite")
            _save(os.path.join(directory, file), a)
        entries.append(
            {
                "id": spec.id,
                "dtype": spec.dtype,
                "layer_sizes": list(spec.layer_sizes),
                "activation": spec.activation,
                "output": spec.output,
                "m": spec.m,
                "learning_rate": spec.learning_rate,
                "batch_size": spec.batch_size,
                "extreme_logits": spec.logits,
                "inputs": inputs,
                "expected": expected_files,
            }
        )
        sizes = "\t".join(map(str, spec.layer_sizes))
        index_lines.append(
            f"{spec.id}\t{spec.dtype}\t{spec.activation}\t{spec.output}\t{spec.learning_rate!r}\t{spec.batch_size}\t{spec.m}\t{L}\t{sizes}"
        )
    manifest = {
        "format": "fastbp-conformance",
        "schema_version": SCHEMA_VERSION,
        "set_version": SET_VERSION,
        "generator": f"fastbp {_fastbp_version()}",
        "tolerance": {dt: dict(zip(("rtol", "atol"), TOLERANCE[np.dtype(dt)])) for dt in DTYPES},
        "activations": {"leaky_relu": {"negative_slope": LEAKY_SLOPE}},
        "operations": dict(OPERATIONS),
        "index": INDEX,
        "cases": entries,
    }
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    with open(os.path.join(directory, SCHEMA_FILE), "w") as f:
        json.dump(SCHEMA, f, indent=1)
        f.write("\n")
    with open(os.path.join(directory, INDEX), "w") as f:
        f.write("\n".join(index_lines) + "\n")
    return manifest


def _fastbp_version() -> str:
    """The installed fastbp's version (from its metadata: no import of the package root from here)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fastbp")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
        return "(version unknown)"


# ------------------------------------------------------------------------------------ CLI


def add_parser(sub) -> None:
    """Register ``fastbp conformance export|check`` on the CLI's subparsers."""
    parser = sub.add_parser(
        "conformance",
        help="export test vectors for any backpropagation implementation, or check one's results against them",
        description=(
            "Language-neutral conformance vectors (.npy arrays and a JSON manifest): export the set, run your "
            "implementation on it, check its results. See docs/conformance.md."
        ),
    )
    csub = parser.add_subparsers(dest="conformance_command", required=True, metavar="{export,check}")
    export_p = csub.add_parser(
        "export",
        help="write the set of cases into DIR",
        description="Write the conformance set into DIR (created; must be empty).",
    )
    export_p.add_argument("directory", metavar="DIR")
    check_p = csub.add_parser(
        "check",
        help="compare RESULTS (another implementation's .npy files) with the set in DIR",
        description=(
            "Compare the .npy files under RESULTS, named as the expected ones in DIR, with them; print per case and "
            "operation pass/fail and the largest absolute and relative error. Exit status 1 if anything fails or "
            "nothing was found. Cases without any result file are left out "
            "(an implementation may cover part of the grid)."
        ),
    )
    check_p.add_argument("directory", metavar="DIR")
    check_p.add_argument("results", metavar="RESULTS")
    check_p.add_argument("--require-all", action="store_true", help="fail if any case or operation has no results")
    check_p.add_argument("--failures-only", action="store_true", help="print only failing operations and the summary")


def main(args: argparse.Namespace, out=None) -> int:
    """Run ``fastbp conformance export|check`` with parsed ``args``."""
    out = sys.stdout if out is None else out
    try:
        if args.conformance_command == "export":
            manifest = export(args.directory)
            n_files = sum(1 for name in os.listdir(args.directory) if name.endswith(".npy"))
            size = sum(os.path.getsize(os.path.join(args.directory, name)) for name in os.listdir(args.directory))
            print(
                f"wrote {len(manifest['cases'])} cases (set version {SET_VERSION}, schema version {SCHEMA_VERSION}): "
                f"{n_files} .npy files, {MANIFEST}, {SCHEMA_FILE} and {INDEX} in {args.directory} "
                f"({size / 1e6:.1f} MB)",
                file=out,
            )
            return 0
        report = check_conformance(args.directory, args.results, require_all=args.require_all)
    except ConformanceError as exc:
        print(f"fastbp conformance {args.conformance_command}: error: {exc}", file=sys.stderr)
        return 2
    for line in report.lines(failures_only=args.failures_only):
        print(line, file=out)
    print(("conformance: " if report.ok else "conformance FAILED: ") + report.summary(), file=out)
    return 0 if report.ok else 1
