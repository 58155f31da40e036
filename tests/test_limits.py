"""The memory budget: one limit (configured, from this process's cgroup, or the default) split into byte bounds,
and the held-bytes accounting that makes the sources pause at the budget and resume below 90 % of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.config import ConfigError, parse_config
from bridge.limits import DEFAULT_MEMORY_MB, LimitsConfig, MemoryBudget, MiB, Plan, cgroup_memory_limit, plan


def _cgroup(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc_file = tmp_path / "proc-self-cgroup"
    proc_file.write_text(proc)
    return root, proc_file


def test_plan_splits_the_limit_into_a_reserve_held_shares_and_the_dedup_window() -> None:
    """768 MiB: 40 % reserve, 5/6 of the rest held (reorder 45 %, delivery 35 %, sources the rest), 1/6 dedup."""
    p = Plan(768, "config")
    usable = 768 * MiB - int(768 * MiB * 0.40)
    assert p.held_bytes == usable * 5 // 6 and p.dedup_bytes == usable - p.held_bytes
    assert p.reorder_bytes + p.delivery_bytes + p.source_bytes == p.held_bytes
    assert p.reorder_bytes > p.delivery_bytes > p.source_bytes > 0
    assert p.dedup_max_entries == p.dedup_bytes // 90
    small = Plan(192, "config")
    assert 192 * MiB - small.held_bytes - small.dedup_bytes >= 128 * MiB  # the reserve never drops below 128 MiB


def test_the_own_cgroup_v2_limit_is_found_through_proc_self_cgroup(tmp_path: Path) -> None:
    """cgroup v2: the limit of the process's own cgroup (a Kubernetes pod's path), not the root's."""
    root, proc = _cgroup(tmp_path, "0::/kubepods/pod1/c1\n", {"memory.max": "max",
                                                              "kubepods/pod1/c1/memory.max": str(768 * MiB)})
    assert cgroup_memory_limit(root, proc) == 768 * MiB
    assert plan(LimitsConfig(), root, proc).describe()["origin"] == "cgroup"


def test_the_own_cgroup_v1_limit_is_found_and_unlimited_means_none(tmp_path: Path) -> None:
    """cgroup v1: the memory controller's line names the directory; 'no limit' (a huge number, or max) is None."""
    root, proc = _cgroup(tmp_path, "9:pids:/x\n4:memory:/docker/abc\n", {
        "memory/docker/abc/memory.limit_in_bytes": str(512 * MiB),
        "memory/memory.limit_in_bytes": "9223372036854771712",
    })
    assert cgroup_memory_limit(root, proc) == 512 * MiB
    root2, proc2 = _cgroup(tmp_path / "b", "4:memory:/\n", {"memory/memory.limit_in_bytes": "9223372036854771712"})
    assert cgroup_memory_limit(root2, proc2) is None
    p = plan(LimitsConfig(), root2, proc2)
    assert (p.memory_mb, p.origin) == (DEFAULT_MEMORY_MB, "default")


def test_a_configured_limit_wins_and_too_small_a_limit_is_an_error(tmp_path: Path) -> None:
    """limits.memory_mb overrides the cgroup; below 192 MiB the config is refused with its location."""
    root, proc = _cgroup(tmp_path, "0::/a\n", {"a/memory.max": str(2048 * MiB)})
    assert plan(LimitsConfig(memory_mb=300), root, proc).describe()["origin"] == "config"
    with pytest.raises(ConfigError) as err:
        parse_config({"limits": {"memory_mb": 100}})
    assert err.value.errors[0][0] == "limits.memory_mb"


async def test_budget_fills_pauses_and_resumes_below_ninety_percent() -> None:
    """Charging up to the limit makes the budget full (sources wait); refunds resume it only below 90 %."""
    pauses: list[int] = []
    b = MemoryBudget(1000, on_pause=lambda: pauses.append(1))
    b.charge("source", 600)
    b.set("reorder", 300)
    assert not b.full
    b.charge("source", 100)
    assert b.full and b.total == 1000 and pauses == [1]
    waiter = asyncio.create_task(b.wait_for_room())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    b.refund("source", 50)  # 950: still above 90 %
    await asyncio.sleep(0.01)
    assert b.full and not waiter.done()
    b.set("reorder", 100)  # 750
    await asyncio.wait_for(waiter, 1)
    assert not b.full and b.held == {"source": 650, "reorder": 100, "delivery": 0}
