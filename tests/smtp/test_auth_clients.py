"""SMTP AUTH with the real clients applications use (issue 15): each sends one message
with a username and a password, in `auth: any` and `auth: required`.

Django (EMAIL_HOST_USER), PHPMailer, nodemailer, Ruby's net-smtp, Go's net/smtp
PlainAuth, swaks, curl and msmtp each: deliver as the `billing` client with its password;
are refused with a wrong one (non-zero exit, nothing delivered); and, in `any`, deliver
under the default policy with a username that is no client. AUTH is offered in clear to
loopback (RFC 4954 section 4), so every client talks to 127.0.0.1 without TLS.

One relay per mode serves every tool; each invocation has its own timeout of a few
seconds. The credentials reach the tools by environment (msmtp: a 0600 file; swaks and
curl: their command line), and the relay's log is checked last for any trace of them.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from proxy.smtp.auth import HASHER
from tests.conftest import base_config
from tests.harness import RunningProxy, deep_merge, require_tool, start_proxy

PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "Tr0ub4dor&3"
STRANGER = ("django-app", "any password will do")
RECIPIENT = "friend@example.net"
TIMEOUT = 10  # seconds: each tool's own connect/read timeout
RUN_TIMEOUT = 30  # seconds: the whole invocation, should a tool ignore its own
MODES = ["any", "required"]
TOOLS = ["swaks", "curl", "msmtp", "phpmailer", "ruby", "go", "nodemailer", "django"]
NODEMAILER = "nodemailer@10"
PHPMAILER_AUTOLOAD = Path("/usr/share/php/libphp-phpmailer/autoload.php")


def _missing(message: str) -> None:
    """As tests.harness.require_tool: skipped on a workstation, failed under CI."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


# ---------------------------------------------------------------- the relays


class Relays:
    """One relay per mode, started when a test first needs it, shared by every tool.

    `auth_max_failures` is raised: every tool's wrong password comes from 127.0.0.1,
    and the default 5 would lock the later tools out (454) before they try.
    """

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._running: dict[str, RunningProxy] = {}
        self._hash = HASHER.hash(PASSWORD)

    def __getitem__(self, mode: str) -> RunningProxy:
        if mode not in self._running:
            workdir = self._factory.mktemp(f"relay-{mode}")
            client = {
                "name": "billing",
                "username": "billing",
                "password_hash": self._hash,
                "allowed_senders": ["billing@example.com"],
            }
            config = deep_merge(
                base_config("outbox", workdir / "outbox"),
                {"smtp": {"auth": mode, "auth_max_failures": 1000}, "clients": [client]},
            )
            self._running[mode] = start_proxy(workdir, config)
        return self._running[mode]

    def stop(self) -> None:
        for proxy in self._running.values():
            proxy.stop()


@pytest.fixture(scope="module")
def relays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relays]:
    started = Relays(tmp_path_factory)
    yield started
    started.stop()


# ---------------------------------------------------------------- the tools


@dataclass(frozen=True)
class Mail:
    port: int
    username: str
    password: str
    sender: str
    subject: str  # its last word is unique: finds the message in the outbox
    recipient: str = RECIPIENT

    @property
    def token(self) -> str:
        """One word (a long Subject may be folded: nodemailer does)."""
        return self.subject.split()[-1]

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SMTP_PORT": str(self.port),
            "SMTP_USER": self.username,
            "SMTP_PASSWORD": self.password,
            "SMTP_FROM": self.sender,
            "SMTP_TO": self.recipient,
            "SMTP_SUBJECT": self.subject,
        }

    def message(self) -> bytes:
        return (
            f"From: {self.sender}\r\nTo: {self.recipient}\r\nSubject: {self.subject}\r\n"
            "\r\nhello from a client that authenticates\r\n"
        ).encode()


