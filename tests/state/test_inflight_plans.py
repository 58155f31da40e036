"""Transitions with several publish groups in flight: the plan of the next group sees the decisions of the groups
still on their way, so every transition is published exactly once per (route, source, subject), also when each
event arrives through two sources, twice, shuffled."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Sequence
from typing import Any

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.metrics import Metrics
from bridge.model import OutRecord
from bridge.pipeline.records import Record, Tracker
from bridge.pipeline.router import Route
from bridge.state.lifecycle import Lifecycle
from bridge.state.store import MemoryStateStore
from bridge.testing.events import azureml_run_event
from bridge.testing.memory import CapturingSink, InMemorySource
from testbed.waiting import wait_for
from tests.state.helpers import batch, job_event, pipeline

TRANSITIONS = {"name": "transitions", "topic": "ml.transitions", "changes_only": True}


class HeldSink(CapturingSink):
    """Takes every group at once and confirms it only when the test releases it: groups stay in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.confirmations: list[asyncio.Future[None]] = []

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        self.records.extend(records)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.confirmations.append(fut)
        return fut

    def confirm_all(self) -> None:
        for fut in self.confirmations:
            if not fut.done():
                fut.set_result(None)


class SlowSink(CapturingSink):
    """Confirms each group a few milliseconds after it was handed over, so several can be in flight at once."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self.rng = rng
        self.outstanding = 0
        self.most_outstanding = 0

    async def enqueue(self, records: Sequence[OutRecord]) -> Awaitable[None]:
        self.records.extend(records)
        self.outstanding += 1
        self.most_outstanding = max(self.most_outstanding, self.outstanding)
        return asyncio.ensure_future(self._confirm())

    async def _confirm(self) -> None:
        await asyncio.sleep(self.rng.uniform(0.005, 0.03))
        self.outstanding -= 1


def transitions(sink: CapturingSink) -> Counter[tuple[str, str, str | None]]:
    """(source, subject, status) of every event the transitions route published, counted."""
    return Counter((d.event.source, d.event.subject, d.event.status) for d in sink.routed if d.route == "transitions")


async def test_four_groups_in_flight_publish_each_transition_once_per_route_source_and_subject() -> None:
    """With sink.max_inflight_groups 4 and four groups unconfirmed, the same state repeated in each group is
    published once per (route, source, subject): the second account's job of the same name has its own; the
    repeats are counted as unchanged, and the decisions on their way are dropped once the groups settle."""
    sink = HeldSink()
    cfg = {"reorder": {"enabled": False}, "routes": [TRANSITIONS, {"name": "all", "topic": "ml.events"}],
           "sink": {"max_inflight_groups": 4}}
    p = pipeline(cfg, sink)
    plugin = p.plugin
    assert isinstance(plugin, Lifecycle) and p.delivery.depth == 4
    steps = ["InProgress", "InProgress", "InProgress", "Completed"]
    for i, status in enumerate(steps):  # one batch, one group per step: every group holds both accounts' job
        await p.submit(batch(job_event(f"a{i}", "job", i, status, account="111111111111"),
                             job_event(f"b{i}", "job", i, status, account="222222222222")))
        await wait_for(lambda n=i: len(sink.confirmations) == n + 1, within=5, every=0.005,
                       what=f"group {i + 1} handed to the sink")
    assert not any(f.done() for f in sink.confirmations)  # four groups in flight, none confirmed yet
    assert plugin.pending == 2  # the decisions on their way: the completed state of each account's job
    sink.confirm_all()
    await p.wait_idle()
    assert transitions(sink) == {
        ("aws.sagemaker/us-east-1/111111111111", "training-job/job", "running"): 1,
        ("aws.sagemaker/us-east-1/222222222222", "training-job/job", "running"): 1,
        ("aws.sagemaker/us-east-1/111111111111", "training-job/job", "completed"): 1,
        ("aws.sagemaker/us-east-1/222222222222", "training-job/job", "completed"): 1,
    }
    assert p.metrics.registry.get_sample_value("bridge_events_unchanged_total", {"route": "transitions"}) == 4
    assert plugin.pending == 0
    await p.submit(batch(job_event("a9", "job", 9, "Completed", account="111111111111")))
    await wait_for(lambda: len(sink.confirmations) == 5, within=5, what="a fifth group")
    sink.confirm_all()
    await p.wait_idle()
    assert sum(transitions(sink).values()) == 4  # recorded in the store once settled: still unchanged
    await p.close(grace=1)


def lifecycle_events(jobs: int, runs: int) -> list[dict[str, Any]]:
    """SageMaker training jobs in two accounts (InProgress repeated while SecondaryStatus moves, then Completed or
    Failed, repeated) and Azure ML runs (Running repeated, then Completed), every event with its own id."""
    events: list[dict[str, Any]] = []
    secondary = ["Starting", "Downloading", "Training", "Uploading"]
    for j in range(jobs):
        end = "Failed" if j % 3 == 0 else "Completed"
        account = "111111111111" if j % 2 else "222222222222"
        steps = [("InProgress", s) for s in secondary] + [(end, end), (end, end)]
        events += [job_event(f"job{j}-{i}", f"job-{j}", 10 * j + i, st, sec, account=account)
                   for i, (st, sec) in enumerate(steps)]
    for r in range(runs):
        statuses = ["Running", "Running", "Running", "Completed"]
        events += [azureml_run_event(f"run{r}-{i}", f"run-{r}", 10 * r + i, st) for i, st in enumerate(statuses)]
    return events


async def test_events_through_two_sources_twice_and_shuffled_publish_each_transition_once() -> None:
    """As `make stack` feeds it: every event through two sources, one of them twice, each source's order shuffled,
    four groups in flight on a slow sink: the transitions route publishes each (source, subject) transition exactly
    once, in order, and the state topic's last record per subject is its final event."""
    rng = random.Random(21)
    events = lifecycle_events(jobs=12, runs=6)
    one, two = InMemorySource(batch_size=5, name="one"), InMemorySource(batch_size=3, name="two")
    for src, copies in ((one, 1), (two, 2)):
        bodies = [ev for ev in events for _ in range(copies)]
        rng.shuffle(bodies)
        for body in bodies:
            src.put(body)
    sink = SlowSink(rng)
    cfg = parse_config({
        "http": {"host": "127.0.0.1", "port": 0},
        "reorder": {"max_delay_ms": 1500},
        "routes": [TRANSITIONS, {"name": "all", "topic": "ml.events"}],
        "state": {"topic": "ml.state"},
        "sink": {"max_inflight_groups": 4},
    })
    daemon = Daemon(cfg, sources=[one, two], sink=sink)
    runner = asyncio.create_task(daemon.run())
    try:
        await wait_for(lambda: len([d for d in sink.routed if d.route == "all"]) >= len(events), within=60,
                       what="every event published once on the plain route")
        await wait_for(lambda: daemon.pipeline.inflight == 0 and one.all_acked_once and two.all_acked_once,
                       within=30, what="everything settled and acked")
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(runner, 20) == 0
    assert Counter(d.event.id for d in sink.routed if d.route == "all") == Counter(e["id"] for e in events)
    published = [d.event for d in sink.routed if d.route == "transitions"]
    per_subject: dict[tuple[str, str], list[str | None]] = {}
    for ev in published:
        per_subject.setdefault((ev.source, ev.subject), []).append(ev.status)
    expected: dict[tuple[str, str], list[str | None]] = {}
    for ev in sorted((d.event for d in sink.routed if d.route == "all"), key=lambda e: e.sequence):
        seen = expected.setdefault((ev.source, ev.subject), [])
        if not seen or seen[-1] != ev.status:
            seen.append(ev.status)
    assert per_subject == expected
    assert len(expected) == 18 and all(len(v) == 2 for v in expected.values())
    # whether groups overlapped here depends on how the reorder releases (one group can hold the whole outbox);
    # the overlap itself is pinned deterministically by the four-groups test above
    last = {r.key: dict(r.headers)["ce_id"] for r in sink.records if r.topic == "ml.state"}
    finals: dict[bytes | None, bytes] = {}
    for ev in sorted((d.event for d in sink.routed if d.route == "all"), key=lambda e: e.sequence):
        finals[ev.subject.encode()] = ev.id.encode()
    assert last == finals


async def test_a_discarded_plan_is_no_longer_seen_by_the_next_plan() -> None:
    """A plan on its way makes the next plan drop the same state; once the plans in flight are discarded (their
    groups will not be published: an aborted transaction), the next plan decides from the store again and
    publishes the state."""
    route = Route("transitions", "ml.transitions", changes=("status",))
    lifecycle = Lifecycle([route], MemoryStateStore(), Metrics())

    def record(i: int) -> Record:
        return Record(b"v", b"m", f"{i:04d}", 1, ("src", f"e{i}"), (route,), Tracker(None, lambda _: None),
                      state=("training-job/job", b"running"))

    first = await lifecycle.plan([record(1)])
    assert first is not None and lifecycle.pending == 1
    second = record(2)
    later = await lifecycle.plan([second])
    assert second.routes == () and later is not None  # the same state as the plan on its way: unchanged
    first.discard()
    later.discard()
    assert lifecycle.pending == 0
    third = record(3)
    await lifecycle.plan([third])
    assert third.routes == (route,)
