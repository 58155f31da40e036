"""No silent skip: every class of input ends the same way through ``bridge replay`` and through the pipeline as
``bridge run`` builds it (``bridge.app.build_pipeline``, fed the raw bodies as a source delivers them): published,
dropped on purpose with a counter, or dead-lettered with the same reason; never nothing."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from bridge import app, cli
from bridge.config import load_config
from bridge.pipeline.core import Pipeline
from bridge.testing.events import sagemaker_training_event
from bridge.testing.memory import CapturingSink, InMemorySource


def good(n: int) -> dict[str, Any]:
    return sagemaker_training_event(f"good-{n}", f"job{n}", n)


def body(value: Any) -> bytes:
    return orjson.dumps(value)


NO_ID = {k: v for k, v in good(9).items() if k != "id"}

# (class, input bodies, expected (published ids, dead-letter reasons, dropped duplicates))
CLASSES: list[tuple[str, list[bytes], tuple[list[str], list[str], int]]] = [
    ("empty body", [b""], ([], ["malformed JSON: empty message body"], 0)),
    ("whitespace only", [b" \t  "], ([], ["malformed JSON: message body is whitespace only"], 0)),
    ("invalid utf-8 deep in the line", [b'{"id": "x", "detail": "caf\xe9"}'],
     ([], ["malformed JSON: invalid UTF-8 (byte 0xe9) at line 1 column 27 (byte 26)"], 0)),
    ("malformed JSON", [b'{"id": '], ([], ["malformed JSON: unexpected end of data at line 1 column 8"], 0)),
    ("JSON number", [b"42"], ([], ["unsupported shape: JSON number is not an object or array"], 0)),
    ("JSON string", [b'"hello"'], ([], ["unsupported shape: JSON string is not an object or array"], 0)),
    ("JSON null", [b"null"], ([], ["unsupported shape: JSON null is not an object or array"], 0)),
    ("JSON boolean", [b"true"], ([], ["unsupported shape: JSON boolean is not an object or array"], 0)),
    ("missing required field", [body(NO_ID)], ([], ["missing required field 'id'"], 0)),
    ("empty required field", [body({**good(8), "id": ""})], ([], ["empty required field 'id'"], 0)),
    ("unknown shape", [body({"hello": "world"})],
     ([], ["unrecognised event shape: object has none of eventType/type/detail-type"], 0)),
    ("empty batch array", [b"[]"], ([], ["unsupported shape: empty JSON array"], 0)),
    ("array with bad members", [body([good(1), 42, NO_ID])],
     (["good-1"], ["unsupported shape: JSON array element 1 is not an object; "
                   "missing required field 'id' (JSON array element 2)"], 0)),
    ("batch array", [body([good(2), good(3)])], (["good-2", "good-3"], [], 0)),
    ("one event", [body(good(4))], (["good-4"], [], 0)),
    ("duplicate", [body(good(5)), body(good(5))], (["good-5"], [], 1)),
]


def outcome(p: Pipeline, published: list[str], dead: list[str]) -> tuple[list[str], list[str], int]:
    dropped = p.metrics.registry.get_sample_value("bridge_duplicates_dropped_total", {"source": "replay"})
    dropped = dropped or p.metrics.registry.get_sample_value("bridge_duplicates_dropped_total", {"source": "kafka"})
    return sorted(published), sorted(dead), int(dropped or 0)


async def through_replay(bodies: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str], int]:
    built: list[Pipeline] = []
    real = app.build_pipeline

    def keep(*args: Any, **kwargs: Any) -> Pipeline:
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(app, "build_pipeline", keep)
    out = io.BytesIO()
    assert await cli._replay(load_config(None), io.BytesIO(b"".join(b + b"\n" for b in bodies)), out) == 0
    lines = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert len(built) == 1
    return outcome(built[0], [x["event"]["id"] for x in lines if x["route"] != "deadletter"],
                   [x["error"] for x in lines if x["route"] == "deadletter"])


async def through_run(bodies: list[bytes]) -> tuple[list[str], list[str], int]:
    sink = CapturingSink()
    p = app.build_pipeline(load_config(None), sink)
    src = InMemorySource(bodies, name="kafka")
    src.close_input()
    async for batch in src.batches():
        await p.submit(batch)
    await p.flush()
    await p.close()
    assert src.all_acked_once
    return outcome(p, [r.event.id for r in sink.routed], [d.reason for d in sink.dead])


@pytest.mark.parametrize(("bodies", "expected"), [c[1:] for c in CLASSES], ids=[c[0] for c in CLASSES])
async def test_each_input_class_ends_alike_in_replay_and_run(
    bodies: list[bytes], expected: tuple[list[str], list[str], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The class's input is published, dropped as a counted duplicate or dead-lettered with its reason, the same
    in replay as in run, and every input message is accounted for."""
    replayed = await through_replay(bodies, monkeypatch)
    ran = await through_run(bodies)
    assert replayed == ran == (sorted(expected[0]), sorted(expected[1]), expected[2])
    published, dead, dropped = ran
    assert published or dead or dropped, "an input that ended nowhere"
