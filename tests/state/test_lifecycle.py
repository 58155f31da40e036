"""changes_only routes and the state topic in the pipeline: transitions only, decided in sequence order,
recorded only once published, never moved backwards by a late event, and a failing store handled like the
dedup store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bridge.config import parse_config
from bridge.daemon import Daemon
from bridge.state.lifecycle import Lifecycle
from bridge.state.store import Entry, MemoryStateStore, StateKey, Write
from bridge.testing.memory import CapturingSink, InMemorySource
from testbed.waiting import wait_for
from tests.state.helpers import batch, feed, job_event, pipeline, published

ROUTES = [
    {"name": "all", "topic": "ml.events"},
    {"name": "transitions", "topic": "ml.transitions", "changes_only": True},
    {"name": "detailed", "topic": "ml.detailed", "changes_only": True,
     "state_attributes": ["status", "data.SecondaryStatus"]},
]


async def test_changes_only_routes_publish_transitions_of_their_state_attributes() -> None:
    """SageMaker repeats InProgress while SecondaryStatus moves: the status route publishes the first InProgress
    and Completed, the status+SecondaryStatus route every change of either, the plain route every event."""
    sink = CapturingSink()
    p = pipeline({"reorder": {"max_delay_ms": 50}, "routes": ROUTES}, sink)
    steps = [("InProgress", "Starting"), ("InProgress", "Downloading"), ("InProgress", "Training"),
             ("InProgress", "Training"), ("Completed", "Completed"), ("Completed", "Completed")]
    events = [job_event(f"e{i}", "job-a", i, st, sec) for i, (st, sec) in enumerate(steps)]
    await feed(p, *reversed(events[:3]))  # out of order: decided after the reorder buffer, in sequence order
    await feed(p, *events[3:])
    assert [e[0] for e in published(sink, "all")] == [f"e{i}" for i in range(6)]
    assert published(sink, "transitions") == [("e0", "running", "Starting"), ("e4", "completed", "Completed")]
    assert [e[0] for e in published(sink, "detailed")] == ["e0", "e1", "e2", "e4"]
    text = p.metrics.render().decode()
    assert 'bridge_events_unchanged_total{route="transitions"} 4.0' in text
    assert 'bridge_events_unchanged_total{route="detailed"} 2.0' in text


async def test_states_are_recorded_only_once_the_sink_confirmed_them() -> None:
    """A pipeline that never managed to publish records no state: after a restart the same transition is
    published (at least once), while a transition that was published is not published again."""
    store = MemoryStateStore()
    failing = CapturingSink()
    failing.fail_next = 10**9
    p1 = pipeline({"reorder": {"enabled": False}, "routes": ROUTES}, failing, state_store=store)
    await p1.submit(batch(job_event("a1", "job-a", 1)))
    await wait_for(lambda: failing.publish_calls >= 3, what="publish retried")
    await p1.close(grace=0.2)  # the process ends without having published
    assert len(store) == 0 and failing.records == []
    sink = CapturingSink()
    p2 = pipeline({"reorder": {"enabled": False}, "routes": ROUTES}, sink, state_store=store)
    await feed(p2, job_event("a1", "job-a", 1))
    await feed(p2, job_event("a2", "job-a", 2))  # the same status, another event: already published
    assert [e[0] for e in published(sink, "transitions")] == ["a1"]
    assert len(store) == 2  # (transitions, job-a) and (detailed, job-a)


async def test_a_late_event_never_counts_as_a_change_backwards_nor_reaches_the_state_topic() -> None:
    """Late in this process (reorder late policy emit) or older than what the store recorded (another process):
    not published on changes_only routes nor on the state topic; the plain route still gets it, marked late."""
    cfg = {"reorder": {"max_delay_ms": 0, "late_policy": "emit"}, "routes": ROUTES, "state": {"topic": "ml.state"}}
    store = MemoryStateStore()
    sink = CapturingSink()
    p = pipeline(cfg, sink, state_store=store)
    await feed(p, job_event("new", "job-a", 20, "Completed", "Completed"))
    await feed(p, job_event("old", "job-a", 10, "InProgress", "Training"))  # late: sequence below one emitted
    assert [(d.route, d.event.id, d.event.late) for d in sink.routed] == [
        ("all", "new", False), ("transitions", "new", False), ("detailed", "new", False), ("state", "new", False),
        ("all", "old", True),
    ]
    sink2 = CapturingSink()
    p2 = pipeline(cfg, sink2, state_store=store)  # a fresh process: its reorder buffer knows nothing
    await feed(p2, job_event("older", "job-a", 5, "InProgress", "Starting"))
    assert [(d.route, d.event.id, d.event.late) for d in sink2.routed] == [("all", "older", False)]


async def test_state_topic_gets_the_latest_event_of_every_subject_keyed_by_subject_routed_or_not() -> None:
    """Every event (also those no route wants) goes to the state topic keyed by its subject; a repeat of the
    same state is published there too (it is the latest event)."""
    cfg = {"reorder": {"max_delay_ms": 50},
           "routes": [{"name": "failed", "topic": "ml.failed", "filters": [{"pattern": {"status": ["failed"]}}]}],
           "state": {"topic": "ml.state"}}
    sink = CapturingSink()
    p = pipeline(cfg, sink)
    await feed(p, job_event("b1", "job-b", 1), job_event("a1", "job-a", 1), job_event("a2", "job-a", 2, "Failed"),
               job_event("b2", "job-b", 2))
    state = [(r.key, dict(r.headers)["ce_id"]) for r in sink.records if r.topic == "ml.state"]
    assert sorted(state) == [(b"training-job/job-a", b"a1"), (b"training-job/job-a", b"a2"),
                             (b"training-job/job-b", b"b1"), (b"training-job/job-b", b"b2")]
    assert [d.event.id for d in sink.routed if d.route == "failed"] == ["a2"]
    assert 'bridge_events_unrouted_total{source="src"} 3.0' in p.metrics.render().decode()


class FailingStore:
    """A state store failing while ``fail`` is set (Redis down), remembering otherwise."""

    def __init__(self) -> None:
        self.fail = True
        self.inner = MemoryStateStore()

    async def get(self, keys: Sequence[StateKey]) -> list[Entry | None]:
        if self.fail:
            raise ConnectionError("Connection refused")
        return self.inner.get_now(keys)

    async def put(self, writes: Sequence[Write]) -> None:
        if self.fail:
            raise ConnectionError("Connection refused")
        self.inner.put_now(writes)

    async def close(self) -> None:
        return None


async def test_a_failing_state_store_blocks_or_publishes_unchecked_like_the_dedup_store() -> None:
    """``block``: nothing is published while the store fails (the error is reported), everything once it is
    back; ``pass``: events are published as changes without the check, counted in bridge_state_unchecked."""
    for policy in ("block", "pass"):
        cfg = {"reorder": {"enabled": False}, "routes": ROUTES[1:2],
               "dedup": {"enabled": False, "on_store_error": policy, "store_timeout_seconds": 0.2}}
        sink = CapturingSink()
        store = FailingStore()
        p = pipeline(cfg, sink, state_store=store)
        lifecycle = p.plugin
        assert isinstance(lifecycle, Lifecycle)
        run = asyncio.create_task(feed(p, job_event("x1", "job-x", 1), job_event("x2", "job-x", 2)))
        if policy == "block":
            guard = lifecycle.guard
            await wait_for(lambda: guard.store_error, what="the state store failing")  # noqa: B023 (awaited in this iteration)
            assert lifecycle.guard.store_error == "ConnectionError: Connection refused" and sink.records == []
            store.fail = False
            await asyncio.wait_for(run, 10)
            assert [d.event.id for d in sink.routed] == ["x1"] and lifecycle.guard.store_error is None
        else:
            await asyncio.wait_for(run, 10)
            assert [d.event.id for d in sink.routed] == ["x1"]  # x2 is the same state within the group
            assert "bridge_state_unchecked_total 2.0" in p.metrics.render().decode()
        await p.close(grace=1)


async def test_daemon_is_not_ready_while_its_own_state_store_fails_and_recovers() -> None:
    """With dedup off, the state store has its own guard: while it fails (policy block) /readyz names it and
    nothing is published; once it answers the event goes out and the daemon is ready again."""
    cfg = parse_config({"http": {"host": "127.0.0.1", "port": 0}, "reorder": {"enabled": False},
                        "dedup": {"enabled": False, "store_timeout_seconds": 0.2},
                        "routes": ROUTES[1:2]})
    src, sink, store = InMemorySource(name="mem"), CapturingSink(), FailingStore()
    daemon = Daemon(cfg, sources=[src], sink=sink, state_store=store)
    runner = asyncio.create_task(daemon.run())
    try:
        src.put(job_event("d1", "job-d", 1))
        await wait_for(lambda: any(r.startswith("state store: ConnectionError") for r in daemon.readiness.reasons()),
                       within=30, what="not ready because of the state store")
        assert sink.records == []
        store.fail = False
        await wait_for(lambda: sink.records and daemon.readiness.ready(), within=30, what="published and ready again")
        assert [d.event.id for d in sink.routed] == ["d1"] and daemon.readiness.ready()
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(runner, 10) == 0
