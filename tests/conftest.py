"""Shared fixtures: the custom activation used across the grid, and the grid itself."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _cache_dir_for_these_sources() -> str:
    """A Numba cache folder keyed on a hash of the package's sources.

    Numba's on-disk cache does not notice that a kernel's callee in another module changed
    (an edit to ``activations.py`` leaves ``_plain/loops.py``'s cached machine code stale);
    a folder per version of the sources cannot serve stale code.  Set before Numba is
    imported; an explicit ``NUMBA_CACHE_DIR`` wins.  Clear all: ``rm -rf .numba_cache``.
    """
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted((root / "fastbp").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return str(root / ".numba_cache" / digest.hexdigest()[:16])


os.environ.setdefault("NUMBA_CACHE_DIR", _cache_dir_for_these_sources())

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastbp  # noqa: E402
from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS  # noqa: E402

from . import _hypothesis_profiles  # noqa: E402, F401  registers the hypothesis profiles dev/ci/thorough and loads one (ci when $CI is set)


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
