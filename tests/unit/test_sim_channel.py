"""The simulator's LoRa channel: path loss, sensitivity, collisions with capture, LBT.

The channel runs on a `VirtualTimeLoop`; LBT is the firmware's own `radio.Radio` over the
simulator's modem, so these tests also show the firmware's carrier sense seeing (or not
seeing) another transmitter.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from tools.sim import vloop
from tools.sim.channel import (
    Channel,
    Node,
    PathLoss,
    RadioSettings,
    Receiver,
    free_space_loss_db,
    noise_floor_dbm,
    sensitivity_dbm,
)

NO_FADING = PathLoss(shadowing_db=0.0, fading_db=0.0)


def frame(device_id: int = 0x0A000001, length: int = 20, ftype: int = 0x03) -> bytes:
    """Bytes shaped like an uplink of ``ftype`` from ``device_id`` (the channel reads the
    header's direction bit and device id only)."""
    return bytes([0x20 | ftype, 0]) + device_id.to_bytes(4, "big") + bytes(length - 6)


def test_log_distance_path_loss_and_free_space_floor() -> None:
    pl = PathLoss(pl0_db=124.0, exponent=3.5)
    f = 922_100
    assert pl.median_db(1000, ground=False, freq_khz=f) == pytest.approx(124.0)
    assert pl.median_db(10_000, ground=False, freq_khz=f) == pytest.approx(159.0)
    # Ten times nearer: 35 dB less, but never below free space.
    assert pl.median_db(100, ground=False, freq_khz=f) == pytest.approx(89.0)
    assert pl.median_db(1, ground=False, freq_khz=f) == pytest.approx(free_space_loss_db(1, f))
    assert free_space_loss_db(1, f) == pytest.approx(31.74, abs=0.01)
    # Between two devices near the ground the loss grows faster.
    assert pl.median_db(1000, ground=True, freq_khz=f) > pl.median_db(
        1000, ground=False, freq_khz=f
    )


def test_sensitivity_and_noise_floor() -> None:
    assert sensitivity_dbm(9) == -130.0
    assert sensitivity_dbm(12) == -137.0
    assert sensitivity_dbm(9, 250) == pytest.approx(-126.99, abs=0.01)  # 3 dB per doubling
    assert noise_floor_dbm(125, 6) == pytest.approx(-117.03, abs=0.01)


class Air:
    """A channel on a virtual loop with nodes placed along a line (metres)."""

    def __init__(self, settings: RadioSettings | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.ch = Channel(
            settings or RadioSettings(path_loss=NO_FADING),
            now=self.loop.time,
            call_at=self.loop.call_at,
        )
        self.got: dict[str, list[tuple[bytes, float]]] = {}

    def node(self, name: str, x: float, *, gateway: bool = False) -> Node:
        return self.ch.add_node(Node(name, x, 0.0, gateway=gateway, antenna_dbi=0.0))

    def receiver(self, node: Node) -> Receiver:
        self.got[node.name] = []

        def on_frame(tx: Any, rssi: float, snr: float) -> None:
            self.got[node.name].append((tx.data, rssi))

        r = Receiver(self.ch, node, on_frame=on_frame)
        r.listen()
        return r


def run(coro: Any) -> Any:
    return vloop.run(coro)


def test_a_lone_frame_is_received_with_its_rssi_and_snr() -> None:
    async def main() -> None:
        air = Air()
        gw = air.node("gw", 0, gateway=True)
        dev = air.node("dev", 1000)
        air.receiver(gw)
        done = asyncio.get_running_loop().create_future()
        tx = air.ch.transmit(dev, frame(), done=done.set_result)
        assert tx.downlink is False and tx.dest is None
        assert tx.toa == pytest.approx(0.185344)  # 20 bytes at SF9/125 kHz (PROTOCOL.md 8.1)
        await done
        assert asyncio.get_running_loop().time() == pytest.approx(tx.end)
        [(data, rssi)] = air.got["gw"]
        assert data == tx.data
        assert rssi == pytest.approx(11.0 - 124.0)  # 11 dBm, 0 dBi antennas, 124 dB at 1 km
        assert air.ch.snr(rssi) == pytest.approx(-113.0 - noise_floor_dbm())

    run(main())


def test_a_frame_below_sensitivity_is_not_received() -> None:
    async def main() -> None:
        air = Air()
        gw = air.node("gw", 0, gateway=True)
        far = air.node("far", 6000)  # 124 + 35 log10(6) = 151 dB: -140 dBm < -130
        air.receiver(gw)
        tx = air.ch.transmit(far, frame())
        await asyncio.sleep(1)
        assert air.got["gw"] == [] and "gw" not in tx.heard_by

    run(main())


@pytest.mark.parametrize(
    ("near_m", "far_m", "near_ok", "far_ok"),
    [
        (500, 1000, True, False),  # 10.5 dB apart: the stronger one survives (capture)
        (900, 1000, False, False),  # 1.6 dB apart: both lost
        (1000, 1000, False, False),  # equal: both lost
        (1000, 1420, False, False),  # 5.3 dB: just under the 6 dB capture threshold
        (1000, 1500, True, False),  # 6.2 dB: just over it
    ],
)
def test_overlapping_frames_collide_unless_one_is_6_db_stronger(
    near_m: float, far_m: float, near_ok: bool, far_ok: bool
) -> None:
    margin = 35 * math.log10(far_m / near_m)

    async def main() -> None:
        air = Air()
        gw = air.node("gw", 0, gateway=True)
        near = air.node("near", near_m)
        far = air.node("far", -far_m)
        air.receiver(gw)
        a = air.ch.transmit(far, frame(0x0A000002))  # the weaker one starts first
        await asyncio.sleep(0.05)  # within its preamble (8 + 4.25 symbols = 50.2 ms)
        b = air.ch.transmit(near, frame(0x0A000001))
        await asyncio.sleep(1)
        heard = {d for d, _ in air.got["gw"]}
        assert (b.data in heard) is (margin >= 6.0)
        assert a.data not in heard
        if margin < 6.0:
            assert a.lost_at["gw"] in ("collision", "receiver busy with another frame")

    run(main())
    assert (margin >= 6.0) is near_ok


def test_a_stronger_frame_after_the_preamble_does_not_capture() -> None:
    async def main() -> None:
        air = Air()
        gw = air.node("gw", 0, gateway=True)
        near = air.node("near", 300)
        far = air.node("far", -1000)
        air.receiver(gw)
        a = air.ch.transmit(far, frame(0x0A000002))
        await asyncio.sleep(0.1)  # the weak frame's preamble is over: the demodulator is locked
        b = air.ch.transmit(near, frame(0x0A000001))
        await asyncio.sleep(1)
        assert air.got["gw"] == []
        assert b.lost_at["gw"] == "receiver busy with another frame"
        assert a.lost_at["gw"] == "collision"

    run(main())


def test_frames_on_other_spreading_factors_or_channels_do_not_collide() -> None:
    async def main() -> None:
        air = Air()
        gw = air.node("gw", 0, gateway=True)
        a_node = air.node("a", 1000)
        b_node = air.node("b", -1000)
        air.receiver(gw)
        air.ch.transmit(a_node, frame(0x0A000001))
        air.ch.transmit(b_node, frame(0x0A000002), sf=7)  # same power, another SF
        air.ch.transmit(b_node, frame(0x0A000003), freq_khz=922_300)  # another channel
        await asyncio.sleep(1)
        assert [d[2:6] for d, _ in air.got["gw"]] == [(0x0A000001).to_bytes(4, "big")]

    run(main())


def test_half_duplex_a_transmitting_gateway_hears_nothing() -> None:
    async def main() -> None:
        air = Air()
        gw = air.node("gw", 0, gateway=True)
        dev = air.node("dev", 500)
        r = air.receiver(gw)
        up = air.ch.transmit(dev, frame())
        await asyncio.sleep(0.1)
        r.deafen()  # the gateway starts its own transmission mid-frame
        air.ch.transmit(gw, bytes([0x31, 0]) + (0x0A000009).to_bytes(4, "big") + bytes(15))
        await asyncio.sleep(1)
        assert air.got["gw"] == []
        assert up.lost_at["gw"] == "half-duplex"

    run(main())


def test_rssi_at_sums_every_frame_on_the_air() -> None:
    async def main() -> None:
        air = Air()
        here = air.node("here", 0)
        a = air.node("a", 50)
        b = air.node("b", -50)
        floor = air.ch.rssi_at(here)
        assert floor == pytest.approx(noise_floor_dbm())
        air.ch.transmit(a, frame(0x0A000001))
        one = air.ch.rssi_at(here)
        air.ch.transmit(b, frame(0x0A000002))
        two = air.ch.rssi_at(here)
        assert two == pytest.approx(one + 10 * math.log10(2), abs=0.01)
        await asyncio.sleep(1)
        assert air.ch.rssi_at(here) == pytest.approx(floor)

    run(main())


# -- listen before talk: the firmware's radio.Radio on the simulated channel ---------------


def radio_host(air: Air, node: Node, seed: int = 1) -> Any:
    from types import SimpleNamespace

    from tools.sim.devices import RadioHost

    sim = SimpleNamespace(seed=seed, loop=air.loop, channel=air.ch)
    return RadioHost(sim, node, seed)  # type: ignore[arg-type]


def test_lbt_hears_a_near_transmitter_and_waits_for_it() -> None:
    async def main() -> None:
        air = Air()
        talker = air.node("talker", 0)
        near = air.node("near", 20)  # 66 dB: -55 dBm, above the -65 dBm LBT threshold
        host = radio_host(air, near)
        radio = host.make_radio()
        first = air.ch.transmit(talker, frame(0x0A000001))
        assert air.ch.rssi_at(near) > -65
        await radio.transmit(frame(0x0A000002))
        assert radio.lbt.tries >= 1  # at least one busy sense, then a back-off
        [second] = [t for t in air.ch._recent if t.src is near]
        assert second.start >= first.end  # it waited: no overlap
        assert host.energy.tx_s == pytest.approx(second.toa)

    run(main())


def test_lbt_cannot_hear_a_hidden_transmitter() -> None:
    async def main() -> None:
        air = Air()
        gw = air.node("gw", 250, gateway=True)
        talker = air.node("talker", 0)
        hidden = air.node("hidden", 500)  # 122 dB between the devices: -111 dBm, "free"
        air.receiver(gw)
        radio = radio_host(air, hidden).make_radio()
        first = air.ch.transmit(talker, frame(0x0A000001))
        await radio.transmit(frame(0x0A000002))
        assert radio.lbt.tries == 0
        [second] = [t for t in air.ch._recent if t.src is hidden]
        assert second.start < first.end  # they overlap at the gateway half way between
        await asyncio.sleep(1)
        assert air.got["gw"] == []

    run(main())


def test_lbt_gives_up_after_its_tries_on_a_busy_channel() -> None:
    async def main() -> None:
        from tools.sim.firmware import firmware

        air = Air()
        jammer = air.node("jammer", 0)
        near = air.node("near", 10)
        radio = radio_host(air, near).make_radio()

        async def jam() -> None:
            while True:
                done = asyncio.get_running_loop().create_future()
                air.ch.transmit(jammer, frame(0x0A000001, 64), done=done.set_result)
                await done

        task = asyncio.create_task(jam())
        await asyncio.sleep(0)
        with pytest.raises(firmware().radio.ChannelBusy):
            await radio.transmit(frame(0x0A000002))
        assert radio.lbt.tries == firmware().radio.LBT_MAX_TRIES
        assert not [t for t in air.ch._recent if t.src is near]
        task.cancel()

    run(main())
