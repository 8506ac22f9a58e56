"""deploy/iam/ is what the generator makes of config/ses.example.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.iam.generate import deploy_files
from proxy.iam.lint import lint_text
from proxy.settings import load_settings
from tests.iam.test_generate import cfn_lint

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "iam"
EXAMPLE = ROOT / "config" / "ses.example.yaml"
REGENERATE = ".venv/bin/python -m proxy.iam.generate --write-deploy"


@pytest.fixture
def expected(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in [n for n in os.environ if n.startswith("SES_PROXY_")]:
        monkeypatch.delenv(name)
    settings = load_settings(EXAMPLE)
    assert settings.ses.account_id is not None, "the example config names an account id"
    return deploy_files(settings, settings.ses.account_id)


def test_deploy_files_are_in_sync_with_the_example_config(expected: dict[str, str]) -> None:
    for name, text in expected.items():
        path = DEPLOY / name
        assert path.exists(), f"{path} is missing: run `{REGENERATE}`"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `{REGENERATE}`"


def test_deploy_policy_lints_clean_and_template_passes_cfn_lint() -> None:
    assert lint_text((DEPLOY / "policy.json").read_text(encoding="utf-8")) == []
    result = cfn_lint(DEPLOY / "cloudformation.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_write_deploy_writes_the_same_files(tmp_path: Path, expected: dict[str, str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy.iam.generate",
            "--write-deploy",
            "-c",
            str(EXAMPLE),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    written = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.iterdir()}
    assert written == expected
    assert json.loads(written["policy.json"])["Statement"][0]["Action"] == "ses:SendRawEmail"
