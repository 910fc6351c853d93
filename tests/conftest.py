"""Unit-test session settings.

Hypothesis: under CI (``CI`` set) the fuzz tests run derandomized, so a submission's verdict does
not depend on which random examples a run happened to draw; at a developer's desk they stay
random, which is how they find new cases (a failure prints the example to pin as a unit test).
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
