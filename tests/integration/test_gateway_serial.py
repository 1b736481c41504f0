"""The serial path: a pseudo-terminal pair stands in for the radio bridge on USB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.config import SerialSettings
from gateway.transports.serial import SerialTransport
from protocol import frames as fr
from protocol import link as ln
from tests.integration.conftest import Broker
from tests.integration.helpers import (
    ControlCenter,
    PtyBridge,
    register_fleet,
    running_gateway,
    settings,
)

pytestmark = pytest.mark.integration


async def test_press_through_serial_arrives_on_mqtt_and_ack_goes_down_the_pty(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell = fleet["bell"]
    bridge = PtyBridge(tmp_path / "ttyBridge")
    bridge.attach()
    serial = SerialTransport(SerialSettings(port=str(bridge.path)), reopen_s=0.05)
    try:
        async with ControlCenter(broker.url).running() as cc, running_gateway(s, [serial]):
            # On connect the gateway configures the bridge's radio and asks for its status.
            await bridge.wait_for(lambda b: any(isinstance(m, ln.Config) for m in b.received))
            config = next(m for m in bridge.received if isinstance(m, ln.Config))
            assert (config.freq_khz, config.sf, config.bw_khz) == (922_100, 9, 125)
            frame = bell.frame(fr.Alarm(0, 1, 3580, 0), flags=fr.Flags.RX_OPEN)
            tmst = bridge.rx(frame, rssi=-112, snr_x4=-30)
            event_id = fr.event_id(bell.device_id, bell.up)
            _, body, _ = await cc.wait_for(lambda t, b: t.endswith(f"alarm/{event_id}"))
            assert body["receptions"] == [{"receiver": "serial", "rssi": -112, "snr": -7.5}]
            assert body["place"]["plate_id"] == "성북-01-023"

            def to_bell(b: PtyBridge) -> list[ln.Tx]:
                return [t for t in b.tx() if t.frame[2:6] == frame[2:6]]

            await bridge.wait_for(lambda b: len(to_bell(b)) == 1)
            tx = to_bell(bridge)[0]
            # Sent in the bell's receive window: 1 s after the end of its transmission.
            assert tx.mode == ln.TxMode.AT_TMST and tx.tmst == tmst + 1_000_000
            assert (tx.freq_khz, tx.sf) == (922_100, 9)
            ack = bell.decode_downlink(tx.frame)
            assert ack.payload == fr.Ack(bell.up, fr.AlarmState.DELIVERED)
            await cc.wait_for(lambda t, b: t.endswith(event_id) and b["state"] == "delivered")
    finally:
        bridge.close()


async def test_garbage_and_bad_frames_are_counted_and_the_service_goes_on(
    tmp_path: Path, broker: Broker
) -> None:
    s = settings(tmp_path, mqtt_url=broker.url)
    fleet = register_fleet(s)
    bell = fleet["bell"]
    bridge = PtyBridge(tmp_path / "ttyBridge")
    bridge.attach()
    serial = SerialTransport(SerialSettings(port=str(bridge.path)), reopen_s=0.05)
    try:
        async with ControlCenter(broker.url).running() as cc, running_gateway(s, [serial]) as gw:
            assert gw.core is not None
            hb1 = bell.frame(fr.Heartbeat(3600, 20, 5, 0, 0x10, -90, 6))
            hb2 = bell.frame(fr.Heartbeat(3600, 20, 6, 0, 0x10, -90, 6))
            bridge.rx(hb1)
            bridge.rx(hb2)
            bridge.rx(hb1)  # an older frame replayed
            bridge.rx(hb2)  # the newest frame again at once: counted as a second copy
            bridge.write_raw(b"\xde\xad\xbe\xef garbage \x00\x00\x13\x37\x00")
            flipped = bytearray(bell.frame(fr.Heartbeat(3600, 20, 7, 0, 0x10, -90, 6)))
            flipped[10] ^= 0x04
            bridge.rx(bytes(flipped))
            stranger = fr.encode(fr.Frame(0x0DEADBEE, 1, fr.Alarm()), bytes(16))
            bridge.rx(stranger)
            bridge.rx(b"\x21\x00short")
            # ...and a good alarm still goes through after all of that.
            bridge.rx(bell.frame(fr.Alarm(), flags=fr.Flags.RX_OPEN))
            event_id = fr.event_id(bell.device_id, bell.up)
            await cc.wait_for(lambda t, b: t.endswith(f"alarm/{event_id}"))
            counts = gw.core.metrics.counts
            assert counts["bad_mic"] == 1
            assert counts["unknown_device"] == 1
            assert counts["malformed"] == 1
            assert counts["replayed"] == 1
            assert counts["duplicate_copies"] == 1
            assert serial.framer.stats.errors >= 1
            # Two heartbeat events, one each: the replay and the repeat published nothing.
            await cc.wait_for(lambda t, b: t.endswith("/event/heartbeat") and b["counter"] == 2)
            beats = [b["counter"] for _, b in cc.topics("/event/heartbeat")]
            assert beats == [1, 2]
    finally:
        bridge.close()


async def test_bridge_unplugged_and_plugged_back(tmp_path: Path) -> None:
    s = settings(tmp_path)
    fleet = register_fleet(s)
    bell = fleet["bell"]
    path = tmp_path / "ttyBridge"
    bridge = PtyBridge(path)
    bridge.attach()
    serial = SerialTransport(SerialSettings(port=str(path)), reopen_s=0.05)
    async with running_gateway(s, [serial]) as gw:
        assert gw.core is not None
        bridge.rx(bell.frame(fr.Heartbeat(3600, 20, 5, 0, 0x10, -90, 6)))
        await asyncio.sleep(0.3)
        assert gw.core.metrics.counts["accepted"] == 1
        bridge.close()  # the USB device disappears
        await asyncio.sleep(0.5)
        assert not serial.connected
        bridge = PtyBridge(path)  # ...and comes back (a new tty behind the same name)
        bridge.attach()
        await bridge.wait_for(lambda b: any(isinstance(m, ln.Config) for m in b.received))
        bridge.rx(bell.frame(fr.Heartbeat(3600, 20, 6, 0, 0x10, -90, 6)))
        await asyncio.sleep(0.3)
        assert gw.core.metrics.counts["accepted"] == 2
        assert serial.counts["opens"] == 2 and serial.counts["disconnects"] == 1
    bridge.close()
