"""Memory is a budget, not an outcome: one setting bounds what the process holds.

``limits.memory_mb`` is the memory the bridge may use in all (its container's limit). When unset it is read
from the cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), else ``DEFAULT_MEMORY_MB``. A reserve of
``max(40 %, 128 MiB)`` covers the interpreter, the client libraries and allocator slack; of the rest, five
sixths are the *held* budget (events on their way through the bridge) and one sixth the dedup window:

- sources: fetched batches not yet admitted (Kafka fetch buffers and polls, Event Hubs prefetch, SQS
  receives) — the sources stop fetching while the held budget is full (Kafka: partitions paused, Event Hubs
  and SQS: no receive) and resume below 90 % of it;
- reorder buffer: at most 45 % of the held budget, beyond which the oldest events are released early;
- outbox and in-flight publishes: at most 35 %, beyond which admission waits for the sink;
- the in-memory dedup store: ``max_entries`` capped to what its share holds (about 90 bytes per id).

``MemoryBudget`` does the accounting: stages charge and refund bytes, sources wait for room.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from bridge.metrics import MetricGroup, Metrics

MiB: Final = 1024 * 1024
DEFAULT_MEMORY_MB: Final = 512
RESERVE_FRACTION: Final = 0.40
RESERVE_MIN_MB: Final = 128
REORDER_SHARE: Final = 0.45
DELIVERY_SHARE: Final = 0.35
DEDUP_BYTES_PER_ID: Final = 90
RESUME_AT: Final = 0.90
_UNLIMITED: Final = 1 << 60


class LimitsConfig(BaseModel):
    """Resource limits (see ``bridge.limits``)."""

    model_config = ConfigDict(extra="forbid")

    memory_mb: int | None = Field(
        None,
        ge=192,
        description="memory the bridge may use in all, in MiB; unset: the container's cgroup limit, else "
        f"{DEFAULT_MEMORY_MB}. Held events, the reorder buffer, the outbox, source prefetch and the dedup "
        "window are all bounded from it",
    )


def _own_cgroup_dirs(root: Path, proc_cgroup: Path) -> list[Path]:
    """The memory cgroup directories of this process, most specific first: its own (v2 ``0::/path``, v1
    ``N:memory:/path``, from /proc/self/cgroup), then the mount's root (what a container sees as its own)."""
    dirs: list[Path] = []
    with contextlib.suppress(OSError):
        for line in proc_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            rel = path.strip("/")
            if controllers == "" and rel:
                dirs.append(root / rel)
            elif "memory" in controllers.split(",") and rel:
                dirs.append(root / "memory" / rel)
    return [*dirs, root, root / "memory"]


def cgroup_memory_limit(
    root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The memory limit of this process's cgroup in bytes (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), or
    None when there is none."""
    for directory in _own_cgroup_dirs(root, proc_cgroup):
        for name in ("memory.max", "memory.limit_in_bytes"):
            path = directory / name
            with contextlib.suppress(OSError, ValueError):
                text = path.read_text().strip()
                if text == "max":
                    return None
                value = int(text)
                return value if 0 < value < _UNLIMITED else None
    return None


class Plan:
    """The byte bounds derived from one memory limit."""

    def __init__(self, memory_mb: int, origin: str) -> None:
        self.memory_mb = memory_mb
        self.origin = origin  # "config", "cgroup" or "default"
        total = memory_mb * MiB
        reserve = max(int(total * RESERVE_FRACTION), RESERVE_MIN_MB * MiB)
        usable = max(total - reserve, 32 * MiB)
        self.held_bytes = usable * 5 // 6
        self.dedup_bytes = usable - self.held_bytes
        self.reorder_bytes = int(self.held_bytes * REORDER_SHARE)
        self.delivery_bytes = int(self.held_bytes * DELIVERY_SHARE)
        self.source_bytes = self.held_bytes - self.reorder_bytes - self.delivery_bytes

    @property
    def dedup_max_entries(self) -> int:
        return max(1000, self.dedup_bytes // DEDUP_BYTES_PER_ID)

    def describe(self) -> dict[str, int | str]:
        return {
            "memory_mb": self.memory_mb,
            "origin": self.origin,
            "held_mb": self.held_bytes // MiB,
            "reorder_mb": self.reorder_bytes // MiB,
            "delivery_mb": self.delivery_bytes // MiB,
            "source_mb": self.source_bytes // MiB,
            "dedup_max_entries": self.dedup_max_entries,
        }


def plan(cfg: LimitsConfig, cgroup_root: Path = Path("/sys/fs/cgroup"),
         proc_cgroup: Path = Path("/proc/self/cgroup")) -> Plan:
    if cfg.memory_mb is not None:
        return Plan(cfg.memory_mb, "config")
    limit = cgroup_memory_limit(cgroup_root, proc_cgroup)
    if limit is not None:
        return Plan(max(192, limit // MiB), "cgroup")
    return Plan(DEFAULT_MEMORY_MB, "default")


class BudgetMetrics(MetricGroup):
    """What the memory budget writes (its size, and through ``on_pause`` the sources' pauses)."""

    def __init__(self, m: Metrics) -> None:
        super().__init__(m)
        self.memory_budget = m.gauge("bridge_memory_budget_bytes",
                                     "The held-bytes budget (from limits.memory_mb); sources pause at it")
        self.memory_limit = m.gauge("bridge_memory_limit_bytes",
                                    "limits.memory_mb (configured, from the cgroup, or the default) in bytes")
        self.source_pauses = m.counter("bridge_source_pauses",
                                       "Times the sources stopped fetching because the memory budget was full")


class MemoryBudget:
    """Bytes held per stage against the held budget; sources wait for room while it is full.

    ``charge``/``refund`` are plain additions (no awaits on the hot path); ``full`` flips on at the limit and
    off again below ``RESUME_AT`` of it, so sources do not flap.
    """

    STAGES: Final = ("source", "reorder", "delivery")

    def __init__(self, limit: int, on_pause: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self._on_pause = on_pause
        self.held: dict[str, int] = dict.fromkeys(self.STAGES, 0)
        self._room = asyncio.Event()
        self._room.set()
        self.full = False
        self.pauses = 0  # how often the sources were stopped (a metric)

    @property
    def total(self) -> int:
        h = self.held
        return h["source"] + h["reorder"] + h["delivery"]

    def charge(self, stage: str, n: int) -> None:
        self.held[stage] += n
        if not self.full and self.total >= self.limit:
            self._pause()

    def refund(self, stage: str, n: int) -> None:
        self.set(stage, self.held[stage] - n)

    def set(self, stage: str, n: int) -> None:
        """Set a stage's holding (the reorder buffer and the outbox report theirs)."""
        self.held[stage] = max(0, n)
        total = self.total
        if self.full:
            if total < self.limit * RESUME_AT:
                self.full = False
                self._room.set()
        elif total >= self.limit:
            self._pause()

    def _pause(self) -> None:
        self.full = True
        self.pauses += 1
        self._room.clear()
        if self._on_pause is not None:
            self._on_pause()

    async def wait_for_room(self) -> None:
        """Return once the budget is not full (at once when it is not)."""
        while self.full:
            await self._room.wait()


def batch_bytes(bodies_and_headers: int, messages: int) -> int:
    """What a fetched batch costs while it waits for admission: its bytes plus a per-message overhead."""
    return bodies_and_headers + 300 * messages
