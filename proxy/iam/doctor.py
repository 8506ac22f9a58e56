"""`ses-proxy doctor`: preflight against SES. A placeholder until issue #4's doctor part.

It exists so that the CLI's dispatch type-checks; it checks nothing yet and says so.
"""

from __future__ import annotations

from typing import TextIO

from proxy.settings import Settings

EXIT_FAILED = 1


async def run_doctor(settings: Settings, out: TextIO, *, send_test_to: str | None = None) -> int:
    """Not implemented yet: reports that and fails, so nobody mistakes it for a pass."""
    del settings, send_test_to
    out.write("doctor: not implemented yet (issue #4): no check was run\n")
    return EXIT_FAILED
