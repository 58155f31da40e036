"""The sources' one checkpointer: per partition, only a contiguous prefix of acknowledged batches is released."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridge.sources.checkpoint import Checkpointer, Ticket

PARTITIONS = ("p0", "p1", "p2")


def test_releases_contiguous_spans_per_partition() -> None:
    """A batch spanning two partitions acked after later ones releases both partitions at the later positions;
    offsets may jump; a revoked partition ignores acks of its old batches."""
    cp: Checkpointer[str, int] = Checkpointer()
    a = [cp.track("p0", 10), cp.track("p1", 5)]
    b = [cp.track("p0", 20)]
    c = [cp.track("p0", 35), cp.track("p1", 9)]
    assert cp.done(b) is False
    assert cp.take_ready() == {}
    assert cp.done(c) is False
    assert cp.done(a) is True
    assert cp.take_ready() == {"p0": 35, "p1": 9}
    assert cp.pending("p0") == 0
    d = [cp.track("p0", 40)]
    assert cp.revoke(["p0"]) == {}
    assert cp.done(d) is False
    assert cp.take_ready() == {}


def test_restore_never_overwrites_a_later_position_nor_revives_a_revoked_partition() -> None:
    """A failed write is put back only when nothing later is ready and the partition is still tracked."""
    cp: Checkpointer[str, int] = Checkpointer()
    first, second = cp.track("p0", 1), cp.track("p0", 2)
    cp.done([first])
    taken = cp.take_ready()
    cp.done([second])
    cp.restore(taken)  # the write of 1 failed while 2 became ready: 2 stays
    assert cp.take_ready() == {"p0": 2}
    cp.restore({"p0": 1})
    assert cp.take_ready() == {"p0": 1}
    cp.revoke(["p0"])
    cp.restore({"p0": 1})
    assert cp.take_ready() == {}


@given(st.permutations(range(12)))
def test_any_ack_order_releases_only_what_every_earlier_batch_allows(order: list[int]) -> None:
    """Whatever order twelve batches of one partition are acked in, each release is the position of the last
    batch of the acked prefix, releases only grow, and the last release is the last batch."""
    cp: Checkpointer[str, int] = Checkpointer()
    tickets = [cp.track("p", 100 + i) for i in range(12)]
    acked: set[int] = set()
    released: list[int] = []
    for i in order:
        acked.add(i)
        moved = cp.done([tickets[i]])
        prefix = next((n for n in range(12) if n not in acked), 12)
        expected = 100 + prefix - 1 if prefix else None
        ready = cp.take_ready()
        assert moved == bool(ready)
        if ready:
            released.append(ready["p"])
            assert ready["p"] == expected
        assert cp.pending("p") == 12 - prefix
    assert released == sorted(released) and released[-1] == 111


@dataclass
class _Batch:
    partition: str
    position: int
    ticket: Ticket[str, int]
    done: bool = False
    revoked: bool = False


class CheckpointerMachine(RuleBasedStateMachine):
    """Random interleavings of track, ack (also twice, also of revoked batches), take, restore and revoke over
    three partitions, checked against a plain model of "release the contiguous acked prefix"."""

    def __init__(self) -> None:
        super().__init__()
        self.cp: Checkpointer[str, int] = Checkpointer()
        self.lanes: dict[str, list[_Batch]] = {p: [] for p in PARTITIONS}
        self.issued: list[_Batch] = []
        self.next_position = 0
        self.ready: dict[str, int] = {}
        self.tracked: set[str] = set()

    @rule(partition=st.sampled_from(PARTITIONS), gap=st.integers(1, 5))
    def track(self, partition: str, gap: int) -> None:
        self.next_position += gap
        batch = _Batch(partition, self.next_position, self.cp.track(partition, self.next_position))
        self.lanes[partition].append(batch)
        self.issued.append(batch)
        self.tracked.add(partition)

    @precondition(lambda self: bool(self.issued))
    @rule(picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=3))
    def ack(self, picks: list[int]) -> None:
        batches = [self.issued[i % len(self.issued)] for i in picks]
        moved = False
        for b in batches:
            if b.revoked:
                continue
            b.done = True
            lane = self.lanes[b.partition]
            released = None
            while lane and lane[0].done:
                released = lane.pop(0)
            if released is not None:
                self.ready[b.partition] = released.position
                moved = True
        assert self.cp.done([b.ticket for b in batches]) == moved

    @rule()
    def take(self) -> None:
        assert self.cp.take_ready() == self.ready
        self.ready = {}

    @rule(partition=st.sampled_from(PARTITIONS), position=st.integers(0, 10_000))
    def restore(self, partition: str, position: int) -> None:
        self.cp.restore({partition: position})
        if partition in self.tracked and partition not in self.ready:
            self.ready[partition] = position

    @rule(partition=st.sampled_from(PARTITIONS))
    def revoke(self, partition: str) -> None:
        expected = {partition: self.ready.pop(partition)} if partition in self.ready else {}
        assert self.cp.revoke([partition]) == expected
        for b in self.lanes[partition]:
            b.revoked = True
        for b in self.issued:
            if b.partition == partition:
                b.revoked = True
        self.lanes[partition] = []
        self.tracked.discard(partition)

    @invariant()
    def pending_matches_the_model(self) -> None:
        for p in PARTITIONS:
            assert self.cp.pending(p) == len(self.lanes[p])
        assert sorted(self.cp.partitions) == sorted(self.tracked)
        assert self.cp.has_ready == bool(self.ready)


TestCheckpointerMachine = CheckpointerMachine.TestCase
TestCheckpointerMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
