"""astro.py in real MicroPython: Seoul's sunrise and sunset against the almanac.

The same almanac table as tests/unit/test_astro.py (KASI / KMA values, cited there);
one interpreter run computes every date and the CPython side compares, and also checks
that MicroPython and CPython agree to the second.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from ..unit.test_astro import ALMANAC, KST_MIN, SEOUL, TOLERANCE_S, _id, _seconds
from .conftest import FIRMWARE_LIB, MicroPython

pytestmark = pytest.mark.micropython

if str(FIRMWARE_LIB) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_LIB))

import astro  # noqa: E402

DATES = sorted({case[0] for case in ALMANAC}) + [(2026, m, 1) for m in range(1, 13)]

SCRIPT = f"""
import json
import astro
out = {{}}
for y, m, d in {DATES!r}:
    t = astro.sun_times(astro.days_from_civil(y, m, d), {SEOUL[0]!r}, {SEOUL[1]!r}, {KST_MIN})
    out["%04d-%02d-%02d" % (y, m, d)] = list(t)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def device_times(micropython: MicroPython) -> dict[str, Any]:
    out = micropython.run(SCRIPT, [FIRMWARE_LIB / "compat.py", FIRMWARE_LIB / "astro.py"])
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(("date", "event", "published", "source"), ALMANAC, ids=_id)
def test_seoul_matches_almanac_in_micropython(
    device_times: dict[str, Any],
    date: tuple[int, int, int],
    event: str,
    published: str,
    source: str,
) -> None:
    rise, sset = device_times[_id(date)]
    got = rise if event == "rise" else sset
    assert isinstance(got, int)
    assert abs(got - _seconds(published)) <= TOLERANCE_S, f"{date} {event} ({source})"


def test_micropython_agrees_with_cpython(device_times: dict[str, Any]) -> None:
    for y, m, d in DATES:
        want = astro.sun_times(astro.days_from_civil(y, m, d), SEOUL[0], SEOUL[1], KST_MIN)
        got = device_times[_id((y, m, d))]
        assert want is not None
        assert abs(got[0] - want[0]) <= 1 and abs(got[1] - want[1]) <= 1
