"""Two community centres hear the same bell: one event id upstream, one gateway answers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

import pytest

from gateway import db
from gateway.registry import Registry
from gateway.transports.sim import SimTransport
from protocol import frames as fr
from tests.conftest import ROOT
from tests.integration.conftest import Broker
from tests.integration.helpers import (
    ControlCenter,
    SimDevice,
    register_fleet,
    running_gateway,
    settings,
)

pytestmark = pytest.mark.integration


def anshim(*args: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tools.anshim.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr


async def test_second_gateway_listens_and_the_home_gateway_answers(
    tmp_path: Path, broker: Broker
) -> None:
    home = settings(tmp_path / "a", mqtt_url=broker.url, gateway_id="gw-jeongneung")
    other = replace(settings(tmp_path / "b", mqtt_url=broker.url), gateway_id="gw-donam")
    fleet = register_fleet(home)
    # The crew registers the same devices at the neighbouring gateway, listen-only.
    export = tmp_path / "devices.csv"
    anshim(
        "device", "export", "--data-dir", str(home.data_dir), "--with-keys", "--out", str(export)
    )
    anshim("device", "import", str(export), "--data-dir", str(other.data_dir), "--listen-only")
    conn = db.connect(other.database)
    assert all(d.listen_only for d in Registry(conn).devices())
    conn.close()
    bell, near = fleet["bell"], fleet["near"]
    radio_a, radio_b = SimTransport("bridge"), SimTransport("bridge")
    async with ControlCenter(broker.url).running() as cc, AsyncExitStack() as stack:
        gw_a = await stack.enter_async_context(running_gateway(home, [radio_a]))
        gw_b = await stack.enter_async_context(running_gateway(other, [radio_b]))
        data = bell.frame(fr.Alarm(0, 1, 3600, 0), flags=fr.Flags.RX_OPEN)
        radio_b.inject(data, rssi=-95)  # both centres hear the press
        radio_a.inject(data, rssi=-110)
        event_id = fr.event_id(bell.device_id, bell.up)
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["gateway_id"] == "gw-donam")
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "delivered")
        await cc.publish(
            f"device/{near.device_id:08x}/command", {"command": "strobe", "seconds": 30}
        )
        await asyncio.sleep(0.3)
        assert gw_a.core is not None and gw_b.core is not None
        await gw_a.core.drain_tasks()
        # One event id on the broker, from both gateways.
        ids = {b["event_id"] for t, b in cc.topics("/alarm/") if "state" in b}
        assert ids == {event_id}
        assert {b["gateway_id"] for _, b in cc.topics(f"/alarm/{event_id}")} == {
            "gw-jeongneung",
            "gw-donam",
        }

        # Only the home gateway transmits: one ACK reaches the bell, no second one to
        # collide with it; the light gets one strobe, not two.
        def to(dev: SimDevice, radio: SimTransport) -> list[fr.Payload]:
            return [
                dev.decode_downlink(d).payload
                for d, _ in radio.sent
                if int.from_bytes(d[2:6], "big") == dev.device_id
            ]

        assert radio_b.sent == []
        assert to(bell, radio_a) == [fr.Ack(bell.up, fr.AlarmState.DELIVERED)]
        assert fr.Strobe(30) in to(near, radio_a)
        assert gw_b.core.metrics.counts["replies_left_to_home_gateway"] == 1
