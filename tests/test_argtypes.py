"""The argparse types shared by ``fastbp train`` and ``fastbp bench`` (:mod:`fastbp._argtypes`), and that
the two command modules no longer import each other for them."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from fastbp import _argtypes as t

PACKAGE = Path(t.__file__).resolve().parent


@pytest.mark.parametrize("text, value", [("1", 1), ("3", 3), (" 7 ", 7), ("+12", 12)])
def test_positive_int_accepts(text, value):
    assert t._positive_int(text) == value


@pytest.mark.parametrize("text", ["0", "-3", "2.5", "x", "", "1e3"])
def test_positive_int_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer, got " + repr(text)):
        t._positive_int(text)


@pytest.mark.parametrize("text, value", [("0", 0), ("10", 10)])
def test_non_negative_int_accepts(text, value):
    assert t._non_negative_int(text) == value


@pytest.mark.parametrize("text", ["-1", "2.5", "x"])
def test_non_negative_int_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer ≥ 0"):
        t._non_negative_int(text)


@pytest.mark.parametrize("text, value", [("0.1", 0.1), ("1e-3", 1e-3), ("5", 5.0)])
def test_positive_float_accepts(text, value):
    assert t._positive_float(text) == value


@pytest.mark.parametrize(
    "text, message",
    [
        ("x", "expected a positive number"),
        ("0", "expected a finite positive number"),
        ("-1", "expected a finite positive number"),
        ("nan", "expected a finite positive number"),
        ("inf", "expected a finite positive number"),
        ("1e999", "expected a finite positive number"),
    ],
)
def test_positive_float_refuses(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        t._positive_float(text)


@pytest.mark.parametrize("text", ["full", "FULL", "none", "All"])
def test_batch_size_full_is_none(text):
    assert t._batch_size(text) is None


def test_batch_size_number_and_refusals():
    assert t._batch_size("32") == 32
    for text in ("0", "x", "-2"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer"):
            t._batch_size(text)


def test_cli_and_bench_share_the_same_functions():
    from fastbp import bench, cli

    for name in ("_positive_int", "_positive_float", "_batch_size"):
        assert getattr(cli, name) is getattr(t, name) is getattr(bench, name)
    assert cli._non_negative_int is t._non_negative_int


def _imported_modules(path: Path) -> set[str]:
    """Every fastbp module ``path`` imports, at module level or inside a function (relative names resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .x import y
                base = node.module or ""
                names = [base] if base else [a.name for a in node.names]
                found.update(f"fastbp.{n}" for n in names)
            elif node.module and node.module.startswith("fastbp"):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("fastbp"))
    return found


def test_bench_does_not_import_cli_and_argtypes_imports_no_fastbp_module():
    assert "fastbp.cli" not in _imported_modules(PACKAGE / "bench.py")
    assert _imported_modules(PACKAGE / "_argtypes.py") == set()
    assert "fastbp._argtypes" in _imported_modules(PACKAGE / "cli.py")
