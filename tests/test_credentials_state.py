"""The credential is a state of the running relay, not a condition of its start.

A source that cannot serve a credential yet (an EKS agent or IMDS still coming up, a
refused AssumeRole, a credential already expired) leaves the relay running and not
ready, retrying with back-off; it becomes ready, and sends, once the source recovers.
A credential that expires while its source is down makes /readyz 503 again. Only a
refused kind (long-lived keys without allow_static_credentials) ends `serve`, exit 2:
see test_relay_ses.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.conftest import StartProxy
from tests.fakes.aws import FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.harness import RunningProxy
from tests.test_relay_ses import raw_message, send

# Back-off starts at 1 s and doubles up to 30 s: a source that recovers after a few
# seconds is seen within a few more.
RECOVERY_SECONDS = 40.0


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def _listening_not_ready(proxy: RunningProxy) -> None:
    _until(lambda: bool(proxy.events("listening")), 30, "the relay listens")
    _until(lambda: proxy.http_get("/readyz")[0] == 503, 5, "/readyz is 503")
    assert proxy.process.poll() is None, proxy.log_text()


def _no_traceback(proxy: RunningProxy) -> None:
    output = proxy.log_text()
    assert "Traceback" not in output
    assert '"traceback"' not in output


def test_an_unreachable_credentials_endpoint_at_start_is_retried_until_it_answers(
    start_ses_proxy: StartProxy, container_credentials: FakeContainerCredentials
) -> None:
    container_credentials.down = True
    proxy = start_ses_proxy(wait_ready=False)
    _listening_not_ready(proxy)
    # Not ready is not closed: a client that comes anyway is told to retry, nothing is sent.
    code, reply = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert (code, reply.split()[0]) == (451, "4.7.0")
    _until(lambda: len(proxy.events("credentials_unavailable")) >= 2, 15, "retried")
    assert proxy.metric("sesproxy_messages_deferred_total", reason="credentials") == 1

    container_credentials.down = False
    _until(lambda: proxy.http_get("/readyz")[0] == 200, RECOVERY_SECONDS, "ready")
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
    assert proxy.events("credentials")[0]["source"] == "container-role"
    _no_traceback(proxy)


def test_a_refused_assume_role_is_retried_not_fatal(
    start_ses_proxy: StartProxy, fake_aws: FakeAWS
) -> None:
    fake_aws.denied_actions = {"AssumeRole"}
    proxy = start_ses_proxy(
        {"ses": {"role_arn": "arn:aws:iam::123456789012:role/ses-sender"}},
        env={"AWS_ENDPOINT_URL_STS": fake_aws.url},
        wait_ready=False,
    )
    _listening_not_ready(proxy)
    said = proxy.events("credentials_unavailable")
    assert "ses.role_arn: AssumeRole refused: AccessDenied" in said[0]["detail"]

    # IAM changes take a while to reach every region: the relay waits them out.
    fake_aws.denied_actions = set()
    _until(lambda: proxy.http_get("/readyz")[0] == 200, RECOVERY_SECONDS, "ready")
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
    _no_traceback(proxy)


def test_a_credential_served_already_expired_is_a_state_not_a_crash(
    start_ses_proxy: StartProxy, container_credentials: FakeContainerCredentials
) -> None:
    container_credentials.rotate(expires_in=-60)
    proxy = start_ses_proxy(wait_ready=False)
    _listening_not_ready(proxy)
    assert "expired" in proxy.events("credentials_unavailable")[0]["detail"]

    container_credentials.rotate()
    _until(lambda: proxy.http_get("/readyz")[0] == 200, RECOVERY_SECONDS, "ready")
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
    _no_traceback(proxy)


def test_a_credential_that_expires_while_its_source_is_down_makes_the_relay_not_ready(
    start_ses_proxy: StartProxy, container_credentials: FakeContainerCredentials
) -> None:
    # Within botocore's refresh window from the start: every look tries a refresh.
    container_credentials.rotate(expires_in=4)
    proxy = start_ses_proxy()
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250

    container_credentials.down = True
    _until(lambda: proxy.http_get("/readyz")[0] == 503, 15, "not ready once expired")
    assert proxy.metric("sesproxy_credentials_expiry_timestamp_seconds") < time.time()
    code, _ = send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())
    assert code == 451

    container_credentials.rotate(expires_in=3600)
    container_credentials.down = False
    _until(lambda: proxy.http_get("/readyz")[0] == 200, RECOVERY_SECONDS, "ready again")
    assert proxy.metric("sesproxy_credentials_expiry_timestamp_seconds") > time.time() + 3000
    assert send(proxy.smtp_port, "noreply@example.com", ["a@example.net"], raw_message())[0] == 250
    _no_traceback(proxy)
