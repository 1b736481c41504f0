"""Fakes and a test rig for the bell, runnable in CPython and in MicroPython.

No tests here. The scenario modules (test_bell_scenarios.py, test_store_scenarios.py,
test_radio_lbt.py, test_feedback_patterns.py) import this in both interpreters: under
pytest as ``tests.unit.test_bell_fakes``, in the WebAssembly port as a flat module in
/lib (tests/micropython/test_bell_mp.py). So: MicroPython-compatible code only (no
pytest, no typing, no f-string debugging specifiers, no CPython-only modules).

The fakes follow the real interfaces exactly: `FakeNvs` is ``esp32.NVS`` (set_blob,
get_blob into a bytearray returning the length, OSError for a missing key, nothing
durable before commit), `FakeRtc` is ``machine.RTC().memory``.
"""

import sys

if sys.implementation.name != "micropython":
    import os

    _ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _d in ("firmware/bell", "firmware/lib"):
        _p = os.path.join(_ROOT, _d)
        if _p not in sys.path:
            sys.path.insert(0, _p)

import codec
from compat import ticks_add
from store import NvsBackend, Store

# The bell's constants, as the rig needs them (bell.py is imported lazily, by `Rig`,
# so the store, radio and feedback tests do not depend on it).
BOOT_COLD = 0

DEVICE_ID = 0x0B311001
KEY_HEX = "000102030405060708090a0b0c0d0e0f"
KEY = bytes.fromhex(KEY_HEX)
CONFIG = {"device_id": DEVICE_ID, "key": KEY_HEX, "place": "Namsan trail 3"}
TOA_MS = 206  # a 20-byte frame at SF9/125 kHz, preamble 12 (radio-and-performance 1)
RX_DELAY_MS = 1000
RX_WINDOW_MS = 1500
WRAP_START = (1 << 30) - 20000  # ticks 20 s before they wrap: exercises wrap-around

# Every scenario stores what its bell put on air here: name -> {device_id, key,
# frames: [hex, ...]}. The CPython side decodes them with the gateway codec and
# compares the MicroPython run with the CPython run, byte for byte.
TRACES = {}


class PowerCut(Exception):
    """Raised by a fake to stop the world mid-write, like pulling the battery."""


class Clock:
    """A ticks_ms() that only moves when told to, with a count of elapsed ms."""

    def __init__(self, start=WRAP_START):
        self.t = start
        self.elapsed = 0

    def __call__(self):
        return self.t

    def advance(self, ms):
        while ms > 0:  # ticks_add takes less than half the period per call
            step = ms if ms < 0x10000000 else 0x10000000
            self.t = ticks_add(self.t, step)
            self.elapsed += step
            ms -= step


def lcg(seed):
    """rand(n) -> [0, n): the same sequence in CPython and MicroPython."""
    state = [seed & 0x7FFFFFFF]

    def rand(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 8) % n if n > 0 else 0

    return rand


class FakeNvs:
    """esp32.NVS: blobs, durable only after commit(); counts commits (flash wear)."""

    def __init__(self):
        self.blobs = {}
        self.pending = {}
        self.commits = 0
        self.writes = {}  # key -> commits that wrote it
        self.cut_at_commit = -1  # raise PowerCut at this commit number (before it lands)
        self.fail_writes = False  # raise OSError from set_blob (a dead flash)

    def set_blob(self, key, value):
        if len(key) > 15:
            raise OSError("key too long")
        if self.fail_writes:
            raise OSError(5)
        self.pending[key] = bytes(value)

    def get_blob(self, key, buf):
        data = self.blobs.get(key)
        if data is None:
            raise OSError(-0x1102)  # ESP_ERR_NVS_NOT_FOUND
        if len(data) > len(buf):
            raise OSError(-0x110C)  # ESP_ERR_NVS_INVALID_LENGTH
        buf[0 : len(data)] = data
        return len(data)

    def erase_key(self, key):
        if key not in self.blobs and key not in self.pending:
            raise OSError(-0x1102)
        self.pending[key] = None

    def commit(self):
        if self.commits == self.cut_at_commit:
            self.pending = {}
            raise PowerCut()
        self.commits += 1
        for k in self.pending:
            v = self.pending[k]
            if v is None:
                self.blobs.pop(k, None)
            else:
                self.blobs[k] = v
                self.writes[k] = self.writes.get(k, 0) + 1
        self.pending = {}


