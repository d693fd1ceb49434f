"""Hypothesis profiles for fastbp's property tests.

``dev`` (the default) explores a little more; ``thorough`` hunts for a while (by hand); ``ci`` (chosen when the ``CI``
environment variable is set) runs fewer examples, derandomized so that a CI run
is repeatable.  ``HYPOTHESIS_PROFILE=<name>`` picks one explicitly.  No deadline:
the first example of a test may include compiling a kernel.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

settings.register_profile(  # pytest --quick (tests/conftest.py): a few derandomized examples per property
    "quick",
    max_examples=10,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

settings.register_profile(  # a long hunt, by hand: HYPOTHESIS_PROFILE=thorough
    "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def load_profile() -> str:
    """Load the profile named by ``HYPOTHESIS_PROFILE``, else ``ci`` under CI, else ``dev``."""
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    settings.load_profile(name)
    return name


load_profile()
