"""The security light in real MicroPython through a whole night in Seoul.

The scenario, the driver and the expectations are tests/unit/test_light.py's: downlinks
built by the gateway's codec, a storm, the sunset and sunrise of 2023-12-31/2024-01-01
(KASI: 17:23 and 07:47, within two minutes), a PIR boost and its fade, a lamp that fails
and is repaired, commands executed and a replayed one refused, the gateway gone and back.
Every frame the light sent is decoded with the gateway codec on the CPython side.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..unit.test_light import DRIVER, LIGHT_FILES, check_night, night_scenario, run_in_cpython
from .conftest import MicroPython

pytestmark = pytest.mark.micropython


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    return night_scenario()


@pytest.fixture(scope="module")
def night(micropython: MicroPython, scenario: dict[str, Any]) -> dict[str, Any]:
    script = f"SCENARIO = {json.dumps(json.dumps(scenario))}\n" + DRIVER
    out = micropython.run(script, LIGHT_FILES)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_light_through_a_night_in_seoul_in_micropython(night: dict[str, Any]) -> None:
    check_night(night)


def test_micropython_and_cpython_send_the_same_frames(
    night: dict[str, Any], scenario: dict[str, Any]
) -> None:
    host = run_in_cpython(scenario)
    assert night["frames"] == host["frames"]
    assert night["levels"] == host["levels"]
