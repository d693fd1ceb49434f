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


class _Item:
    def __init__(self, nodeid, marker=None):
        self.nodeid, self.marker = nodeid, marker

    def get_closest_marker(self, name):
        return name if name == self.marker else None


class _Config:
    """The two things the hook reads of pytest's config: ``--quick``, and the deselection hook."""

    def __init__(self, quick):
        self.quick, self.deselected = quick, []
        self.hook = self

    def getoption(self, name, default=None):
        return self.quick if name == "--quick" else default

    def pytest_deselected(self, items):
        self.deselected.extend(item.nodeid for item in items)


@pytest.mark.parametrize("quick", [False, True], ids=["whole", "quick"])
def test_the_longest_items_are_moved_before_the_rest_in_their_order(quick):
    """``start_first`` items (pyproject.toml's markers) lead the list, and both they and the rest
    keep their order: under ``-n 2 --dist worksteal`` none is left to run alone at the end; with
    ``--quick`` the ``slow`` one is deselected too.  (A config of its own: the run's real one
    would make the outcome depend on whether this very run was started with ``--quick``.)"""
    from .conftest import pytest_collection_modifyitems

    items = [_Item("a"), _Item("b", "start_first"), _Item("c", "slow"), _Item("d", "start_first"), _Item("e")]
    config = _Config(quick)
    pytest_collection_modifyitems(config, items)
    assert [item.nodeid for item in items] == (["b", "d", "a", "e"] if quick else ["b", "d", "a", "c", "e"])
    assert config.deselected == (["c"] if quick else [])
