"""The radio bridge in real MicroPython: relays, transmits on time, survives garbage.

The scenario, driver and expectations are tests/unit/test_bridge.py's: 100 received
packets relayed to link bytes that the *gateway's* `protocol.link` decodes here in
CPython, TX requests executed at their bridge timestamp (or refused: too late, invalid,
queue full, channel busy), CONFIG and STATUS, and garbage on the serial line.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..unit.test_bridge import BRIDGE_FILES, DRIVER, check_relay, relay_scenario, run_in_cpython
from .conftest import MicroPython

pytestmark = pytest.mark.micropython


@pytest.fixture(scope="module")
def scenario() -> dict[str, Any]:
    return relay_scenario()


@pytest.fixture(scope="module")
def relay(micropython: MicroPython, scenario: dict[str, Any]) -> dict[str, Any]:
    script = f"SCENARIO = {json.dumps(json.dumps(scenario))}\n" + DRIVER
    out = micropython.run(script, BRIDGE_FILES)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_bridge_in_micropython_relays_and_transmits(
    relay: dict[str, Any], scenario: dict[str, Any]
) -> None:
    check_relay(relay, scenario)


def test_micropython_and_cpython_write_the_same_bytes(
    relay: dict[str, Any], scenario: dict[str, Any]
) -> None:
    assert relay["wire"] == run_in_cpython(scenario)["wire"]
