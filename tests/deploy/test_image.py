"""The container image, built by ``make image`` and run on a Docker engine: what ships in it, replay on a read-only
root, and ``bridge run`` end to end on the test Kafka broker with the Kubernetes securityContext's restrictions,
health (with and without http_proxy), a clean ``docker stop`` and a memory limit.

The engine and the image come from the ``docker`` / ``bridge_image`` session fixtures (tests/fixtures/docker.py):
prepared in the background while the rest of the suite runs, these tests run last.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from bridge.testing.events import sagemaker_training_event
from testbed.docker import HARDENED, Container, Docker, run_with_memory_limit
from testbed.kafka import collect, committed_and_end, produce, produce_fast
from testbed.servers import RefusedPort, free_port
from testbed.waiting import wait_for_sync
from tests.deploy.lockfile import RUNTIME_LOCK, read_lock

pytestmark = pytest.mark.timeout(1200)  # the first test may wait for the engine install, base and build

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ("azureml_eventgrid.jsonl", "azureml_cloudevents.jsonl", "sagemaker.jsonl")
BUILD_TOOLS = ("pip", "setuptools", "pkg_resources", "_distutils_hack", "wheel")

# Run inside the image: import every module of the installed package, list the venv's distributions, and look for
# build tools anywhere the venv's interpreter can import from.
INSPECT = r"""
import importlib, importlib.metadata, importlib.util, json, pathlib, pkgutil, re, sys, sysconfig
import bridge
failed, modules = {}, ["bridge"]
def onerror(name): failed[name] = "package failed to import while walking"
modules += [m.name for m in pkgutil.walk_packages(bridge.__path__, "bridge.", onerror=onerror)]
for name in modules:
    try:
        importlib.import_module(name)
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
site = pathlib.Path(sysconfig.get_paths()["purelib"])
print(json.dumps({
    "modules": sorted(modules),
    "failed": failed,
    "bridge_file": bridge.__file__,
    "prefix": sys.prefix,
    "dists": sorted(re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in importlib.metadata.distributions()),
    "importable_tools": [n for n in sys.argv[1:] if importlib.util.find_spec(n) is not None],
    "site_entries": sorted(p.name for p in site.iterdir()),
}))
"""


def _host_modules() -> list[str]:
    """Every module of the bridge package in this checkout."""
    names = []
    for path in (ROOT / "bridge").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return sorted(names)


def _http(port: int, path: str) -> tuple[int, bytes]:
    """GET from the host straight to the container's port (host network), no proxy."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait_http(container: Container, port: int, path: str, status: int = 200, timeout: float = 90.0) -> None:
    def answered() -> bool:
        if not container.state().get("Running"):
            pytest.fail(f"container exited: {container.state()}\n{container.logs()[-4000:]}")
        try:
            return _http(port, path)[0] == status
        except OSError:
            return False

    wait_for_sync(answered, within=timeout, every=0.3,
                  what=lambda: f"{path} answering {status}:\n{container.logs()[-4000:]}")


def _bridge_config(tmp_path: Path, bootstrap: str, topics: dict[str, str], group: str) -> tuple[Path, int]:
    """A config for `bridge run` in the container (mounted read-only); returns its path and HTTP port."""
    port = free_port()
    cfg = {
        "http": {"host": "127.0.0.1", "port": port},
        "log": {"level": "info", "format": "json"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": [topics["raw"]],
                     "group_id": group, "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "dedup": {"enabled": True},
        "reorder": {"enabled": True, "max_delay_ms": 300},
        "routes": [
            {"name": "failed", "topic": topics["failed"],
             "filters": [{"pattern": {"type": ["ml.job.status_changed"], "status": ["failed"]}}]},
            {"name": "all", "topic": topics["all"]},
        ],
        "deadletter": {"topic": topics["dead"]},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap},
        "shutdown": {"grace_seconds": 15},
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o644)
    return path, port


@pytest.fixture
def topics(kafka_topic: Callable[..., str]) -> dict[str, str]:
    return {"raw": kafka_topic("raw", 3), "all": kafka_topic("all", 2), "failed": kafka_topic("failed", 1),
            "dead": kafka_topic("dead", 1)}


@pytest.fixture
def containers(docker: Docker) -> Iterator[list[Container]]:
    """Containers a test starts; removed afterwards whatever happened."""
    started: list[Container] = []
    yield started
    for c in started:
        c.remove()


