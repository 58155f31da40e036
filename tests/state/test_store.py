"""Last-state stores: a key never moves back to a lower sequence (memory, and Redis across clients), entries
expire and the memory store is bounded; two replicas on one Redis share their changes_only decisions."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from bridge.state.attributes import StateSpec
from bridge.state.store import MemoryStateStore, RedisStateStore, StateStore
from bridge.testing.events import make_event
from bridge.testing.memory import CapturingSink
from tests.state.helpers import feed, job_event, pipeline, published

A = ("transitions", "src", "training-job/a")
B = ("transitions", "src", "training-job/b")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_put_keeps_the_entry_with_the_higher_sequence(kind: str, redis_url: str) -> None:
    """A write with a lower sequence than the stored one is ignored (a late writer, another replica); an equal
    or higher one replaces it; a second client of the same Redis reads what the first wrote."""
    prefix = f"test:{uuid.uuid4().hex}:"
    store: StateStore = MemoryStateStore() if kind == "memory" else RedisStateStore.from_url(redis_url, prefix, 60, 2)
    reader: StateStore = store if kind == "memory" else RedisStateStore.from_url(redis_url, prefix, 60, 2)
    try:
        await store.put([(A, "2024-01-01T00:00:05", b"running"), (B, "s:1", b"\x00[null]")])
        await store.put([(A, "2024-01-01T00:00:04", b"pending")])  # older: ignored
        assert await reader.get([A, B, ("other", "src", "x")]) == [
            ("2024-01-01T00:00:05", b"running"), ("s:1", b"\x00[null]"), None]
        await store.put([(A, "2024-01-01T00:00:05", b"failed"), (B, "s:2", b"")])
        assert await reader.get([A, B]) == [("2024-01-01T00:00:05", b"failed"), ("s:2", b"")]
    finally:
        await store.close()
        if reader is not store:
            await reader.close()


async def test_memory_store_expires_entries_and_forgets_the_least_recently_written_beyond_its_bound() -> None:
    """Entries live ``ttl`` seconds; beyond ``max_entries`` the least recently written key is forgotten."""
    clock = Clock()
    store = MemoryStateStore(ttl=10, max_entries=2, clock=clock)
    store.put_now([(A, "1", b"a"), (B, "1", b"b")])
    store.put_now([(A, "2", b"a2"), (("r", "s", "c"), "1", b"c")])  # B is now the least recently written
    assert store.get_now([A, B]) == [("2", b"a2"), None] and len(store) == 2
    clock.now = 11
    assert store.get_now([A]) == [None]


async def test_redis_state_keys_live_remember_seconds(redis_url: str) -> None:
    """Each Redis key carries state.remember_seconds as its TTL."""
    prefix = f"test:{uuid.uuid4().hex}:"
    store = RedisStateStore.from_url(redis_url, prefix, 3600, 2)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await store.put([(A, "1", b"x")])
        assert 3590 <= await client.ttl(store.redis_key(A)) <= 3600
    finally:
        await store.close()
        await client.aclose()


def test_state_values_are_compact_and_equal_only_for_equal_states() -> None:
    """One string attribute is its bytes; several or non-string values are JSON; long values a 16-byte digest;
    a missing attribute is a state of its own."""
    status = StateSpec(["status"])
    both = StateSpec(["status", "data.SecondaryStatus", "data.tags.0"])
    ev = make_event("1", data={"SecondaryStatus": "Training", "tags": ["x"]})
    assert status.value(ev) == b"running"
    assert status.value(make_event("1", status=None)) == b"\x00null"
    assert both.value(ev) == b'\x00["running","Training","x"]'
    long = StateSpec(["data"]).value(make_event("1", data={"k": "v" * 100}))
    assert len(long) == 17 and long != StateSpec(["data"]).value(make_event("1", data={"k": "w" * 100}))
    with pytest.raises(ValueError, match="invalid attribute path"):
        StateSpec(["data..x"])


async def test_two_replicas_on_one_redis_publish_each_transition_once(redis_url: str) -> None:
    """Replicas sharing the Redis dedup store (own clients, competing for the same subjects) publish a subject's
    transitions once between them: a repeat of a published state is suppressed whichever replica gets it, and
    an older event never overwrites the state topic's newer one."""
    prefix = f"test:{uuid.uuid4().hex}:"
    cfg = {"reorder": {"max_delay_ms": 0},
           "dedup": {"store": "redis", "redis_url": redis_url, "key_prefix": prefix + "dedup:"},
           "state": {"topic": "ml.state", "key_prefix": prefix + "state:"},
           "routes": [{"name": "transitions", "topic": "ml.transitions", "changes_only": True}]}
    sink_a, sink_b, sink_c = CapturingSink(), CapturingSink(), CapturingSink()
    a, b, c = pipeline(cfg, sink_a), pipeline(cfg, sink_b), pipeline(cfg, sink_c)
    try:
        await feed(a, job_event("j1", "job", 1, "InProgress"))
        await feed(b, job_event("j2", "job", 2, "InProgress"))  # repeat, on the other replica
        await feed(b, job_event("j3", "job", 3, "Completed"))
        await feed(a, job_event("j4", "job", 4, "Completed"))  # repeat, back on the first replica
        await feed(c, job_event("j0", "job", 0, "Failed"))  # older than all, on a replica that saw none of them
        assert published(sink_a, "transitions") == [("j1", "running", "Training")]
        assert published(sink_b, "transitions") == [("j3", "completed", "Training")]
        assert sink_c.records == []  # not a change backwards, and not the state topic's latest
        state = [dict(r.headers)["ce_id"] for s in (sink_a, sink_b) for r in s.records if r.topic == "ml.state"]
        assert sorted(state) == [b"j1", b"j2", b"j3", b"j4"]
    finally:
        for p in (a, b, c):
            await p.close(grace=1)
            assert p.dedup is not None
            await p.dedup.store.close()
