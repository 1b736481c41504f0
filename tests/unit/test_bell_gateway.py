"""The bell's frames decode with the gateway's codec: both sides agree on the wire.

Every scenario of test_bell_scenarios.py records what its bell put on air (device
codec, firmware/lib/codec.py). Here each frame is decoded again by the gateway's codec
(protocol/frames.py, construct and struct engines), authenticated with the device key
and the gateway's counter rules, and compared field by field with the device codec.
The same check runs on the frames of the MicroPython run in
tests/micropython/test_bell_mp.py.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from protocol import frames
from protocol.frames import DeviceKey, Direction, FrameType

from . import test_bell_scenarios as scenarios
from .test_bell_fakes import TRACES

SCENARIOS = sorted(n for n in dir(scenarios) if n.startswith("test_"))


def run_all_scenarios() -> dict[str, Any]:
    """Run every bell scenario (CPython) and return a copy of their traces."""
    for name in SCENARIOS:
        getattr(scenarios, name)()
    return {
        k: {"device_id": v["device_id"], "key": v["key"], "frames": list(v["frames"])}
        for k, v in TRACES.items()
    }


def check_trace(name: str, trace: dict[str, Any]) -> list[frames.Frame]:
    """Decode a trace with the gateway codec as the gateway would; return the frames.

    Asserts: every frame authenticates and decodes with both engines; the device codec
    decodes it to the same fields; counters only go up, a repeated counter is an ALARM
    retransmission with RETRY set and the same payload; one event id per incident.
    """
    fw = sys.modules["codec"]  # firmware/lib/codec.py, on sys.path via test_bell_fakes
    key = bytes.fromhex(trace["key"])
    dev = trace["device_id"]
    last: int | None = None
    out: list[frames.Frame] = []
    prev: frames.Frame | None = None
    for hexed in trace["frames"]:
        data = bytes.fromhex(hexed)

        def lookup(
            device_id: int, direction: Direction, last: int | None = last
        ) -> DeviceKey | None:
            assert direction is Direction.UP
            return DeviceKey.of(key, last) if device_id == dev else None

        frame = frames.decode(data, lookup)
        assert frames.decode(data, lookup, engine="construct") == frame
        # The device codec reads the same bytes the same way.
        fname, fdev, fcounter, fflags, ffields = fw.decode(data, key, last)
        assert (fname, fdev, fcounter, fflags) == (
            frame.type.name,
            frame.device_id,
            frame.counter,
            int(frame.flags),
        ), name
        assert ffields == frame.payload.to_fields(), (name, ffields)
        if last is not None and frame.counter <= last:
            assert frame.counter == last, (name, "counter went down")
            assert frame.type is FrameType.ALARM and frame.flags & frames.Flags.RETRY, name
            assert prev is not None and prev.payload == frame.payload, name
        last = frame.counter if last is None or frame.counter > last else last
        prev = frame
        out.append(frame)
    return out


@pytest.fixture(scope="module")
def traces() -> dict[str, Any]:
    return run_all_scenarios()


def test_every_scenario_left_a_trace(traces: dict[str, Any]) -> None:
    assert len(traces) >= len(SCENARIOS) - 1  # provisioning sends nothing
    assert sum(len(t["frames"]) for t in traces.values()) > 500


def test_all_frames_decode_with_the_gateway_codec(traces: dict[str, Any]) -> None:
    for name, trace in traces.items():
        decoded = check_trace(name, trace)
        assert len(decoded) == len(trace["frames"]), name


def test_press_to_resolved_as_the_gateway_sees_it(traces: dict[str, Any]) -> None:
    got = check_trace("press_to_resolved", traces["press_to_resolved"])
    alarms = [f for f in got if f.type is FrameType.ALARM]
    assert len({f.event_id for f in alarms}) == 1  # one incident, one event id
    updates = [f for f in got if f.type is FrameType.ALARM_UPDATE]
    assert updates and all(u.payload.alarm_counter == alarms[0].counter for u in updates)
    assert all(f.flags & frames.Flags.RX_OPEN for f in alarms + updates)
