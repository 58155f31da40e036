"""``bridge state``: the current-state topic as a table, or as JSON Lines for scripts.

The topic is read from the beginning to where it ended when the command started (``TopicRange``); the last
record per key wins (before Kafka compacts a segment it still holds older records per subject; a record
without value is a deletion). The table has one row per subject, newest first: subject, platform, type,
status, time and age. Binary-mode records are read from their ``ce_*`` headers only (their data is parsed
for ``--json`` alone), structured ones from their JSON.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from bridge.kafka_common import KafkaClientSettings
from bridge.sinks.encoding import decode_record
from bridge.tools.terminal import Progress, age, event_epoch
from bridge.tools.topic_range import TopicRange

COLUMNS = ("subject", "platform", "type", "status", "time", "age")
_Latest = tuple[bytes | None, list[tuple[str, bytes]]]


@dataclass(slots=True)
class Query:
    """The filters of ``bridge state``: each list keeps rows matching any of its values (``--type`` takes
    shell-style patterns such as ``ml.job.*``); ``since`` keeps events at or after it (seconds since epoch)."""

    statuses: list[str] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    since: float | None = None

    def keeps(self, attrs: dict[str, Any]) -> bool:
        if self.statuses and str(attrs.get("status") or "").lower() not in self.statuses:
            return False
        if self.platforms and str(attrs.get("platform") or "").lower() not in self.platforms:
            return False
        if self.types and not any(fnmatch.fnmatchcase(str(attrs.get("type") or ""), t) for t in self.types):
            return False
        if self.since is not None:
            t = event_epoch(attrs.get("time"))
            if t is None or t < self.since:
                return False
        return True


def split_values(values: Iterable[str] | None, lower: bool = True) -> list[str]:
    """``--status failed --status stopped`` and ``--status failed,stopped`` alike."""
    out: list[str] = []
    for v in values or ():
        out += [p.strip().lower() if lower else p.strip() for p in v.split(",") if p.strip()]
    return out


async def read_latest(settings: KafkaClientSettings, topic: str, progress: Progress) -> dict[bytes, _Latest]:
    """The last record per key of the topic, up to where it ended when reading began."""
    latest: dict[bytes, _Latest] = {}
    async with TopicRange(settings, topic) as reader:
        total = reader.total
        progress.update(0, total, final=True)
        async for chunk in reader.chunks(2000):
            for rec in chunk:
                if rec.key is None:
                    continue
                if rec.value is None:  # a deletion (tombstone)
                    latest.pop(rec.key, None)
                else:
                    latest[rec.key] = (rec.value, list(rec.headers))
            progress.update(reader.read, total, f"{len(latest):,} subjects")
        progress.update(reader.read, total, f"{len(latest):,} subjects", final=True)
    progress.close()
    return latest


def attributes(value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> dict[str, Any]:
    """The context attributes of a state record (no data) for the table and the filters."""
    if any(k == "ce_specversion" for k, _ in headers):
        return {k[3:]: v.decode(errors="replace") for k, v in headers if k.startswith("ce_")}
    return {k: v for k, v in decode_record(value, headers).items() if k != "data"}


def rows(latest: dict[bytes, _Latest], query: Query) -> list[tuple[dict[str, Any], _Latest]]:
    """The records the query keeps with their attributes, newest event first."""
    out = []
    for rec in latest.values():
        try:
            attrs = attributes(*rec)
        except ValueError:  # not a CloudEvent (someone else wrote to the topic): shown as it is not
            continue
        if query.keeps(attrs):
            out.append((attrs, rec))
    out.sort(key=lambda r: (event_epoch(r[0].get("time")) or 0.0, str(r[0].get("subject", ""))), reverse=True)
    return out


def table(selected: Sequence[dict[str, Any]], now: float | None = None) -> str:
    """The rows as an aligned text table with a header line."""
    now = time.time() if now is None else now
    lines = [[c.upper() for c in COLUMNS]]
    for attrs in selected:
        t = event_epoch(attrs.get("time"))
        lines.append([str(attrs.get("subject", "")), str(attrs.get("platform", "")), str(attrs.get("type", "")),
                      str(attrs.get("status") or "-"), str(attrs.get("time", "")),
                      age(now - t) if t is not None else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


async def show(settings: KafkaClientSettings, topic: str, query: Query, *, as_json: bool, out: IO[str],
               err: IO[str], progress: Progress | None = None) -> int:
    """Read the state topic and print what the query keeps; returns the exit code."""
    latest = await read_latest(settings, topic, progress or Progress(f"reading {topic}", err))
    selected = rows(latest, query)
    if as_json:
        for _, (value, headers) in selected:
            out.write(orjson.dumps(decode_record(value, headers)).decode() + "\n")
    else:
        out.write(table([attrs for attrs, _ in selected]) + "\n")
        err.write(f"{len(selected)} of {len(latest)} subjects on {topic}\n")
    out.flush()
    return 0
