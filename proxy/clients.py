"""Pure: the applications that share the relay, and which one a session is.

A client's rules are `policy.Rules` values like the default policy's, so the same
pure functions judge every session; only the values differ. A session is a client by
AUTH (its username and password verified), else by the first client whose networks hold
its address, else it is no client and `policy` applies.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from proxy import policy
from proxy.settings import Settings

# An SES SMTP credential's username is the IAM access key id it was derived from.
_AWS_ACCESS_KEY_ID = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Client:
    name: str
    username: str | None
    password_hash: str | None
    networks: tuple[IPNetwork, ...]
    rules: policy.Rules


def clients_from(settings: Settings) -> tuple[Client, ...]:
    """Each configured client with its rules: its own senders, its recipients or the
    policy's, the policy's limits (they are SES's, the same for every client), its
    configuration set or ses.configuration_set, its own tags and header choices."""
    base = settings.policy
    return tuple(
        Client(
            name=client.name,
            username=client.username,
            password_hash=client.hash(),
            networks=client.networks,
            rules=policy.Rules(
                allowed_senders=client.allowed_senders,
                allowed_recipients=(
                    client.allowed_recipients
                    if client.allowed_recipients is not None
                    else base.allowed_recipients
                ),
                max_recipients=base.max_recipients,
                max_message_bytes=settings.max_message_bytes(),
                allowed_configuration_sets=client.allowed_configuration_sets,
                allow_message_tags=client.allow_message_tags,
                configuration_set=(
                    client.configuration_set
                    if client.configuration_set is not None
                    else settings.ses.configuration_set
                ),
                message_tags=tuple(client.message_tags.items()),
            ),
        )
        for client in settings.clients
    )


def by_network(clients: Iterable[Client], host: str) -> Client | None:
    """The first client whose networks hold `host`, or None."""
    for client in clients:
        if client.networks and policy.client_admitted(client.networks, host):
            return client
    return None


def by_username(clients: Iterable[Client], username: str) -> Client | None:
    for client in clients:
        if client.username is not None and client.username == username:
            return client
    return None


def client_networks(clients: Sequence[Client]) -> tuple[IPNetwork, ...]:
    """Every network that makes a session some client's: admitted like allowed_networks."""
    return tuple(network for client in clients for network in client.networks)


def aws_access_key_tail(username: str) -> str | None:
    """The last four characters of a username shaped like an AWS access key id, or None."""
    return username[-4:] if _AWS_ACCESS_KEY_ID.fullmatch(username) else None


# Loopback as `ipaddress` defines it: the one place AUTH may go unencrypted.
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def is_loopback(host: str) -> bool:
    """Loopback, the one place AUTH may go unencrypted (RFC 4954 section 4); an address
    is read as admission reads it (policy.client_admitted)."""
    return policy.client_admitted(_LOOPBACK, host)
