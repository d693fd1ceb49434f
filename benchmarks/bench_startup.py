"""Start-up costs, each in a fresh interpreter (``timeraw_*``): import, cold compile, cache-warm first call.

* ``timeraw_import_fastbp``: ``import fastbp`` (must stay light: no sklearn,
  matplotlib, jax or torch at import time).
* ``timeraw_first_fit_cold``: the first ``MLP.fit`` + ``predict`` of a process
  with an empty ``NUMBA_CACHE_DIR``: every kernel it needs is compiled.
* ``timeraw_first_fit_warm``: the same with the cache already filled by another
  process (run first, untimed), as a user sees it on every run after the first.

Data are built in the untimed part (timeit's ``setup``); only the first call is timed.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_FIRST_FIT = """
net.fit(X, Y, epochs=1, batch_size=1)
net.predict(X)
"""


def _prelude(cache_dir: str) -> str:
    # Runs before numba and numpy are imported (they read these variables at import): the
    # cache folder, and one Numba and one BLAS thread, as every other benchmark fixes them.
    return f"""
import os
os.environ["NUMBA_CACHE_DIR"] = {cache_dir!r}
os.environ["NUMBA_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
import numpy as np
import fastbp
rng = np.random.default_rng(0)
X = rng.normal(size=(16, 4))
Y = (rng.random((16, 1)) < 0.5).astype(float)
net = fastbp.MLP([4, 8, 1], seed=0)
"""


class Import:
    number = 1
    repeat = (1, 5, 20.0)
    warmup_time = 0

    def timeraw_import_fastbp(self):
        return "import fastbp"


class FirstFit:
    number = 1  # a first call happens once per process
    repeat = (1, 3, 30.0)
    warmup_time = 0
    timeout = 300

    def setup(self):
        self.root = tempfile.mkdtemp(prefix="fastbp-asv-numba-cache-")
        self.warm_dir = os.path.join(self.root, "warm")
        self.fill_script = os.path.join(self.root, "fill_warm_cache.py")
        self.filled = os.path.join(self.root, "warm-filled")  # written when the fill is done
        with open(self.fill_script, "w") as f:
            f.write(_prelude(self.warm_dir) + _FIRST_FIT + f"open({self.filled!r}, 'w').close()\n")

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def timeraw_first_fit_cold(self):
        # A fresh, empty cache directory for every sample.
        fresh = tempfile.mkdtemp(dir=self.root)
        return _FIRST_FIT, _prelude(fresh)

    def timeraw_first_fit_warm(self):
        # The cache filled by another process first, in the untimed part, once per asv process (not
        # in ``setup``, which asv runs before the cold benchmark too: there it compiled everything for
        # nothing, 14 s of .ci/bench-smoke.sh's 110 on the Zen 3).  Numba reads its cache at a
        # kernel's first call, so the timed process, which has imported fastbp, then loads them all.
        # asv counts the fill against ``repeat``'s 30 s of sampling: a machine that compiles the first
        # fit in more than about 28 s gets one warm sample a process instead of three.
        return _FIRST_FIT, _prelude(self.warm_dir) + _fill_once(self.fill_script, self.filled)


def _fill_once(script: str, filled: str) -> str:
    """Setup code that runs ``script`` in a fresh interpreter unless it has run (``filled`` exists: not
    the cache folder itself, which Numba creates, empty, as soon as fastbp is imported)."""
    return f"""
import subprocess, sys
if not os.path.exists({filled!r}):
    subprocess.run([sys.executable, {script!r}], check=True)
"""
