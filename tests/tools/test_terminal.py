"""What the command-line tools share: --since/--until values, ages, the table, the progress line."""

from __future__ import annotations

import io

import pytest

from bridge.tools.state_view import table
from bridge.tools.terminal import Progress, UsageError, age, parse_when


def test_times_and_ages_for_humans() -> None:
    """Durations and times for --since; ages in the largest whole unit; the table aligns its columns."""
    assert parse_when("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_when("2026-01-01T00:00:00Z") == 1767225600.0
    with pytest.raises(UsageError):
        parse_when("soon")
    assert [age(s) for s in (5, 125, 7300, 200_000, -70)] == ["5s", "2m", "2h", "2d", "+1m"]
    text = table([{"subject": "s", "platform": "p", "type": "t", "time": "2026-01-01T00:00:00Z"}], now=1767225660.0)
    assert text.splitlines()[1].split() == ["s", "p", "t", "-", "2026-01-01T00:00:00Z", "1m"]


def test_progress_bar_is_rewritten_in_place_and_erased_and_silent_off_a_terminal() -> None:
    """On a terminal the bar is one line rewritten with carriage returns and erased at the end; on a pipe
    (not a tty) nothing is written at all."""
    tty = io.StringIO()
    bar = Progress("redrive dlq", tty, force=True, bar=True)
    bar.update(0, 200, final=True)
    bar.update(50, 200, "redriven 50", final=True)
    bar.close()
    assert tty.getvalue() == (
        "\r[" + " " * 30 + "] redrive dlq: 0/200 (0%)\x1b[K"
        "\r[" + "#" * 7 + " " * 23 + "] redrive dlq: 50/200 (25%)  redriven 50\x1b[K\r\x1b[K"
    )
    pipe = io.StringIO()
    quiet = Progress("redrive dlq", pipe, bar=True)
    quiet.update(5, 10, final=True)
    quiet.close()
    assert pipe.getvalue() == ""
