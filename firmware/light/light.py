"""The LED security light's behaviour, as a pure class driven by events and a tick.

No `asyncio`, no `machine`: `main.py` reads the hardware and calls in, and the same
class runs on the device, in the WebAssembly MicroPython of the test suite and in the
host simulator. Everything it needs is passed in:

* ``codec`` -- a `codec.Codec` for this device (encodes uplinks, checks downlinks);
* ``counters`` -- frame counters that survive reboots, as `store.Store` keeps them:
  ``next_uplink()`` gives the next uplink counter (never repeated), ``down_last`` is
  the highest downlink counter accepted (None before the first), and
  ``accept_downlink(n)`` records a newly accepted one (may raise OSError);
* ``settings`` -- persistent configuration: ``get(key, default)``, ``set(key, value)``
  (ints, floats, strs); writes may raise OSError (reported as a storage FAULT).

Time comes in as ``now``, a `time.ticks_ms()` value, on every call. Local date and time
come from the gateway's TIME downlinks and are carried forward on the ticks; until the
first TIME the light follows its photocell alone.

What the light does (PROTOCOL.md sections 3.4, 3.5, 4.2, 4.3):

* Schedule (astronomical clock, `astro.py`): off by day; on at sunset at
  ``dusk_level``; ``night_level`` between ``night_from`` and ``night_until`` (minutes
  after local midnight, the window may wrap midnight); off at sunrise.
* Photocell: dark for ``photo_s`` seconds by day (storm, eclipse, a tunnel) turns the
  lamp on at ``dusk_level``; also the whole schedule when no time or place is known.
* PIR: motion while the lamp is on boosts it to 100 % for ``pir_hold_s``, then it fades
  back over ``fade_s``. Every detection is counted for LIGHT_STATUS.
* Lamp supervision: the measured lamp current against what the output level should
  draw (``lamp_ma`` at 100 %). Out of band for ``fault_s`` -> FAULT(1, active) once;
  back in band for ``fault_s`` -> FAULT(1, cleared) once.
* Energy in Wh from the measured current (``lamp_w`` at ``lamp_ma``), persisted every
  ``_SAVE_WH`` and on REBOOT; LIGHT_STATUS every ``status_s`` with the level, current,
  energy and motion count.
* Downlinks: only authenticated downlink frames for this device whose counter is
  higher than the last accepted one; the counter is persisted *before* the command runs,
  so a replay is refused even across a reboot. COMMAND SET_LEVEL (for N minutes, or
  until the schedule next changes), STROBE (N s), SCHEDULE (persisted), REBOOT (after the
  queue drains), CONFIG (known keys, persisted), SELFTEST (lamp at 100 % for 5 s, then a
  SELFTEST uplink); TIME sets the clock.
* Gateway presence: no authenticated downlink for ``offline_s`` means the gateway is
  gone; the light keeps its schedule. When it is heard again the light at once reports
  a LIGHT_STATUS and re-sends its active faults, which the gateway may have missed.
"""

from astro import SECONDS_PER_DAY, sun_times
from codec import COMMAND, FAULT, FLAG_RX_OPEN, LIGHT_STATUS, SELFTEST, TIME, check_header
from compat import const, ticks_diff
from errors import ProtocolError

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

    Buffer = Union[bytes, bytearray, memoryview]
    Ticks = Any  # a ticks_ms() value: only ticks_diff may do arithmetic on it

FW_VERSION = const(0x10)  # 1.0: major in bits 7..4, minor in bits 3..0

# FAULT codes (PROTOCOL.md 3.4) and SELFTEST check bits (3.6).
FAULT_LAMP = const(1)
FAULT_STORAGE = const(7)
CHECK_RADIO = const(0x04)
CHECK_LAMP = const(0x40)

