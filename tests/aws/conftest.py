"""Fixtures shared by the tests of the lean SendRawEmail path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aws.paths import Paths
from tests.fakes.aws import FakeAWS
from tests.fakes.credentials import FakeContainerCredentials


@pytest.fixture
def paths(
    fake_aws: FakeAWS,
    container_credentials: FakeContainerCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Paths]:
    """The lean path and stock aiobotocore, both sending to the fake SES with container
    credentials."""
    container_credentials.apply_env(monkeypatch)
    both = Paths(fake_aws.url, fake_aws.region)
    yield both
    both.close()