class FakeRtc:
    """machine.RTC(): memory() -> bytes, memory(data); 2048 bytes on the ESP32."""

    def __init__(self):
        self.mem = b""

    def memory(self, data=None):
        if data is None:
            return self.mem
        if len(data) > 2048:
            raise ValueError("too long")
        self.mem = bytes(data)
        return None

    def power_loss(self):
        self.mem = b""


class FakeSensors:
    def __init__(self):
        self.battery = 3600
        self.temperature = 21
        self.uptime = 5

    def battery_mv(self):
        return self.battery

    def temperature_c(self):
        return self.temperature

    def uptime_h(self):
        return self.uptime


class Gateway:
    """The far end, just enough for the bell: decodes uplinks (device codec; the
    CPython tests decode the same bytes again with the gateway's codec), journals
    ALARM events by event id, and answers frames sent with RX_OPEN with an ACK."""

    def __init__(self):
        self.last_up = None
        self.down = 0
        self.events = {}  # event id -> ALARM press_count as first heard
        self.alarm_state = 1  # what ACKs report: delivered, 2 acknowledged, 3 resolved
        self.heard = []  # (type name, counter, flags, fields)

    def uplink(self, data):
        name, dev, counter, flags, fields = codec.decode(data, KEY, self.last_up)
        if self.last_up is not None:
            if counter == self.last_up:
                # Only an unacknowledged ALARM is ever retransmitted (PROTOCOL.md 1.3).
                assert name == "ALARM" and flags & codec.FLAG_RETRY, (name, counter)
            else:
                assert counter > self.last_up, ("counter went down", counter, self.last_up)
        self.last_up = counter
        self.heard.append((name, counter, flags, fields))
        if name == "ALARM":
            eid = f"{dev:08x}-{counter:08x}"
            if eid not in self.events:
                self.events[eid] = fields["press_count"]
        return name, counter, flags, fields

    def ack(self, counter):
        self.down += 1
        return codec.encode(
            "ACK",
            DEVICE_ID,
            self.down,
            0,
            {"acked_counter": counter, "alarm_state": self.alarm_state},
            KEY,
        )


