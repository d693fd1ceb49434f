"""The tests' Numba cache folder, keyed on the package's sources (tests/conftest.py sets it before
Numba is imported; .ci/run points the asv smoke run at the same folder, warm from the tests)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def cache_dir_for_these_sources() -> str:
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
