"""The sequence extension: fixed width, explicit sequencers first, time refinement, lifecycle tie-break."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.normalize import compute_sequence
from bridge.normalize.mapping import RANK
from bridge.normalize.sequence import explicit_sequence
from bridge.normalize.timeutil import format_micros

MAX_US = 253402300799999999  # 9999-12-31T23:59:59.999999Z
STATUSES = st.sampled_from(sorted(RANK, key=lambda s: (s is None, s or "")))
INSTANTS = st.integers(min_value=-62135596800000000, max_value=MAX_US)  # 0001-01-01 .. 9999-12-31


def _seq(us: int, status: str | None) -> str:
    time = format_micros(us)
    assert time is not None
    return compute_sequence(time, status)


@given(INSTANTS, STATUSES, INSTANTS, STATUSES)
def test_time_sequence_string_order_is_tuple_order(
    us1: int, s1: str | None, us2: int, s2: str | None
) -> None:
    """For any instants and statuses, comparing sequence strings equals comparing (time, rank) tuples."""
    a, b = _seq(us1, s1), _seq(us2, s2)
    assert len(a) == len(b) == 31
    key_a, key_b = (us1, RANK[s1]), (us2, RANK[s2])
    assert (a < b) == (key_a < key_b)
    assert (a == b) == (key_a == key_b)


@given(
    st.integers(min_value=0, max_value=10**20 - 1),
    st.integers(min_value=0, max_value=10**20 - 1),
    st.booleans(),
)
def test_numeric_sequencer_sorts_numerically(n1: int, n2: int, as_text: bool) -> None:
    """Numeric sequencers (int or digit string) give fixed-width strings whose order is numeric order."""
    a = explicit_sequence(str(n1) if as_text else n1)
    b = explicit_sequence(str(n2) if as_text else n2)
    assert a is not None and b is not None
    assert len(a) == len(b) == 22
    assert (a < b) == (n1 < n2)


@given(
    st.text(min_size=1).filter(lambda s: not s.isdigit()),
    st.text(min_size=1).filter(lambda s: not s.isdigit()),
)
def test_opaque_sequencer_keeps_lexicographic_order(x: str, y: str) -> None:
    """Non-numeric sequencers keep their own lexicographic order and sort after numeric ones."""
    a, b = explicit_sequence(x), explicit_sequence(y)
    biggest_numeric = explicit_sequence(10**20 - 1)
    assert a is not None and b is not None and biggest_numeric is not None
    if a == "s:~" + x and b == "s:~" + y:  # (values already in our own form pass through unchanged)
        assert (a < b) == (x < y)
    assert biggest_numeric < a


def test_explicit_sequencer_wins() -> None:
    """An explicit sequencer beats the time; leading zeros do not change a numeric one."""
    t = "2018-10-06T12:26:13.000000Z"
    assert compute_sequence(t, "completed", explicit="42") == "s:00000000000000000042"
    assert compute_sequence(t, "completed", explicit="0042") == "s:00000000000000000042"
    assert compute_sequence(t, "completed", explicit=42.0) == "s:00000000000000000042"
    assert compute_sequence(t, "completed", explicit="abc") == "s:~abc"
    assert compute_sequence(t, "completed", explicit=-1) == "s:~-1"
    for unusable in (None, "", True, 1.5, {"a": 1}):
        assert compute_sequence(t, "completed", explicit=unusable) == "t:" + t + ":5"


def test_own_sequence_passes_through() -> None:
    """A sequence already in the bridge's format is kept verbatim (idempotent re-normalization)."""
    for own in ("t:2018-10-06T12:26:13.000000Z:5", "s:00000000000000000042", "s:~abc"):
        assert explicit_sequence(own) == own


def test_refinement_window() -> None:
    """LastModifiedTime refines the time only when strictly within one second, in every encoding."""
    t = "2020-06-17T16:39:57.000000Z"  # 1592411997000 ms
    assert compute_sequence(t, "running", refine=1592411997250.0) == "t:2020-06-17T16:39:57.250000Z:2"
    assert compute_sequence(t, "running", refine=1592411997250) == "t:2020-06-17T16:39:57.250000Z:2"
    assert compute_sequence(t, "running", refine="1592411997250") == "t:2020-06-17T16:39:57.250000Z:2"
    assert (
        compute_sequence(t, "running", refine="2020-06-17T16:39:56.5Z") == "t:2020-06-17T16:39:56.500000Z:2"
    )
    assert compute_sequence(t, "running", refine=1592411994287.0) == "t:" + t + ":2"  # 2.7 s away
    assert compute_sequence(t, "running", refine=1592411998000) == "t:" + t + ":2"  # exactly 1 s away
    assert compute_sequence(t, "running", refine="garbage") == "t:" + t + ":2"
    assert compute_sequence(t, "running", refine=float("nan")) == "t:" + t + ":2"


def test_terminal_sorts_after_non_terminal_at_same_instant() -> None:
    """At the same instant completed/failed/stopped/deleted sort after pending/running/stopping/deleting."""
    t = "2021-01-01T00:00:00.000000Z"
    terminal = [compute_sequence(t, s) for s in ("completed", "failed", "stopped", "deleted")]
    live = [compute_sequence(t, s) for s in ("pending", "running", "stopping", "deleting", "unknown", None)]
    assert max(live) < min(terminal)
    assert compute_sequence("2021-01-01T00:00:00.000001Z", None) > max(terminal)
