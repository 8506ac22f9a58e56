"""SMTP AUTH's credentials: decoding PLAIN, verifying passwords, refusing a brute force.

Verification is argon2id (argon2-cffi), in worker threads, `VERIFY_AT_ONCE` at a time:
each takes the hash's memory cost (19 MiB with `ses-proxy hash-password`'s parameters)
and tens of milliseconds of CPU, so the number at once bounds the memory and keeps the
event loop free. A verified (username, password) is remembered for `REMEMBER_SECONDS`
as an HMAC under a key drawn at start, so an application that authenticates for every
message pays the hash once, and the memory holds no password. An address that failed
`max_failures` times within `FAILURE_WINDOW_SECONDS` is refused without any check: no
oracle, and no CPU spent for a brute force.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import argon2

from proxy.clients import Client, by_username

VERIFY_AT_ONCE = 2
REMEMBER_SECONDS = 600.0
FAILURE_WINDOW_SECONDS = 300.0
# Bounds on what an attacker can make the relay remember (many addresses, many pairs).
_MAX_REMEMBERED = 10_000
_MAX_ADDRESSES = 10_000

# hash-password's parameters: OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane).
HASHER = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def decode_plain(blob: bytes) -> tuple[str, str] | None:
    """RFC 4616: authzid NUL authcid NUL passwd. None when it is not that; an authzid
    other than empty or the username (acting for someone else) is refused."""
    parts = blob.split(b"\0")
    if len(parts) != 3:
        return None
    authzid, username, password = (as_text(part) for part in parts)
    if username is None or password is None or authzid not in ("", username):
        return None
    return username, password


def from_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return None


def as_text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class Verified:
    """A successful AUTH: the client it proved to be, or None (`auth: any`, no client);
    `remembered` when it was known from an earlier verification (no hash computed)."""

    client: Client | None
    remembered: bool = False


class Authenticator:
    def __init__(
        self,
        clients: Sequence[Client],
        accept_unknown: bool,
        max_failures: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self._accept_unknown = accept_unknown
        self._max_failures = max_failures
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._remembered: dict[bytes, tuple[float, str]] = {}
        self._failures: dict[str, deque[float]] = {}
        self._verifying = asyncio.Semaphore(VERIFY_AT_ONCE)
        self._hasher = argon2.PasswordHasher()
        # Verified against when the username is nobody's: the same work whatever the
        # username, so the time of a reply does not tell which usernames exist.
        self._decoy_hash = None if accept_unknown else HASHER.hash(secrets.token_hex(16))

    def locked_out(self, address: str) -> bool:
        failures = self._failures.get(address)
        if failures is None:
            return False
        horizon = self._clock() - FAILURE_WINDOW_SECONDS
        while failures and failures[0] < horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return False
        return len(failures) >= self._max_failures

    def failed(self, address: str) -> None:
        if address not in self._failures and len(self._failures) >= _MAX_ADDRESSES:
            # Forget the address whose last failure is oldest; it is the least suspect.
            oldest = min(self._failures, key=lambda known: self._failures[known][-1])
            del self._failures[oldest]
        self._failures.setdefault(address, deque()).append(self._clock())

    async def verify(self, username: str, password: str) -> Verified | None:
        """The client these credentials prove, Verified(None) for an accepted stranger
        (`auth: any`), or None for a refusal."""
        client = by_username(self._clients, username)
        if client is None:
            if self._decoy_hash is None:
                return Verified(None)
            await self._check(self._decoy_hash, password)
            return None
        assert client.password_hash is not None  # settings: a username comes with a hash
        mark = hmac.digest(self._key, f"{username}\0{password}".encode(), hashlib.sha256)
        now = self._clock()
        remembered = self._remembered.get(mark)
        if remembered is not None and remembered[0] > now and remembered[1] == client.name:
            return Verified(client, remembered=True)
        if not await self._check(client.password_hash, password):
            return None
        if len(self._remembered) >= _MAX_REMEMBERED:
            self._remembered.clear()
        self._remembered[mark] = (now + REMEMBER_SECONDS, client.name)
        return Verified(client)

    async def _check(self, password_hash: str, password: str) -> bool:
        async with self._verifying:
            return await asyncio.to_thread(self._matches, password_hash, password)

    def _matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False
