"""The gateway end to end over the sim transport, with a real mosquitto broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.transports.sim import SimTransport
from protocol import frames as fr
from tests.integration.conftest import Broker
from tests.integration.helpers import ControlCenter, register_fleet, running_gateway, settings

pytestmark = pytest.mark.integration


async def test_press_reaches_mqtt_with_every_field_and_is_acked(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell = fleet["bell"]
    sim = SimTransport()
    async with ControlCenter(broker.url).running() as cc, running_gateway(s, [sim]):
        data = bell.frame(fr.Alarm(0, 1, 3600, 0), flags=fr.Flags.RX_OPEN)
        sim.inject(data, rssi=-101, snr=-3.25)
        event_id = fr.event_id(bell.device_id, bell.up)
        _, body, _ = await cc.wait_for(
            lambda t, b: t == f"anshim/seongbuk/alarm/{event_id}" and b["state"] == "raised"
        )
        assert body["device_id"] == f"{bell.device_id:08x}"
        assert body["press_count"] == 1 and body["battery"] == {"mv": 3600}
        assert body["place"]["national_point_number"] == "다사 5640 5320"
        assert body["place"]["label"] == "형제봉 입구 비상벨"
        assert body["place"]["trail"] == "북악하늘길 2구간"
        assert body["cameras"] == ["CCTV-SB-1021", "CCTV-SB-1022"]
        assert body["receptions"] == [{"receiver": "sim", "rssi": -101, "snr": -3.25}]
        assert body["gateway_id"] == "gw-test"
        assert body["pressed_at"] <= body["received_at"]
        # The ACK goes down to the bell, and the alarm becomes "delivered".
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "delivered")
        acks = [bell.decode_downlink(d) for d, _ in sim.sent if d[2:6] == data[2:6]]
        assert [(a.payload.acked_counter, a.payload.alarm_state) for a in acks] == [
            (bell.up, fr.AlarmState.DELIVERED)
        ]


async def test_operator_ack_reaches_bell_and_nearby_lights_strobe(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell, near, far = fleet["bell"], fleet["near"], fleet["far"]
    sim = SimTransport()
    async with ControlCenter(broker.url).running() as cc, running_gateway(s, [sim]) as gw:
        sim.inject(bell.frame(fr.Alarm(0, 1, 3600, 0), flags=fr.Flags.RX_OPEN))
        alarm_counter = bell.up
        event_id = fr.event_id(bell.device_id, alarm_counter)
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "delivered")
        await cc.publish(f"alarm/{event_id}/ack", {"operator": "상황실 3번", "message": "출동 중"})
        _, body, _ = await cc.wait_for(
            lambda t, b: t.endswith(event_id) and b["state"] == "acknowledged"
        )
        assert body["operator"] == "상황실 3번" and body["message"] == "출동 중"
        # The bell's next keep-alive opens its window: the ACK says "help is coming".
        sim.inject(bell.frame(fr.AlarmUpdate(alarm_counter, 2, 3600), flags=fr.Flags.RX_OPEN))
        await asyncio.sleep(0.2)
        assert gw.core is not None
        await gw.core.drain_tasks()
        to_bell = [
            bell.decode_downlink(d)
            for d, _ in sim.sent
            if d[2:6] == bell.frame(fr.Alarm(), counter=0)[2:6]
        ]
        assert to_bell[-1].payload == fr.Ack(bell.up, fr.AlarmState.ACKNOWLEDGED)

        # Lights: the one 60 m away strobes, the one 850 m away does not.
        def to(dev: object) -> list[fr.Frame]:
            return [
                dev.decode_downlink(d)
                for d, _ in sim.sent  # type: ignore[attr-defined]
                if int.from_bytes(d[2:6], "big") == dev.device_id
            ]  # type: ignore[attr-defined]

        assert [f.payload for f in to(near)] == [fr.Strobe(120)]
        assert to(far) == []
        # Resolve: the state is published and the bell's next window hears "resolved".
        await cc.publish(f"alarm/{event_id}/resolve", b"")
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "resolved")
        sim.inject(bell.frame(fr.AlarmUpdate(alarm_counter, 2, 3600), flags=fr.Flags.RX_OPEN))
        await asyncio.sleep(0.2)
        await gw.core.drain_tasks()
        last = bell.decode_downlink(sim.sent[-1][0])
        assert last.payload == fr.Ack(bell.up, fr.AlarmState.RESOLVED)


async def test_copies_from_two_receivers_make_one_event_and_the_ack_uses_the_best(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    bell = register_fleet(s)["bell"]
    near_gw, far_gw = SimTransport("bridge-north"), SimTransport("bridge-south")
    async with (
        ControlCenter(broker.url).running() as cc,
        running_gateway(s, [near_gw, far_gw]) as gw,
    ):
        data = bell.frame(fr.Alarm(0, 1, 3600, 0), flags=fr.Flags.RX_OPEN)
        far_gw.inject(data, rssi=-118, snr=-12.0)  # heard first, weakly
        near_gw.inject(data, rssi=-87, snr=8.5)  # the same transmission, stronger
        event_id = fr.event_id(bell.device_id, bell.up)
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "delivered")
        assert gw.core is not None
        await gw.core.drain_tasks()
        # One alarm, published at once from the first copy; the ACK through the best receiver.
        assert gw.core.metrics.counts["alarms"] == 1
        assert gw.core.metrics.counts["duplicate_copies"] == 1
        raised = [b for t, b in cc.topics(event_id) if b["state"] == "raised"]
        assert raised[0]["receptions"] == [{"receiver": "bridge-south", "rssi": -118, "snr": -12.0}]
        acks_far = [d for d, _ in far_gw.sent if d[2:6] == data[2:6]]
        acks_near = [d for d, _ in near_gw.sent if d[2:6] == data[2:6]]
        assert acks_far == [] and len(acks_near) == 1
        # The journal keeps both receptions for the record.
        alarm = gw.core.journal.alarm(event_id)
        assert alarm is not None
        assert [r["receiver"] for r in alarm.receptions] == ["bridge-south", "bridge-north"]


async def test_a_device_registered_while_the_gateway_runs_is_accepted(
    tmp_path: Path, broker: Broker
) -> None:
    from gateway import db
    from gateway.registry import Registry
    from tests.integration.helpers import BELL_PLACE, SimDevice

    s = settings(tmp_path, mqtt_url=broker.url)
    register_fleet(s)
    sim = SimTransport()
    async with ControlCenter(broker.url).running() as cc, running_gateway(s, [sim]) as gw:
        # A crew adds a bell with `anshim device add` while the gateway is running.
        conn = db.connect(s.database)
        new = SimDevice(Registry(conn).add(kind="bell", place=BELL_PLACE))
        conn.close()
        sim.inject(new.frame(fr.Alarm(), flags=fr.Flags.RX_OPEN))
        event_id = fr.event_id(new.device_id, new.up)
        _, body, _ = await cc.wait_for(lambda t, b: t.endswith(f"alarm/{event_id}"))
        assert body["place"]["label"] == BELL_PLACE.label
        assert gw.core is not None and "unknown_device" not in gw.core.metrics.counts
        # An id nobody registered stays unknown, and is not looked up on every frame.
        stranger = fr.encode(fr.Frame(0x0A0FFFFF, 1, fr.Alarm()), bytes(16))
        for _ in range(50):
            sim.inject(stranger)
        assert gw.core.metrics.counts["unknown_device"] == 50
        assert set(gw.core._lookups) == {new.device_id, 0x0A0FFFFF}  # one read per id
