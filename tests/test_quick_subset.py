"""``pytest --quick`` (tests/conftest.py): the subset the README offers for running often."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _collected(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.slow  # two pytest subprocesses
def test_quick_keeps_every_test_function_a_sample_of_each_grid_and_no_slow_test():
    files = ["tests/test_io.py", "tests/test_tools.py"]  # a big grid, and tests marked slow
    full, quick = _collected(*files), _collected("--quick", *files)
    functions = {node.split("[", 1)[0] for node in full}
    slow = set(_collected("-m", "slow", *files))
    assert slow and not slow & set(quick)
    assert {node.split("[", 1)[0] for node in quick} == {node.split("[", 1)[0] for node in full if node not in slow}
    assert len(quick) < len(full) and set(quick) <= set(full)
    assert len(functions) > 10
