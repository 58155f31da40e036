"""Benchmark input: realistic ML lifecycle events made from the shared corpus.

``generate(n)`` returns ``n`` Kafka records (key, value) in stream order:

- every event is a copy of a corpus event (SageMaker EventBridge, Azure ML Event Grid, Azure ML CloudEvents)
  with a fresh id (uuid4), a rewritten subject (``subjects`` of them: SageMaker ARN resources / Azure
  subjects; each subject keeps one event family, e.g. a training job or an Azure run) and times that increase
  per subject (1 s apart; SageMaker events also carry a finer ``LastModifiedTime`` in epoch milliseconds);
- each body is padded (a ``benchPadding`` string in ``data``/``detail``) or trimmed (the corpus' longest
  strings shortened) to about ``size`` bytes;
- ``dup_ratio`` of the records are duplicates: the same bytes as an earlier record, re-sent 1 to 2,000
  records later;
- ``ooo_ratio`` of the unique events arrive out of order: swapped with the next event of their subject;
- ``bad_ratio`` are malformed (truncated JSON, or an event without its id) and must be dead-lettered.

The record key is the subject (so a subject stays on one partition); malformed records have no key.
Everything is deterministic for a given ``seed``.
"""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PAD_KEY = "benchPadding"
_MIN_TRIM = 24
_BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def shared_dir() -> Path:
    """The shared directory holding ``corpus/``: $BRIDGE_SHARED_DIR, else ``../shared`` beside the repo."""
    return Path(os.environ.get("BRIDGE_SHARED_DIR", ROOT.parent / "shared"))


@dataclass(frozen=True, slots=True)
class Template:
    """One corpus event with what is needed to rewrite it."""

    shape: str  # "eventbridge", "eventgrid", "cloudevents"
    family: str  # events of one subject come from one family
    event: dict[str, Any]


@dataclass(slots=True)
class Dataset:
    """The generated records and what went into them."""

    records: list[tuple[bytes | None, bytes]]
    ids: list[str | None]  # the event id of each record (None when malformed)
    unique: int
    duplicates: int
    out_of_order: int
    malformed: int
    subjects: int
    shapes: dict[str, int] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(len(v) for _, v in self.records)

    def summary(self) -> dict[str, Any]:
        n = len(self.records)
        return {
            "records": n,
            "unique_events": self.unique,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "malformed": self.malformed,
            "subjects": self.subjects,
            "mean_bytes": round(self.total_bytes / n, 1) if n else 0,
            "shapes": dict(self.shapes),
        }


def _shape(ev: dict[str, Any]) -> str:
    if "detail-type" in ev:
        return "eventbridge"
    if "specversion" in ev:
        return "cloudevents"
    return "eventgrid"


def _family(shape: str, ev: dict[str, Any]) -> str:
    if shape == "eventbridge":
        res = str(ev["resources"][0]).split(":", 5)[5]
        return "sm:" + res.split("/", 1)[0]
    return "az:" + str(ev.get("subject", "")).split("/", 1)[0]


def _strings(node: Any, out: list[tuple[Any, Any, int]]) -> None:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        if isinstance(v, str) and len(v) > _MIN_TRIM:
            out.append((node, k, len(v)))
        elif isinstance(v, dict | list):
            _strings(v, out)


def _trim(ev: dict[str, Any], payload_key: str, target: int) -> None:
    """Shorten the payload's longest strings until the event fits ``target`` bytes (or nothing is left)."""
    while True:
        excess = len(orjson.dumps(ev)) - target
        if excess <= 0:
            return
        cands: list[tuple[Any, Any, int]] = []
        _strings(ev.get(payload_key), cands)
        if not cands:
            return
        node, key, length = max(cands, key=lambda c: c[2])
        node[key] = node[key][: max(_MIN_TRIM, length - excess)]