def test_help_lists_the_commands(docker: Docker, bridge_image: str) -> None:
    """`docker run IMAGE --help` prints the CLI's usage with every command and exits 0."""
    res = docker.run("run", "--rm", "--network=none", bridge_image, "--help")
    out = res.stdout.decode()
    assert out.startswith("usage: bridge")
    for command in ("run", "replay", "normalize", "test-filter", "check-config"):
        assert command in out


def test_replay_on_a_read_only_root_matches_the_host_byte_for_byte(
    docker: Docker, bridge_image: str, shared_dir: Path
) -> None:
    """`bridge replay` of the corpus in the image (read-only root, tmpfs /tmp, no network) writes exactly the bytes
    the host's `bridge replay` writes."""
    corpus = b"".join((shared_dir / "corpus" / name).read_bytes() for name in CORPUS)
    host = subprocess.run([sys.executable, "-m", "bridge.cli", "replay", "--input", "-"], input=corpus,
                          capture_output=True, timeout=120, check=True).stdout
    image = docker.run("run", "--rm", "-i", "--network=none", "--read-only", "--tmpfs", "/tmp", bridge_image,
                       "replay", "--input", "-", input=corpus).stdout
    assert len(host.splitlines()) >= 10
    assert image == host


def test_runs_as_uid_10001_and_cannot_touch_its_config_dir(docker: Docker, bridge_image: str) -> None:
    """The image's user is 10001:10001 and /etc/bridge is root's: even on a writable root the daemon's user cannot
    write there."""
    assert docker.inspect(bridge_image)["Config"]["User"] == "10001:10001"
    script = "id -u; id -g; stat -c '%u:%g %a' /etc/bridge; touch /etc/bridge/config.yaml && echo WROTE || true"
    res = docker.run("run", "--rm", "--network=none", "--entrypoint", "sh", bridge_image, "-c", script)
    uid, gid, owner, wrote = res.stdout.decode().split("\n")[:4]
    assert (uid, gid) == ("10001", "10001")
    assert owner == "0:0 755"
    assert wrote != "WROTE" and b"Permission denied" in res.stderr


def test_every_module_imports_and_the_venv_holds_only_the_lock(docker: Docker, bridge_image: str) -> None:
    """Every module of the installed package imports in the image, the package is the one from this checkout, and
    the venv holds exactly the locked distributions plus the bridge: no pip, setuptools, pkg_resources,
    _distutils_hack or wheel anywhere its interpreter can import from."""
    res = docker.run("run", "--rm", "--network=none", "--read-only", "--entrypoint", "python", bridge_image,
                     "-c", INSPECT, *BUILD_TOOLS)
    found = json.loads(res.stdout)
    assert found["failed"] == {}
    assert found["modules"] == _host_modules()
    assert found["prefix"] == "/opt/venv" and found["bridge_file"].startswith("/opt/venv/lib/")
    assert found["importable_tools"] == []
    locked = {name for name, pin in read_lock(RUNTIME_LOCK).items() if pin.applies()}
    assert set(found["dists"]) == locked | {"ml-event-bridge"}
    assert "packaging" in locked  # a runtime dependency of aiokafka (aiokafka.util imports it), so it stays
    assert not [e for e in found["site_entries"] if e.endswith(".pth") or e.startswith(BUILD_TOOLS)]


