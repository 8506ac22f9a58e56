"""Fixtures shared by the tests of the lean send paths (v1 SendRawEmail, v2 SendEmail)."""

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


@pytest.fixture
def paths_v2(
    fake_aws: FakeAWS,
    container_credentials: FakeContainerCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Paths]:
    """The same, for `ses.api: v2` (SendEmail)."""
    container_credentials.apply_env(monkeypatch)
    both = Paths(fake_aws.url, fake_aws.region, api="v2")
    yield both
    both.close()
