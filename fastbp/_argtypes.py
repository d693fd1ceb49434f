"""The argparse ``type=`` converters shared by ``fastbp train`` (:mod:`fastbp.cli`) and ``fastbp bench``
(:mod:`fastbp.bench`).

Here, below both, so that neither command module imports the other for them.  Each takes the
option's text and returns the value, or raises ``argparse.ArgumentTypeError``, which argparse turns
into one line on stderr and exit status 2 naming the option.
"""

from __future__ import annotations

import argparse
import math


def _positive_int(text: str) -> int:
    """An integer ≥ 1 (``"3"``); anything else (``"0"``, ``"-3"``, ``"2.5"``, ``"x"``) is refused."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    """An integer ≥ 0 (``"0"``, ``"10"``); ``"-1"``, ``"2.5"``, ``"x"`` are refused."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 0, got {text!r}")
    return value


def _seed(text: str) -> int:
    """A seed in [0, 2**32) (what scikit-learn's splits and NumPy's legacy seeding accept)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32), got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """A finite number > 0 (``"0.1"``, ``"1e-3"``); ``"0"``, ``"-1"``, ``"nan"``, ``"inf"``, ``"x"`` are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text!r}")
    return value


def _batch_size(text: str) -> int | None:
    """Examples per update: a positive integer, or ``None`` for ``"full"`` (also ``"none"``, ``"all"``, any case)."""
    if text.lower() in ("full", "none", "all"):
        return None
    return _positive_int(text)
