"""The durable state of exactly-once delivery, stage by stage: ids restored with their age expire when they
would have, restored last sequences keep lateness, the plug-in's entries restore its decisions, and the changelog
entries are keyed by lane (input topic) and kind."""

from __future__ import annotations

import orjson

from bridge.eos.changelog import IDS, PLUGIN, SEQ, entries
from bridge.pipeline.dedup import MemoryDedupStore
from bridge.pipeline.records import Record, Tracker
from bridge.pipeline.reorder import ReorderBuffer
from bridge.pipeline.transactions import LaneChanges
from bridge.state.lifecycle import decode, encode_entry, encode_key
from bridge.state.store import MemoryStateStore
from bridge.testing.memory import CapturingSink
from tests.state.helpers import feed, job_event, pipeline, published


def test_ids_restored_with_their_age_are_seen_until_the_window_passes() -> None:
    """Ids recorded 50 s ago (window 60 s) are seen now and forgotten 11 s later; ids 70 s old are not restored."""
    now = [1000.0]
    store = MemoryDedupStore(window_seconds=60, clock=lambda: now[0])
    store.restore([(70.0, [("s", "old")]), (50.0, [("s", "a"), ("s", "b")]), (1.0, [("s", "c")])])
    assert store.seen_now([("s", "old"), ("s", "a"), ("s", "c")]) == [False, True, True]
    now[0] += 11
    assert store.seen_now([("s", "a"), ("s", "c")]) == [False, True]


def test_a_restored_last_sequence_keeps_an_older_event_late() -> None:
    """After a reset, the last sequence restored for a subject makes an older event of it late, as before."""
    buf = ReorderBuffer(max_delay=0)
    tracker = Tracker(None, lambda t: None)
    buf.push([Record(b"v", b"m", "5", 7, ("s", "x"), (), tracker)], 0.0)
    buf.reset()
    assert buf.size == 0
    buf.restore([(7, "5")])
    _, late = buf.push([Record(b"v", b"m", "3", 7, ("s", "y"), (), tracker),
                        Record(b"v", b"m", "6", 7, ("s", "z"), (), tracker)], 1.0)
    assert [r.dkey[1] for r in late] == ["y"]


async def test_the_plug_ins_entries_restore_its_decisions() -> None:
    """The entries a changes_only plan gives (``changes``) restored into a fresh pipeline's plug-in: a repeated
    state is not published again there, a new one is."""
    routes = [{"name": "transitions", "topic": "t", "changes_only": True}]
    first_sink = CapturingSink()
    p1 = pipeline({"reorder": {"enabled": False}, "routes": routes}, first_sink)
    plan_entries: list[tuple[bytes, bytes]] = []
    plugin = p1.plugin
    assert plugin is not None
    real_plan = plugin.plan

    async def spy(box):  # type: ignore[no-untyped-def]
        plan = await real_plan(box)
        if plan is not None:
            plan_entries.extend((k, v) for _, k, v in plan.changes())
        return plan

    plugin.plan = spy  # type: ignore[method-assign]
    await feed(p1, job_event("e1", "job-a", 1, "InProgress"))
    assert plan_entries and all(decode(k, v) is not None for k, v in plan_entries)
    second_sink = CapturingSink()
    p2 = pipeline({"reorder": {"enabled": False}, "routes": routes}, second_sink, state_store=MemoryStateStore())
    assert p2.plugin is not None
    p2.plugin.reset()
    p2.plugin.restore(plan_entries)
    await feed(p2, job_event("e2", "job-a", 2, "InProgress"), job_event("e3", "job-a", 3, "Completed"))
    assert [e[0] for e in published(second_sink, "transitions")] == ["e3"]


def test_state_entries_round_trip_and_changelog_keys_name_kind_and_lane() -> None:
    """A state store write survives its durable form; changelog keys start with the kind and the input topic."""
    key, entry = ("route", "src", "job/a"), ("0005", b"\x00binary\xff")
    assert decode(encode_key(key), encode_entry(entry)) == (key, "0005", b"\x00binary\xff")
    changes = LaneChanges([("src", "e1"), ("src", "e2")], {("src", "job/a"): "0005"}, [(b"p-key", b"p-value")])
    items, ids_key = entries("raw", changes, tombstones=[b"Iraw\x00old"])
    kinds = {k[:1]: (k, v) for k, v in items if v is not None}
    assert ids_key is not None and ids_key.startswith(IDS + b"raw\x00")
    assert orjson.loads(kinds[IDS][1]) == {"src": ["e1", "e2"]}
    assert kinds[SEQ] == (SEQ + b"raw\x00src\x00job/a", b"0005")
    assert kinds[PLUGIN] == (PLUGIN + b"raw\x00p-key", b"p-value")
    assert (b"Iraw\x00old", None) in items
