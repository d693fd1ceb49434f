"""A bounds-checked hunt over the fast kernels' paths, by hand (CI runs a fixed grid instead:
``tests/test_boundscheck.py``).

Draws random nets, dtypes, activations, outputs, row counts and batch sizes around the
dispatcher's thresholds (widths of 1; one under, at and over a strip of 8 float64 or 16 float32
lanes; 2,100 rows: blocks of 128 and a rest), runs every public operation on each draw
(:data:`fastbp.testing.IMPLEMENTATIONS`) against the NumPy reference in this interpreter, which
must check bounds (:func:`fastbp.testing.bounds_check_missing`, probed before the first draw), and
prints each draw with what happened: ``IndexError`` (a kernel, or one of the intrinsics that check
their own spans under the switch, ``fastbp/_fast/_bounds.py``, reaching outside an array), any
other exception, or a disagreement with the reference.  A :class:`fastbp.DivergenceError` raised
by both the kernel and the reference is reported, not counted; raised by one alone it is a
disagreement.  Exit status 1 if any operation of any draw raised or disagreed (the draw's other
operations still run)::

    NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=/tmp/fastbp-boundscheck python tools/boundscheck_sweep.py --cases 200
    FASTBP_BUSY_CHECK=0 NUMBA_NUM_THREADS=2 NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=/tmp/fastbp-boundscheck \\
        python tools/boundscheck_sweep.py --seed 2     # the threaded twins where a draw takes them

On two threads, an out-of-range access inside a threaded twin's parallel loop is stopped but not
raised: Numba drops an exception raised in a ``prange`` body, so there it shows as a
disagreement with the reference, not as an ``IndexError``.

Give it a Numba cache directory of its own: Numba's cache does not key on bounds checking, so
the unchecked kernels' cache would hand it kernels compiled without the checks (the probe refuses
such a cache).  The first run compiles every kernel it reaches with the checks (minutes: 13 for a
first 80 draws on the 2-core Zen 4, beside a CI run); on a warm cache 100 draws take a few seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from typing import NamedTuple

import numpy as np

INPUTS = (1, 3, 16, 17, 40, 64, 100, 300)
WIDTHS = (1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100)
OUTPUT_WIDTHS = (1, 2, 10)
ROWS = (1, 7, 129, 300, 2100)
BATCHES = (1, 2, 7, 8, 16, 31, 32, 64, 65, 128, 200, 256, None)  # None: the whole epoch as one batch


class Draw(NamedTuple):
    sizes: tuple[int, ...]
    dtype: str
    activation: str
    output: str
    m: int
    batch_size: int | None


def draw_cases(seed: int, n: int) -> list[Draw]:
    """``n`` seeded draws: 1-3 layers, widths from :data:`WIDTHS`, both dtypes, every hidden
    activation and output of :mod:`fastbp.testing`'s name tables."""
    from fastbp.testing import HIDDEN_ACTIVATIONS, OUTPUTS

    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        depth = int(rng.integers(1, 4))
        hidden = [int(rng.choice(WIDTHS)) for _ in range(depth - 1)]
        sizes = (int(rng.choice(INPUTS)), *hidden, int(rng.choice(OUTPUT_WIDTHS)))
        batch = BATCHES[int(rng.integers(len(BATCHES)))]
        draws.append(
            Draw(
                sizes,
                ("float32", "float64")[int(rng.integers(2))],
                str(rng.choice(HIDDEN_ACTIVATIONS)),
                str(rng.choice(OUTPUTS)),
                int(rng.choice(ROWS)),
                batch,
            )
        )
    return draws


class Outcome(NamedTuple):
    failures: list[str]  # an operation that raised or disagreed with the reference
    notes: list[str]  # an operation that both the kernel and the reference stopped as diverging


def run_operation(kernel, reference, prob, name: str, dtype) -> None:
    """One operation of a problem, the kernel's result against the reference's (``AssertionError``
    when they disagree); a :class:`fastbp.DivergenceError` of the kernel's propagates only if the
    reference raises one too."""
    from fastbp.errors import DivergenceError
    from fastbp.testing import assert_agree

    def call(fn):
        if name in ("update", "train_epoch"):
            W, b = prob.copy_params()
            return [fn(*prob.args(name, W, b)), W, b]
        return fn(*prob.args(name))

    try:
        got = call(kernel)
    except DivergenceError as e:
        try:
            call(reference)
        except DivergenceError:
            raise e from None
        raise AssertionError(f"the kernel diverged, the reference did not: {e}") from None
    try:
        expected = call(reference)
    except DivergenceError as e:
        raise AssertionError(f"the reference diverged, the kernel did not: {e}") from None
    assert_agree(got, expected, dtype, name)


def run_draw(draw: Draw) -> Outcome:
    """Every operation of the draw against the reference, each on its own."""
    from fastbp.errors import DivergenceError
    from fastbp.testing import IMPLEMENTATIONS, make_problem

    dt = np.dtype(draw.dtype).type
    # a small step: the draws are about where the kernels reach, not about divergence
    prob = make_problem(
        draw.sizes, dt, draw.activation, draw.output, m=draw.m, batch_size=draw.batch_size, learning_rate=0.01
    )
    outcome = Outcome([], [])
    for name, (kernel, reference) in IMPLEMENTATIONS.items():
        try:
            run_operation(kernel, reference, prob, name, dt)
        except IndexError:
            outcome.failures.append(f"IndexError in {name}:\n{traceback.format_exc()}")
        except AssertionError as e:
            outcome.failures.append(f"{name} disagrees with the reference: {str(e)[:400]}")
        except DivergenceError as e:  # the divergence contract's error, the reference's too
            outcome.notes.append(f"{name}: both diverged ({e})")
        except Exception:  # noqa: BLE001 - a hunt reports whatever a kernel raises and goes on
            outcome.failures.append(f"{name} raised:\n{traceback.format_exc()}")
    return outcome


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", type=int, default=80)
    args = ap.parse_args(argv)

    from fastbp.testing import bounds_check_missing

    missing = bounds_check_missing()
    if missing:
        raise SystemExit(
            f"boundscheck_sweep: {missing} (run it with NUMBA_BOUNDSCHECK=1 and a NUMBA_CACHE_DIR of its own)"
        )
    start = time.perf_counter()
    bad = 0
    for i, draw in enumerate(draw_cases(args.seed, args.cases)):
        outcome = run_draw(draw)
        bad += bool(outcome.failures)
        said = "; ".join(outcome.failures + [f"{note} (not counted)" for note in outcome.notes])
        print(f"{i:4d} {draw} {time.perf_counter() - start:7.0f} s {said or 'ok'}", flush=True)
    print(f"{args.cases} draws, {bad} raised or disagreed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
