"""Timestamps on MQTT: the same text datetime's isoformat gives, for any instant."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from gateway.messages import iso


def _reference(ts: float) -> str:
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_iso_matches_datetime_for_any_instant(ts: float) -> None:
    assert iso(ts) == _reference(ts)


def test_iso_rounds_like_datetime_at_the_edges_of_a_second() -> None:
    for ts in (1_795_000_000.9999995, 1_795_000_000.0004999, 1_795_000_000.0005, 0.0):
        assert iso(ts) == _reference(ts)
    assert iso(1_795_000_000.25) == "2026-11-18T11:06:40.250Z"
    assert iso(None) is None
