"""What-if experiments: candidate hot-path changes applied to the bridge process at start-up.

These are measurements for the maintainers, not part of the product: ``python -m bench.run --whatif NAME``
runs the bridge with ``apply(NAME)`` executed first (``bench.bridge_proc.BridgeProcess`` prelude), so a
change can be measured before it is made in bridge/. Patches keep the bridge's observable behaviour.

History: the first three candidates measured here (cyclic GC tuning, a memoized sink partitioner, direct
CloudEvents header encoding) were merged into bridge/ in commit 1725d53; their measured effect is in
BENCHMARKS.md. The patches left are about the garbage collector:

- ``gcdefault``: undo the daemon's ``tune_gc`` (Python's default thresholds 700/10/10): what tuning buys.
- ``gcoff``: no cyclic collection at all: the upper bound of what any GC tuning could buy.
- ``gcbig``: the daemon's tuning with a young-generation threshold of 200,000 instead of 20,000 (a source batch
  of 1,000 parsed events holds about 30,000 containers until admission ends, so 20,000 ran a young collection
  over them about once per batch).
- ``gcstats``: no change, a measurement: time spent in cyclic garbage collection per generation, written to
  the bridge's log at exit as ``bench-gcstats {...}`` (``run_bridge`` adds it to the results).

Several can be combined with commas (``gcdefault,gcstats``).
"""

from __future__ import annotations

import gc

PATCHES = ("gcdefault", "gcoff", "gcstats", "gcbig")


def _set_tuning(tune: object) -> None:
    from bridge import daemon

    daemon.tune_gc = tune  # type: ignore[assignment]


def _gcdefault() -> None:
    _set_tuning(lambda: None)


def _gcoff() -> None:
    _set_tuning(gc.disable)


def _gcbig() -> None:
    def tune() -> None:
        gc.collect()
        gc.freeze()
        gc.set_threshold(200_000, 100, 100)

    _set_tuning(tune)


def _gcstats() -> None:
    import atexit
    import sys
    import time

    import orjson

    stats: dict[int, list[float]] = {g: [0, 0.0] for g in range(3)}
    started: list[float] = [0.0]
    t0 = time.perf_counter()

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            s = stats[info["generation"]]
            s[0] += 1
            s[1] += time.perf_counter() - started[0]

    def report() -> None:
        wall = time.perf_counter() - t0
        out: dict[str, object] = {f"gen{g}": {"collections": int(n), "seconds": round(sec, 3)}
                                  for g, (n, sec) in stats.items()}
        out["gc_seconds"] = round(sum(sec for _, sec in stats.values()), 3)
        out["process_seconds"] = round(wall, 3)
        sys.stderr.write("bench-gcstats " + orjson.dumps(out).decode() + "\n")
        sys.stderr.flush()

    gc.callbacks.append(callback)
    atexit.register(report)


def apply(name: str) -> None:
    """Apply the patches named in ``name`` (comma-separated)."""
    names = tuple(name.split(","))
    for n in names:
        {"gcdefault": _gcdefault, "gcoff": _gcoff, "gcstats": _gcstats, "gcbig": _gcbig}[n]()


def prelude(name: str) -> str:
    """The Python source the bridge process runs before its CLI."""
    return f"from bench.whatif import apply\napply({name!r})"
