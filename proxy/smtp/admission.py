"""Who may open a session, and whether a slot is free for them.

A client is admitted by network (`smtp.allowed_networks` or a client's own networks);
a slot is one of `smtp.max_connections`, and at most `max_connections_per_address`
of them go to one address. Decided before the banner (RelaySession._handle_client).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy import policy
from proxy.clients import Client, client_networks
from proxy.settings import SmtpSettings

_ADMITTED_MAX = 4096


class Admission:
    def __init__(self, settings: SmtpSettings, clients: Sequence[Client]) -> None:
        self._settings = settings
        self._clients = tuple(clients)
        self._open = 0
        self._per_address: dict[str, int] = {}
        # Decided once per address: the networks change only with a reload, and an
        # application connects again and again from the same one. Bounded.
        self._admitted: dict[str, bool] = {}

    def reconfigure(self, settings: SmtpSettings, clients: Sequence[Client]) -> None:
        """New networks and caps; the slots already taken stay taken."""
        self._settings = settings
        self._clients = tuple(clients)
        self._admitted.clear()

    def admits(self, peer: Any) -> bool:
        if not isinstance(peer, tuple) or not peer:
            return False
        host = str(peer[0])
        decision = self._admitted.get(host)
        if decision is None:
            if len(self._admitted) >= _ADMITTED_MAX:
                self._admitted.clear()
            decision = policy.client_admitted(
                self._settings.allowed_networks, host
            ) or policy.client_admitted(client_networks(self._clients), host)
            self._admitted[host] = decision
        return decision

    def full_for(self, host: str) -> bool:
        """No slot left: for anyone, or for this address."""
        if self._open >= self._settings.max_connections:
            return True
        limit = self._settings.max_connections_per_address
        return limit is not None and self._per_address.get(host, 0) >= limit

    def take_slot(self, host: str) -> None:
        self._open += 1
        self._per_address[host] = self._per_address.get(host, 0) + 1

    def free_slot(self, host: str) -> None:
        self._open -= 1
        left = self._per_address.pop(host, 0) - 1
        if left > 0:
            self._per_address[host] = left
