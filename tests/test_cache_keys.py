"""Numba's on-disk cache never serves a kernel compiled from other sources of the package.

Numba keys a cache entry on the kernel's own file, but the entry holds the machine code of every
helper the kernel calls or inlines from other modules; fastbp adds a hash of all its sources to
every entry's key (``fastbp._jit.sources_digest``)."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from numba.core.registry import CPUDispatcher

import fastbp
from fastbp import _jit

PACKAGE = Path(fastbp.__file__).resolve().parent


def _cached_dispatchers():
    """Every compiled function of every fastbp module that keeps an on-disk cache."""
    for info in pkgutil.walk_packages([str(PACKAGE)], "fastbp."):
        if info.name.endswith("__main__"):  # the command line, run on import
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == info.name:
                cache = getattr(obj, "_cache", None)
                if cache is not None and type(cache).__name__ != "NullCache":
                    yield f"{info.name}.{name}", obj


def test_every_cached_kernel_is_keyed_on_the_package_sources():
    found = dict(_cached_dispatchers())
    assert len(found) > 50  # the walk reached the kernels
    plain = [name for name, d in found.items() if type(d._cache) is not _jit._PackageKeyedCache]
    assert plain == [], f"cached under Numba's own key (stale after an edit to a helper): {plain}"


_RUN = """
import json, numpy as np
from fastbp.losses import output_activation, OUT_SOFTMAX
a = np.empty(3)
output_activation(np.array([0.5, -1.0, 2.0]), a, OUT_SOFTMAX)
s = output_activation.stats
print(json.dumps({"hits": sum(s.cache_hits.values()), "misses": sum(s.cache_misses.values()), "a": a.tolist()}))
"""


@pytest.mark.slow
def test_an_edit_anywhere_in_the_package_misses_the_old_cache_entries(tmp_path):
    """A kernel cached by one process is loaded by the next; after an edit to another module
    (here a comment in fastbp/datasets.py, which the kernel does not use: any edit) the next
    process compiles it afresh, and the one after loads that."""
    shutil.copytree(PACKAGE, tmp_path / "fastbp", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run():
        out = subprocess.run([sys.executable, "-c", _RUN], env=env, cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first, second = run(), run()
    assert (first["misses"], second["hits"], second["misses"]) == (1, 1, 0)
    with open(tmp_path / "fastbp" / "datasets.py", "a") as f:
        f.write("# an edit\n")
    edited, again = run(), run()
    assert (edited["hits"], edited["misses"]) == (0, 1)
    assert (again["hits"], again["misses"]) == (1, 0)
    assert first["a"] == second["a"] == edited["a"] == again["a"]
