"""`anshim demo` end to end: the simulated fleet, real gateways, a real broker."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import Broker
from tests.integration.helpers import ControlCenter

pytestmark = pytest.mark.e2e


async def _demo(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.anshim.cli",
        "demo",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_demo_alarm_reaches_mqtt_and_the_operator_acknowledges(broker: Broker) -> None:
    async with ControlCenter(broker.url).running() as cc:
        code, out, err = await _demo(
            "--fast",
            "--duration",
            "45",
            "--seed",
            "4",
            "--press-every",
            "10",
            "--mqtt",
            broker.url,
            "--json",
        )
        assert code == 0, err
        summary = json.loads(out)
        assert summary["presses"] >= 3
        assert summary["acknowledged"]["n"] >= 1
        # Every latency is at least an ALARM's time on air (20 B at SF9: 185 ms).
        assert summary["raised"]["median_s"] >= 0.185
        assert summary["delivered"]["median_s"] >= summary["raised"]["median_s"]
        _, body, _ = await cc.wait_for(
            lambda t, b: "/alarm/" in t and isinstance(b, dict) and b.get("state") == "acknowledged"
        )
        assert body["operator"] == "상황실 (simulated)"
        assert body["place"]["national_point_number"]
        assert body["cameras"]
        # Two gateways heard presses; each press has one event id on the broker.
        ids = {
            b["event_id"] for t, b in cc.topics("/alarm/") if isinstance(b, dict) and "state" in b
        }
        assert len(ids) <= summary["incidents"]


async def test_demo_prints_the_story_of_each_press() -> None:
    code, out, _ = await _demo("--fast", "--duration", "30", "--seed", "2", "--press-every", "8")
    assert code == 0
    assert "PRESS" in out and "DELIVERED" in out and "ACKNOWLEDGED" in out
    assert "summary:" in out and "press → delivered" in out


async def test_demo_rejects_a_bad_option() -> None:
    code, _, err = await _demo("--duration", "-5")
    assert code == 2 and "--duration must be positive" in err
