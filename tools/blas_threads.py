"""Whether BLAS's thread count changes the column kernels' bits, and that fastbp's hold fixes it.

Runs one epoch of ``_columns_epoch`` (784-128-10, batch 256, float32, BLAS for every layer) in
fresh processes with ``OPENBLAS_NUM_THREADS`` 1 and 2, once as the dispatcher runs it (BLAS held
to one thread, :mod:`fastbp._blas`) and once without the hold, and prints a fingerprint of the
parameters for each::

    python tools/blas_threads.py

Held, the fingerprints agree for any thread count; unheld they may not (on this project's Zen 4
machine with OpenBLAS 0.3.31 they did not: that is why the hold exists).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import hashlib, numpy as np, sys
from fastbp import _dispatch
from fastbp._blas import one_blas_thread
from fastbp.activations import get_activation
from fastbp.losses import OUT_SOFTMAX
from fastbp.params import Layout
from fastbp.testing import make_problem
sizes = [int(n) for n in sys.argv[1].split("-")]
held = sys.argv[2] == "held"
prob = make_problem(sizes, dtype=np.float32, output="softmax", m=1024, seed=0, learning_rate=0.01)
p = Layout(sizes).pack(prob.weights, prob.biases, np.dtype(np.float32))
k = _dispatch._ROWS["_columns_epoch"].kernel()
args = (p, np.asarray(sizes, np.int64), prob.X, prob.Y, np.arange(1024), 256, np.float32(0.01),
        get_activation("tanh").code, OUT_SOFTMAX, 1e37, 0, False)
if held:
    with one_blas_thread():
        k(*args)
else:
    k(*args)
print(hashlib.sha1(p.tobytes()).hexdigest()[:16])
"""


def fingerprint(net: str, threads: int, held: bool) -> str:
    """The parameters' fingerprint after one epoch in a fresh process with ``threads`` BLAS threads."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads)}
    mode = "held" if held else "free"
    res = subprocess.run([sys.executable, "-c", CHILD, net, mode], env=env, capture_output=True, text=True, check=True)
    return res.stdout.strip()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--net", default="784-128-10")
    args = ap.parse_args(argv)
    for held in (True, False):
        prints = {t: fingerprint(args.net, t, held) for t in (1, 2)}
        same = "same bits" if len(set(prints.values())) == 1 else "DIFFERENT bits"
        label = "held to one thread" if held else "not held"
        print(f"{args.net}, BLAS {label}: 1 thread {prints[1]}, 2 threads {prints[2]}: {same}")


if __name__ == "__main__":
    main()