PHPMAILER_SCRIPT = """<?php
require '/usr/share/php/libphp-phpmailer/autoload.php';
use PHPMailer\\PHPMailer\\PHPMailer;
use PHPMailer\\PHPMailer\\Exception;
$mail = new PHPMailer(true);
$mail->isSMTP();
$mail->SMTPDebug = 2;
$mail->Debugoutput = function ($line, $level) { fwrite(STDERR, $line . "\\n"); };
$mail->Host = '127.0.0.1';
$mail->Port = (int) getenv('SMTP_PORT');
$mail->Hostname = 'phpmailer.test';
$mail->SMTPAuth = true;
$mail->Username = getenv('SMTP_USER');
$mail->Password = getenv('SMTP_PASSWORD');
$mail->SMTPSecure = '';
$mail->SMTPAutoTLS = false;
$mail->Timeout = (int) getenv('SMTP_TIMEOUT');
try {
    $mail->setFrom(getenv('SMTP_FROM'));
    $mail->addAddress(getenv('SMTP_TO'));
    $mail->Subject = getenv('SMTP_SUBJECT');
    $mail->Body = 'hello from PHPMailer';
    $mail->send();
} catch (Exception $error) {
    fwrite(STDERR, 'PHPMailer: ' . $mail->ErrorInfo . "\\n");
    exit(1);
}
"""

RUBY_SCRIPT = """
require "net/smtp"
message = "From: #{ENV["SMTP_FROM"]}\\r\\nTo: #{ENV["SMTP_TO"]}\\r\\n" \\
  "Subject: #{ENV["SMTP_SUBJECT"]}\\r\\n\\r\\nhello from net-smtp\\r\\n"
smtp = Net::SMTP.new("127.0.0.1", Integer(ENV["SMTP_PORT"]))
smtp.open_timeout = Integer(ENV["SMTP_TIMEOUT"])
smtp.read_timeout = Integer(ENV["SMTP_TIMEOUT"])
smtp.debug_output = $stderr
smtp.start(helo: "ruby.test", user: ENV["SMTP_USER"], secret: ENV["SMTP_PASSWORD"],
           authtype: :plain) do |session|
  session.send_message(message, ENV["SMTP_FROM"], ENV["SMTP_TO"])
end
"""

# smtp.SendMail's steps (EHLO, AUTH only when offered, MAIL, RCPT, DATA, QUIT), with a
# deadline on the connection, which SendMail has not.
GO_PROGRAM = """package main

import (
\t"errors"
\t"fmt"
\t"net"
\t"net/smtp"
\t"os"
\t"strconv"
\t"time"
)

func main() {
\tif err := send(); err != nil {
\t\tfmt.Fprintln(os.Stderr, "net/smtp:", err)
\t\tos.Exit(1)
\t}
}

func send() error {
\thost := "127.0.0.1"
\tseconds, err := strconv.Atoi(os.Getenv("SMTP_TIMEOUT"))
\tif err != nil {
\t\treturn err
\t}
\ttimeout := time.Duration(seconds) * time.Second
\tconn, err := net.DialTimeout("tcp", net.JoinHostPort(host, os.Getenv("SMTP_PORT")), timeout)
\tif err != nil {
\t\treturn err
\t}
\tif err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
\t\treturn err
\t}
\tclient, err := smtp.NewClient(conn, host)
\tif err != nil {
\t\treturn err
\t}
\tdefer client.Close()
\tif err := client.Hello("go.test"); err != nil {
\t\treturn err
\t}
\tif ok, _ := client.Extension("AUTH"); !ok {
\t\treturn errors.New("smtp: server doesn't support AUTH")
\t}
\tauth := smtp.PlainAuth("", os.Getenv("SMTP_USER"), os.Getenv("SMTP_PASSWORD"), host)
\tif err := client.Auth(auth); err != nil {
\t\treturn err
\t}
\tif err := client.Mail(os.Getenv("SMTP_FROM")); err != nil {
\t\treturn err
\t}
\tif err := client.Rcpt(os.Getenv("SMTP_TO")); err != nil {
\t\treturn err
\t}
\twriter, err := client.Data()
\tif err != nil {
\t\treturn err
\t}
\tmessage := "From: " + os.Getenv("SMTP_FROM") + "\\r\\nTo: " + os.Getenv("SMTP_TO") +
\t\t"\\r\\nSubject: " + os.Getenv("SMTP_SUBJECT") + "\\r\\n\\r\\nhello from net/smtp\\r\\n"
\tif _, err := writer.Write([]byte(message)); err != nil {
\t\treturn err
\t}
\tif err := writer.Close(); err != nil {
\t\treturn err
\t}
\treturn client.Quit()
}
"""