_MS_PER_DAY = const(86_400_000)
_DIR_DOWN = const(0x10)  # type bit 4: downlink
_QUEUE_MAX = const(8)  # pending uplinks; the oldest status is dropped first
_SAVE_WH = const(20)  # persist the energy counter every 20 Wh
_MAX_STEP_MS = const(10_000)  # longest tick gap integrated (the loop was stalled)
_SETTLE_MS = const(3_000)  # output steady this long before the lamp current is judged
SELFTEST_MS = const(5_000)  # lamp at 100 % during a self-test (and the field test)
_STROBE_HALF_MS = const(500)  # strobe: 500 ms on, 500 ms off
_RAMP_MS = const(2_000)  # 0 -> 100 % for ordinary changes
_FIRST_STATUS_S = const(10)  # first LIGHT_STATUS after boot, plus a per-device spread
_MWH_PER_WH = const(1000)
_MW_MS_PER_MWH = const(3_600_000)  # mW x ms in one mWh

# Configuration: key -> default. SCHEDULE's four keys arrive by COMMAND SCHEDULE, the
# others by COMMAND CONFIG or provisioning. Keys are CONFIG keys (<= 16 ASCII).
DEFAULTS = {
    "lat": None,  # degrees north; no place -> photocell only
    "lon": None,  # degrees east
    "dusk_level": 100,  # % from sunset to night_from
    "night_level": 50,  # % in the night window
    "night_from": 0,  # minutes after local midnight
    "night_until": 300,
    "status_s": 900,  # LIGHT_STATUS interval
    "offline_s": 3600,  # no downlink this long: the gateway is gone
    "pir_hold_s": 60,  # full output after the last motion
    "fade_s": 10,  # fade back from the boost
    "lamp_ma": 350,  # lamp current at 100 %
    "lamp_w": 40,  # lamp power at 100 %
    "fault_low_pct": 50,  # below this share of the expected current: lamp failure
    "fault_high_pct": 150,  # above it: wrong or shorted lamp
    "fault_s": 10,  # out of band (or back in band) this long before reporting
    "photo_dark": 300,  # photocell reading at or below: dark
    "photo_light": 600,  # at or above: light (hysteresis)
    "photo_s": 60,  # a photocell change must last this long
}
_SCHEDULE_KEYS = ("dusk_level", "night_level", "night_from", "night_until")
_FLOAT_KEYS = ("lat", "lon")
# CONFIG values are range-checked: key -> (low, high).
_LIMITS = {
    "lat": (-90, 90),
    "lon": (-180, 180),
    "dusk_level": (0, 100),
    "night_level": (0, 100),
    "night_from": (0, 1439),
    "night_until": (0, 1439),
    "status_s": (60, 86400),
    "offline_s": (300, 604800),
    "pir_hold_s": (0, 3600),
    "fade_s": (0, 600),
    "lamp_ma": (1, 20000),
    "lamp_w": (1, 2000),
    "fault_low_pct": (1, 99),
    "fault_high_pct": (101, 1000),
    "fault_s": (1, 3600),
    "photo_dark": (0, 65535),
    "photo_light": (0, 65535),
    "photo_s": (0, 3600),
}

# Uplink queue entries: (frame type, a, b, c).
_Q_STATUS = LIGHT_STATUS
_Q_FAULT = FAULT
_Q_SELFTEST = SELFTEST


def _parse(key: str, value: "Any") -> "Any":
    """``value`` (text or number) as the setting ``key`` holds it, or None if invalid."""
    limits = _LIMITS.get(key)
    if limits is None or value is None or isinstance(value, bool):
        return None
    try:
        v = float(value) if key in _FLOAT_KEYS else int(value)
    except (TypeError, ValueError):
        return None
    if v < limits[0] or v > limits[1]:
        return None
    return v


def light_config(settings: "Any") -> "Tuple[Dict[str, Any], int]":
    """``(cfg, errors)``: every setting from ``settings.get(key, default)`` (the store's
    settings, or the stored config dict itself), checked; ``errors`` counts the values
    that were not valid numbers (a provisioning slip), which fall back to the default
    rather than crash the light at its first tick."""
    cfg: "Dict[str, Any]" = {}
    errors = 0
    for key in DEFAULTS:
        v = _parse(key, settings.get(key, DEFAULTS[key]))
        cfg[key] = DEFAULTS[key] if v is None else v
        if v is None and settings.get(key, None) is not None:
            errors += 1
    return cfg, errors


