"""``bridge redrive`` on the test brokers (tansu, Redis): dead letters re-run through a fixed config, what
still fails goes back with a redrive count and is never re-read by the same run, a second run publishes
nothing new, a dry run changes nothing, and a redrive interrupted mid-way loses nothing when run again."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from bridge.app import build_pipeline
from bridge.config import BridgeConfig, parse_config
from bridge.metrics import Metrics
from bridge.model import OutRecord, RawMessage, SourceBatch
from bridge.sinks.kafka import KafkaSink
from bridge.tools.redrive import Options, redrive
from bridge.tools.terminal import Progress
from bridge.tools.topic_range import TopicMissing, TopicRange, client_settings
from tests.state.helpers import job_event

ROOT = Path(__file__).resolve().parents[2]
OTHER_ACCOUNT = "111122223333"


def configs(bootstrap: str, redis_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(broken, fixed): the broken one trusts only another AWS account, the fixed one ours too."""
    tag = uuid.uuid4().hex[:8]
    base: dict[str, Any] = {
        "reorder": {"max_delay_ms": 0},
        "dedup": {"store": "redis", "redis_url": redis_url, "key_prefix": f"test:{tag}:dedup:"},
        "state": {"key_prefix": f"test:{tag}:state:"},
        "routes": [{"name": "all", "topic": f"out.{tag}"}],
        "deadletter": {"topic": f"dlq.{tag}"},
        "sink": {"type": "kafka", "bootstrap_servers": bootstrap, "max_request_bytes": 4096},
        "shutdown": {"grace_seconds": 2},
    }
    broken = {**base, "trust": {"aws_accounts": [OTHER_ACCOUNT]}}
    fixed = {**base, "trust": {"aws_accounts": [OTHER_ACCOUNT, "123456789012"]}}
    return broken, fixed


async def dead_letter(cfg: BridgeConfig, bodies: Sequence[bytes]) -> None:
    """Run the bodies through the (broken) config's pipeline into Kafka: the dead letters a daemon would write."""
    assert cfg.sink is not None
    sink = KafkaSink(cfg.sink)
    await sink.start()
    p = build_pipeline(cfg, sink, Metrics())
    try:
        msgs = [RawMessage(b, {}, "aws", f"queue#{i}") for i, b in enumerate(bodies)]
        for i in range(0, len(msgs), 100):
            await p.submit(SourceBatch(msgs[i : i + 100], None, "aws"))
        await p.flush()
    finally:
        await p.close(grace=2)
        await sink.stop()
        assert p.dedup is not None
        await p.dedup.store.close()


async def read(cfg: BridgeConfig, topic: str) -> list[Any]:
    """Every record of the topic (none when nothing created it yet)."""
    try:
        async with TopicRange(client_settings(cfg.sink, None), topic) as r:
            return [rec async for chunk in r.chunks() for rec in chunk]
    except TopicMissing:
        return []


def ids(records: list[Any]) -> list[str]:
    return sorted(dict(r.headers)["ce_id"].decode() for r in records)


async def test_redrive_after_a_fix_then_again_and_a_dry_run(kafka_bootstrap: str, redis_url: str,
                                                             tmp_path: Path) -> None:
    """After the trust list is fixed, the untrusted dead letters are published; a malformed one fails again and
    goes back with the new reason, dlq_redrive_count 1 and its original source and position; a truncated one is
    skipped; a dry run publishes and records nothing; a second run publishes nothing new (the dead letters it
    handled are remembered, the new one failed under this very config)."""
    broken_d, fixed_d = configs(kafka_bootstrap, redis_url)
    broken, fixed = parse_config(broken_d), parse_config(fixed_d)
    out, dlq = fixed.routes[0].topic, fixed.deadletter.topic
    events = [job_event(f"j{i}", f"job-{i}", i) for i in range(3)]
    big = orjson.dumps({"hello": "x" * 10_000})  # invalid and too big: cut to fit the dead-letter topic
    await dead_letter(broken, [orjson.dumps(e) for e in events] + [b"{not json", big])
    original = await read(fixed, dlq)
    assert len(original) == 5 and sum(dict(r.headers).get("dlq_truncated") == b"true" for r in original) == 1

    cfg_path = tmp_path / "fixed.yaml"
    cfg_path.write_text(yaml.safe_dump(fixed_d))
    dry = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge.cli", "redrive", "--config", str(cfg_path), "--dry-run"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("would redrive: 1 record(s) published") == 3
    assert dry.stdout.count("would fail again: ") == 1 and "value cut to fit the broker" in dry.stdout
    assert re.search(r"redriven\s+3 .*all=3", dry.stdout) and re.search(r"still failing\s+1 ", dry.stdout)
    assert re.search(r"skipped\s+1\s+truncated 1", dry.stdout) and "dry run: nothing published" in dry.stdout
    assert "dead-lettered" not in dry.stderr  # nothing was
    assert await read(fixed, dlq) == original and (await read(fixed, out)) == []

    summary = await redrive(fixed, Options(topic=dlq))
    assert (summary.redriven, summary.failing, summary.skipped) == (3, 1, {"truncated": 1})
    assert ids(await read(fixed, out)) == ["j0", "j1", "j2"]
    after = await read(fixed, dlq)
    assert len(after) == 6
    [again_dead] = [r for r in after if "dlq_redrive_count" in dict(r.headers)]
    new = dict(again_dead.headers)
    malformed = next(r for r in original if r.value == b"{not json")
    assert again_dead.value == b"{not json" and new["dlq_redrive_count"] == b"1"
    assert new["dlq_redrive_from"] == f"{dlq}/{malformed.partition}@{malformed.offset}".encode()
    assert new["dlq_source"] == b"aws" and new["dlq_position"] == dict(malformed.headers)["dlq_position"]
    assert b"JSON" in new["dlq_reason"] or b"json" in new["dlq_reason"]

    again = await redrive(fixed, Options(topic=dlq))
    assert (again.redriven, again.failing) == (0, 0)
    assert again.skipped == {"already redriven": 4, "failed under this config": 1, "truncated": 1}
    assert ids(await read(fixed, out)) == ["j0", "j1", "j2"] and len(await read(fixed, dlq)) == 6

    selected = await redrive(fixed, Options(topic=dlq, force=True, reason=re.compile("trusted")))
    assert (selected.redriven, selected.not_selected) == (3, 3)  # the untrusted ones only, again: duplicates
    assert selected.duplicates == 3 and ids(await read(fixed, out)) == ["j0", "j1", "j2"]


