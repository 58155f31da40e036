"""Backlogs under a memory limit: ``python -m bench.backlog``.

The bridge drains a pre-produced backlog while a hard memory limit equal to the Kubernetes one (768 MiB) holds
it: the container image under ``docker run --memory`` where an engine answers (``--mode docker``; the image is
built with ``make image``), else the ``bridge run`` process in a memory cgroup of its own (``--mode cgroup``,
root only). Either way the bridge reads its budget from the cgroup (the config sets no ``limits``), like a pod.
The broker is Apache Kafka where a JDK and its jars are found, else tansu (``--broker``; bench/brokers.py: the
sink is idempotent on Apache Kafka, not on tansu).
Two backlogs: 300,000 records of about 1 KB (the bench's generated events) and 3,000 records of about 100 KB.
The config is the Kubernetes ConfigMap's dedup/reorder/routes (memory dedup store) plus a catch-all route, so
every unique valid event must come out. Prints one JSON line per backlog: drained or not, seconds, rate, peak
memory of the cgroup, exit code, OOM kill.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.brokers import BROKERS, Broker, default_broker, started
from bench.data import generate
from bench.kafka import produce_all
from testbed.servers import free_port

MiB = 1024 * 1024


def bridge_config(bootstrap: str, raw: str, prefix: str, port: int, *, idempotent: bool,
                  host: str = "127.0.0.1") -> dict[str, Any]:
    """deploy/k8s/configmap.yaml's dedup (memory store), reorder and routes, a catch-all route; no limits; the
    sink idempotent or not (the broker's producer family)."""
    return {
        "http": {"host": host, "port": port},
        "log": {"level": "info", "format": "json"},
        "sources": [{"type": "kafka", "name": "kafka", "bootstrap_servers": bootstrap, "topics": [raw],
                     "group_id": f"{prefix}-group", "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}],
        "dedup": {"enabled": True, "window_seconds": 3600, "max_entries": 1_000_000},
        "reorder": {"enabled": True, "max_delay_ms": 2000, "max_events": 100_000, "late_policy": "emit"},
        "routes": [
            {"name": "failed-jobs", "topic": f"{prefix}.failed",
             "filters": [{"pattern": {"type": ["ml.job.status_changed"], "status": ["failed"]}}]},
            {"name": "models", "topic": f"{prefix}.models",
             "filters": [{"pattern": {"includedEventTypes": ["ml.model.registered"]}}]},
            {"name": "all", "topic": f"{prefix}.all"},
        ],
        "deadletter": {"topic": f"{prefix}.dead"},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap, "enable_idempotence": idempotent},
        "shutdown": {"grace_seconds": 20},
    }


def large_records(n: int, size: int, seed: int = 5) -> list[tuple[bytes | None, bytes]]:
    """``n`` SageMaker training events of about ``size`` bytes (a padded detail field), 500 subjects, unique ids."""
    rng = random.Random(seed)
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(n):
        job = f"big-{i % 500}"
        ev = {"version": "0", "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
              "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
              "account": "123456789012", "time": f"2026-01-01T00:{(i // 500) // 60:02d}:{(i // 500) % 60:02d}Z",
              "region": "us-east-1", "resources": [f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{job}"],
              "detail": {"TrainingJobName": job, "TrainingJobStatus": "InProgress", "Log": "x" * size}}
        out.append((job.encode(), orjson.dumps(ev)))
    return out


def metric(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


class _Cgroup:
    """A fresh memory cgroup (v1 or v2) with a hard limit; the child joins it before exec."""

    def __init__(self, limit: int) -> None:
        base = Path("/sys/fs/cgroup")
        name = f"bench-backlog-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.v2 = (base / "cgroup.controllers").exists()
        self.dir = base / name if self.v2 else base / "memory" / name
        self.dir.mkdir()
        (self.dir / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(limit))
        swap = self.dir / ("memory.swap.max" if self.v2 else "memory.memsw.limit_in_bytes")
        if swap.exists():
            swap.write_text("0" if self.v2 else str(limit))

    def join(self) -> None:
        (self.dir / "cgroup.procs").write_text(str(os.getpid()))

    def peak(self) -> int:
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.dir / name).read_text())

    def oom_kills(self) -> int:
        text = (self.dir / ("memory.events" if self.v2 else "memory.oom_control")).read_text()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def run_in_cgroup(cfg: dict[str, Any], workdir: Path, limit: int, done: Callable[[], bool], timeout: float
                  ) -> dict[str, Any]:
    cg = _Cgroup(limit)
    path = workdir / "backlog.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = (workdir / "backlog.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "bridge.cli", "run", "--config", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=cg.join)
    try:
        reached, started = False, time.monotonic()
        while time.monotonic() - started < timeout and proc.poll() is None:
            if done():
                reached = True
                break
            time.sleep(0.5)
        seconds = time.monotonic() - started
        peak = cg.peak()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        return {"reached": reached, "seconds": round(seconds, 1), "peak_mib": round(peak / MiB, 1),
                "exit_code": proc.returncode, "oom_killed": cg.oom_kills() > 0 or proc.returncode == -9,
                "log": str(workdir / "backlog.log")}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
        cg.remove()


def run_in_docker(cfg: dict[str, Any], workdir: Path, memory: str, done: Callable[[], bool], timeout: float,
                  image: str) -> dict[str, Any]:
    from testbed.docker import Docker, run_with_memory_limit

    path = workdir / "backlog.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o644)
    started = time.monotonic()
    run = run_with_memory_limit(Docker(), image, path, done, memory=memory, timeout=timeout)
    seconds = time.monotonic() - started
    (workdir / "backlog.log").write_text(run.logs)
    return {"reached": run.reached, "seconds": round(seconds, 1), "peak_mib": round(run.peak_bytes / MiB, 1),
            "exit_code": run.exit_code, "oom_killed": run.oom_killed, "log": str(workdir / "backlog.log")}


def ensure_image(tag: str) -> str:
    from testbed.docker import Docker

    docker = Docker(log=Path(tempfile.mkdtemp(prefix="bench-image-")) / "prepare.log")
    docker.ensure_engine()
    docker.ensure_base()
    docker.build_image(tag)
    return tag


@contextmanager
def _workdir(base: Path, name: str) -> Iterator[Path]:
    path = base / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    yield path


async def one_backlog(broker: Broker, name: str, records: list[tuple[bytes | None, bytes]], expected: int,
                      args: argparse.Namespace, image: str | None, base: Path) -> dict[str, Any]:
    prefix = f"backlog-{name}-{uuid.uuid4().hex[:6]}"
    raw = broker.create_topic(f"{prefix}.raw", 4)
    for suffix in ("all", "failed", "models", "dead"):
        broker.create_topic(f"{prefix}.{suffix}", 4)
    secs = await produce_all(broker.bootstrap, raw, records, 4, idempotent=broker.idempotent)
    mib = sum(len(v) for _, v in records) / MiB
    print(f"[backlog] {name}: produced {len(records):,} records ({mib:,.0f} MiB) in {secs:.1f}s", file=sys.stderr)
    port = free_port()
    cfg = bridge_config(broker.bootstrap, raw, prefix, port, idempotent=broker.idempotent)

    def done() -> bool:
        return (metric(port, 'bridge_events_out_total{route="all"}') or 0) >= expected

    with _workdir(base, name) as wd:
        limit = args.memory_mb * MiB
        if image is not None:
            res = run_in_docker(cfg, wd, f"{args.memory_mb}m", done, args.timeout, image)
        else:
            res = await asyncio.to_thread(run_in_cgroup, cfg, wd, limit, done, args.timeout)
    res.update({"backlog": name, "records": len(records), "mib": round(mib, 1), "expected_out": expected,
                "mode": "docker" if image is not None else "cgroup", "limit_mib": args.memory_mb,
                "broker": broker.label})
    if res["reached"] and res["seconds"]:
        res["rate"] = round(len(records) / res["seconds"])
    return res


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    image: str | None = None
    if args.mode in ("docker", "auto"):
        try:
            image = args.image or ensure_image(f"ml-event-bridge:bench-{uuid.uuid4().hex[:6]}")
        except Exception as exc:
            if args.mode == "docker":
                raise
            print(f"[backlog] no container engine ({exc!r:.200}); using a memory cgroup", file=sys.stderr)
    base = Path(args.workdir).resolve()
    results = []
    with started(default_broker() if args.broker == "auto" else args.broker, base) as broker:
        print(f"[backlog] broker: {broker.label}", file=sys.stderr)
        if args.small:
            ds = generate(args.small)
            small = [(k, v) for k, v in ds.records]
            results.append(await one_backlog(broker, "1kb", small, ds.unique, args, image, base))
            print(orjson.dumps(results[-1]).decode(), flush=True)
        if args.large:
            big = large_records(args.large, args.large_kb * 1024)
            results.append(await one_backlog(broker, f"{args.large_kb}kb", big, len(big), args, image, base))
            print(orjson.dumps(results[-1]).decode(), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backlog", description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["auto", "docker", "cgroup"], default="auto")
    p.add_argument("--broker", choices=["auto", *BROKERS], default="auto",
                   help="auto (default): Apache Kafka where a JDK and its jars are found, else tansu")
    p.add_argument("--image", help="an image already built (skips make image)")
    p.add_argument("--memory-mb", type=int, default=768, help="the hard limit (deploy/k8s/deployment.yaml: 768)")
    p.add_argument("--small", type=int, default=300_000, help="records of ~1 KB (0: skip)")
    p.add_argument("--large", type=int, default=3_000, help="records of --large-kb (0: skip)")
    p.add_argument("--large-kb", type=int, default=100)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--workdir", default=str(Path(".bench") / "backlog"))
    args = p.parse_args(argv)
    results = asyncio.run(main_async(args))
    return 0 if all(r["reached"] and not r["oom_killed"] and r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
