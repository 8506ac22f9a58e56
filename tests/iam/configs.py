"""Settings and config files for the IAM tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from proxy.settings import Settings

ACCOUNT = "123456789012"


def config_data(
    senders: list[str] | None = None,
    recipients: list[str] | None = None,
    source_ips: list[str] | None = None,
    **ses: Any,
) -> dict[str, Any]:
    return {
        "policy": {
            "allowed_senders": senders
            if senders is not None
            else ["noreply@example.com", "*@example.org"],
            "allowed_recipients": recipients if recipients is not None else ["*"],
        },
        "ses": {
            "region": "eu-west-3",
            "source_ips": source_ips if source_ips is not None else ["203.0.113.7/32"],
            **ses,
        },
    }


def make_settings(**kwargs: Any) -> Settings:
    return Settings(**config_data(**kwargs))


def write_config(directory: Path, **kwargs: Any) -> Path:
    path = directory / "ses.yaml"
    path.write_text(yaml.safe_dump(config_data(**kwargs)), encoding="utf-8")
    return path
