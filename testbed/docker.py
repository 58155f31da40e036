"""Docker for the image tests: the engine, the base image, the build, and containers of the bridge image.

- ``Docker.ensure_engine()`` makes an engine answer (``scripts/docker-engine.sh``: installs and starts one on a
  CI machine, as root). The client is ``$BRIDGE_DOCKER``, else Debian's /usr/bin/docker (the client of the
  engine that script installs), else ``docker`` on PATH.
- ``Docker.ensure_base()`` makes ``python:3.11-slim`` available: already there, pulled, or, when no registry
  answers, the TEST-ONLY stand-in built by ``scripts/standin-base.sh`` (kept in the engine between runs).
- ``Docker.ensure_compose_v1()`` gives Debian's docker-compose 1.29 (to validate docker-compose.yml offline).
- ``Docker.build_image()`` runs ``make image`` (classic builder, ``--network=host``: the CI engine has no bridge).
- ``Container`` runs the image detached and reads its health, logs, exit code and peak memory;
  ``run_with_memory_limit`` runs ``bridge run`` under ``--memory`` until a condition holds and reports how it went.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "python:3.11-slim"
IMAGE_TITLE = "ml-event-bridge"  # the Dockerfile's org.opencontainers.image.title
# what every `bridge run` of the image tests gets: the Kubernetes securityContext of deploy/k8s, on the host
# network (the CI engine has no bridge network; the test brokers listen on the host's loopback)
HARDENED = ("--network=host", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges")


class DockerError(RuntimeError):
    """A docker command failed."""


def docker_cli() -> str:
    """The docker client binary the tests use."""
    if os.environ.get("BRIDGE_DOCKER"):
        return os.environ["BRIDGE_DOCKER"]
    if os.access("/usr/bin/docker", os.X_OK):
        return "/usr/bin/docker"
    return shutil.which("docker") or "docker"


def image_tag() -> str:
    """``ml-event-bridge:test-<checkout>``: what ``make image`` builds for the tests of this checkout (its own tag,
    so the test runs of several checkouts on one engine never run each other's image)."""
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    return f"{IMAGE_TITLE}:test-{checkout}"


class Docker:
    """A docker client; every call has a timeout and raises ``DockerError`` with the output on failure."""

    def __init__(self, binary: str | None = None, log: Path | None = None) -> None:
        self.binary = binary or docker_cli()
        self.log = log  # where the preparation steps write their output

    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER": self.binary, "DOCKER_BUILDKIT": "0"}

    def run(self, *args: str, input: bytes | None = None, timeout: float = 120, check: bool = True
            ) -> subprocess.CompletedProcess[bytes]:
        res = subprocess.run([self.binary, *args], input=input, capture_output=True, timeout=timeout,
                             check=False, env=self.env())
        if check and res.returncode != 0:
            raise DockerError(f"docker {' '.join(args)} exited {res.returncode}:\n"
                              f"{res.stderr.decode(errors='replace')[-3000:]}")
        return res

    def _step(self, what: str, cmd: Sequence[str], timeout: float) -> float:
        """Run a preparation command with its output appended to ``self.log``; return its seconds."""
        start = time.monotonic()
        out = self.log.open("ab") if self.log else None
        try:
            if out is not None:
                out.write(f"\n== {what}: {' '.join(cmd)}\n".encode())
                out.flush()
            res = subprocess.run(list(cmd), stdout=out or subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=ROOT,
                                 timeout=timeout, check=False, env=self.env())
        finally:
            if out is not None:
                out.close()
        if res.returncode != 0:
            tail = self.log.read_text(errors="replace")[-4000:] if self.log else ""
            raise DockerError(f"{what} failed (exit {res.returncode}):\n{tail}")
        return time.monotonic() - start

    def ensure_engine(self) -> float:
        seconds = self._step("engine", ["bash", str(ROOT / "scripts" / "docker-engine.sh")], timeout=600)
        self.binary = docker_cli()  # the script may just have installed Debian's client beside its engine
        return seconds

    def ensure_compose_v1(self) -> str:
        """The path of Debian's docker-compose (v1.29: validates compose files offline), installed if missing
        (root). Compose v2 is not packaged by Debian; v1 rejects only v2's top-level ``name:``."""
        found = shutil.which("docker-compose")
        if found is None:
            self._step("docker-compose", ["bash", "-c", "export DEBIAN_FRONTEND=noninteractive; "
                                          "apt-get install -y -qq docker-compose || "
                                          "{ apt-get update -qq && apt-get install -y -qq docker-compose; }"],
                       timeout=600)
            found = shutil.which("docker-compose")
        if found is None:
            raise DockerError("docker-compose is not installed and could not be installed")
        return found

    def has_image(self, ref: str) -> bool:
        return self.run("image", "inspect", ref, check=False, timeout=60).returncode == 0

    def ensure_base(self) -> str:
        """How ``python:3.11-slim`` came to be there: "present", "pulled" or "stand-in"."""
        if self.has_image(BASE_IMAGE):
            return "present"
        if self.run("pull", BASE_IMAGE, check=False, timeout=300).returncode == 0:
            return "pulled"
        self._step("stand-in base", ["bash", str(ROOT / "scripts" / "standin-base.sh"), BASE_IMAGE], timeout=900)
        return "stand-in"

    def build_image(self, tag: str) -> float:
        make = shutil.which("make") or "make"
        return self._step("make image", [make, "image", f"DOCKER={self.binary}", f"IMAGE={tag}",
                                         "DOCKER_BUILD_FLAGS=--network=host"], timeout=900)

    def prune_replaced_images(self) -> None:
        """Remove earlier builds of the bridge image that rebuilds left untagged: runtime stages (title label), and
        builder stages older than an hour (their own label; the newest stay: they are the build cache)."""
        self.run("image", "prune", "-f", "--filter", f"label=org.opencontainers.image.title={IMAGE_TITLE}",
                 timeout=300)
        self.run("image", "prune", "-f", "--filter", f"label=org.opencontainers.image.title={IMAGE_TITLE}-builder",
                 "--filter", "until=1h", timeout=300)

    def inspect(self, ref: str) -> dict[str, Any]:
        data = json.loads(self.run("inspect", ref).stdout)
        assert isinstance(data, list) and len(data) == 1
        return dict(data[0])

    def start(self, image: str, options: Sequence[str], command: Sequence[str] = ()) -> Container:
        """``docker run -d`` the image; the container is removed by ``Container.remove``."""
        cid = self.run("run", "-d", *options, image, *command).stdout.decode().strip()
        return Container(self, cid)


@dataclass
class Container:
    """One running (or exited) container."""

    docker: Docker
    id: str

    def state(self) -> dict[str, Any]:
        return dict(self.docker.inspect(self.id)["State"])

    def health(self) -> str | None:
        health = self.state().get("Health")
        return None if health is None else str(health["Status"])

    def wait_health(self, status: str, timeout: float = 90.0) -> dict[str, Any]:
        """Poll until the health status is ``status``; return the last State (checked by the caller)."""
        deadline = time.monotonic() + timeout
        state = self.state()
        while (state.get("Health") or {}).get("Status") != status and time.monotonic() < deadline:
            if not state.get("Running"):
                break
            time.sleep(0.5)
            state = self.state()
        return state

    def logs(self) -> str:
        res = self.docker.run("logs", self.id, check=False, timeout=60)
        return (res.stdout + res.stderr).decode(errors="replace")

    def exec(self, *cmd: str, env: Sequence[str] = (), timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        opts = [arg for e in env for arg in ("-e", e)]
        return self.docker.run("exec", *opts, self.id, *cmd, check=False, timeout=timeout)

    def stop(self, grace: int = 40) -> dict[str, Any]:
        """``docker stop`` (SIGTERM, SIGKILL after ``grace`` seconds); return the final State."""
        self.docker.run("stop", "-t", str(grace), self.id, timeout=grace + 60)
        return self.state()

    def remove(self) -> None:
        self.docker.run("rm", "-f", self.id, check=False, timeout=60)

    def peak_memory(self) -> int:
        """Most memory the container's cgroup has used so far, in bytes (cgroup v1 or v2; running containers)."""
        candidates = [
            Path(f"/sys/fs/cgroup/memory/docker/{self.id}/memory.max_usage_in_bytes"),  # v1, cgroupfs driver
            Path(f"/sys/fs/cgroup/memory/system.slice/docker-{self.id}.scope/memory.max_usage_in_bytes"),
            Path(f"/sys/fs/cgroup/docker/{self.id}/memory.peak"),  # v2, cgroupfs driver
            Path(f"/sys/fs/cgroup/system.slice/docker-{self.id}.scope/memory.peak"),  # v2, systemd driver
        ]
        for path in candidates:
            if path.exists():
                return int(path.read_text().strip())
        raise DockerError(f"no memory cgroup found for {self.id[:12]} (is it running?)")


@dataclass
class MemoryRun:
    """How a ``bridge run`` under a memory limit went."""

    exit_code: int
    oom_killed: bool
    peak_bytes: int
    reached: bool  # the condition held before the deadline
    logs: str


def run_with_memory_limit(
    docker: Docker,
    image: str,
    config: Path,
    until: Callable[[], bool],
    memory: str = "768m",
    timeout: float = 600.0,
    grace: int = 60,
) -> MemoryRun:
    """Run ``bridge run`` on ``config`` (mounted read-only) with ``--memory`` (and no swap beyond it), hardened
    as in Kubernetes, until ``until()`` holds (e.g. the backlog's outputs all arrived) or the container dies
    or ``timeout`` passes; then ``docker stop``. The peak is read from the cgroup just before the stop."""
    container = docker.start(image, [*HARDENED, "--memory", memory, "--memory-swap", memory,
                                     "-v", f"{config}:/etc/bridge/config.yaml:ro"])
    try:
        deadline = time.monotonic() + timeout
        reached = False
        peak = 0
        while time.monotonic() < deadline:
            if not container.state().get("Running"):
                break
            peak = max(peak, container.peak_memory())
            if until():
                reached = True
                break
            time.sleep(1.0)
        if container.state().get("Running"):
            peak = max(peak, container.peak_memory())
            state = container.stop(grace)
        else:
            state = container.state()
        return MemoryRun(int(state["ExitCode"]), bool(state.get("OOMKilled")), peak, reached, container.logs())
    finally:
        container.remove()