async def test_run_moves_events_end_to_end_hardened_and_stops_cleanly(
    docker: Docker, bridge_image: str, kafka_bootstrap: str, topics: dict[str, str], containers: list[Container],
    tmp_path: Path,
) -> None:
    """`bridge run` in the image with --read-only --cap-drop ALL --security-opt no-new-privileges on the host's
    test broker routes, dedups and dead-letters real traffic; /healthz /readyz /metrics answer; the HEALTHCHECK
    turns healthy; `docker stop` exits 0 after the drain is logged, with every input offset committed."""
    group = f"image-{uuid.uuid4().hex[:8]}"
    config, port = _bridge_config(tmp_path, kafka_bootstrap, topics, group)
    c = docker.start(bridge_image, [*HARDENED, "--health-interval=1s", "-v", f"{config}:/etc/bridge/config.yaml:ro"])
    containers.append(c)
    _wait_http(c, port, "/readyz", 200)

    events = [sagemaker_training_event(f"{job}-{step}", f"job{job}", 100 + step,
                                       "Failed" if (step == 4 and job % 3 == 0) else
                                       ("Completed" if step == 4 else "InProgress"))
              for job in range(12) for step in range(5)]
    bodies = [orjson.dumps(e) for e in reversed(events)] + [orjson.dumps(events[0])] + [b"{not json"]
    await produce(kafka_bootstrap, topics["raw"], bodies)
    recs = await collect(kafka_bootstrap, [topics["all"], topics["failed"], topics["dead"]],
                         until=len(events) + 4 + 1, timeout=90, settle=1.5, dead_topics=[topics["dead"]])
    by_topic: dict[str, list[Any]] = defaultdict(list)
    for r in recs:
        by_topic[r.topic].append(r)
    assert sorted(r.event["id"] for r in by_topic[topics["all"]]) == sorted(e["id"] for e in events)
    assert sorted(r.event["id"] for r in by_topic[topics["failed"]]) == ["0-4", "3-4", "6-4", "9-4"]
    assert len(by_topic[topics["dead"]]) == 1
    per_subject: dict[str, list[str]] = defaultdict(list)
    for r in by_topic[topics["all"]]:
        per_subject[r.key].append(r.event["id"])
    assert all(ids == sorted(ids) for ids in per_subject.values())  # reversed input, restored per subject

    assert _http(port, "/healthz")[0] == 200
    status, body = _http(port, "/readyz")
    assert status == 200 and orjson.loads(body)["ready"] is True
    status, body = _http(port, "/metrics")
    metrics = body.decode()
    assert status == 200
    assert f'bridge_events_out_total{{route="all"}} {len(events)}.0' in metrics
    assert 'bridge_duplicates_dropped_total{source="kafka"} 1.0' in metrics

    state = c.wait_health("healthy")
    assert state["Health"]["Status"] == "healthy", state
    assert state["Health"]["Log"][-1]["ExitCode"] == 0
    host_config = docker.inspect(c.id)["HostConfig"]
    assert host_config["ReadonlyRootfs"] is True and host_config["CapDrop"] == ["ALL"]
    status_lines = c.exec("cat", "/proc/1/status").stdout.decode().splitlines()
    proc = dict(line.split(":", 1) for line in status_lines if ":" in line)
    assert proc["Uid"].split()[0] == "10001" and proc["CapEff"].strip() == "0000000000000000"
    assert proc["NoNewPrivs"].strip() == "1"
    write = c.exec("sh", "-c", "touch /opt/venv/x || touch /etc/bridge/x || echo denied")
    assert write.stdout.strip() == b"denied"

    final = c.stop(grace=40)  # raises unless `docker stop` exits 0
    assert final["ExitCode"] == 0 and not final["OOMKilled"]
    lines = [orjson.loads(line) for line in c.logs().splitlines()]  # every line is JSON
    messages = [line["event"] for line in lines]
    assert "daemon.running" in messages
    assert messages.index("daemon.stop_requested") < messages.index("daemon.shutting_down") \
        < messages.index("daemon.stopped")
    assert messages[-1] == "daemon.stopped" and lines[-1]["exit_code"] == 0
    committed, _ = await committed_and_end(kafka_bootstrap, group, topics["raw"])
    assert sum(committed.values()) == len(bodies)


def test_healthcheck_stays_healthy_with_http_proxy_set(
    docker: Docker, bridge_image: str, kafka_bootstrap: str, topics: dict[str, str], containers: list[Container],
    tmp_path: Path,
) -> None:
    """With http_proxy/HTTP_PROXY pointing at a dead proxy (urllib then fails inside the container), the
    HEALTHCHECK still turns healthy; the same probe against a closed port fails."""
    config, port = _bridge_config(tmp_path, kafka_bootstrap, topics, f"proxy-{uuid.uuid4().hex[:8]}")
    with RefusedPort() as proxy_port, RefusedPort() as closed_port:
        proxy = f"http://127.0.0.1:{proxy_port}"
        c = docker.start(bridge_image, [*HARDENED, "--health-interval=1s", "-e", f"http_proxy={proxy}",
                                        "-e", f"HTTP_PROXY={proxy}", "-v", f"{config}:/etc/bridge/config.yaml:ro"])
        containers.append(c)
        _wait_http(c, port, "/healthz", 200)
        state = c.wait_health("healthy")
        assert state["Health"]["Status"] == "healthy", state
        urllib_probe = c.exec("python", "-c", "import urllib.request; "
                              f"urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=3)")
        assert urllib_probe.returncode != 0  # the proxy really is in the way of urllib
        closed = c.exec("python", "-m", "bridge.healthcheck", "--url", f"http://127.0.0.1:{closed_port}/healthz")
        assert closed.returncode == 1 and b"unhealthy" in closed.stderr
    final = c.stop(grace=40)
    assert final["ExitCode"] == 0