class HangingSink(KafkaSink):
    """Publishes its first ``ok`` groups, then publishes one more and never answers (the process dies there)."""

    def __init__(self, cfg: Any, ok: int) -> None:
        super().__init__(cfg)
        self.ok = ok
        self.hung = asyncio.Event()

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        confirmation = await super().enqueue(records)
        self.ok -= 1
        if self.ok >= 0:
            return confirmation

        async def hang() -> None:
            await confirmation  # on the broker, but never confirmed to the bridge
            self.hung.set()
            await asyncio.sleep(3600)

        return hang()


async def test_a_redrive_interrupted_mid_way_loses_nothing_when_run_again(kafka_bootstrap: str,
                                                                          redis_url: str) -> None:
    """A redrive that dies while a chunk is being published (published, not yet confirmed) leaves the chunks
    it finished remembered: the next run redrives the rest, every event is out, and only the interrupted chunk
    can appear twice (at least once)."""
    broken_d, fixed_d = configs(kafka_bootstrap, redis_url)
    broken, fixed = parse_config(broken_d), parse_config(fixed_d)
    out, dlq = fixed.routes[0].topic, fixed.deadletter.topic
    n, chunk = 300, 50
    await dead_letter(broken, [orjson.dumps(job_event(f"j{i}", f"job-{i % 40}", i)) for i in range(n)])
    assert fixed.sink is not None
    sink = HangingSink(fixed.sink, ok=2)
    first = asyncio.create_task(redrive(fixed, Options(topic=dlq, batch_size=chunk), sink=sink,
                                        progress=Progress("", force=False)))
    await asyncio.wait_for(sink.hung.wait(), 60)
    first.cancel()  # the process is gone: nothing after the hung publish runs
    await asyncio.gather(first, return_exceptions=True)
    published = ids(await read(fixed, out))
    assert 2 * chunk < len(published) <= 3 * chunk  # two chunks confirmed, the third published, unconfirmed
    second = await redrive(fixed, Options(topic=dlq, batch_size=chunk))
    assert second.skipped == {"already redriven": 2 * chunk}
    assert second.redriven == n - 2 * chunk and second.failing == 0
    everything = ids(await read(fixed, out))
    assert sorted(set(everything)) == sorted(f"j{i}" for i in range(n))
    assert len(everything) - n <= chunk  # at least once: the interrupted chunk may be out twice


async def test_a_redrive_process_killed_mid_way_loses_nothing_when_run_again(kafka_bootstrap: str, redis_url: str,
                                                                            tmp_path: Path) -> None:
    """`bridge redrive` as a process, SIGKILLed once part of its output is on the topic: run again, it passes
    over what the first run finished (remembered in Redis), every event is out, and at most the chunk that was
    in flight at the kill is out twice."""
    import signal

    from testbed.kafka import committed_and_end
    from testbed.waiting import wait_for

    broken_d, fixed_d = configs(kafka_bootstrap, redis_url)
    broken, fixed = parse_config(broken_d), parse_config(fixed_d)
    out, dlq = fixed.routes[0].topic, fixed.deadletter.topic
    n, chunk = 20_000, 250
    await dead_letter(broken, [orjson.dumps(job_event(f"j{i}", f"job-{i % 500}", i)) for i in range(n)])
    cfg_path = tmp_path / "fixed.yaml"
    cfg_path.write_text(yaml.safe_dump(fixed_d))
    cmd = [sys.executable, "-m", "bridge.cli", "redrive", "--config", str(cfg_path), "--from", dlq,
           "--batch-size", str(chunk)]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        async def some_out() -> bool:
            assert first.poll() is None, "the first run ended before the kill: the test proves nothing"
            try:
                _, end = await committed_and_end(kafka_bootstrap, f"probe-{uuid.uuid4().hex[:6]}", out)
            except Exception:  # the topic does not exist before the first publish
                return False
            return sum(end.values()) >= 8 * chunk

        await wait_for(some_out, within=120, every=0.05, what="part of the redrive on the output topic")
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    before_restart = len(await read(fixed, out))
    assert 8 * chunk <= before_restart < n
    second = await asyncio.to_thread(subprocess.run, cmd, capture_output=True, text=True, timeout=300, cwd=ROOT,
                                     check=False)
    assert second.returncode == 0, second.stderr[-2000:]
    remembered = re.search(r"already redriven (\d+)", second.stdout)
    assert remembered is not None and int(remembered.group(1)) >= before_restart - chunk, second.stdout
    everything = ids(await read(fixed, out))
    assert sorted(set(everything)) == sorted(f"j{i}" for i in range(n))
    print(f"\nredrive killed after {before_restart} of {n} out; the second run passed over {remembered.group(1)} "
          f"already redriven; {len(everything) - n} out twice")
    assert len(everything) - n <= chunk  # at least once: the chunk in flight at the kill may be out twice
