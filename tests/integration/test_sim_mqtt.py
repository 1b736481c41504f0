"""The simulated fleet end to end with real parts: a real mosquitto and the serial path.

* A press on a simulated bell reaches the control center on MQTT, and the simulated
  operator's acknowledgement (published to the broker) goes back through the gateway to
  the bell, which shows "help is coming".
* Two gateways (two journals) hear the same press: the control center gets it under one
  event id, from both.
* The serial path: the bridge firmware on the simulated radio, on a pty, into the
  gateway's real SerialTransport.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import Broker
from tests.integration.helpers import ControlCenter
from tools.sim import Operator, Simulation, parse_scenario, vloop

pytestmark = pytest.mark.integration

JEONGNEUNG = {"id": "gw-jeongneung", "label": "정릉3동 주민센터", "lat": 37.6094, "lon": 127.0058}
DONAM = {"id": "gw-donam", "label": "돈암2동 주민센터", "lat": 37.5953, "lon": 127.0196}
BELL = {
    "id": "0a000101",
    "kind": "bell",
    "lat": 37.6030,
    "lon": 127.0120,  # between the two centres, ~900 m from each
    "label": "정릉천 비상벨 1",
    "national_point_number": "다사 5664 5671",
    "plate_id": "성북-12-001",
    "trail": "정릉천 산책로",
    "cameras": ["CCTV-SB-1090", "CCTV-SB-1091"],
}


def scenario(*gateways: dict[str, Any], serial: bool = False) -> Any:
    return parse_scenario(
        {
            "name": "mqtt",
            "site": "seongbuk",
            "start": "2026-11-26T22:00:00+09:00",
            "boot": "frozen",
            "radio": {"path_loss": {"shadowing_db": 0, "fading_db": 0}},
            "gateways": [{**g, "serial": serial} for g in gateways],
            "devices": [BELL],
            "presses": [{"device": "0a000101", "at_s": 15}],
        }
    )


def test_press_reaches_mqtt_and_the_operator_ack_reaches_the_bell(broker: Broker) -> None:
    sim = Simulation(
        scenario(JEONGNEUNG),
        seed=2,
        mqtt_url=broker.url,
        operator=Operator(ack_after_s=(3, 3), resolve_after_s=None),
        stagger_s=5,
    )

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        async with ControlCenter(broker.url).running() as cc, sim.running():
            _, raised, _ = await cc.wait_for(
                lambda t, b: "/alarm/" in t and b.get("state") == "raised", timeout=120
            )
            event_id = raised["event_id"]
            _, acked, _ = await cc.wait_for(
                lambda t, b: t.endswith(event_id) and b.get("state") == "acknowledged",
                timeout=120,
            )
            bell = sim.devices[0x0A000101]
            for _ in range(200):  # the next keep-alive's window carries "help is coming"
                if bell.state == 3:
                    break
                await asyncio.sleep(1)
            return raised, acked

    raised, acked = vloop.run(main(), max_speed=50)
    [press] = sim.presses
    assert raised["event_id"] == press.event_id
    assert raised["place"]["label"] == "정릉천 비상벨 1"
    assert raised["place"]["national_point_number"] == "다사 5664 5671"
    assert raised["cameras"] == ["CCTV-SB-1090", "CCTV-SB-1091"]
    assert raised["receptions"][0]["receiver"] == "lora"
    assert acked["operator"] == "상황실 (simulated)"
    assert press.mqtt is not None and press.mqtt >= press.gateway_rx  # PUBACK after reception
    assert press.acknowledged is not None  # the bell heard "help is coming"
    r = sim.report()
    assert r["presses"]["mqtt_basis"].startswith("measured")
    assert r["presses"]["press_to_mqtt_s"]["n"] == 1


def test_two_gateways_one_event_id_on_the_broker(broker: Broker) -> None:
    sim = Simulation(scenario(JEONGNEUNG, DONAM), seed=4, mqtt_url=broker.url, stagger_s=5)

    async def main() -> list[tuple[str, Any]]:
        async with ControlCenter(broker.url).running() as cc, sim.running():
            seen: set[str] = set()

            def both(topic: str, body: Any) -> bool:
                if "/alarm/" in topic and isinstance(body, dict) and "gateway_id" in body:
                    seen.add(body["gateway_id"])
                return len(seen) == 2

            await cc.wait_for(both, timeout=120)
            return cc.topics("/alarm/")

    alarms = vloop.run(main(), max_speed=50)
    assert {b["gateway_id"] for _, b in alarms} == {"gw-jeongneung", "gw-donam"}
    assert len({b["event_id"] for _, b in alarms}) == 1  # one press, one event id
    assert len({t for t, _ in alarms}) == 1
    assert {len(g.devices) for g in sim.gateways} == {1}  # registered at both ...
    assert sum(len(g.answers) for g in sim.gateways) == 1  # ... answered by its home one


def test_the_serial_path_through_the_bridge_firmware_on_a_pty() -> None:
    sim = Simulation(
        scenario(JEONGNEUNG, serial=True),
        seed=5,
        operator=None,
        stagger_s=5,
        record_events=True,
    )

    async def main() -> None:
        async with sim.running():
            await asyncio.sleep(30)

    vloop.run(main())
    [press] = sim.presses
    assert press.delivered is not None  # the ACK went gateway -> pty -> bridge -> air -> bell
    gw = sim.gateways[0]
    assert gw.pty is not None and gw.pty.sent >= 1
    assert gw.pty.bridge.rx_ok >= 1 and gw.pty.bridge.tx_ok >= 1
    assert [e.data["state"] for e in sim.events if e.kind == "alarm"][:2] == [
        "raised",
        "delivered",
    ]