async def test_run_under_a_memory_limit_reports_exit_and_peak_memory(
    docker: Docker, bridge_image: str, kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    """run_with_memory_limit runs the image under --memory 768m until the traffic is through, then stops it: exit 0,
    no OOM kill, and a peak memory read from the container's cgroup (the harness of the backlog-under-budget test)."""
    events = [sagemaker_training_event(f"m-{i}", f"mjob{i % 50}", i) for i in range(2000)]
    await produce(kafka_bootstrap, topics["raw"], [orjson.dumps(e) for e in events])
    config, port = _bridge_config(tmp_path, kafka_bootstrap, topics, f"mem-{uuid.uuid4().hex[:8]}")

    def all_published() -> bool:
        try:
            body = _http(port, "/metrics")[1].decode()
        except OSError:
            return False
        return f'bridge_events_out_total{{route="all"}} {len(events)}.0' in body

    run = run_with_memory_limit(docker, bridge_image, config, all_published, memory="768m", timeout=300)
    assert run.reached, run.logs[-4000:]
    assert run.exit_code == 0 and not run.oom_killed, run.logs[-4000:]
    assert 20 * 2**20 < run.peak_bytes < 768 * 2**20
    print(f"peak memory of `bridge run` over {len(events)} events: {run.peak_bytes / 2**20:.1f} MiB")
    assert orjson.loads(run.logs.splitlines()[-1])["event"] == "daemon.stopped"


async def test_a_backlog_far_larger_than_its_memory_drains_under_the_kubernetes_limit(
    docker: Docker, bridge_image: str, kafka_bootstrap: str, topics: dict[str, str], tmp_path: Path
) -> None:
    """The image under the Deployment's 768 MiB limit, with the ConfigMap's dedup/reorder settings and routes (plus a
    catch-all), drains a 40,000-event backlog of 4 KB events (about 1 GB as parsed events; the bridge before the
    memory budget was OOM-killed by such backlogs): every event published, exit 0, no OOM kill, the peak under the
    limit, and the budget taken from the container's cgroup (no limits in the config)."""
    n = 40_000
    bodies: list[bytes] = []
    for i in range(n):
        ev = sagemaker_training_event(f"b-{i}", f"bjob{i % 2000}", i // 2000, "Failed" if i % 7 == 0 else "InProgress")
        ev["detail"]["Notes"] = "n" * 4000
        bodies.append(orjson.dumps(ev))
    await produce_fast(kafka_bootstrap, topics["raw"], bodies)
    port = free_port()
    cfg = {
        "http": {"host": "127.0.0.1", "port": port},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": kafka_bootstrap,
                     "topics": [topics["raw"]], "group_id": f"backlog-{uuid.uuid4().hex[:8]}",
                     "session_timeout_ms": 6000, "heartbeat_interval_ms": 500}],
        "dedup": {"enabled": True, "window_seconds": 3600, "max_entries": 1_000_000},  # configmap (memory store)
        "reorder": {"enabled": True, "max_delay_ms": 2000, "max_events": 100_000, "late_policy": "emit"},
        "routes": [
            {"name": "failed-jobs", "topic": topics["failed"],
             "filters": [{"pattern": {"type": ["ml.job.status_changed"], "status": ["failed"]}}]},
            {"name": "models", "topic": topics["dead"] + "-models",
             "filters": [{"pattern": {"includedEventTypes": ["ml.model.registered"]}}]},
            {"name": "all", "topic": topics["all"]},
        ],
        "deadletter": {"topic": topics["dead"]},
        "sink": {"type": "kafka", "bootstrap_servers": kafka_bootstrap},
        "shutdown": {"grace_seconds": 15},
    }
    config = tmp_path / "backlog.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    config.chmod(0o644)

    def all_published() -> bool:
        try:
            body = _http(port, "/metrics")[1].decode()
        except OSError:
            return False
        return f'bridge_events_out_total{{route="all"}} {n}.0' in body

    started = time.monotonic()
    run = run_with_memory_limit(docker, bridge_image, config, all_published, memory="768m", timeout=600)
    seconds = time.monotonic() - started
    assert run.reached, run.logs[-4000:]
    assert run.exit_code == 0 and not run.oom_killed, run.logs[-4000:]
    budget = next(orjson.loads(line) for line in run.logs.splitlines() if '"daemon.memory_budget"' in line)
    assert (budget["origin"], budget["memory_mb"]) == ("cgroup", 768)
    print(f"backlog of {n} events ({sum(map(len, bodies)) / 2**20:.0f} MiB) drained under --memory 768m in "
          f"{seconds:.0f} s: peak {run.peak_bytes / 2**20:.0f} MiB (cgroup, page cache included)")
    assert run.peak_bytes < 768 * 2**20
