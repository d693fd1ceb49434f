"""Start-up costs, each in a fresh interpreter (``timeraw_*``): import, cold compile, cache-warm first call.

* ``timeraw_import_fastbp``: ``import fastbp`` (must stay light: no sklearn,
  matplotlib, jax or torch at import time).
* ``timeraw_first_fit_cold``: the first ``MLP.fit`` + ``predict`` of a process
  with an empty ``NUMBA_CACHE_DIR``: every kernel it needs is compiled.
* ``timeraw_first_fit_warm``: the same with the cache already filled by another
  process (``setup``), as a user sees it on every run after the first.

Data are built in the untimed part (timeit's ``setup``); only the first call is timed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
        code = _prelude(self.warm_dir) + _FIRST_FIT
        subprocess.run([sys.executable, "-c", code], check=True)

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def timeraw_first_fit_cold(self):
        # A fresh, empty cache directory for every sample.
        fresh = tempfile.mkdtemp(dir=self.root)
        return _FIRST_FIT, _prelude(fresh)

    def timeraw_first_fit_warm(self):
        return _FIRST_FIT, _prelude(self.warm_dir)
