"""Shared helpers for the normalizer tests: the corpus (a copy of shared/corpus) and golden files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from bridge.envelope import CloudEvent
from bridge.model import RawMessage
from bridge.normalize import normalize

HERE = Path(__file__).parent
CORPUS_DIR = HERE / "corpus"
GOLDEN_DIR = HERE / "golden"
CORPUS_FILES = ("azureml_eventgrid", "azureml_cloudevents", "sagemaker")


def corpus_lines(name: str) -> list[bytes]:
    """The non-empty lines of one corpus file, as raw message bodies."""
    return [line.rstrip(b"\n") for line in (CORPUS_DIR / f"{name}.jsonl").read_bytes().splitlines() if line]


def one(body: bytes, headers: dict[str, bytes] | None = None) -> CloudEvent:
    """Normalize a message that must hold exactly one event."""
    events = normalize(RawMessage(body=body, headers=headers or {}))
    assert len(events) == 1
    return events[0]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def golden_lines(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (GOLDEN_DIR / f"{name}.jsonl").read_bytes().splitlines() if line]


def regenerate() -> None:
    """Rewrite the golden files from the current code (review the diff before keeping it)."""
    GOLDEN_DIR.mkdir(exist_ok=True)
    for name in CORPUS_FILES:
        out = [orjson.dumps(one(line).to_dict(), option=orjson.OPT_SORT_KEYS) for line in corpus_lines(name)]
        (GOLDEN_DIR / f"{name}.jsonl").write_bytes(b"\n".join(out) + b"\n")


if __name__ == "__main__":  # pragma: no cover - developer tool: python -m tests.normalize.corpus_util
    regenerate()
