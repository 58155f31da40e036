"""Per-subject reorder buffer: sequence order within a subject, max_delay, memory bound, late events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.pipeline.records import RECORD_OVERHEAD, Record, Tracker
from bridge.pipeline.reorder import ReorderBuffer

SUBJECT: dict[str, str] = {}  # event id -> subject, for assertions


def _item(i: int, subject: str, seq: str, source: str = "src", value: bytes = b"{}") -> Record:
    SUBJECT[str(i)] = subject
    return Record(value, b"", seq, hash((source, subject)), (source, str(i)), (), Tracker(None, lambda t: None))


def ids(records: list[Record]) -> list[str]:
    return [r.dkey[1] for r in records]


def test_releases_subject_in_sequence_order_after_max_delay() -> None:
    """Events arriving out of order within max_delay leave in sequence order once the delay passes."""
    buf = ReorderBuffer(max_delay=1.0)
    early, late = buf.push([_item(1, "a", "3"), _item(2, "a", "1")], now=0.0)
    assert early == [] and late == []
    early, late = buf.push([_item(3, "a", "2")], now=0.5)
    assert buf.expire(0.9) == []
    out = buf.expire(1.0)
    assert [it.seq for it in out] == ["1", "2", "3"]
    assert buf.size == 0


def test_never_holds_an_event_longer_than_max_delay() -> None:
    """At time t every event that arrived at or before t - max_delay has been released."""
    buf = ReorderBuffer(max_delay=2.0)
    buf.push([_item(1, "a", "5")], now=0.0)
    buf.push([_item(2, "a", "9")], now=1.0)
    assert ids(buf.expire(2.0)) == ["1"]
    assert buf.next_deadline() == 3.0
    assert ids(buf.expire(3.0)) == ["2"]


def test_event_older_than_emitted_one_is_late() -> None:
    """An event whose sequence is below the last emitted one for its subject is returned as late."""
    buf = ReorderBuffer(max_delay=0.0)
    buf.push([_item(1, "a", "5")], now=0.0)
    assert len(buf.expire(0.0)) == 1
    _, late = buf.push([_item(2, "a", "4"), _item(3, "b", "1"), _item(4, "a", "5")], now=1.0)
    assert ids(late) == ["2"]


def test_subjects_of_different_sources_do_not_mix() -> None:
    """The same subject under two sources is two reorder streams (no false lateness across them)."""
    buf = ReorderBuffer(max_delay=0.0)
    a = _item(1, "endpoints/x", "5", source="ws-a")
    b = _item(2, "endpoints/x", "1", source="ws-b")
    buf.push([a], now=0.0)
    buf.expire(0.0)
    _, late = buf.push([b], now=0.0)
    assert late == []


def test_memory_bound_flushes_oldest_early_instead_of_growing() -> None:
    """Beyond max_events the oldest arrivals are released early and the buffer never exceeds the bound."""
    buf = ReorderBuffer(max_delay=60.0, max_events=3)
    released, _ = buf.push([_item(i, f"s{i}", "1") for i in range(5)], now=0.0)
    assert ids(released) == ["0", "1"]
    assert buf.size == 3
    assert buf.early_flushes == 2


def test_byte_bound_flushes_oldest_early_instead_of_growing() -> None:
    """Beyond max_bytes the oldest arrivals are released early: a few large events cannot outgrow the bound."""
    size = 10_000 + RECORD_OVERHEAD
    buf = ReorderBuffer(max_delay=60.0, max_events=1000, max_bytes=3 * size)
    released, _ = buf.push([_item(i, f"s{i}", "1", value=b"x" * 10_000) for i in range(5)], now=0.0)
    assert ids(released) == ["0", "1"]
    assert buf.size == 3 and buf.bytes == 3 * size
    buf.drain()
    assert buf.bytes == 0


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 50), st.floats(0, 5)), max_size=60),
       st.floats(0, 3), st.integers(1, 40))
def test_no_loss_no_duplicate_and_per_subject_order_property(
    arrivals: list[tuple[str, int, float]], max_delay: float, max_events: int
) -> None:
    """Whatever the arrival order and timing, every event leaves exactly once (released or late) and the
    released events of each subject are in non-decreasing sequence order."""
    buf = ReorderBuffer(max_delay=max_delay, max_events=max_events)
    arrivals = sorted(arrivals, key=lambda a: a[2])
    out: list[Record] = []
    late: list[Record] = []
    for i, (subj, seq, t) in enumerate(arrivals):
        out.extend(buf.expire(t))
        nd = buf.next_deadline()
        assert nd is None or nd > t  # nothing is held past its max_delay
        early, lt = buf.push([_item(i, subj, f"{seq:03d}")], now=t)
        out.extend(early)
        late.extend(lt)
        assert buf.size <= max_events
    out.extend(buf.drain())
    left = ids(out) + ids(late)
    assert sorted(left, key=int) == [str(i) for i in range(len(arrivals))]
    for subj in "abc":
        seqs = [it.seq for it in out if SUBJECT[it.dkey[1]] == subj]
        assert seqs == sorted(seqs)
