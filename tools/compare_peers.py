"""Compare fastbp's training speed with JAX, PyTorch and scikit-learn: the documented script.

A thin wrapper of ``fastbp bench`` (see :mod:`fastbp.bench` and docs/performance.md);
it takes the same options::

    python tools/compare_peers.py                       # the full table
    python tools/compare_peers.py --quick --systems numba numpy
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/compare_peers.py --plot peers.png

The peers are optional (``pip install -e ".[bench,peers]"``); a missing one is a
skipped column with a note.  Run from the repository root; it lives in ``tools/``,
not ``benchmarks/``, because asv imports every module there as part of its suite.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``fastbp bench`` with ``argv`` (default: the command line)."""
    from fastbp.cli import main as fastbp_main

    return fastbp_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