def load_templates(corpus: Path | None = None, size: int = 1024) -> list[Template]:
    """Every corpus event as a template, its payload trimmed so a rewritten copy is about ``size`` bytes."""
    directory = corpus or shared_dir() / "corpus"
    templates: list[Template] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            ev = orjson.loads(line)
            shape = _shape(ev)
            _trim(ev, "detail" if shape == "eventbridge" else "data", size - 40)
            templates.append(Template(shape, _family(shape, ev), ev))
    if not templates:
        raise FileNotFoundError(f"no corpus events (*.jsonl) in {directory}; set BRIDGE_SHARED_DIR")
    return templates


def _iso(t: datetime, millis: bool) -> str:
    if millis:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Subject:
    __slots__ = ("account", "family", "name", "region", "shape")

    def __init__(self, family: str, shape: str, name: str) -> None:
        self.family = family
        self.shape = shape
        self.name = name
        self.region = ""  # SageMaker: one account and region per subject
        self.account = ""


def _new_subject(i: int, family: str, shape: str, rng: random.Random) -> _Subject:
    kind = family.split(":", 1)[1]
    tag = f"bench{i:06d}"
    if family.startswith("sm:"):
        name = f"{kind}/{tag}"
    elif kind == "experiments":
        name = f"experiments/{uuid.UUID(int=rng.getrandbits(128), version=4)}/runs/{tag}"
    elif kind == "models":
        name = f"models/{tag}:{rng.randint(1, 40)}"
    elif kind == "datadrifts":
        name = f"datadrifts/{uuid.UUID(int=rng.getrandbits(128), version=4)}/runs/{tag}"
    else:
        name = f"{kind}/{tag}"
    return _Subject(family, shape, name)


def _render(t: Template, subj: _Subject, seq: int, event_id: str, when: datetime, size: int) -> bytes:
    ev = orjson.loads(orjson.dumps(t.event))  # deep copy
    ev["id"] = event_id
    if t.shape == "eventbridge":
        old = ev["resources"][0].split(":", 5)[5].split("/", 2)
        old_prefix = "/".join(old[:2])
        new_prefix = subj.name
        ev["resources"] = [r.replace(old_prefix, new_prefix, 1) for r in ev["resources"]]
        ev["region"], ev["account"] = subj.region, subj.account
        ev["time"] = _iso(when, millis=False)
        payload = ev.get("detail")
        if isinstance(payload, dict) and "LastModifiedTime" in payload:
            payload["LastModifiedTime"] = str(int(when.timestamp() * 1000) + seq % 997)
    else:
        ev["subject"] = subj.name
        ev["eventTime" if t.shape == "eventgrid" else "time"] = _iso(when, millis=True)
        payload = ev.get("data")
    body = orjson.dumps(ev)
    if isinstance(payload, dict) and len(body) < size:
        payload[PAD_KEY] = ""
        room = size - len(orjson.dumps(ev))
        if room > 0:
            payload[PAD_KEY] = "x" * room
        body = orjson.dumps(ev)
    return body


