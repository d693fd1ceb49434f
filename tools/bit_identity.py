"""Fingerprint what training computes, to show that a refactor changed no bit.

Trains a grid of networks (7 shapes × 5 hidden activations × 3 outputs) for one epoch at
batch sizes 1, 2, 3, 8, 64, 300 and full batch (1,600 examples), in float32 and float64,
through ``fastbp.MLP.fit`` (so through whatever kernel the dispatcher picks), plus two
epochs with Nesterov momentum and with Adam; prints one SHA-256 per (dtype, batch size) of
the parameters and losses (or the divergence message) it ends with.  Run it in two
checkouts and diff the output::

    PYTHONPATH=/path/to/old python tools/bit_identity.py > old.txt
    PYTHONPATH=/path/to/new python tools/bit_identity.py > new.txt
    diff old.txt new.txt        # no output: the same bits everywhere

It uses only the public API, so it runs on commits from before the issue-11 move too.
``--quick``: two shapes and two batch sizes (a smoke run).
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np

import fastbp
from fastbp.optimizers import SGD, Adam

SHAPES = ([2, 4, 1], [3, 5, 2], [2, 4, 3], [64, 32, 10], [8, 8, 2], [130, 128, 3], [40, 30, 20, 5])
ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity", "leaky_relu")
OUTPUTS = ("sigmoid", "softmax", "identity")
BATCHES = (1, 2, 3, 8, 64, 300, 1500)


def _data(sizes, out, m):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(m, sizes[0]))
    Y = (rng.random((m, sizes[-1])) < 0.5).astype(float)
    if out == "softmax":
        Y = np.eye(sizes[-1])[rng.integers(0, sizes[-1], m)]
    return X, Y


def fingerprints(shapes=SHAPES, batches=BATCHES, dtypes=(np.float32, np.float64)):
    """Yield ``(label, hex digest)`` lines, one per dtype and batch size, and one per dtype for
    the optimizers."""
    for dt in dtypes:
        for bs in batches:
            h = hashlib.sha256()
            for sizes in shapes:
                for act in ACTIVATIONS:
                    for out in OUTPUTS:
                        if out == "softmax" and sizes[-1] < 2:  # refused by MLP: a softmax of one unit is 1
                            continue
                        X, Y = _data(sizes, out, 1600 if bs == 1500 else 70)
                        net = fastbp.MLP(sizes, seed=0, activation=act, output=out, dtype=dt)
                        lr = 0.05 if max(sizes) < 50 else 0.002
                        try:
                            history = net.fit(X, Y, epochs=1, batch_size=bs, learning_rate=lr)
                            h.update(np.array(history.loss).tobytes())
                        except fastbp.DivergenceError as exc:
                            h.update(str(exc).encode())
                        h.update(net.params.tobytes())
            yield f"{np.dtype(dt).name} batch {bs}", h.hexdigest()[:16]
        h = hashlib.sha256()
        for opt in (SGD(momentum=0.9, nesterov=True), Adam()):
            net = fastbp.MLP([20, 16, 3], seed=0, dtype=dt)
            X, Y = _data([20, 16, 3], "sigmoid", 100)
            history = net.fit(X, Y, epochs=2, batch_size=10, optimizer=opt)
            h.update(net.params.tobytes())
            h.update(np.array(history.loss).tobytes())
        yield f"{np.dtype(dt).name} optimizers", h.hexdigest()[:16]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="two shapes, two batch sizes (a smoke run)")
    args = ap.parse_args(argv)
    kwargs = {"shapes": SHAPES[:2], "batches": (1, 8)} if args.quick else {}
    for label, digest in fingerprints(**kwargs):
        print(f"{label:<20} {digest}", flush=True)


if __name__ == "__main__":
    main()