NODEMAILER_SCRIPT = """
const nodemailer = require("nodemailer");
const timeout = Number(process.env.SMTP_TIMEOUT) * 1000;
const transport = nodemailer.createTransport({
  host: "127.0.0.1",
  port: Number(process.env.SMTP_PORT),
  secure: false,
  ignoreTLS: true,
  name: "nodemailer.test",
  auth: { user: process.env.SMTP_USER, pass: process.env.SMTP_PASSWORD },
  connectionTimeout: timeout,
  greetingTimeout: timeout,
  socketTimeout: timeout,
  logger: true,
  debug: true,
});
transport
  .sendMail({
    from: process.env.SMTP_FROM,
    to: process.env.SMTP_TO,
    subject: process.env.SMTP_SUBJECT,
    text: "hello from nodemailer",
  })
  .then(
    (info) => console.log("sent:", info.response),
    (error) => {
      console.error("nodemailer:", error.code, error.response || error.message);
      process.exit(1);
    },
  );
"""

# In a child process: Django's settings are global, they must not reach this one.
DJANGO_SCRIPT = """
import os
from django.conf import settings
settings.configure(
    EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
    EMAIL_HOST="127.0.0.1",
    EMAIL_PORT=int(os.environ["SMTP_PORT"]),
    EMAIL_HOST_USER=os.environ["SMTP_USER"],
    EMAIL_HOST_PASSWORD=os.environ["SMTP_PASSWORD"],
    EMAIL_USE_TLS=False,
    EMAIL_USE_SSL=False,
    EMAIL_TIMEOUT=int(os.environ["SMTP_TIMEOUT"]),
)
from django.core.mail import send_mail
send_mail(os.environ["SMTP_SUBJECT"], "hello from Django", os.environ["SMTP_FROM"],
          [os.environ["SMTP_TO"]], fail_silently=False)
"""


