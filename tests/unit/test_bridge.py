"""The radio bridge (firmware/bridge/bridge.py) against the gateway's own link codec.

Everything the bridge writes is decoded with `protocol.link` -- the gateway's side of the
serial link -- and every request it gets is encoded with it. `DRIVER` runs a bridge on
a simulated microsecond clock (wrapping like ``ticks_us``) through a scenario: 100 packets
received and relayed, TX requests now and at a bridge timestamp, requests that are
too late, invalid, or over the queue, a busy channel, CONFIG, STATUS, and garbage on
the serial line between the messages. It runs here in CPython and in real MicroPython
(tests/micropython/test_bridge_mp.py); `check_relay` holds the expectations for both.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol import airtime
from protocol import link as ln
from tools import firmware_bench as fb

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_LIB = ROOT / "firmware" / "lib"
BRIDGE_DIR = ROOT / "firmware" / "bridge"
for _p in (FIRMWARE_LIB, BRIDGE_DIR):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import bridge  # noqa: E402  (firmware/bridge/bridge.py)

BRIDGE_FILES = [
    FIRMWARE_LIB / "compat.py",
    FIRMWARE_LIB / "errors.py",
    FIRMWARE_LIB / "board.py",
    FIRMWARE_LIB / "link.py",
    BRIDGE_DIR / "bridge.py",
]
US_MASK = (1 << 30) - 1  # time.ticks_us wraps at 2**30 on MicroPython ports
U32 = 0xFFFFFFFF

# The driver and the scenario live in tools/firmware_bench.py, which also measures the
# bridge's heap over the same run; here they run to completion and are checked.
DRIVER = fb.BRIDGE_DRIVER + "\nprint(json.dumps(run(json.loads(SCENARIO))))\n"
TMST0 = fb.TMST0
tx = fb.bridge_tx
relay_scenario = fb.bridge_relay_scenario


def run_in_cpython(scenario: dict[str, Any]) -> dict[str, Any]:
    lines: list[str] = []
    ns: dict[str, Any] = {"SCENARIO": json.dumps(scenario), "print": lines.append}
    exec(compile(DRIVER, "driver", "exec"), ns)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def decode_wire(hex_wire: str) -> list[ln.Message]:
    framer = ln.Framer()
    messages = framer.feed(bytes.fromhex(hex_wire))
    assert framer.stats.errors == 0, framer.stats  # the bridge never writes a bad frame
    return messages


def check_relay(result: dict[str, Any], scenario: dict[str, Any]) -> None:
    messages = decode_wire(result["wire"])
    rx = [m for m in messages if isinstance(m, ln.Rx)]
    # Every packet relayed once, in order, with its radio data and the bridge timestamp
    # of the end of reception (the packet's time minus its age).
    assert len(rx) == 100
    for m, (t, frame, rssi, snr, age) in zip(rx, scenario["packets"], strict=True):
        assert m.frame.hex() == frame
        assert (m.rssi, m.snr_x4) == (rssi, snr)
        assert m.tmst == (TMST0 + t - age) & U32
        assert (m.freq_khz, m.sf, m.bw_khz) == (922_300, 9, 125)  # the CONFIG applied
    assert len({m.seq for m in rx}) == 100 or len(rx) > 255

    started = {seq: (t, tmst) for t, seq, tmst in result["started"]}
    done = {m.seq: m for m in messages if isinstance(m, ln.TxDone)}
    failed = {m.seq: m.reason for m in messages if isinstance(m, ln.TxFailed)}
    # Timed: started LBT lead (15 ms) before its tmst, on the millisecond step.
    tmst10 = started[10][1]
    assert -bridge.LEAD_US - 1000 <= tmst10 - 3_000_000 <= -bridge.LEAD_US + 1000
    # Immediate: at once.
    assert started[11][0] - 2_150_000 <= 1000
    for seq in (10, 11, 16, 17):
        want = airtime.time_on_air(payload_len=20, sf=9, bw_khz=125).time_on_air_us
        assert done[seq].airtime_us == want
        # it ended one time on air after it started (to the simulation's 1 ms step)
        assert abs(done[seq].tmst - started[seq][1] - want) <= 1000
    assert failed[12] == ln.TxFailure.TOO_LATE
    assert failed[13] == ln.TxFailure.INVALID and failed[14] == ln.TxFailure.INVALID
    assert failed[15] == ln.TxFailure.CHANNEL_BUSY
    assert failed[28] == ln.TxFailure.QUEUE_FULL
    assert all(seq in done for seq in range(20, 28))
    assert 12 not in started and 13 not in started and 28 not in started

    # STATUS on request and every 5 s; LOG lines for the start, the CONFIG, the refused
    # CONFIG and the garbage.
    statuses = [m for m in messages if isinstance(m, ln.Status)]
    assert len(statuses) >= 3
    last = statuses[-1]
    assert last.rx_ok == 100 and last.tx_ok == 12 and last.tx_failed == 5
    logs = [m.text for m in messages if isinstance(m, ln.Log)]
    assert any("up" in t for t in logs)
    assert any("config 922300 kHz" in t for t in logs)
    assert any("CONFIG refused" in t and "868100" in t for t in logs)
    assert any("serial link" in t and "bad frames" in t for t in logs)
    assert result["link_errors"] >= 3
    assert result["config"]["freq_khz"] == 922_300


@pytest.fixture(scope="module")
def relay() -> tuple[dict[str, Any], dict[str, Any]]:
    sc = relay_scenario()
    return run_in_cpython(sc), sc


def test_bridge_relays_and_transmits(relay: tuple[dict[str, Any], dict[str, Any]]) -> None:
    check_relay(*relay)


# -- focused cases ----------------------------------------------------------------------


@pytest.mark.parametrize("bw", [125, 250, 500])
@pytest.mark.parametrize("sf", range(5, 13))
def test_time_on_air_matches_the_gateway(sf: int, bw: int) -> None:
    for n in (0, 1, 13, 20, 24, 51, 64, 115, 222, 255):
        for cr in (5, 8):
            for preamble in (6, 8, 12):
                want = airtime.time_on_air(
                    payload_len=n, sf=sf, bw_khz=bw, cr=cr, preamble=preamble
                ).time_on_air_us
                assert bridge.time_on_air_us(n, sf, bw, cr, preamble) == want


class Clock:
    def __init__(self, us: int = 0) -> None:
        self.us = us

    def __call__(self) -> int:
        return self.us & US_MASK


def _bridge(clock: Clock) -> tuple[bridge.Bridge, ln.Framer, list[ln.Message]]:
    framer = ln.Framer()
    got: list[ln.Message] = []
    b = bridge.Bridge(lambda buf: got.extend(framer.feed(bytes(buf))), clock, status_s=3600)
    return b, framer, got


def test_tmst_runs_on_across_the_ticks_us_and_u32_wraps() -> None:
    clock = Clock(US_MASK - 100)
    b, _, _ = _bridge(clock)
    b._wraps, b._lo = 3, (U32 - 50) & US_MASK  # tmst just before the u32 wrap
    assert b.now() == U32 - 50
    clock.us += 200
    assert b.now() == 149
    b.serial_in(tx(1, 1, 149 + 500_000))
    clock.us += 500_000 - bridge.LEAD_US - 1000
    assert b.next_tx() is None
    clock.us += 1000
    job = b.next_tx()
    assert job is not None and job.seq == 1


def test_garbage_never_stops_the_bridge() -> None:
    rnd = random.Random(3)
    clock = Clock()
    b, _, got = _bridge(clock)
    for i in range(300):
        b.serial_in(rnd.randbytes(rnd.randint(0, 400)))
        if i % 10 == 0:
            b.serial_in(b"\x00" + ln.encode_message(ln.StatusRequest(seq=i & 0xFF)))
    assert sum(isinstance(m, ln.Status) for m in got) == 30
    assert b.link_errors > 0


def test_rx_of_an_empty_or_oversized_packet_counts_as_bad() -> None:
    b, _, got = _bridge(Clock())
    b.received(b"", -70, 10)
    b.received(bytes(256), -70, 10)
    b.crc_error()
    assert got == [] and b.rx_bad == 3
