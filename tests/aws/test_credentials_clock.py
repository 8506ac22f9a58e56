"""proxy.aws.credentials.checked_in_utc: botocore's refresh decisions for a refreshable
credential come out the same with the UTC clock as with its local-zone one."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiobotocore.credentials import AioCredentials, AioRefreshableCredentials

from proxy.aws.credentials import checked_in_utc


@pytest.fixture(params=["America/St_Johns", "Asia/Kathmandu", "UTC"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    # Zones with odd offsets: a clock mixing local and UTC time would be off by hours.
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def _refreshable(expires_in: timedelta) -> Any:  # botocore private attributes are read
    async def refresh() -> dict[str, Any]:
        raise AssertionError("not called: only the decision to refresh is compared")

    metadata = {
        "access_key": "ASIAEXAMPLE",
        "secret_key": "secret",
        "token": "token",
        "expiry_time": (datetime.now(UTC) + expires_in).isoformat(),
    }
    return AioRefreshableCredentials.create_from_metadata(metadata, refresh, "container-role")


# Either side of botocore's mandatory (10 min) and advisory (15 min) refresh points.
@pytest.mark.parametrize("minutes", [-60, 1, 9.5, 10.5, 14.5, 15.5, 360])
def test_the_utc_clock_gives_botocore_the_same_answers(local_zone: str, minutes: float) -> None:
    stock = _refreshable(timedelta(minutes=minutes))
    utc = _refreshable(timedelta(minutes=minutes))
    checked_in_utc(utc)
    assert utc._time_fetcher is not stock._time_fetcher
    assert abs(utc._seconds_remaining() - stock._seconds_remaining()) <= 1
    for threshold in (stock._advisory_refresh_timeout, stock._mandatory_refresh_timeout):
        assert utc.refresh_needed(threshold) == stock.refresh_needed(threshold)


def test_static_keys_are_left_alone() -> None:
    static = AioCredentials("ASIAEXAMPLE", "secret", "token")
    before = dict(vars(static))
    checked_in_utc(static)
    assert vars(static) == before