def _malformed(body: bytes, rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return body[: len(body) // 2]  # truncated JSON
    ev = orjson.loads(body)
    ev.pop("id", None)  # a required field missing
    return orjson.dumps(ev)


def generate(
    n: int,
    *,
    subjects: int = 10_000,
    size: int = 1024,
    dup_ratio: float = 0.05,
    ooo_ratio: float = 0.10,
    bad_ratio: float = 0.001,
    seed: int = 42,
    corpus: Path | None = None,
) -> Dataset:
    """``n`` records of realistic events (see the module docstring)."""
    rng = random.Random(seed)
    templates = load_templates(corpus, size)
    by_family: dict[str, list[Template]] = {}
    for t in templates:
        by_family.setdefault(t.family, []).append(t)
    sm_families = sorted(f for f in by_family if f.startswith("sm:"))
    az_families = sorted(f for f in by_family if f.startswith("az:"))
    n_bad = round(n * bad_ratio)
    n_dup = round(n * dup_ratio)
    n_unique = max(0, n - n_bad - n_dup)
    subjects = max(1, min(subjects, n_unique or 1))

    subs: list[_Subject] = []
    for i in range(subjects):
        if i % 2 == 0:
            fam = sm_families[rng.randrange(len(sm_families))]
            shape = "eventbridge"
        else:
            fam = az_families[rng.randrange(len(az_families))]
            shape = "eventgrid" if rng.random() < 0.5 else "cloudevents"
        subj = _new_subject(i, fam, shape, rng)
        if shape == "eventbridge":
            first = by_family[fam][0].event
            subj.region, subj.account = str(first.get("region")), str(first.get("account"))
        subs.append(subj)

    # stream order of unique events: a random interleaving; the k-th appearance of a subject is its k-th event
    order = [i % subjects for i in range(n_unique)]
    rng.shuffle(order)
    per_subject: list[list[int]] = [[] for _ in range(subjects)]
    for pos, s in enumerate(order):
        per_subject[s].append(pos)

    # out of order: swap disjoint pairs of neighbouring events of one subject
    n_swaps = round(n_unique * ooo_ratio)
    candidates = [(s, k) for s, plist in enumerate(per_subject) for k in range(len(plist) - 1)]
    rng.shuffle(candidates)
    used: set[tuple[int, int]] = set()
    slot_of: dict[int, int] = {}  # stream position -> position whose event it carries
    swaps = 0
    for s, k in candidates:
        if swaps >= n_swaps:
            break
        if (s, k) in used or (s, k + 1) in used:
            continue
        used.add((s, k))
        used.add((s, k + 1))
        a, b = per_subject[s][k], per_subject[s][k + 1]
        slot_of[a], slot_of[b] = b, a
        swaps += 1

    # render unique events in sequence order, then place them at their (possibly swapped) stream positions
    rendered: list[bytes] = [b""] * n_unique
    ids: list[str] = [""] * n_unique
    keys: list[bytes] = [b""] * n_unique
    shapes: Counter[str] = Counter()
    for s, plist in enumerate(per_subject):
        subj = subs[s]
        family = by_family[subj.family]
        shape_templates = [tpl for tpl in family if tpl.shape == subj.shape] or family
        start = _BASE_TIME + timedelta(seconds=s * 3, milliseconds=rng.randrange(1000))
        for k, pos in enumerate(plist):
            tpl = shape_templates[k % len(shape_templates)]
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            when = start + timedelta(seconds=k)
            at = slot_of.get(pos, pos)
            rendered[at] = _render(tpl, subj, k, event_id, when, size)
            ids[at] = event_id
            keys[at] = subj.name.encode()
            shapes[tpl.shape] += 1

    # duplicates re-sent a little later; malformed records anywhere
    placed: list[tuple[float, bytes | None, bytes, str | None]] = [
        (float(i), keys[i], rendered[i], ids[i]) for i in range(n_unique)
    ]
    for _ in range(n_dup if n_unique else 0):
        i = rng.randrange(n_unique)
        placed.append((i + rng.randint(1, 2000) + 0.5, keys[i], rendered[i], ids[i]))
    for _ in range(n_bad if n_unique else 0):
        i = rng.randrange(n_unique)
        placed.append((rng.uniform(0, n_unique), None, _malformed(rendered[i], rng), None))
    placed.sort(key=lambda p: p[0])
    return Dataset(
        records=[(k, v) for _, k, v, _ in placed],
        ids=[i for _, _, _, i in placed],
        unique=n_unique,
        duplicates=n_dup if n_unique else 0,
        out_of_order=swaps,
        malformed=n_bad if n_unique else 0,
        subjects=subjects,
        shapes=dict(shapes),
    )


def iter_jsonl(ds: Dataset) -> Iterator[bytes]:
    """The record values as JSON Lines (for ``bridge replay``)."""
    for _, v in ds.records:
        yield v + b"\n"