def lamp_bad(cfg: "Dict[str, Any]", permille: int, ma: int) -> bool:
    """True when ``ma`` is out of band for output ``permille`` (``lamp_ma`` at 100 %,
    ``fault_low_pct`` / ``fault_high_pct`` of what that level should draw)."""
    full = cfg["lamp_ma"]
    if permille < 50:  # commanded (nearly) off: a lamp drawing current is a fault
        return ma > (full // 10 if full // 10 > 20 else 20)
    expected = full * permille // 1000
    return ma * 100 < expected * cfg["fault_low_pct"] or ma * 100 > expected * cfg["fault_high_pct"]


class LocalClock:
    """Local date and time from a TIME downlink, carried forward on ``ticks_ms``.

    Kept as (UTC day number, milliseconds into it): both stay small integers on the
    device, where a Unix time in ms would be a heap-allocated long. ``advance`` must run
    at least every few days (ticks_diff is valid for 2**29 ms); the light does it on
    every tick.
    """

    def __init__(self) -> None:
        self.valid = False
        self._day = 0  # UTC days since 1970-01-01
        self._ms = 0  # ms into that UTC day
        self._at: "Ticks" = 0  # ticks_ms of (_day, _ms)
        self.offset_min = 0  # local time east of UTC

    def set(self, unix_time: int, offset_steps: int, now: "Ticks") -> None:
        self._day = unix_time // SECONDS_PER_DAY
        self._ms = (unix_time - self._day * SECONDS_PER_DAY) * 1000
        self._at = now
        self.offset_min = offset_steps * 15
        self.valid = True

    def advance(self, now: "Ticks") -> None:
        el = ticks_diff(now, self._at)
        if el <= 0:
            return
        self._at = now
        ms = self._ms + el
        while ms >= _MS_PER_DAY:
            ms -= _MS_PER_DAY
            self._day += 1
        self._ms = ms

    def local(self) -> "Tuple[int, int]":
        """``(local day number, seconds after local midnight)``, as of the last advance."""
        s = self._ms // 1000 + self.offset_min * 60
        day = self._day
        if s >= SECONDS_PER_DAY:
            s -= SECONDS_PER_DAY
            day += 1
        elif s < 0:
            s += SECONDS_PER_DAY
            day -= 1
        return day, s


class Light:
    """One security light: schedule, sensors, lamp supervision, radio commands."""

    def __init__(self, codec: "Any", counters: "Any", settings: "Any", now: "Ticks") -> None:
        self._codec = codec
        self._counters = counters
        self._settings = settings
        self.cfg, self.config_errors = light_config(settings)
        self.clock = LocalClock()
        self._last = now
        self._dt = 0  # ms advanced since the last tick (energy integration)
        self._up_s = 0  # uptime, whole seconds (long timers)
        self._up_ms = 0  # and the ms not yet in _up_s
        self._sun_day = -1  # local day of the cached sunrise/sunset
        self._sun = None  # (rise_s, set_s) or None

        # Output: per mille, ramped towards the target.
        self._out = 0
        self._target = 0
        self._ramp_ms = _RAMP_MS  # full-scale time of the change under way
        self._next_ramp = _RAMP_MS
        self._steady_since = now
        self._base = 0  # schedule/photocell level, %
        self._override = -1  # SET_LEVEL %, -1 none
        self._override_until = -1  # uptime s, or -1: until the base level changes
        self._override_base = -1
        self._strobe_at = now
        self._strobe_ms = 0
        self._boost_at = now
        self._boosting = False
        self._selftest_at = now
        self._selftest = False

        # Sensors.
        self.lamp_ma = 0
        self._dark = False
        self._photo_at = now
        self._photo_pending = False
        self.motion_events = 0  # since the last LIGHT_STATUS

        # Lamp supervision.
        self.lamp_fault = False
        self._fault_at = now
        self._fault_pending = False  # the out-of-band (or in-band) condition is timing
        self.storage_fault = False

        # Energy.
        try:
            self.energy_wh = int(settings.get("energy_wh", 0))
        except (TypeError, ValueError):
            self.energy_wh = 0
        self._saved_wh = self.energy_wh
        self._mwh = 0
        self._mw_ms = 0

        # Radio.
        self._queue: "List[Tuple[int, int, int, int]]" = []
        self._taken: "Optional[Tuple[int, int, int, int]]" = None  # last next_uplink() entry
        spread = codec.device_id % 60
        self._next_status = _FIRST_STATUS_S + spread  # uptime s
        self._heard = False
        self._heard_s = 0  # uptime s of the last authenticated downlink
        self.online = False
        self.last_rssi = 0
        self.last_snr = 0
        self.reboot_requested = False
        self.rejected = 0  # downlinks refused (bad MIC, other device, malformed)
        self.replays = 0  # authenticated but not newer than the last accepted
        self.last_error: "Optional[str]" = None

    # -- inputs -----------------------------------------------------------------------

    def motion(self, now: "Ticks") -> None:
        """The PIR saw motion (main.py calls this from the task its IRQ flag wakes)."""
        self._advance(now)
        self.motion_events += 1
        if self._base > 0 or self._override > 0:
            self._boosting = True
            self._boost_at = now

    def tick(
        self, now: "Ticks", lamp_ma: "Optional[int]" = None, photo: "Optional[int]" = None
    ) -> int:
        """Advance to ``now`` with fresh sensor readings; returns the output in per mille.

        ``lamp_ma`` is the measured lamp current (None: no sensor, estimated from the
        output), ``photo`` the photocell reading, higher = brighter (None: none fitted).
        Call it every 100 ms or so; the strobe's resolution is the tick.
        """
        self._advance(now)
        dt = self._dt
        self._dt = 0
        if lamp_ma is not None:
            self.lamp_ma = lamp_ma if lamp_ma > 0 else 0
        else:
            self.lamp_ma = self.cfg["lamp_ma"] * self._out // 1000
        if photo is not None:
            self._photocell(now, photo)
        self._base = self._schedule_level()
        target = self._target_level(now)
        if target != self._target:
            self._target = target
            self._ramp_ms = self._next_ramp
            self._steady_since = now
        self._ramp(now, dt)
        self._integrate(dt if dt < _MAX_STEP_MS else _MAX_STEP_MS)
        self._supervise(now)
        if self._selftest and ticks_diff(now, self._selftest_at) >= SELFTEST_MS:
            self._finish_selftest()
        if self._up_s >= self._next_status:
            self._next_status = self._up_s + self.cfg["status_s"]
            self._enqueue(_Q_STATUS, 0, 0, 0)
        if self._heard and self._up_s - self._heard_s > self.cfg["offline_s"]:
            self.online = False
        return self._out

    def _advance(self, now: "Ticks") -> None:
        """Move the uptime and the clock to ``now``; the ms go to the next tick's ``_dt``."""
        dt = ticks_diff(now, self._last)
        if dt <= 0:
            return
        self._last = now
        self._dt += dt
        self._up_ms += dt
        if self._up_ms >= 1000:
            self._up_s += self._up_ms // 1000
            self._up_ms %= 1000
        self.clock.advance(now)

    @property
    def level(self) -> int:
        """Output now, % (what LIGHT_STATUS reports)."""
        return (self._out + 5) // 10

    def _photocell(self, now: "Ticks", photo: int) -> None:
        want = self._dark
        if photo <= self.cfg["photo_dark"]:
            want = True
        elif photo >= self.cfg["photo_light"]:
            want = False
        if want == self._dark:
            self._photo_pending = False
        elif not self._photo_pending:
            self._photo_pending = True
            self._photo_at = now
        elif ticks_diff(now, self._photo_at) >= self.cfg["photo_s"] * 1000:
            self._dark = want
            self._photo_pending = False

    def _schedule_level(self) -> int:
        """The level the schedule and photocell ask for now, %."""
        cfg = self.cfg
        dusk = cfg["dusk_level"]
        if not self.clock.valid:
            return dusk if self._dark else 0
        day, sec = self.clock.local()
        if day != self._sun_day:
            self._sun_day = day
            lat, lon = cfg["lat"], cfg["lon"]
            self._sun = None
            if lat is not None and lon is not None:
                self._sun = sun_times(day, lat, lon, self.clock.offset_min)
        sun = self._sun
        if sun is None:  # no place known, or a polar day/night: the photocell decides
            night = self._dark
        else:
            night = sec < sun[0] or sec >= sun[1]
        if not night:
            return dusk if self._dark else 0
        minute = sec // 60
        start, end = cfg["night_from"], cfg["night_until"]
        if start <= end:
            in_window = start <= minute < end
        else:
            in_window = minute >= start or minute < end
        return cfg["night_level"] if in_window else dusk

    def _target_level(self, now: "Ticks") -> int:
        """Per mille the output should move to, in priority order; sets ``_next_ramp``."""
        self._next_ramp = _RAMP_MS
        if self._selftest:
            self._next_ramp = 0
            return 1000
        if self._strobe_ms:
            el = ticks_diff(now, self._strobe_at)
            if el < self._strobe_ms:
                self._next_ramp = 0
                return 1000 if (el // _STROBE_HALF_MS) % 2 == 0 else 0
            self._strobe_ms = 0
        level = self._base
        if self._override >= 0:
            if self._override_until >= 0:
                expired = self._up_s >= self._override_until
            else:
                expired = self._base != self._override_base
            if expired:
                self._override = -1
            else:
                level = self._override
        if self._boosting:
            if level > 0 and ticks_diff(now, self._boost_at) < self.cfg["pir_hold_s"] * 1000:
                return 1000
            self._boosting = False
            self._next_ramp = self.cfg["fade_s"] * 1000  # fade back, not a step
        return level * 10

    def _ramp(self, now: "Ticks", dt: int) -> None:
        target = self._target
        if self._ramp_ms <= 0:
            self._out = target
            return
        step = dt * 1000 // self._ramp_ms
        if step < 1:
            step = 1
        if self._out < target:
            self._out = self._out + step if self._out + step < target else target
        elif self._out > target:
            self._out = self._out - step if self._out - step > target else target
        if self._out != target:
            self._steady_since = now

    def _integrate(self, dt: int) -> None:
        cfg = self.cfg
        mw = cfg["lamp_w"] * 1000 * self.lamp_ma // cfg["lamp_ma"]
        acc = self._mw_ms + mw * dt
        if acc >= _MW_MS_PER_MWH:
            self._mwh += acc // _MW_MS_PER_MWH
            acc %= _MW_MS_PER_MWH
            if self._mwh >= _MWH_PER_WH:
                self.energy_wh += self._mwh // _MWH_PER_WH
                self._mwh %= _MWH_PER_WH
                if self.energy_wh - self._saved_wh >= _SAVE_WH:
                    self._save_energy()
        self._mw_ms = acc

    def _save_energy(self) -> None:
        if self._persist("energy_wh", self.energy_wh):
            self._saved_wh = self.energy_wh

    def _supervise(self, now: "Ticks") -> None:
        """Lamp current against the output: FAULT once per change."""
        if self._strobe_ms or self._selftest or self._out != self._target:
            self._fault_pending = False
            return
        if ticks_diff(now, self._steady_since) < _SETTLE_MS:
            return
        bad = self._lamp_bad(self._out, self.lamp_ma)
        if bad == self.lamp_fault:
            self._fault_pending = False
            return
        if not self._fault_pending:
            self._fault_pending = True
            self._fault_at = now
        elif ticks_diff(now, self._fault_at) >= self.cfg["fault_s"] * 1000:
            self._fault_pending = False
            self.lamp_fault = bad
            self._enqueue(_Q_FAULT, FAULT_LAMP, 1 if bad else 0, self.lamp_ma)

    def _lamp_bad(self, permille: int, ma: int) -> bool:
        return lamp_bad(self.cfg, permille, ma)

    # -- downlinks ----------------------------------------------------------------------

    def downlink(self, now: "Ticks", data: "Buffer", rssi: int = 0, snr: int = 0) -> bool:
        """A received LoRa packet. True when it was an accepted command for this light.

        Anything else -- other devices' frames, uplinks, garbage, forgeries, replays -- is
        counted and dropped; nothing a radio delivers can raise out of here.
        """
        self._advance(now)
        try:
            ftype, device_id, _, _ = check_header(data)
            if device_id != self._codec.device_id:
                return False  # another device's frame: not ours to count
            if not ftype & _DIR_DOWN:
                raise ProtocolError("uplink frame type 0x%02x received" % ftype)
            last = self._counters.down_last
            name, _, counter, _, fields = self._codec.decode(data, last)
        except ProtocolError as exc:
            self.rejected += 1
            self.last_error = type(exc).__name__
            return False
        if last is not None and counter <= last:
            self.replays += 1
            self.last_error = "Replay"
            return False
        # Persist first: if this command reboots the light (or power fails while it
        # runs), the same frame can never be accepted again.
        try:
            self._counters.accept_downlink(counter)
        except OSError:
            self._storage_failed()
            return False
        self.last_rssi = rssi
        self.last_snr = snr
        self._heard_from_gateway()
        if ftype == TIME:
            self.clock.set(fields["unix_time"], fields["utc_offset"], now)
            self.clock.advance(now)
            self._sun_day = -1
        elif ftype == COMMAND:
            self._command(now, fields)
        return True

    def _heard_from_gateway(self) -> None:
        self._heard_s = self._up_s
        was = self.online
        self._heard = True
        self.online = True
        if not was:
            # Back in touch (or for the first time since boot): report now, and repeat
            # the faults that are active, which may have gone out while nobody listened.
            self._enqueue(_Q_STATUS, 0, 0, 0)
            if self.lamp_fault:
                self._enqueue(_Q_FAULT, FAULT_LAMP, 1, self.lamp_ma)
            if self.storage_fault:
                self._enqueue(_Q_FAULT, FAULT_STORAGE, 1, 0)

    def _command(self, now: "Ticks", fields: "Any") -> None:
        op = fields["opcode"]
        if op == "SET_LEVEL":
            self._override = fields["level"]
            self._override_base = self._base
            minutes = fields["minutes"]
            self._override_until = self._up_s + minutes * 60 if minutes else -1
        elif op == "STROBE":
            self._strobe_at = now
            self._strobe_ms = fields["seconds"] * 1000
        elif op == "SCHEDULE":
            for key in _SCHEDULE_KEYS:
                self.cfg[key] = fields[key]
                self._persist(key, fields[key])
        elif op == "REBOOT":
            self._save_energy()
            self.reboot_requested = True
        elif op == "CONFIG":
            self.configure(fields["key"], fields["value"])
        elif op == "SELFTEST":
            self._selftest = True
            self._selftest_at = now

    def configure(self, key: str, value: str) -> bool:
        """Apply and persist one setting given as text (COMMAND CONFIG, provisioning).

        Unknown keys and bad values are refused and counted; they belong to another
        device kind, or to a newer firmware.
        """
        if key not in _LIMITS:
            self.config_errors += 1
            self.last_error = "ConfigKey"
            return False
        v = _parse(key, value)
        if v is None:
            self.config_errors += 1
            self.last_error = "ConfigValue"
            return False
        self.cfg[key] = v
        if key in ("lat", "lon"):
            self._sun_day = -1
        if key == "status_s" and self._next_status > self._up_s + v:
            self._next_status = self._up_s + v
        self._persist(key, v)
        return True

    def _persist(self, key: str, value: "Any") -> bool:
        try:
            self._settings.set(key, value)
        except OSError:
            self._storage_failed()
            return False
        return True

    def _storage_failed(self) -> None:
        if not self.storage_fault:
            self.storage_fault = True
            self._enqueue(_Q_FAULT, FAULT_STORAGE, 1, 0)

    def _finish_selftest(self) -> None:
        self._selftest = False
        ma = self.lamp_ma
        passed = CHECK_RADIO  # the command arrived, authenticated: the radio works
        if not self._lamp_bad(1000, ma):
            passed |= CHECK_LAMP
        self._enqueue(_Q_SELFTEST, CHECK_RADIO | CHECK_LAMP, passed, 0)

    # -- uplinks ------------------------------------------------------------------------

    def _enqueue(self, ftype: int, a: int, b: int, c: int) -> None:
        q = self._queue
        if ftype == _Q_STATUS:
            for item in q:
                if item[0] == _Q_STATUS:
                    return  # one status pending is enough: it is sampled when sent
        if len(q) >= _QUEUE_MAX:
            for i in range(len(q)):
                if q[i][0] == _Q_STATUS:
                    q.pop(i)
                    break
            else:
                q.pop(0)
        q.append((ftype, a, b, c))

    def uplink_failed(self) -> None:
        """The frame last taken could not be sent (channel busy): queue it again.

        It will go out under a new counter; the one it had was never on air.
        """
        if self._taken is not None:
            self._queue.insert(0, self._taken)
            self._taken = None

    @property
    def pending(self) -> int:
        """Uplinks waiting for the radio."""
        return len(self._queue)

    def next_uplink(self) -> "Optional[memoryview]":
        """The next uplink frame, or None; valid until the next call (the codec's buffer).

        Each frame gets a fresh counter when it is taken, so what is returned must be
        sent (or lost), never taken twice.
        """
        if not self._queue:
            return None
        item = self._queue.pop(0)
        self._taken = item
        ftype, a, b, c = item
        try:
            counter = self._counters.next_uplink()
        except OSError:  # the counter block could not be reserved in flash
            self.uplink_failed()
            self._storage_failed()
            return None
        codec = self._codec
        if ftype == _Q_STATUS:
            events = self.motion_events
            self.motion_events = 0
            return codec.encode_light_status(
                counter, FLAG_RX_OPEN, self.level, self.lamp_ma, self.energy_wh, events
            )
        if ftype == _Q_FAULT:
            return codec.encode_fault(counter, FLAG_RX_OPEN, a, b, c)
        return codec.encode_selftest(counter, FLAG_RX_OPEN, a, b, 0)


# -- the field test (provisioning mode's TEST) -------------------------------------------


async def field_checks(
    hw: "Any",
    radio: "Any",
    store: "Any",
    sleep_ms: "Callable[[int], Awaitable[Any]]",
    notes: "Optional[Dict[str, str]]" = None,
) -> "Dict[str, Any]":
    """The light's self-test on its hardware, for the field test (firmware/lib/fieldtest.py).

    The lamp as in the light's own self-test (COMMAND SELFTEST): 100 % for `SELFTEST_MS`,
    the measured current judged by `lamp_bad`, then off. The radio by a carrier sense
    (SPI, BUSY line and receiver answer; ``radio`` None: it could not be built), the
    storage by reading the config back. ``hw`` is main.py's ``Hardware`` or anything with
    ``output(permille)``, ``lamp_ma()`` and ``photo_mv()``; ``notes`` gets why a check
    failed. Returns ``{"checks": {"radio", "storage", "lamp": bool}, "lamp_ma",
    "photocell_mv"}``.
    """
    from fieldtest import why

    checks = {"radio": False}
    if radio is not None:
        try:
            await radio.channel_clear()
            checks["radio"] = True
        except (RuntimeError, OSError) as exc:
            if notes is not None:
                notes["radio"] = why(exc)
    stored = store.load_config()
    checks["storage"] = stored is not None
    if stored is None and notes is not None:
        notes["storage"] = "no readable config"
    cfg = light_config(stored or {})[0]
    hw.output(1000)
    await sleep_ms(SELFTEST_MS)
    ma = hw.lamp_ma()
    hw.output(0)
    checks["lamp"] = not lamp_bad(cfg, 1000, ma)
    if not checks["lamp"] and notes is not None:
        notes["lamp"] = "%d mA at 100 %%, expected about %d mA" % (ma, cfg["lamp_ma"])
    return {"checks": checks, "lamp_ma": ma, "photocell_mv": hw.photo_mv()}


def field_test(
    hw: "Any",
    store: "Any",
    make_radio: "Callable[[Dict[str, Any]], Any]",
    sleep_ms: "Callable[[int], Awaitable[Any]]",
) -> "Any":
    """The light's field-test service (`fieldtest.FieldTest`): `field_checks`, and the
    test ALARM (mains powered: no battery reading). Imported here, not at the top: the
    app itself never loads it."""
    from fieldtest import FieldTest

    async def checks(radio: "Any", notes: "Dict[str, str]") -> "Dict[str, Any]":
        return await field_checks(hw, radio, store, sleep_ms, notes)

    return FieldTest(store, make_radio, checks)
