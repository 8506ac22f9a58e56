"""Build the container image with buildah and run it for real against the fake AWS.

Slow (debootstrap on a cold cache, pip from PyPI) and root-only: skipped by `make test`,
run by `make image-test` (SES_PROXY_IMAGE_TEST=1), which .ci/run calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    ALLOWED_SENDER,
    DENIED_SENDER,
    get_text,
    require_tool,
    send,
    send_refused,
)
from tests.fakes.aws import FakeAWS
from tests.fakes.credentials import FakeContainerCredentials
from tests.harness import REPO, free_port

pytestmark = pytest.mark.skipif(
    os.environ.get("SES_PROXY_IMAGE_TEST") != "1",
    reason="builds a container image (buildah, root): run it with `make image-test`",
)

IMAGE = "localhost/ses-proxy:test"
UID = 10001


def buildah(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["buildah", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"buildah {' '.join(args)}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def image() -> str:
    if os.geteuid() != 0:
        pytest.skip("buildah with chroot isolation and debootstrap need root here")
    require_tool("buildah")
    require_tool("debootstrap")
    started = time.monotonic()
    result = subprocess.run(
        [str(REPO / "deploy" / "container" / "build.sh"), IMAGE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    print(f"\nbase + image build: {time.monotonic() - started:.0f}s")
    return IMAGE


def _image_config(image: str) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", image))
    return info


@pytest.fixture
def container(image: str) -> Iterator[str]:
    name = f"ses-proxy-test-{os.getpid()}-{time.monotonic_ns()}"
    buildah("from", "--pull=false", "--name", name, image)
    yield name
    buildah("rm", name)


def test_image_metadata(image: str) -> None:
    info = _image_config(image)
    config = info["OCIv1"]["config"]
    assert config["User"] == f"{UID}:{UID}"
    assert set(config["ExposedPorts"]) == {"2525/tcp", "9101/tcp"}
    assert config["Entrypoint"] == ["ses-proxy"]
    assert config["Cmd"] == ["serve", "-c", "/etc/ses-proxy/config.yaml"]
    healthcheck = info["Docker"]["config"]["Healthcheck"]
    assert healthcheck["Test"][0] == "CMD"
    assert "/healthz" in healthcheck["Test"][-1]
    print("\n" + buildah("images", "--format", "{{.Name}}:{{.Tag}} {{.Size}}", image).strip())


def test_final_image_has_the_venv_but_no_build_tools(container: str) -> None:
    root = Path(buildah("mount", container).strip())
    try:
        venv = root / "opt" / "ses-proxy"
        assert (venv / "bin" / "ses-proxy").is_file()
        assert not (venv / "bin" / "pip").exists()
        assert not (root / "src").exists()  # the builder's sources stay in the builder
        assert not (root / "usr" / "bin" / "gcc").exists()
        state = (root / "var" / "lib" / "ses-proxy").stat()
        assert (state.st_uid, state.st_gid) == (UID, UID)
        # Nothing in the image is writable by the runtime user outside its state dir.
        writable = subprocess.run(
            ["find", str(root), "-xdev", "-user", str(UID), "-not", "-path", f"{root}/var/lib/*"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.split()
        assert writable == []
    finally:
        buildah("umount", container)


def _layer_dir(container: str) -> Path:
    """The container's own (upper) overlay layer: what the run wrote."""
    container_id = json.loads(buildah("inspect", "--type", "container", container))["ContainerID"]
    storage = json.loads(buildah("info"))["store"]["GraphRoot"]
    graph = Path(storage)
    records = json.loads((graph / "overlay-containers" / "containers.json").read_text())
    [layer] = [str(record["layer"]) for record in records if record["id"] == container_id]
    return graph / "overlay" / layer / "diff"


def _descendant_running(root: int, command: list[str]) -> int | None:
    """The pid of the process under `root` whose argv ends with `command`'s arguments."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    wanted = command[1:]
    pending = list(children.get(root, []))
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
            runner = argv[0].startswith("buildah")  # buildah-chroot-exec has the same tail
            if not runner and argv[-len(wanted) :] == wanted and "ses-proxy" in " ".join(argv):
                return pid
        pending.extend(children.get(pid, []))
    return None


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"container exited {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError, urllib.error.HTTPError):
            get_text(url + "/readyz", timeout=1)
            return
        time.sleep(0.2)
    pytest.fail(f"container not ready:\n{log.read_text()}")


@dataclass
class ContainerRun:
    """`buildah run` of the image's ENTRYPOINT + CMD, stopped with SIGTERM like a runtime."""

    container: str
    command: list[str]
    log_path: Path
    metrics_port: int
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self, env: dict[str, str], volumes: list[str]) -> None:
        env_args = [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]
        volume_args = [arg for volume in volumes for arg in ("--volume", volume)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    *("buildah", "run", "--isolation", "chroot"),
                    *volume_args,
                    *env_args,
                    *(self.container, "--", *self.command),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_ready(self.url, self.process, self.log_path)

    def stop(self) -> int:
        process = self.process
        assert process is not None
        if self.exit_code is None:
            # SIGTERM to the entrypoint, as `docker stop` or the kubelet does (buildah
            # itself would answer SIGTERM by killing its child outright).
            entrypoint = _descendant_running(process.pid, self.command)
            os.kill(entrypoint if entrypoint is not None else process.pid, signal.SIGTERM)
            try:
                self.exit_code = process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                self.exit_code = process.wait(timeout=10)
        return self.exit_code

    def events(self) -> list[str]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line).get("event", "") for line in lines if line.startswith("{")]

    def files_written(self) -> list[str]:
        """Files in the container's own layer: on a read-only root there are none
        (buildah itself only creates the empty mount-point directories it needs)."""
        upper = _layer_dir(self.container)
        return [str(p.relative_to(upper)) for p in upper.rglob("*") if not p.is_dir()]


