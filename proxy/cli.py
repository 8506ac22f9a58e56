"""The six commands of `ses-proxy`: parse arguments, call into the rest, map to exit codes.

Exit codes: 0 success; 1 findings (lint-policy) or failed checks (doctor);
2 the input is unusable (bad config, unreadable file, port in use).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from proxy.settings import ConfigError, Settings, load_settings

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ses-proxy", description="A credential-safe SMTP sending proxy for Amazon SES."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "-c",
            "--config",
            type=Path,
            default=os.environ.get("SES_PROXY_CONFIG"),
            help="YAML config file (default: $SES_PROXY_CONFIG)",
        )
        return sub

    with_config("serve", "run the relay until SIGTERM/SIGINT, then drain")
    with_config("check-config", "validate the config and print it, secrets redacted")
    iam = with_config("iam-policy", "print the least-privilege IAM policy for the config")
    iam.add_argument("--format", choices=("json", "cloudformation", "terraform"), default="json")
    iam.add_argument(
        "--allow-any-source-ip",
        action="store_true",
        help="print a policy without an aws:SourceIp condition (not recommended)",
    )
    lint = commands.add_parser("lint-policy", help="lint IAM policy JSON files")
    lint.add_argument("files", nargs="+", type=Path)
    commands.add_parser(
        "hash-password",
        help="read a password from stdin, print its argon2id hash for a client's password_hash",
    )
    doctor = with_config("doctor", "preflight checks against SES")
    doctor.add_argument("--send-test", metavar="TO", help="also send one test message to TO")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    if args.config is None:
        raise ConfigError("no config file: pass -c FILE or set SES_PROXY_CONFIG")
    return load_settings(Path(args.config))


def _hash_password() -> int:
    """One line from stdin (its newline not part of the password), no echo on a terminal."""
    from proxy.smtp.auth import HASHER

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError("hash-password: an empty password would let anyone in")
    print(HASHER.hash(password))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "hash-password":
            return _hash_password()
        if args.command == "lint-policy":
            from proxy.iam.lint import lint_files

            return lint_files(args.files, sys.stdout)
        settings = _settings(args)
        if args.command == "check-config":
            json.dump(settings.redacted(), sys.stdout, indent=2)
            sys.stdout.write("\n")
            return EXIT_OK
        if args.command == "serve":
            from proxy import eventloop
            from proxy.server import serve

            with asyncio.Runner(loop_factory=eventloop.new_event_loop) as runner:
                return runner.run(serve(settings, Path(args.config)))
        if args.command == "iam-policy":
            from proxy.iam.generate import render_for_cli

            sys.stdout.write(
                asyncio.run(
                    render_for_cli(
                        settings, args.format, allow_any_source_ip=args.allow_any_source_ip
                    )
                )
            )
            return EXIT_OK
        if args.command == "doctor":
            from proxy.iam.doctor import run_doctor
            from proxy.iam.generate import session_policy

            return asyncio.run(
                run_doctor(
                    settings,
                    sys.stdout,
                    send_test_to=args.send_test,
                    session_policy=session_policy(settings),
                )
            )
    except ConfigError as error:
        print(f"ses-proxy: config error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
