"""Timestamps: one fixed canonical format; the fast path agrees with the general datetime path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from bridge.normalize.timeutil import format_micros, micros_of, normalize_time, parse_instant


def test_formats() -> None:
    """Each accepted input form becomes the 27-character UTC form with six fractional digits."""
    cases = {
        "2017-06-26T18:41:00.9584103Z": "2017-06-26T18:41:00.958410Z",
        "2018-10-06T12:26:13Z": "2018-10-06T12:26:13.000000Z",
        "2018-10-06T12:26:13.5Z": "2018-10-06T12:26:13.500000Z",
        "2018-10-06t12:26:13z": "2018-10-06T12:26:13.000000Z",
        "2019-07-04T00:00:00+00:00": "2019-07-04T00:00:00.000000Z",
        "2019-07-04T02:30:00-01:00": "2019-07-04T03:30:00.000000Z",
        "2019-07-04T00:00:00": "2019-07-04T00:00:00.000000Z",
        "1583831889050": "2020-03-10T09:18:09.050000Z",
        "1583831889": "2020-03-10T09:18:09.000000Z",
        1592411994287.0: "2020-06-17T16:39:54.287000Z",
        1611624059000: "2021-01-26T01:20:59.000000Z",
    }
    for raw, expected in cases.items():
        assert normalize_time(raw) == expected, raw


def test_invalid_inputs() -> None:
    """Impossible dates, leap seconds, garbage, booleans and non-finite numbers are not timestamps."""
    for raw in (
        "2019-02-30T00:00:00Z",
        "2019-13-01T00:00:00Z",
        "2019-07-04T00:00:60Z",
        "Timestamp",
        "",
        "2019-07-04T00:00:00.1a2Z",
        True,
        None,
        float("inf"),
        [1],
        "١٢٣",
    ):
        assert normalize_time(raw) is None, raw
    assert parse_instant("nope") is None


@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=-720, max_value=720),
)
def test_fast_path_agrees_with_datetime(d: datetime, digits: int, offset_min: int) -> None:
    """Fast-path strings (Z, any fraction length) and offset strings give what datetime arithmetic gives."""
    frac = f"{d.microsecond:06d}{d.microsecond % 997:03d}"[:digits]
    base = d.replace(microsecond=0).isoformat()
    text = base + ("." + frac if digits else "") + "Z"
    truncated_us = int((frac + "000000")[:6]) if digits else 0
    expected = d.replace(microsecond=truncated_us).isoformat(timespec="microseconds") + "Z"
    assert normalize_time(text) == expected
    assert micros_of(expected) == parse_instant(text)
    local = d.replace(tzinfo=UTC) + timedelta(minutes=offset_min)
    sign = "+" if offset_min >= 0 else "-"
    off = f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    shifted = local.replace(tzinfo=None).isoformat(timespec="microseconds") + off
    assert normalize_time(shifted) == d.isoformat(timespec="microseconds") + "Z"


@given(st.integers(min_value=0, max_value=253402300799999999))
def test_micros_round_trip(us: int) -> None:
    """format_micros and micros_of are inverse; the canonical string is always 27 characters."""
    text = format_micros(us)
    assert text is not None and len(text) == 27
    assert micros_of(text) == us
    assert normalize_time(text) == text
