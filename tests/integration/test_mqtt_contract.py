"""Every message a running gateway publishes matches its schema in gateway/schemas/."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import pytest

from gateway.transports.sim import SimTransport
from protocol import frames as fr
from tests.conftest import ROOT
from tests.integration.conftest import Broker
from tests.integration.helpers import ControlCenter, register_fleet, running_gateway, settings

pytestmark = pytest.mark.integration
SCHEMAS = ROOT / "gateway" / "schemas"


def schema_for(topic: str) -> str:
    parts = topic.split("/")[2:]
    if parts[-1] in ("ack", "resolve"):
        return "command-alarm.json"
    if parts[-1] == "command":
        return "command-device.json"
    if parts[0] == "alarm":
        return "alarm.json"
    if parts[0] == "gateway":
        return "gateway-status.json" if parts[2] == "status" else "gateway-error.json"
    if parts[2] == "state":
        return "device-state.json"
    return "presence.json" if parts[3] in ("offline", "online") else "device-event.json"


def test_schemas_are_valid_json_schema() -> None:
    for path in SCHEMAS.glob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


async def test_published_messages_match_the_documented_schemas(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell, near = fleet["bell"], fleet["near"]
    sim = SimTransport()
    async with ControlCenter(broker.url).running() as cc, running_gateway(s, [sim]) as gw:
        sim.inject(bell.frame(fr.Heartbeat(3600, 18, 10, 0, 0x10, -95, 4)))
        sim.inject(bell.frame(fr.Fault(fr.FaultCode.TAMPER, 1, 0)))
        sim.inject(bell.frame(fr.SelfTest(0x07, 0x05, 3500)))
        sim.inject(near.frame(fr.LightStatus(60, 300, 1200, 4)))
        sim.inject(bell.frame(fr.Alarm(0, 1, 3600, fr.Alarm.TAMPER), flags=fr.Flags.RX_OPEN))
        event_id = fr.event_id(bell.device_id, bell.up)
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "delivered")
        await cc.publish(f"alarm/{event_id}/ack", {"operator": "상황실"})
        await cc.publish(f"alarm/{event_id}/resolve", b"")
        await cc.publish("alarm/nope/ack", b"")
        await cc.publish(
            f"device/{near.device_id:08x}/command",
            {"command": "schedule", "dusk_level": 90, "night_level": 30},
        )
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "resolved")
        await cc.wait_for(lambda t, b: t.endswith("/error"))
        assert gw.core is not None
        gw.core.check_supervision(gw.core.clock() + 10 * 86400)
        await cc.wait_for(lambda t, b: t.endswith("/event/offline"))
        await asyncio.sleep(0.2)
        assert gw.upstream is not None
        await gw.upstream.publish_status(cc.client)  # the status as the gateway would send it
        await cc.wait_for(lambda t, b: t.endswith("/status"))
    seen = set()
    for topic, body, _ in cc.messages:
        name = schema_for(topic)
        if body == "":  # an empty command payload is allowed
            continue
        schema = json.loads((SCHEMAS / name).read_text())
        jsonschema.validate(body, schema)
        seen.add(name)
    assert seen == {
        "alarm.json",
        "device-event.json",
        "device-state.json",
        "presence.json",
        "gateway-status.json",
        "gateway-error.json",
        "command-alarm.json",
        "command-device.json",
    }


def test_command_schemas_accept_what_the_gateway_accepts() -> None:
    device = json.loads((SCHEMAS / "command-device.json").read_text())
    for good in (
        {"command": "set_level", "level": 80, "minutes": 30},
        {"command": "strobe", "seconds": 60},
        {"command": "selftest"},
        {"command": "config", "key": "hb_interval", "value": "3600"},
    ):
        jsonschema.validate(good, device)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"command": "set_level", "level": 150}, device)
