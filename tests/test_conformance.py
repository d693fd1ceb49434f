"""Conformance vectors (``fastbp conformance``): a language-neutral set any implementation can be checked against.

The set is exported once for this file (through the CLI) into a temporary folder.  Proof, as the issue
asks: fastbp's own kernels and reference pass it; a from-scratch NumPy implementation passes it and
each of three classic bugs fails on exactly the cases and operations it should; the manifest validates
against its JSON Schema; the C example under ``examples/c/`` passes (skipped without a C compiler).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from fastbp import conformance, kernels, reference
from fastbp.activations import LEAKY_SLOPE
from fastbp.cli import main
from fastbp.conformance import OUTPUTS  # (the outputs the vector set covers)
from fastbp.testing import HIDDEN_ACTIVATIONS, check_conformance, conformance_results

C_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "c"


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("conformance") / "vectors"
    assert main(["conformance", "export", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def manifest(vectors) -> dict:
    return json.loads((vectors / "manifest.json").read_text())


# ------------------------------------------------------------------------------- the set


def test_the_set_covers_the_agreement_grid_in_a_few_mb(vectors, manifest):
    cases = manifest["cases"]
    depths = {len(c["layer_sizes"]) - 1 for c in cases}
    assert depths == {1, 2, 3, 4}
    assert any(1 in c["layer_sizes"][1:-1] for c in cases)  # a hidden layer of width 1
    assert any(c["layer_sizes"][-1] == 1 for c in cases) and any(c["layer_sizes"][0] == 1 for c in cases)
    assert any(c["m"] == 1 for c in cases)
    assert any(c["m"] % c["batch_size"] for c in cases)  # a short last batch
    assert any(c["batch_size"] == 1 < c["m"] for c in cases) and any(c["batch_size"] == c["m"] > 1 for c in cases)
    # every (dtype, activation, output) at every depth, both (m, batch) extremes for every network
    combos = {(c["dtype"], c["activation"], c["output"], len(c["layer_sizes"])) for c in cases}
    assert combos == {
        (d, a, o, L + 1)
        for d in ("float32", "float64")
        for a in HIDDEN_ACTIVATIONS
        for o in OUTPUTS
        for L in range(1, 5)
    }
    # extreme logits (beyond exp's range) for every saturating output, both dtypes
    extreme = {(c["dtype"], c["output"]) for c in cases if c["extreme_logits"]}
    assert extreme == {(d, o) for d in ("float32", "float64") for o in OUTPUTS if o != "identity"}
    assert all(c["extreme_logits"] > 700 for c in cases if c["extreme_logits"])
    # every file listed is there, nothing else is, and it all ships in a few MB
    listed = {
        f
        for c in cases
        for group in (c["inputs"], *c["expected"].values())
        for v in group.values()
        for f in ([v] if isinstance(v, str) else v)
    }
    on_disk = set(os.listdir(vectors)) - {"manifest.json", "manifest.schema.json", "index.tsv"}
    assert listed == on_disk
    assert sum(p.stat().st_size for p in vectors.iterdir()) < 3e6
    assert len((vectors / "index.tsv").read_text().splitlines()) == len(cases) + 1


def test_expected_arrays_have_the_cases_shapes_and_dtypes(vectors, manifest):
    for case in manifest["cases"][::7]:
        n, m, dt = case["layer_sizes"], case["m"], np.dtype(case["dtype"])
        load = lambda f: np.load(vectors / f)  # noqa: E731
        exp = case["expected"]
        assert [load(f).shape for f in case["inputs"]["W"]] == [(o, i) for i, o in zip(n[:-1], n[1:])]
        assert [load(f).shape for f in exp["backward"]["dW"]] == [(o, i) for i, o in zip(n[:-1], n[1:])]
        assert [load(f).shape for f in exp["forward"]["Z"]] == [(m, o) for o in n[1:]]
        assert sorted(load(case["inputs"]["order"]).tolist()) == list(range(m))
        assert load(exp["loss"]["J"]).dtype == np.float64 and load(exp["loss"]["J"]).shape == ()
        assert all(load(f).dtype == dt for f in exp["update"]["W"] + exp["epoch"]["b"] + [case["inputs"]["X"]])


def test_the_manifest_validates_against_its_schema(vectors, manifest):
    schema = json.loads((vectors / "manifest.schema.json").read_text())
    assert schema == json.loads(json.dumps(conformance.SCHEMA))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(manifest, schema, cls=jsonschema.Draft202012Validator)
    # ... and the schema has teeth: a manifest missing an operation, or with an unknown activation, fails it
    broken = json.loads(json.dumps(manifest))
    del broken["cases"][3]["expected"]["backward"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
    broken = json.loads(json.dumps(manifest))
    broken["cases"][0]["activation"] = "swish"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


# ------------------------------------------------------------------------ fastbp passes it


@pytest.mark.parametrize("implementation", [kernels, reference], ids=["kernels", "reference"])
def test_fastbp_passes_its_own_vectors(vectors, implementation):
    report = check_conformance(vectors, implementation, require_all=True)
    assert report.ok, "\n".join(report.lines(failures_only=True))
    assert len(report.results) == 5 * len(conformance.cases())


def test_results_written_as_files_are_checked_by_the_cli(vectors, manifest, tmp_path, capsys):
    """Results of part of the grid, as another language would write them: only those cases are reported."""
    results = tmp_path / "results"
    results.mkdir()
    written = manifest["cases"][::16]
    for case in written:
        for file, array in conformance_results(vectors, reference, case).items():
            np.save(results / file, array)
    capsys.readouterr()
    assert main(["conformance", "check", str(vectors), str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[1:-1]]
    assert {(r[0], r[1]) for r in rows} == {(c["id"], op) for c in written for op in conformance.OPERATIONS}
    assert all(r[2] == "pass" and float(r[3]) >= 0 and float(r[4]) >= 0 for r in rows)
    assert lines[-1].startswith("conformance: ") and f"{len(written)} cases" in lines[-1]
    # --require-all: the cases not written now fail the check
    assert main(["conformance", "check", "--require-all", "--failures-only", str(vectors), str(results)]) == 1
    assert "cases without results" in capsys.readouterr().out


def test_check_names_the_failing_array_and_why(vectors, manifest, tmp_path, capsys):
    case = next(c for c in manifest["cases"] if len(c["layer_sizes"]) == 3 and c["m"] > 1)
    results = tmp_path / "results"
    results.mkdir()
    for file, array in conformance_results(vectors, reference, case).items():
        np.save(results / file, array)
    backward, epoch, update = case["expected"]["backward"], case["expected"]["epoch"], case["expected"]["update"]
    np.save(results / backward["dW"][1], 1.01 * np.load(results / backward["dW"][1]))  # 1 % off
    np.save(results / epoch["W"][0], np.load(results / epoch["W"][0]).astype(np.float16))  # wrong dtype
    (results / update["b"][1]).unlink()  # a missing file in an operation that has others
    capsys.readouterr()
    assert main(["conformance", "check", str(vectors), str(results)]) == 1
    out = capsys.readouterr().out
    row = {tuple(line.split()[:2]): line for line in out.splitlines()[1:-1]}
    assert "pass" in row[case["id"], "forward"] and "pass" in row[case["id"], "loss"]
    assert "FAIL" in row[case["id"], "backward"] and "dW2: beyond tolerance" in row[case["id"], "backward"]
    assert "FAIL" in row[case["id"], "epoch"] and "W1: dtype float16" in row[case["id"], "epoch"]
    assert "FAIL" in row[case["id"], "update"] and "b2: no file" in row[case["id"], "update"]
    assert out.splitlines()[-1].startswith("conformance FAILED: 1 cases, 5 operations checked: 2 passed, 3 failed")


def test_check_fails_when_nothing_was_checked_and_errors_on_a_bad_folder(vectors, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["conformance", "check", str(vectors), str(tmp_path / "empty")]) == 1
    assert "nothing checked" in capsys.readouterr().out
    assert main(["conformance", "check", str(tmp_path), str(tmp_path / "empty")]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["conformance", "export", str(vectors)]) == 2  # never writes into a non-empty folder
    assert "not an empty folder" in capsys.readouterr().err


# ------------------------------------------------- an implementation written from scratch, and broken


class Student:
    """A from-scratch NumPy implementation with fastbp's kernel API, as a student might write one,
    with one of three classic bugs switched on by ``bug``."""

    def __init__(self, bug: str | None = None):
        self.bug = bug

    @staticmethod
    def _g(act, Z):
        T = Z.dtype.type
        return {
            "tanh": lambda: np.tanh(Z),
            "sigmoid": lambda: T(0.5) * (T(1) + np.tanh(Z / T(2))),  # σ(z) = ½ (1 + tanh(z/2)): no overflow
            "relu": lambda: np.maximum(Z, T(0)),
            "leaky_relu": lambda: np.where(Z > 0, Z, Z * T(LEAKY_SLOPE)),
            "identity": lambda: Z,
        }[act]()

    def _g_prime(self, act, Z, A):
        T = Z.dtype.type
        if act == "sigmoid" and self.bug == "wrong sigma prime":
            return Z * (T(1) - Z)  # σ′ from Z instead of from A = σ(Z)
        return {
            "tanh": lambda: T(1) - A * A,
            "sigmoid": lambda: A * (T(1) - A),
            "relu": lambda: (Z > 0).astype(Z.dtype),
            "leaky_relu": lambda: np.where(Z > 0, T(1), T(LEAKY_SLOPE)),
            "identity": lambda: np.ones_like(Z),
        }[act]()

    def forward(self, W, b, X, act, out):
        Z, A, a = [], [], X
        for l, (Wl, bl) in enumerate(zip(W, b)):
            z = a @ Wl.T + bl
            if l < len(W) - 1:
                a = self._g(act, z)
            elif out == "sigmoid":
                a = self._g("sigmoid", z)
            elif out == "softmax":
                e = np.exp(z - z.max(axis=1, keepdims=True))
                a = e / e.sum(axis=1, keepdims=True)
            else:
                a = z
            Z.append(z)
            A.append(a)
        return Z, A

    @staticmethod
    def _costs(z, Y, out):
        z, Y = z.astype(np.float64), Y.astype(np.float64)
        if out == "sigmoid":
            return (np.logaddexp(0, z) - Y * z).sum(axis=1)
        if out == "softmax":
            return (Y * (np.logaddexp.reduce(z, axis=1, keepdims=True) - z)).sum(axis=1)
        return 0.5 * ((z - Y) ** 2).sum(axis=1)

    def loss(self, W, b, X, Y, act, out):
        return float(self._costs(self.forward(W, b, X, act, out)[0][-1], Y, out).mean())

    def backward(self, W, b, X, Y, Z, A, act, out):
        L, m = len(W), X.shape[0]
        scale = X.dtype.type(1) if self.bug == "dropped 1/m" else X.dtype.type(1) / X.dtype.type(m)
        dZ, dW, db = [None] * L, [None] * L, [None] * L
        dZ[-1] = A[-1] - Y
        for l in reversed(range(L)):
            A_prev = X if l == 0 else A[l - 1]
            dW[l] = A_prev.T @ dZ[l] * scale if self.bug == "transposed dW" else dZ[l].T @ A_prev * scale
            db[l] = dZ[l].sum(axis=0) * scale
            if l > 0:
                dZ[l - 1] = (dZ[l] @ W[l]) * self._g_prime(act, Z[l - 1], A[l - 1])
        return dZ, dW, db

    def gradients(self, W, b, X, Y, act, out):
        Z, A = self.forward(W, b, X, act, out)
        return self.backward(W, b, X, Y, Z, A, act, out)[1:]

    def update(self, W, b, dW, db, lr):
        for l in range(len(W)):
            W[l] -= lr * (dW[l].T if self.bug == "transposed dW" else dW[l])  # (the student made the shapes fit)
            b[l] -= lr * db[l]

    def train_epoch(self, W, b, X, Y, lr, batch_size, order, act, out):
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            Z, A = self.forward(W, b, X[rows], act, out)
            total += self._costs(Z[-1], Y[rows], out).sum()
            _, dW, db = self.backward(W, b, X[rows], Y[rows], Z, A, act, out)
            self.update(W, b, dW, db, lr)
        return total / len(order)


def _expected_failures(manifest, bug):
    """The (case, operation) pairs each bug must fail, from the manifest alone, and no others."""
    failures = set()
    for c in manifest["cases"]:
        n, m, bs = c["layer_sizes"], c["m"], c["batch_size"]
        if bug == "dropped 1/m":
            trivial = c["output"] == "softmax" and n[-1] == 1  # a 1-unit softmax is constant: every gradient is 0
            ops = [] if trivial else (["backward", "update"] if m > 1 else []) + (["epoch"] if min(bs, m) > 1 else [])
        elif bug == "transposed dW":
            ops = ["backward"] if any(n_in * n_out > 1 for n_in, n_out in zip(n[:-1], n[1:])) else []
        else:  # a wrong σ′ matters where a sigmoid hidden layer is backpropagated through
            ops = ["backward", "update", "epoch"] if c["activation"] == "sigmoid" and len(n) > 2 else []
        failures |= {(c["id"], op) for op in ops}
    return failures


def test_an_implementation_written_from_scratch_passes(vectors):
    report = check_conformance(vectors, Student(), require_all=True)
    assert report.ok, "\n".join(report.lines(failures_only=True))


@pytest.mark.parametrize("bug", ["dropped 1/m", "transposed dW", "wrong sigma prime"])
def test_a_broken_implementation_fails_on_the_right_cases_and_operations(vectors, manifest, bug):
    report = check_conformance(vectors, Student(bug))
    expected = _expected_failures(manifest, bug)
    assert expected and not report.ok
    assert report.failed() == expected
    if bug == "transposed dW":
        assert all("shape" in r.details[0] for r in report.failures if r.case.split("-")[3].count("x") > 1)


# ----------------------------------------------------------------------------- the C example


def test_the_c_example_passes(vectors, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (cc or gcc) on this machine")
    results = tmp_path / "results"
    results.mkdir()
    for dtype, flags in (("float64", []), ("float32", ["-DREAL_FLOAT32"])):
        exe = tmp_path / f"backprop-{dtype}"
        build = subprocess.run(
            [
                cc,
                "-std=c99",
                "-O2",
                "-Wall",
                "-Wextra",
                "-pedantic",
                "-Werror",
                *flags,
                "-o",
                str(exe),
                str(C_EXAMPLE / "backprop.c"),
                "-lm",
            ],
            capture_output=True,
            text=True,
        )
        assert build.returncode == 0, build.stderr
        run = subprocess.run([str(exe), str(vectors), str(results)], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert f"wrote the results of {len(conformance.cases()) // 2} {dtype} cases" in run.stdout
    report = check_conformance(vectors, results, require_all=True)
    assert report.ok, "\n".join(report.lines(failures_only=True))