class Toolbox:
    """Each tool sends one `Mail`; what a tool needs once (a Go binary, nodemailer) is
    made on first use and kept for the module."""

    def __init__(self, factory: pytest.TempPathFactory, cache_dir: Path | None) -> None:
        self._factory = factory
        self._cache_dir = cache_dir
        self._go_binary: Path | None = None
        self._node_path: Path | None = None
        self._ruby_checked = False

    def send(self, tool: str, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        senders: dict[str, Callable[[Mail, Path], subprocess.CompletedProcess[str]]] = {
            "swaks": self._swaks,
            "curl": self._curl,
            "msmtp": self._msmtp,
            "phpmailer": self._phpmailer,
            "ruby": self._ruby,
            "go": self._go,
            "nodemailer": self._nodemailer,
            "django": self._django,
        }
        return senders[tool](mail, workdir)

    @staticmethod
    def _run(
        command: list[str], mail: Mail, stdin: bytes | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            env={**mail.env(), "SMTP_TIMEOUT": str(TIMEOUT), **env},
            timeout=RUN_TIMEOUT,
            check=False,
        )
        return subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )

    def _swaks(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        swaks = require_tool("swaks", "swaks")
        command = [swaks, "--server", "127.0.0.1", "--port", str(mail.port)]
        command += ["--timeout", str(TIMEOUT), "--helo", "swaks.test"]
        # LOGIN here (most others use PLAIN): its Username:/Password: prompts, for real.
        command += ["--auth", "LOGIN", "--auth-user", mail.username]
        command += ["--auth-password", mail.password]
        command += ["--from", mail.sender, "--to", mail.recipient]
        command += ["--header", f"Subject: {mail.subject}", "--body", "hello from swaks"]
        return self._run(command, mail)

    def _curl(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        curl = require_tool("curl", "curl")
        command = [curl, "--silent", "--show-error", "--verbose", "--max-time", str(TIMEOUT)]
        command += ["--url", f"smtp://127.0.0.1:{mail.port}/curl.test"]
        command += ["--mail-from", mail.sender, "--mail-rcpt", mail.recipient]
        command += ["--user", f"{mail.username}:{mail.password}", "--upload-file", "-"]
        return self._run(command, mail, stdin=mail.message())

    def _msmtp(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        msmtp = require_tool("msmtp", "msmtp")
        # `auth on` would refuse PLAIN and LOGIN without TLS (msmtp's own rule): an
        # application's configuration names the method, as here.
        config = workdir / "msmtprc"
        config.touch(mode=0o600)
        config.write_text(
            f"account relay\nhost 127.0.0.1\nport {mail.port}\ntls off\nauth plain\n"
            f'user {mail.username}\npassword "{mail.password}"\nfrom {mail.sender}\n'
            f"domain msmtp.test\ntimeout {TIMEOUT}\naccount default : relay\n"
        )
        command = [msmtp, "--file", str(config), "--debug", "--", mail.recipient]
        return self._run(command, mail, stdin=mail.message())

    def _phpmailer(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        php = require_tool("php", "php-cli")
        if not PHPMAILER_AUTOLOAD.is_file():
            _missing(f"{PHPMAILER_AUTOLOAD} is missing (apt-get install libphp-phpmailer)")
        script = workdir / "send.php"
        script.write_text(PHPMAILER_SCRIPT)
        return self._run([php, str(script)], mail)

    def _ruby(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        ruby = require_tool("ruby", "ruby")
        if not self._ruby_checked:
            # net-smtp is a bundled gem of Debian's libruby (no package of its own).
            probe = subprocess.run(
                [ruby, "-e", 'require "net/smtp"'], capture_output=True, timeout=RUN_TIMEOUT
            )
            if probe.returncode != 0:
                _missing("Ruby's net/smtp is missing (a bundled gem of Debian's ruby)")
            self._ruby_checked = True
        return self._run([ruby, "-e", RUBY_SCRIPT], mail)

    def _go(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        go = require_tool("go", "golang-go")
        if self._go_binary is None:
            build = self._factory.mktemp("go")
            (build / "main.go").write_text(GO_PROGRAM)
            env = {
                **os.environ,
                "GOCACHE": str(build / "cache"),
                "GOPATH": str(build / "gopath"),
                "GOFLAGS": "",
            }
            result = subprocess.run(
                [go, "build", "-o", str(build / "send"), "main.go"],
                cwd=build,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            self._go_binary = build / "send"
        return self._run([str(self._go_binary)], mail)

    def _nodemailer(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        node = require_tool("node", "nodejs")
        if self._node_path is None:
            npm = require_tool("npm", "npm")
            # The pytest cache keeps it between runs; the first run installs it once.
            prefix = (self._cache_dir or self._factory.mktemp("npm")) / "nodemailer"
            if not (prefix / "node_modules" / "nodemailer" / "package.json").is_file():
                install = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix)]
                install += ["--cache", str(prefix / ".npm-cache"), NODEMAILER]
                result = subprocess.run(
                    install,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                if result.returncode != 0:
                    _missing(f"npm install {NODEMAILER} failed:\n{result.stderr}")
            self._node_path = prefix / "node_modules"
        return self._run([node, "-e", NODEMAILER_SCRIPT], mail, NODE_PATH=str(self._node_path))

    def _django(self, mail: Mail, workdir: Path) -> subprocess.CompletedProcess[str]:
        if importlib.util.find_spec("django") is None:
            _missing("Django is not installed (pip install -e '.[test]')")
        return self._run([sys.executable, "-c", DJANGO_SCRIPT], mail)


@pytest.fixture(scope="module")
def toolbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Toolbox:
    cache = getattr(request.config, "cache", None)
    return Toolbox(tmp_path_factory, cache.mkdir("auth-clients") if cache is not None else None)


# ---------------------------------------------------------------- what was delivered


def _subject(tool: str, mode: str, case: str) -> str:
    return f"auth-clients {tool} {mode} {case} {uuid.uuid4().hex}"


def _delivered(proxy: RunningProxy, mail: Mail) -> list[Path]:
    outbox = Path(proxy.config["delivery"]["outbox_dir"])
    if not outbox.is_dir():
        return []
    return [eml for eml in outbox.glob("*.eml") if mail.token.encode() in eml.read_bytes()]


def _transcript(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def _sent_event(proxy: RunningProxy, eml: Path) -> dict[str, Any]:
    [event] = [e for e in proxy.events("sent") if e.get("ses_message_id") == eml.stem]
    return event


def _assert_delivered(
    proxy: RunningProxy, result: subprocess.CompletedProcess[str], mail: Mail, client: str
) -> None:
    assert result.returncode == 0, _transcript(result)
    [eml] = _delivered(proxy, mail)
    envelope = json.loads(eml.with_suffix(".json").read_text())
    assert envelope["mail_from"] == mail.sender
    assert envelope["recipients"] == [mail.recipient]
    assert _sent_event(proxy, eml)["client"] == client


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tool", TOOLS)
def test_the_client_delivers_with_its_password(
    relays: Relays, toolbox: Toolbox, tmp_path: Path, tool: str, mode: str
) -> None:
    proxy = relays[mode]
    sent_before = proxy.metric("sesproxy_messages_sent_total", client="billing")
    mail = Mail(
        proxy.smtp_port, "billing", PASSWORD, "billing@example.com", _subject(tool, mode, "ok")
    )
    result = toolbox.send(tool, mail, tmp_path)
    _assert_delivered(proxy, result, mail, client="billing")
    assert proxy.metric("sesproxy_messages_sent_total", client="billing") == sent_before + 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tool", TOOLS)
def test_a_wrong_password_is_refused_and_nothing_sent(
    relays: Relays, toolbox: Toolbox, tmp_path: Path, tool: str, mode: str
) -> None:
    """`required`, and `any` too: a configured client's username must give its password."""
    proxy = relays[mode]
    refused_before = proxy.metric("sesproxy_auth_attempts_total", result="bad_credentials")
    mail = Mail(
        proxy.smtp_port,
        "billing",
        WRONG_PASSWORD,
        "billing@example.com",
        _subject(tool, mode, "wrong"),
    )
    result = toolbox.send(tool, mail, tmp_path)
    assert result.returncode != 0, _transcript(result)
    assert _delivered(proxy, mail) == []
    assert proxy.metric("sesproxy_auth_attempts_total", result="bad_credentials") > refused_before


@pytest.mark.parametrize("tool", TOOLS)
def test_any_username_that_is_no_client_delivers_under_the_default_policy(
    relays: Relays, toolbox: Toolbox, tmp_path: Path, tool: str
) -> None:
    proxy = relays["any"]
    username, password = STRANGER
    mail = Mail(
        proxy.smtp_port, username, password, "noreply@example.com", _subject(tool, "any", "anon")
    )
    result = toolbox.send(tool, mail, tmp_path)
    _assert_delivered(proxy, result, mail, client="-")


# Last in this module, so after every tool has authenticated against both relays.
@pytest.mark.parametrize("mode", MODES)
def test_no_password_reached_a_relay_log(relays: Relays, mode: str) -> None:
    # Case-insensitively: a line logged uppercased (as an unknown command is) still counts.
    log = relays[mode].log_text().lower()
    assert log, "the relay logged nothing"
    for username, password in (("billing", PASSWORD), ("billing", WRONG_PASSWORD), STRANGER):
        blob = f"\0{username}\0{password}".encode()
        for secret in (
            password.encode(),
            base64.b64encode(blob),
            base64.b64encode(password.encode()),
        ):
            assert secret.decode().lower() not in log, (mode, username)