class Rig:
    """A bell with its store, clock, sensors, radio link and gateway, all fake.

    ``run(ms)`` executes the bell's actions while the clock advances ``ms``: a
    TRANSMIT takes TOA_MS on air, then (with RX_OPEN) the gateway's ACK arrives in the
    receive window if ``link`` is up; SLEEP advances the clock. ``reboot()`` builds a
    new Bell and Store over the same NVS (and RTC memory unless it lost power).
    """

    def __init__(self, name, config=CONFIG, rtc=True, seed=1, nvs=None, block=32):
        self.name = name
        self.clock = Clock()
        self.nvs = nvs if nvs is not None else FakeNvs()
        self.rtc = FakeRtc() if rtc else None
        self.block = block
        self.sensors = FakeSensors()
        self.gw = Gateway()
        self.rand = lcg(seed)
        self.link = True  # uplinks heard and ACKs received
        self.busy = False  # LBT finds the channel busy
        self.selftest = (0x07, 0x07)  # (ran, passed) the glue reports
        self.frames = []  # (elapsed ms, type name, counter, flags, fields)
        self.patterns = []  # (elapsed ms, pattern name)
        self.sleeps = []  # the last SLEEP actions: (sleep_ms, deep, wake_button, wake_tamper)
        self.reboots = 0
        self.commands_reboot = 0
        self.bell = None
        self.store = None
        self.acks = []  # every downlink delivered, as bytes
        self._seen = None  # highest uplink counter on air so far
        TRACES[name] = {"device_id": DEVICE_ID, "key": KEY_HEX, "frames": []}
        if config is not None:
            Store(NvsBackend(self.nvs)).save_config(config)

    def boot(self, cause=BOOT_COLD, pressed=False, tamper=False):
        from bell import Bell

        self.store = Store(NvsBackend(self.nvs), self.rtc, self.block)
        self.bell = Bell(self.store, self.clock, self.rand, self.sensors)
        self.bell.boot(cause, pressed, tamper)
        return self

    def reboot(self, cause=BOOT_COLD, power_loss=True, pressed=False, tamper=False):
        if power_loss and self.rtc is not None:
            self.rtc.power_loss()
        self.reboots += 1
        return self.boot(cause, pressed, tamper)

    def now(self):
        return self.clock.elapsed

    def press(self, hold_ms=150):
        """A resident's press: down, held, up (with the action loop running)."""
        self.bell.button(True)
        self.run(hold_ms)
        self.bell.button(False)

    def types(self, since=0):
        return [f[1] for f in self.frames if f[0] >= since]

    def pattern(self):
        return self.patterns[-1][1] if self.patterns else None

    def step(self, limit_ms):
        """Execute one action; advance at most ``limit_ms`` while sleeping."""
        from bell import FEEDBACK, REBOOT, SELFTEST, SLEEP, TRANSMIT
        from feedback import NAMES

        act = self.bell.next_action()
        k = act.kind
        if k == FEEDBACK:
            self.patterns.append((self.now(), NAMES[act.pattern]))
            return 0
        if k == SELFTEST:
            self.bell.selftest_done(self.selftest[0], self.selftest[1])
            return 0
        if k == REBOOT:
            self.commands_reboot += 1
            return 0
        if k == TRANSMIT:
            return self._transmit(bytes(act.frame), act.rx_open)
        assert k == SLEEP
        self.sleeps.append((act.sleep_ms, act.deep, act.wake_button, act.wake_tamper))
        if len(self.sleeps) > 50:
            self.sleeps.pop(0)
        ms = act.sleep_ms if act.sleep_ms < limit_ms else limit_ms
        ms = ms if ms > 0 else 1
        self.clock.advance(ms)
        return ms

    def run(self, ms):
        end = self.now() + ms
        while self.now() < end:
            self.step(end - self.now())

    def run_until(self, cond, limit_ms=3600000):
        end = self.now() + limit_ms
        while not cond():
            assert self.now() < end, f"condition not met within {limit_ms} ms"
            self.step(end - self.now())
        self.run(1)  # the actions the change calls for (feedback) happen at once

    def _transmit(self, data, rx_open):
        from bell import TX_BUSY, TX_OK

        if self.busy:
            self.clock.advance(30)  # LBT tries
            self.bell.transmitted(TX_BUSY)
            return 30
        TRACES[self.name]["frames"].append(data.hex())
        self.clock.advance(TOA_MS)
        tx_end = self.clock()
        # What went on air, as any receiver would decode it (heard or not).
        name, _dev, counter, flags, fields = codec.decode(data, KEY, self._seen)
        if self._seen is None or counter > self._seen:
            self._seen = counter
        self.frames.append((self.now(), name, counter, flags, fields))
        if self.link:
            self.gw.uplink(data)
        self.bell.transmitted(TX_OK, tx_end)
        if not rx_open:
            return TOA_MS
        self.clock.advance(RX_DELAY_MS)
        if self.link:
            ack = self.gw.ack(counter)
            self.acks.append(ack)
            self.clock.advance(60)  # the ACK's time on air
            self.bell.received(ack, -87, -9)
            self.clock.advance(RX_WINDOW_MS - 60)
        else:
            self.clock.advance(RX_WINDOW_MS)
        return TOA_MS + RX_DELAY_MS + RX_WINDOW_MS
