"""The ``sequence`` extension: one fixed-width string per event, ordering events within their subject.

Formats (plain string comparison orders them; see docs/mapping.md):

- ``s:`` + 20 zero-padded decimal digits: an explicit numeric sequencer (CloudEvents ``sequence``
  attribute, ``ce_sequence`` header, or a ``sequencer`` field in ``data``/``detail``), e.g.
  ``s:00000000000000000042``. A non-numeric (or longer than 20 digits) sequencer is kept verbatim after
  ``s:~`` and so sorts after every numeric one and lexicographically among its peers (the CloudEvents
  sequence extension says its values are lexicographically ordered).
- ``t:<time>:<rank>``: the event time (canonical 27-character form, refined by ``LastModifiedTime`` when
  that is within one second of it) and the one-digit lifecycle rank of the status, e.g.
  ``t:2018-10-06T12:26:13.000000Z:5``. A terminal status has a higher rank, so at the same instant it
  sorts after a non-terminal one.

A subject normally uses one scheme; if it mixes them, every ``s:`` sorts before every ``t:``. A value that is
already in one of these forms (our own output fed back in) is kept as is.
"""

from __future__ import annotations

from typing import Final

from bridge.normalize.mapping import RANK
from bridge.normalize.timeutil import format_micros, micros_of, normalize_time, parse_instant

SEQ_WIDTH: Final = 20
REFINE_WINDOW_US: Final = 1_000_000
_TIME_SEQ_LEN: Final = 2 + 27 + 2


def _is_own(value: str) -> bool:
    if value.startswith("t:"):
        return len(value) == _TIME_SEQ_LEN and value[29] == ":" and value[30].isdigit()
    if value.startswith("s:~"):
        return True
    return len(value) == 2 + SEQ_WIDTH and value.startswith("s:") and value[2:].isdigit()


def explicit_sequence(value: object) -> str | None:
    """The sequence string of an explicit sequencer value; ``None`` when the value is not usable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, int):
        text = str(value)
        if value >= 0 and len(text) <= SEQ_WIDTH:
            return "s:" + text.zfill(SEQ_WIDTH)
        return "s:~" + text
    if isinstance(value, str) and value:
        if value.isascii() and value.isdigit():
            digits = value.lstrip("0") or "0"
            if len(digits) <= SEQ_WIDTH:
                return "s:" + digits.zfill(SEQ_WIDTH)
        elif _is_own(value):
            return value
        return "s:~" + value
    return None


def payload_sequencer(data: object) -> object:
    """The ``sequencer`` field of a payload (``data`` / ``detail``), or ``None``."""
    if type(data) is dict:
        return data.get("sequencer")
    return None


def compute_sequence(
    time: str, status: str | None, *, explicit: object = None, refine: object = None
) -> str:
    """The sequence of an event with canonical ``time`` and canonical ``status``.

    ``explicit`` is an explicit sequencer (wins when usable); ``refine`` a finer payload timestamp
    (ISO string, epoch-millis number or digit string) used instead of ``time`` when within one second of it.
    """
    if explicit is not None:
        seq = explicit_sequence(explicit)
        if seq is not None:
            return seq
    if refine is not None:
        if type(refine) is str:
            fine_text = normalize_time(refine)  # cached; ISO and epoch-digit strings
            if fine_text is not None and fine_text != time:
                if fine_text[:19] == time[:19]:  # same whole second: within the window, no arithmetic
                    time = fine_text
                else:
                    delta = micros_of(fine_text) - micros_of(time)
                    if -REFINE_WINDOW_US < delta < REFINE_WINDOW_US:
                        time = fine_text
        else:
            fine = parse_instant(refine)
            if fine is not None and -REFINE_WINDOW_US < fine - micros_of(time) < REFINE_WINDOW_US:
                time = format_micros(fine) or time
    return "t:" + time + ":" + str(RANK.get(status, 0))
