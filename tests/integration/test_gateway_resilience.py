"""What staff and the control center count on: nothing lost, nothing crashes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from gateway.config import BleSettings, SupervisionSettings
from gateway.service import Gateway
from gateway.transports.ble import BleTransport
from gateway.transports.sim import SimTransport
from protocol import frames as fr
from tests.integration.conftest import Broker
from tests.integration.helpers import ControlCenter, register_fleet, running_gateway, settings

pytestmark = pytest.mark.integration


async def test_broker_outage_under_load_loses_nothing_and_sends_alarms_first(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell, near = fleet["bell"], fleet["near"]
    sim = SimTransport()
    async with ControlCenter(broker.url).running() as cc, running_gateway(s, [sim]) as gw:
        for _ in range(100):
            sim.inject(near.frame(fr.LightStatus(50, 400, 1000, 1)))
        await cc.wait_for(lambda t, b: t.endswith("/event/light_status") and b["counter"] == 100)
        broker.stop()
        await asyncio.sleep(0.3)
        # During the outage the gateway keeps taking radio frames.
        for _ in range(400):
            sim.inject(near.frame(fr.LightStatus(50, 400, 1000, 1)))
        alarm_ids = []
        for press in range(3):
            sim.inject(bell.frame(fr.Alarm(0, 1, 3600, 0), flags=fr.Flags.RX_OPEN))
            alarm_ids.append(fr.event_id(bell.device_id, bell.up))
            await asyncio.sleep(0.1)
            # ...and acknowledges the bell while the uplink is down.
            sim.inject(bell.frame(fr.AlarmUpdate(bell.up, press + 1, 3600)))
        await asyncio.sleep(0.3)
        assert gw.core is not None and gw.core.journal.outbox_size() > 400
        assert len([d for d, _ in sim.sent if d[2:6] == bell.device_id.to_bytes(4, "big")]) == 3
        # The strobe rule needs no upstream: the light 60 m away was told to strobe.
        strobes = [
            near.decode_downlink(d)
            for d, _ in sim.sent
            if d[2:6] == near.device_id.to_bytes(4, "big")
        ]
        assert [f.payload for f in strobes if isinstance(f.payload, fr.Strobe)] == [
            fr.Strobe(120)
        ] * 3
        # Its first status report was answered with the time, for its schedule.
        assert isinstance(strobes[0].payload, fr.Time) and strobes[0].payload.utc_offset == 36
        first_after = len(cc.messages)
        broker.start()
        await cc.wait_for(
            lambda t, b: t.endswith("/event/light_status") and b["counter"] == 500, timeout=30
        )
        await asyncio.sleep(0.3)
        # Every event arrived, each light status once per counter (at-least-once may repeat
        # a message, never under another id).
        counters = [b["counter"] for t, b in cc.topics("/event/light_status")]
        assert sorted(set(counters)) == list(range(1, 501))
        alarms = [(t, b) for t, b in cc.topics("/alarm/")]
        assert {b["event_id"] for _, b in alarms} == set(alarm_ids)
        assert all(t.endswith(b["event_id"]) for t, b in alarms)
        # What waited in the outbox went out alarms first.
        after = cc.messages[first_after:]
        kinds = [
            "alarm" if "/alarm/" in t else "other"
            for t, _, _ in after
            if "/alarm/" in t or "/event/light_status" in t
        ]
        assert kinds.index("other") > max(i for i, k in enumerate(kinds) if k == "alarm")
        assert gw.core.journal.outbox_size() == 0


async def test_bad_mqtt_commands_get_an_error_and_the_service_goes_on(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell, near = fleet["bell"], fleet["near"]
    sim = SimTransport()
    async with ControlCenter(broker.url).running() as cc, running_gateway(s, [sim]) as gw:
        sim.inject(bell.frame(fr.Alarm(), flags=fr.Flags.RX_OPEN))
        event_id = fr.event_id(bell.device_id, bell.up)
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "delivered")
        bad: list[tuple[str, Any, str]] = [
            (f"alarm/{event_id}/ack", b"{not json", "not JSON"),
            ("alarm/0a000001-99999999/ack", b"", "no alarm 0a000001-99999999"),
            (f"device/{near.device_id:08x}/command", {"command": "dance"}, "command 'dance'"),
            (
                f"device/{near.device_id:08x}/command",
                {"command": "set_level", "level": 150},
                "level = 150",
            ),
            ("device/zzzz/command", {"command": "selftest"}, "not hex"),
            (
                f"device/{bell.device_id:08x}/command",
                {"command": "set_level", "level": 5},
                "is a bell",
            ),
            (f"alarm/{event_id}/ack", [1, 2], "JSON object"),
        ]
        for topic, payload, _ in bad:
            await cc.publish(topic, payload)
        for topic, _, expected in bad:
            _, _body, _ = await cc.wait_for(
                lambda t, b, tp=topic, ex=expected: (
                    t.endswith("/gateway/gw-test/error")
                    and b["topic"].endswith(tp)
                    and ex in b["error"]
                )
            )
        assert gw.core is not None
        assert gw.core.metrics.counts["bad_command"] == len(bad)
        # ...and good commands still work.
        await cc.publish(
            f"device/{near.device_id:08x}/command",
            {"command": "set_level", "level": 80, "minutes": 10},
        )
        await cc.publish(f"alarm/{event_id}/ack", {"operator": "kim"})
        await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "acknowledged")
        await asyncio.sleep(0.2)
        to_near = [
            near.decode_downlink(d)
            for d, _ in sim.sent
            if d[2:6] == near.device_id.to_bytes(4, "big")
        ]
        assert to_near[-1].payload == fr.SetLevel(80, 10)


async def test_offline_and_back_online_with_a_fake_clock(tmp_path: Path, broker: Broker) -> None:
    now = [1_800_000_000.0]

    def clock() -> float:
        return now[0]

    s = replace(
        settings(tmp_path, mqtt_url=broker.url),
        supervision=SupervisionSettings(heartbeat_grace=2.5, check_every_s=3600),
    )
    fleet = register_fleet(s)
    bell, near = fleet["bell"], fleet["near"]
    sim = SimTransport(clock=clock)
    async with (
        ControlCenter(broker.url).running() as cc,
        Gateway(s, transports=[sim], clock=clock).running() as gw,
    ):
        await sim.ready()
        assert gw.core is not None
        sim.inject(bell.frame(fr.Heartbeat(3600, 10, 1, 0, 0x10, 0, 0)))
        sim.inject(near.frame(fr.LightStatus(100, 420, 10, 0)))
        now[0] += 2.5 * 600 + 1  # the light (600 s heartbeat) is overdue; the bell is not
        gw.core.check_supervision()
        _, body, _ = await cc.wait_for(lambda t, b: t.endswith("/event/offline"))
        assert body["device_id"] == f"{near.device_id:08x}"
        _, _state, _retained = await cc.wait_for(
            lambda t, b: t.endswith(f"{near.device_id:08x}/state") and not b["online"]
        )
        assert not cc.topics(f"{bell.device_id:08x}/event/offline")
        now[0] += 10
        sim.inject(near.frame(fr.LightStatus(100, 420, 11, 0)))
        _, body, _ = await cc.wait_for(lambda t, b: t.endswith("/event/online"))
        assert body["device_id"] == f"{near.device_id:08x}"
        now[0] += 2.5 * 3600 + 1
        gw.core.check_supervision()
        await cc.wait_for(lambda t, b: t.endswith(f"{bell.device_id:08x}/event/offline"))


class FakeScanner(BaseBleakScanner):
    """A bleak scanner backend that replays adverts, passed through bleak's `backend=`."""

    adverts: list[tuple[str, dict[int, bytes], int]] = []
    fail_with: Exception | None = None
    scanning_modes: list[str] = []

    def __init__(
        self,
        detection_callback: Any,
        service_uuids: Any,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        FakeScanner.scanning_modes.append(scanning_mode)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if FakeScanner.fail_with is not None:
            raise FakeScanner.fail_with
        self._task = asyncio.create_task(self._emit())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _emit(self) -> None:
        for address, manufacturer, rssi in FakeScanner.adverts:
            adv = AdvertisementData(
                local_name=None,
                manufacturer_data=manufacturer,
                service_data={},
                service_uuids=[],
                tx_power=None,
                rssi=rssi,
                platform_data=(),
            )
            device: BLEDevice = self.create_or_update_device(address, address, None, None, adv)
            self.call_detection_callbacks(device, adv)
            await asyncio.sleep(0.01)


async def test_ble_adverts_through_bleak_with_a_test_backend(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell = fleet["bell"]
    alarm = bell.frame(fr.Alarm(0, 1, 3000, 0))
    FakeScanner.fail_with = None
    FakeScanner.adverts = [
        ("AA:BB:CC:00:00:01", {0x004C: b"\x02\x15not ours"}, -60),  # someone's iBeacon
        ("AA:BB:CC:00:00:02", {0xFFFF: alarm}, -71),
        ("AA:BB:CC:00:00:02", {0xFFFF: alarm}, -70),  # advertised again: the same frame
    ]
    ble = BleTransport(BleSettings(scanning_mode="passive"), backend=FakeScanner)
    async with ControlCenter(broker.url).running() as cc, running_gateway(s, [ble]) as gw:
        event_id = fr.event_id(bell.device_id, bell.up)
        _, body, _ = await cc.wait_for(lambda t, b: t.endswith(f"alarm/{event_id}"))
        assert body["receptions"][0] == {"receiver": "ble", "rssi": -71, "snr": None}
        await asyncio.sleep(0.2)
        assert gw.core is not None
        assert ble.adverts == 3 and ble.frames == 2
        assert gw.core.metrics.counts["alarms"] == 1
        assert FakeScanner.scanning_modes[-1] == "passive"
        # BLE is one-way: the alarm stays "raised", no ACK can be sent.
        assert gw.core.metrics.counts.get("replies_no_transport", 0) == 0


async def test_no_bluetooth_adapter_warns_once_and_other_transports_carry_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path)
    fleet = register_fleet(s)
    FakeScanner.fail_with = BleakError("No Bluetooth adapters found.")
    ble = BleTransport(BleSettings(), backend=FakeScanner, retry_s=0.05)
    sim = SimTransport()
    with caplog.at_level(logging.WARNING, logger="anshim.gateway.ble"):
        async with running_gateway(s, [ble, sim]) as gw:
            await asyncio.sleep(0.3)  # several retries
            sim.inject(fleet["bell"].frame(fr.Heartbeat(3600, 10, 1, 0, 0x10, 0, 0)))
            await asyncio.sleep(0.1)
            assert gw.core is not None and gw.core.metrics.counts["accepted"] == 1
    warnings = [r for r in caplog.records if "BLE scanning unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "No Bluetooth adapters found" in warnings[0].getMessage()
    FakeScanner.fail_with = None