@pytest.fixture
def container_run(image: str, container: str, tmp_path: Path) -> Iterator[ContainerRun]:
    info = _image_config(image)["OCIv1"]["config"]
    run = ContainerRun(
        container=container,
        command=[*info["Entrypoint"], *info["Cmd"]],  # exactly what a runtime would start
        log_path=tmp_path / "container.log",
        metrics_port=free_port(),
    )
    yield run
    if run.process is not None:
        run.stop()


def _config_dir(tmp_path: Path, config: dict[str, Any]) -> str:
    """A directory holding config.yaml, readable by the image's user, to mount read-only."""
    config_dir = tmp_path / "etc-ses-proxy"
    config_dir.mkdir()
    config_dir.chmod(0o755)
    (config_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (config_dir / "config.yaml").chmod(0o644)
    return f"{config_dir}:/etc/ses-proxy:ro"


def _base_config(smtp_port: int) -> dict[str, Any]:
    return {
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "hostname": "relay.image.test"},
        "policy": {"allowed_senders": [ALLOWED_SENDER], "allowed_recipients": ["*"]},
        # The image's default (9101): env overrides it below, as an operator would.
        "metrics": {"host": "127.0.0.1", "port": 9101},
        "logging": {"format": "json", "level": "info"},
    }


def test_container_relays_to_ses_and_writes_nothing(
    image: str,
    container_run: ContainerRun,
    tmp_path: Path,
    fake_aws: FakeAWS,
    container_credentials: FakeContainerCredentials,
) -> None:
    smtp_port = free_port()
    config = _base_config(smtp_port)
    config["delivery"] = {"backend": "ses"}
    config["ses"] = {
        "region": fake_aws.region,
        "endpoint_url": fake_aws.url,
        "allow_insecure_endpoint": True,
    }
    # Credentials only from the fake container-credentials endpoint, as on ECS/EKS.
    env = {
        **container_credentials.env({}),
        "SES_PROXY_METRICS__PORT": str(container_run.metrics_port),
    }
    container_run.start(env, [_config_dir(tmp_path, config)])

    send(smtp_port, ALLOWED_SENDER, "Someone@Example.net", "from the container")
    assert send_refused(smtp_port, DENIED_SENDER, "someone@example.net") == 550
    [sent] = fake_aws.wait_for_sent(1, timeout=30)
    assert sent.source == ALLOWED_SENDER
    assert sent.destinations == ["someone@example.net"]
    assert sent.access_key_id == container_credentials.current.access_key_id
    assert b"Subject: from the container" in sent.raw
    metrics = get_text(container_run.url + "/metrics")
    assert 'sesproxy_messages_sent_total{client="-"} 1.0' in metrics
    assert 'sesproxy_messages_rejected_total{client="-",reason="sender"} 1.0' in metrics

    # The image's own HEALTHCHECK, run inside the container as a runtime would.
    healthcheck = _image_config(image)["Docker"]["config"]["Healthcheck"]["Test"][1:]
    probe = subprocess.run(
        [
            *("buildah", "run", "--isolation", "chroot"),
            *("--env", f"SES_PROXY_METRICS__PORT={container_run.metrics_port}"),
            *(container_run.container, "--", *healthcheck),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr

    assert container_run.stop() == 0, container_run.log_path.read_text()
    assert [e for e in container_run.events() if e in {"draining", "stopped"}] == [
        "draining",
        "stopped",
    ]
    assert container_run.files_written() == []


def test_outbox_backend_writes_only_to_its_volume(
    container_run: ContainerRun, tmp_path: Path
) -> None:
    smtp_port = free_port()
    config = _base_config(smtp_port)
    config["delivery"] = {"backend": "outbox"}  # outbox_dir: the default ./outbox
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    os.chown(outbox, UID, UID)
    env = {"SES_PROXY_METRICS__PORT": str(container_run.metrics_port)}
    volumes = [_config_dir(tmp_path, config), f"{outbox}:/var/lib/ses-proxy/outbox"]
    container_run.start(env, volumes)

    send(smtp_port, ALLOWED_SENDER, "someone@example.net", "to the outbox")
    assert container_run.stop() == 0, container_run.log_path.read_text()
    [eml] = list(outbox.glob("*.eml"))
    assert b"Subject: to the outbox" in eml.read_bytes()
    assert eml.stat().st_uid == UID
    assert container_run.files_written() == []
