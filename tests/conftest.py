"""Shared fixtures: the custom activation used across the grid, and the grid itself."""

from __future__ import annotations

import os
from pathlib import Path

from ._numba_cache import cache_dir_for_these_sources

os.environ.setdefault("NUMBA_CACHE_DIR", cache_dir_for_these_sources())
# The defaults take the threaded twins wherever the sizes say, however busy the machine (the other
# pytest worker keeps it busy): what a test runs must not depend on the load.  Inherited by the
# tests' fresh processes; tests/test_busy.py turns the check back on where it is the subject.
os.environ.setdefault("FASTBP_BUSY_CHECK", "0")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastbp  # noqa: E402
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS  # noqa: E402

from . import _hypothesis_profiles  # noqa: E402, F401  registers the hypothesis profiles dev/ci/thorough and loads one (ci when $CI is set)

#: ``pytest --quick`` keeps every test function and one in :data:`QUICK_EVERY` of its parametrized cases.
QUICK_EVERY = 12


def pytest_addoption(parser):
    parser.addoption(
        "--quick",
        action="store_true",
        help=(
            "fastbp's quick subset (README, Tests): every test function, the first and then every "
            f"{QUICK_EVERY}th case of its parameter grid, 10 hypothesis examples, no tests marked slow"
        ),
    )


def pytest_configure(config):
    if config.getoption("--quick", default=False) and not os.environ.get("HYPOTHESIS_PROFILE"):
        from hypothesis import settings

        settings.load_profile("quick")


def pytest_collection_modifyitems(config, items):
    """The items marked ``start_first`` before the rest (in their order); ``--quick``: keep every
    test function (so every module's tests run), a sample of each grid.

    Why first: under ``pytest -n 2 --dist worksteal`` (the README's command) each worker starts on
    a half of the list and takes from the other's when its own runs out.  One of these items,
    50-130 s of compiling in fresh processes, started last would leave the other worker idle
    that long; started first, the rest of the suite balances around it."""
    items.sort(key=lambda item: item.get_closest_marker("start_first") is None)  # stable
    if not config.getoption("--quick", default=False):
        return
    seen: dict[str, int] = {}
    keep, drop = [], []
    for item in items:
        if item.get_closest_marker("slow") is not None:
            drop.append(item)
            continue
        function = item.nodeid.split("[", 1)[0]
        n = seen[function] = seen.get(function, -1) + 1
        (drop if n % QUICK_EVERY else keep).append(item)
    items[:] = keep
    config.hook.pytest_deselected(items=drop)


@numba.njit
def softsign(z):
    """g(z) = z / (1 + |z|): a custom activation neither backend knows by name."""
    return z / (1 + abs(z))


@numba.njit
def softsign_prime(z):
    """g'(z) = 1 / (1 + |z|)²."""
    return 1 / (1 + abs(z)) ** 2


SOFTSIGN = fastbp.Activation(softsign, softsign_prime, name="softsign")

#: Every hidden activation, the custom one included.
ACTIVATIONS = [*HIDDEN_ACTIVATIONS, SOFTSIGN]
ACTIVATION_IDS = [*HIDDEN_ACTIVATIONS, "custom-softsign"]

#: Depths 1 to 4, widths including 1.
LAYER_SIZES = [(1, 1), (3, 5, 2), (4, 1, 3, 2), (5, 7, 6, 4, 3)]
DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="session")
def boundscheck_cache() -> Path:
    """The Numba cache folder of the ``NUMBA_BOUNDSCHECK=1`` subprocesses: one of their own beside the
    tests' cache, keyed on the same sources (tests/_numba_cache.py), never the unchecked kernels'
    (Numba's cache does not key on bounds checking).  Every kernel in it was compiled with the checks,
    by whichever bounds-checked run came first; the other loads those instead of compiling them again.
    A fixed path rather than a temporary folder, so that under ``pytest -n 2`` the two runs share it
    when they land on different workers (each worker has its own temporary folders)."""
    return Path(cache_dir_for_these_sources() + "-boundscheck")


@pytest.fixture(params=ACTIVATIONS, ids=ACTIVATION_IDS)
def activation(request):
    return request.param


@pytest.fixture(params=OUTPUTS)
def output(request):
    return request.param


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(params=LAYER_SIZES, ids=lambda s: "-".join(map(str, s)))
def layer_sizes(request):
    return request.param
