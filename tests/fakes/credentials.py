"""A fake container-credentials endpoint (what ECS and EKS Pod Identity serve).

botocore reads it when AWS_CONTAINER_CREDENTIALS_FULL_URI is set (loopback http is
allowed), sending AWS_CONTAINER_AUTHORIZATION_TOKEN as the Authorization header. The
credentials it serves are issued by a FakeAWS, so requests signed with them pass there;
`rotate()` makes the next fetch return a new one, as a real rotation does.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Final

import pytest
from aiohttp import web

from tests.fakes.aws import Credential, FakeAWS
from tests.fakes.server import BackgroundServer

CREDENTIALS_PATH: Final = "/v2/credentials"

# Every other way botocore could find a credential: cleared so the container one wins.
_COMPETING_ENV: Final = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)


class FakeContainerCredentials(BackgroundServer):
    def __init__(
        self,
        aws: FakeAWS,
        expires_in: float = 3600.0,
        auth_token: str | None = None,
        role_arn: str = "arn:aws:iam::123456789012:role/ses-proxy-task",
        port: int = 0,
    ) -> None:
        super().__init__(port)
        self._aws = aws
        self._expires_in = expires_in
        self._auth_token = auth_token
        self._role_arn = role_arn
        self._lock = threading.Lock()
        self._current = aws.issue_credentials(expires_in)
        self._fetch_count = 0
        self._refused_count = 0
        self.down = False  # while True, every fetch is a 500 (an agent restarting)

    @property
    def url(self) -> str:
        """The full URI for AWS_CONTAINER_CREDENTIALS_FULL_URI."""
        return f"http://127.0.0.1:{self.port}{CREDENTIALS_PATH}"

    @property
    def current(self) -> Credential:
        with self._lock:
            return self._current

    @property
    def fetch_count(self) -> int:
        """Successful fetches (refused ones are in `refused_count`)."""
        with self._lock:
            return self._fetch_count

    @property
    def refused_count(self) -> int:
        with self._lock:
            return self._refused_count

    def rotate(self, expires_in: float | None = None) -> Credential:
        """Issue a new credential; the next fetch serves it. The old one stays valid
        until it expires (or is revoked on the FakeAWS), like a real rotation.
        A negative `expires_in` serves one already expired."""
        cred = self._aws.issue_credentials(self._expires_in if expires_in is None else expires_in)
        with self._lock:
            self._current = cred
        return cred

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for a subprocess whose only credential source is this endpoint."""
        result = dict(os.environ if base is None else base)
        for name in _COMPETING_ENV:
            result.pop(name, None)
        result.update(self._env_settings())
        return result

    def apply_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The same as `env()`, applied to this process for the length of a test."""
        for name in _COMPETING_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in self._env_settings().items():
            monkeypatch.setenv(name, value)

    def _env_settings(self) -> dict[str, str]:
        settings = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": self.url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_DEFAULT_REGION": self._aws.region,
        }
        if self._auth_token is not None:
            settings["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = self._auth_token
        return settings

    def _make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(CREDENTIALS_PATH, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=500, text="agent unavailable")
        if (
            self._auth_token is not None
            and request.headers.get("Authorization") != self._auth_token
        ):
            with self._lock:
                self._refused_count += 1
            # Chosen shape: ECS/EKS agents refuse a missing or wrong token with a 4xx JSON body.
            return web.json_response(
                {"Code": "AccessDenied", "Message": "Authorization token is invalid"}, status=401
            )
        with self._lock:
            cred = self._current
            self._fetch_count += 1
        assert cred.expiration is not None
        body = {
            "RoleArn": self._role_arn,
            "AccessKeyId": cred.access_key_id,
            "SecretAccessKey": cred.secret_access_key,
            "Token": cred.session_token,
            "Expiration": cred.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return web.Response(text=json.dumps(body), content_type="application/json")
