"""How many examples a property test runs: a fixed, derandomized count in `make test`,
many random ones in `make fuzz`.

`make test` loads hypothesis's "ci" profile (derandomized: the same examples every run,
so CI never flakes on a new draw); `make fuzz` loads "fuzz" (random, no example database
shared with CI) and multiplies every test's count by SES_PROXY_FUZZ_FACTOR (default 50).
A test names its count through `examples(n)`, never a bare `max_examples=n`, so that the
fuzz run scales it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
_FACTOR = int(os.environ.get("SES_PROXY_FUZZ_FACTOR", "50")) if FUZZ else 1

settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile(
    "fuzz",
    derandomize=False,
    database=None,
    max_examples=100 * _FACTOR,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("fuzz" if FUZZ else "ci")


def examples(count: int) -> int:
    """`count` in `make test`; `count` times the fuzz factor in `make fuzz`."""
    return count * _FACTOR
