"""Micro-benchmark (not a test): normalize 100k corpus messages, one process, one core.

Run: .venv/bin/python -m tests.normalize.bench_normalize
"""

from __future__ import annotations

import time

import orjson

from bridge.model import RawMessage
from bridge.normalize import normalize_all
from tests.normalize.corpus_util import CORPUS_FILES, corpus_lines

N = 100_000


def main() -> None:
    lines = [line for name in CORPUS_FILES for line in corpus_lines(name)]
    msgs = [RawMessage(body=lines[i % len(lines)]) for i in range(N)]
    for m in msgs[:2000]:
        normalize_all(m)
    best = float("inf")
    count = 0
    for _ in range(5):
        start = time.perf_counter()
        count = 0
        for m in msgs:
            count += len(normalize_all(m)[0])
        best = min(best, time.perf_counter() - start)
    start = time.perf_counter()
    for m in msgs:
        orjson.loads(m.body)
    parse = time.perf_counter() - start
    print(
        f"normalize_all: {count} events in {best:.3f} s (best of 5) = {count / best:,.0f} events/s, "
        f"{best / count * 1e6:.2f} us/event; orjson.loads alone {parse / N * 1e6:.2f} us/event"
    )


if __name__ == "__main__":
    main()
