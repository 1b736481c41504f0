"""The security light (firmware/light/light.py) through a whole night in Seoul.

`DRIVER` runs a `Light` through a timed list of events -- gateway downlinks built by the
*gateway's* codec (`protocol.frames`), PIR motion, a failing and repaired lamp, a storm
that darkens the photocell by day -- and prints what the lamp did and every frame it
sent. The same driver runs here in CPython and in real MicroPython
(tests/micropython/test_light_night.py); `check_night` holds the expectations for both,
and decodes every uplink with the gateway codec.

The night is 2023-12-31 to 2024-01-01 at Seoul City Hall. KASI published sunset
17:23 and sunrise 07:47 KST for it (see tests/unit/test_astro.py for the sources).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol import frames as fr
from tools import firmware_bench as fb

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_LIB = ROOT / "firmware" / "lib"
LIGHT_DIR = ROOT / "firmware" / "light"
for _p in (FIRMWARE_LIB, LIGHT_DIR):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import codec  # noqa: E402  (firmware/lib, as on the device)
import light  # noqa: E402  (firmware/light/light.py)

KEY = fb.KEY_LIGHT
DEVICE_ID = fb.DEVICE_ID_LIGHT
KST = fb.KST
START = fb.NIGHT_START
SUNSET = 17 * 3600 + 23 * 60  # KASI, 2023-12-31
SUNRISE = 7 * 3600 + 47 * 60  # KASI, 2024-01-01
TOLERANCE_S = 120
LIGHT_FILES = [
    FIRMWARE_LIB / "compat.py",
    FIRMWARE_LIB / "errors.py",
    FIRMWARE_LIB / "mic.py",
    FIRMWARE_LIB / "codec.py",
    FIRMWARE_LIB / "astro.py",
    LIGHT_DIR / "light.py",
]
# The driver and the night live in tools/firmware_bench.py, which also measures the
# light's heap over the same night; here they run to completion and are checked.
DRIVER = fb.LIGHT_DRIVER + "\nprint(json.dumps(run(json.loads(SCENARIO))))\n"
at = fb.at
Gateway = fb.Gateway
night_scenario = fb.light_night_scenario


def run_in_cpython(scenario: dict[str, Any]) -> dict[str, Any]:
    lines: list[str] = []
    ns: dict[str, Any] = {"SCENARIO": json.dumps(scenario), "print": lines.append}
    exec(compile(DRIVER, "driver", "exec"), ns)
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _local(ms: int) -> int:
    """Seconds after local midnight of the moment ``ms`` after START."""
    return (12 * 3600 + ms // 1000) % 86400


def level_at(levels: list[list[int]], ms: int) -> int:
    current = 0
    for t, level in levels:
        if t > ms:
            break
        current = level
    return current


def decode_uplinks(frames: list[list[Any]]) -> list[tuple[int, fr.Frame]]:
    """Every uplink as the gateway decodes it (MIC checked, counters reconstructed)."""
    last: list[int | None] = [None]

    def lookup(device_id: int, direction: fr.Direction) -> fr.DeviceKey | None:
        if device_id != DEVICE_ID or direction != fr.Direction.UP:
            return None
        return fr.DeviceKey.of(KEY, last[0])

    out = []
    for t, data in frames:
        frame = fr.decode(bytes.fromhex(data), lookup)
        assert last[0] is None or frame.counter > last[0]
        last[0] = frame.counter
        out.append((t, frame))
    return out


def check_night(result: dict[str, Any]) -> None:
    """What a resident, a crew and the control centre must see from this night."""
    levels = result["levels"]
    # Off by day; the storm turns the lamp on after the photocell's minute, then off.
    assert level_at(levels, at(13, 30)) == 0
    assert level_at(levels, at(14, 5)) == 100
    assert level_at(levels, at(14, 30)) == 0
    # On at sunset, within two minutes of KASI's 17:23.
    on = next(t for t, lv in levels if t > at(16, 0) and lv > 0)
    assert abs(_local(on) - SUNSET) <= TOLERANCE_S, f"on at {_local(on)} s"
    assert level_at(levels, at(18, 0)) == 100  # dusk level
    # SET_LEVEL 30 % for 10 minutes, then back to the schedule; the replay changes nothing.
    assert level_at(levels, at(21, 15)) == 30
    assert level_at(levels, at(21, 25)) == 100
    assert level_at(levels, at(21, 45)) == 100
    # The strobe: on/off every 500 ms for 20 s, then the dusk level again.
    strobe = [lv for t, lv in levels if at(22, 0) <= t < at(22, 0, 20)]
    assert strobe.count(0) >= 15 and strobe.count(100) >= 15
    assert level_at(levels, at(22, 1)) == 100
    # Night level from 00:00 (SCHEDULE: 40 % until 05:00).
    assert level_at(levels, at(0, 30, day=1)) == 40
    # PIR: full for the hold time, then a fade back, not a step.
    assert level_at(levels, at(1, 0, 3, day=1)) == 100  # a 2 s ramp up
    assert level_at(levels, at(1, 0, 55, day=1)) == 100
    fade = [lv for t, lv in levels if at(1, 1, 0, day=1) <= t < at(1, 1, 20, day=1)]
    assert len(set(fade)) > 5 and fade[-1] == 40, fade
    assert level_at(levels, at(1, 5, day=1)) == 40
    assert level_at(levels, at(5, 10, day=1)) == 100  # after night_until: dusk level
    # Off at sunrise, within two minutes of KASI's 07:47, even though the photocell
    # saw daylight at 07:40.
    off = next(t for t, lv in levels if t > at(6, 0, day=1) and lv == 0)
    assert abs(_local(off) - SUNRISE) <= TOLERANCE_S, f"off at {_local(off)} s"

    # Downlinks: the replay, the old frame and the forgery are refused; another
    # device's frame is ignored without counting it against this light.
    assert result["replays"] == 1
    assert result["rejected"] == 2
    assert result["config_errors"] == 1  # "colour" is not a light's key
    accepted = dict((t, ok) for t, ok in result["accepted"])
    assert accepted[at(21, 10)] and not accepted[at(21, 11)] and not accepted[at(21, 32)]
    assert not accepted[at(21, 33)] and not accepted[at(21, 34)]
    assert result["settings"]["night_level"] == 40 and result["settings"]["lat"] == 37.5665
    assert result["reboot"] is not None and result["reboot"] >= at(8, 0, day=1)

    # Gateway presence: gone an hour after its last downlink (23:00), back at 05:30.
    assert result["online"] == [
        [at(12, 0, 5), True],
        [at(0, 0, 5, day=1), False],
        [at(5, 30, day=1), True],
    ]

    # Every uplink decodes with the gateway codec, counters rising.
    uplinks = decode_uplinks(result["frames"])
    assert all(f.flags & fr.Flags.RX_OPEN for _, f in uplinks)
    statuses = [(t, f.payload) for t, f in uplinks if isinstance(f.payload, fr.LightStatus)]
    faults = [(t, f.payload) for t, f in uplinks if isinstance(f.payload, fr.Fault)]
    tests = [f.payload for _, f in uplinks if isinstance(f.payload, fr.SelfTest)]
    # Lamp faults: raised and cleared once each time, and repeated when the gateway is
    # heard again (the 04:00 failure happened while it was away).
    assert [(p.code, p.active) for _, p in faults] == [(1, 1), (1, 0), (1, 1), (1, 1), (1, 0)]
    assert at(2, 0, day=1) < faults[0][0] <= at(2, 1, day=1)
    assert faults[0][1].detail == 0 and faults[1][1].detail > 100
    assert faults[3][0] == at(5, 30, day=1)
    assert any(t == at(5, 30, day=1) for t, _ in statuses)  # reported at once
    # LIGHT_STATUS every 10 minutes (CONFIG status_s=600), energy only ever rises.
    later = [t for t, _ in statuses if t > at(12, 15)]
    gaps = [b - a for a, b in itertools.pairwise(later)]
    assert max(gaps) <= 600_000 + 5000
    energies = [p.energy_wh for _, p in statuses]
    assert energies == sorted(energies)
    assert 330 <= result["energy_wh"] <= 470, result["energy_wh"]
    assert sum(p.motion_events for _, p in statuses) == 2
    night_status = [p for t, p in statuses if at(0, 10, day=1) <= t <= at(1, 50, day=1)]
    assert all(p.level == 40 and 100 <= p.lamp_ma <= 180 for p in night_status)
    # The self-test: lamp and radio checked and passed, sent right after the 5 s.
    assert [(p.ran, p.passed) for p in tests] == [(0x44, 0x44)]


@pytest.fixture(scope="module")
def night() -> dict[str, Any]:
    return run_in_cpython(night_scenario())


def test_light_through_a_night_in_seoul(night: dict[str, Any]) -> None:
    check_night(night)


# -- focused cases ----------------------------------------------------------------------


class Counters:
    def __init__(self) -> None:
        self.up = 0
        self.down_last: int | None = None

    def next_uplink(self) -> int:
        self.up += 1
        return self.up - 1

    def accept_downlink(self, n: int) -> None:
        self.down_last = n


class Settings(dict[str, Any]):
    def set(self, key: str, value: Any) -> None:
        self[key] = value


class FailingSettings(Settings):
    def set(self, key: str, value: Any) -> None:
        raise OSError(28, "no space")


def _light(settings: Settings | None = None) -> tuple[light.Light, Counters]:
    counters = Counters()
    c = codec.Codec(DEVICE_ID, KEY)
    return light.Light(c, counters, settings if settings is not None else Settings(), 0), counters


def _frames(lt: light.Light) -> list[fr.Frame]:
    out = []
    while (f := lt.next_uplink()) is not None:
        out.append(fr.decode(bytes(f), lambda d, _: fr.DeviceKey.of(KEY)))
    return out


def test_without_time_or_place_the_photocell_decides() -> None:
    lt, _ = _light()
    t = 0
    for _ in range(20):
        lt.tick(t, None, 900)
        t += 5000
    assert lt.level == 0
    for _ in range(20):  # dark for 100 s, longer than photo_s
        lt.tick(t, None, 50)
        t += 5000
    assert lt.level == 100


def test_garbage_and_uplinks_never_raise() -> None:
    lt, _ = _light()
    uplink = codec.Codec(DEVICE_ID, KEY).encode_fault(5, 0, 1, 1, 0)
    for data in (b"", b"\x00" * 3, bytes(range(64)), bytes(uplink), b"\xff" * 80):
        assert lt.downlink(0, data) is False
    assert lt.rejected == 5
    assert lt.online is False


def test_storage_failure_is_reported_once_and_the_light_goes_on() -> None:
    lt, _ = _light(FailingSettings())
    data = Gateway().frame(fr.ConfigSet("status_s", "600"))
    assert lt.downlink(0, bytes.fromhex(data))
    assert lt.cfg["status_s"] == 600  # applied even though it could not be saved
    faults = [f.payload for f in _frames(lt) if isinstance(f.payload, fr.Fault)]
    assert [(p.code, p.active) for p in faults] == [(7, 1)]


def test_config_refuses_out_of_range_values() -> None:
    lt, _ = _light()
    assert not lt.configure("lat", "91")
    assert not lt.configure("status_s", "ten")
    assert lt.configure("lat", "-33.9")
    assert lt.cfg["lat"] == -33.9 and lt.config_errors == 2


def test_bad_stored_settings_fall_back_to_defaults() -> None:
    settings = Settings(lat="north", status_s=5, night_level="40", energy_wh="lots")
    lt, _ = _light(settings)
    assert lt.cfg["lat"] is None and lt.cfg["status_s"] == 900  # defaults
    assert lt.cfg["night_level"] == 40  # text that is a valid number is fine
    assert lt.config_errors == 2 and lt.energy_wh == 0
    lt.tick(1000, None, 50)  # and it runs


def test_a_frame_the_channel_refused_goes_out_again_with_a_new_counter() -> None:
    lt, _ = _light()
    lt.tick(120_000, 350, 900)  # past the first status time
    assert lt.pending == 1
    first = lt.next_uplink()
    assert first is not None and lt.pending == 0
    lt.uplink_failed()  # LBT: channel busy on every try
    assert lt.pending == 1
    again = _frames(lt)
    assert len(again) == 1 and again[0].counter == 1  # counter 0 never went on air


def test_replay_refused_after_a_reboot() -> None:
    settings = Settings()
    lt, counters = _light(settings)
    data = bytes.fromhex(Gateway().frame(fr.SetLevel(20, 5)))
    assert lt.downlink(0, data)
    again = light.Light(codec.Codec(DEVICE_ID, KEY), counters, settings, 0)
    assert not again.downlink(0, data)
    assert again.replays == 1


def test_local_clock_crosses_midnight_and_the_ticks_wrap() -> None:
    clock = light.LocalClock()
    start = int(dt.datetime(2024, 3, 1, 23, 59, 0, tzinfo=KST).timestamp())
    t0 = (1 << 30) - 30_000
    clock.set(start, 36, t0)
    clock.advance((t0 + 90_000) & ((1 << 30) - 1))
    day, sec = clock.local()
    assert sec == 30
    import astro

    assert astro.civil_from_days(day) == (2024, 3, 2)
