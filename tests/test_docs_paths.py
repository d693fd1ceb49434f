"""Every ``fastbp/…``, ``benchmarks/…``, ``tools/…``, ``docs/…`` and ``examples/…`` path that README.md and
docs/*.md name exists in the repository (paths are relative to the repository root).

A path in backticks counts whatever it looks like (```fastbp/_fast``` must exist); in plain text a
word counts as a path only when it names a file (``fastbp/kernels.py``) or a folder (``benchmarks/``),
so the unit "examples/s" is not one.  A glob (``fastbp/**/*.py``) must match something; a line
number or anchor after the path (``fastbp/kernels.py:120``, ``…#L12``) is ignored; generated things
(``__pycache__``, Numba's cache files, asv's and pytest's folders) are never expected to exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_PREFIX = r"(?:fastbp|benchmarks|tools|docs|examples)/"
_BACKTICKED = re.compile(r"`(" + _PREFIX + r"[^`\s]*)`")
_BARE = re.compile(r"(?<![\w./-])(" + _PREFIX + r"[\w./*-]*)")
#: Generated or ignored by git: never committed, so never checked.
GENERATED_PARTS = {"__pycache__", ".asv", ".numba_cache", ".pytest_cache", ".benchmarks", ".hypothesis"}
GENERATED_SUFFIXES = (".pyc", ".nbi", ".nbc")


def _clean(path: str) -> str:
    path = re.split(r"[:#]", path, maxsplit=1)[0]  # a line number or an anchor
    return path.rstrip(".,;)")


def _looks_like_a_file_or_folder(path: str) -> bool:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return path.endswith("/") or "." in last or "*" in path


def paths_in(text: str) -> list[tuple[int, str]]:
    """``(line number, path)`` for every repository path ``text`` names (see the module docstring)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        quoted = [_clean(m.group(1)) for m in _BACKTICKED.finditer(line)]
        spans = [m.span() for m in _BACKTICKED.finditer(line)]
        bare = [
            _clean(m.group(1))
            for m in _BARE.finditer(line)
            if not any(a <= m.start() < b for a, b in spans) and _looks_like_a_file_or_folder(_clean(m.group(1)))
        ]
        for path in quoted + bare:
            parts = set(path.split("/"))
            if path and not parts & GENERATED_PARTS and not path.endswith(GENERATED_SUFFIXES):
                found.append((number, path))
    return found


def exists(path: str) -> bool:
    if "*" in path:
        return any(ROOT.glob(path))
    return (ROOT / path).exists()


CASES = [(doc.relative_to(ROOT).as_posix(), number, path) for doc in DOCS for number, path in paths_in(doc.read_text())]


@pytest.mark.parametrize("doc, line, path", CASES, ids=[f"{d}:{n}:{p}" for d, n, p in CASES])
def test_named_path_exists(doc, line, path):
    assert exists(path), f"{doc} line {line} names {path}, which is not in the repository"


def test_the_docs_name_paths_at_all():
    """The extractor still finds the layout table's files (a broken pattern would pass every check above)."""
    named = {p for _, _, p in CASES}
    assert {"fastbp/network.py", "fastbp/bench.py", "benchmarks/", "docs/derivation.md"} <= named


def test_paths_in_reads_backticks_plain_text_and_skips_units_and_generated_things():
    text = (
        "see `fastbp/_fast` and fastbp/kernels.py:120, then (tools/perf_matrix.py).\n"
        "12,000 examples/s; `examples/s`; fastbp/__pycache__/x.nbi and `.asv/` aside\n"
        "the suite in `benchmarks/`, files `fastbp/**/*.py`, docs/img/peers.png#top"
    )
    assert paths_in(text) == [
        (1, "fastbp/_fast"),
        (1, "fastbp/kernels.py"),
        (1, "tools/perf_matrix.py"),
        (2, "examples/s"),  # in backticks it is taken as a path
        (3, "benchmarks/"),
        (3, "fastbp/**/*.py"),
        (3, "docs/img/peers.png"),
    ]
    assert exists("fastbp/**/*.py") and exists("benchmarks/") and not exists("fastbp/no_such_module.py")
