"""Profiling the bridge process with py-spy (sampling from outside, ``--nonblocking``), and a summary.

``python -m bench.run --profile`` attaches ``py-spy record --format raw`` to the bridge for the throughput
run and writes the collapsed stacks to ``.bench/profile.raw``; ``summarize`` turns them into the share of
samples per function (self and inclusive) and per pipeline stage.
``python -m bench.profile .bench/profile.raw`` prints that summary again.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Pipeline stages: a sample counts for the first stage whose marker appears in its stack (innermost first).
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("normalize", ("bridge/normalize/",)),
    ("filters/route", ("bridge/filters/", "bridge/pipeline/router.py")),
    ("dedup", ("bridge/pipeline/dedup.py",)),
    ("reorder", ("bridge/pipeline/reorder.py",)),
    ("sink encode (CloudEvents headers)", ("bridge/sinks/kafka.py",)),
    ("metrics", ("prometheus_client/",)),
    ("aiokafka producer", ("aiokafka/producer/",)),
    ("aiokafka consumer", ("aiokafka/consumer/",)),
    ("aiokafka protocol/connection", ("aiokafka/",)),
    ("pipeline core/tracking", ("bridge/pipeline/",)),
    ("source/daemon", ("bridge/sources/", "bridge/daemon.py")),
    ("asyncio event loop", ("asyncio/",)),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def pyspy_binary() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, out: Path, rate: int = 200) -> subprocess.Popen[bytes]:
    exe = pyspy_binary()
    if exe is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(rate), "--nonblocking",
           "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _short(file: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def _frames(stack: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw)
        if m:
            out.append((m["func"], _short(m["file"])))
        else:
            out.append((raw, ""))
    return out


def summarize(path: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample shares per function, and shares per pipeline stage."""
    self_c: Counter[str] = Counter()
    incl_c: Counter[str] = Counter()
    stage_c: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        n = int(count_s)
        total += n
        frames = _frames(stack)
        if frames:
            func, file = frames[-1]
            self_c[f"{func} ({file})"] += n
        for name in {f"{f} ({fl})" for f, fl in frames}:
            incl_c[name] += n
        files = [fl for _, fl in reversed(frames)]
        stage = "other"
        for fl in files:
            hit = next((s for s, marks in STAGES if any(m in fl for m in marks)), None)
            if hit is not None:
                stage = hit
                break
        stage_c[stage] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {"samples": total, "stages": pct(stage_c), "self": pct(self_c), "inclusive": pct(incl_c)}


def render(summary: dict[str, Any]) -> str:
    lines = [f"py-spy samples: {summary['samples']}", "",
             "by pipeline stage (innermost bridge/library frame):"]
    lines += [f"  {p:5.1f}%  {name}" for name, p in summary["stages"]]
    lines += ["", "self time, top functions:"]
    lines += [f"  {p:5.1f}%  {name}" for name, p in summary["self"]]
    lines += ["", "inclusive time, top functions:"]
    lines += [f"  {p:5.1f}%  {name}" for name, p in summary["inclusive"]]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(summarize(Path(sys.argv[1] if len(sys.argv) > 1 else ".bench/profile.raw"), top=40)))
