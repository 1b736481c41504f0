"""The bell's behaviour, as a pure class: events in, actions out.

No asyncio, no ``machine``: `Bell` is driven by calls from the glue (``main.py`` on
the device, the simulator on a host, tests in CPython and in MicroPython) and reads
time only from an injected ``clock`` (``ticks_ms``-style, wrap-safe arithmetic),
randomness only from an injected ``rand(n)``, and keeps everything that must outlive
a reboot in an injected `store.Store`.

Events: `boot`, `button`, `tamper`, `transmitted`, `received`, `selftest_done`.
Actions: `next_action` returns the next thing to do, in one reused `Action` (valid
until the next call): TRANSMIT a frame (and listen in the receive window after it if
``rx_open``), show a FEEDBACK pattern, run a SELFTEST, REBOOT, or SLEEP for
``sleep_ms`` (deep sleep if ``deep``). The glue calls `next_action` again after each
action and after each input event.

**The alarm** (ARCHITECTURE invariant 3, PROTOCOL.md 1.3 and 3.1):

* A press (debounced on its leading edge, so the radio never waits for the debounce)
  takes the next uplink counter, *persists the alarm record* with it, and only then
  emits the first TRANSMIT: ALARM with RX_OPEN. A deep-sleep wake by the button is
  itself the press (the press may be over by the time MicroPython has booted).
* No ACK in the window: retransmit the *same* frame (same counter, RETRY set) after
  an exponential back-off with jitter: ``base = 1 s << tries`` capped at 30 s, wait
  ``base + rand(base)`` after the window closes (1-2 s, 2-4 s, ... then 30-60 s);
  after 30 minutes unacknowledged the cap becomes 150 s (150-300 s) to save the cell
  in a long gateway outage. It never gives up: only an ACK ends the retries.
* While the ALARM is unacknowledged the bell sends nothing else, so the pending alarm
  always carries the highest uplink counter the gateway will see.
* After a reboot (brownout, watchdog, deep sleep) the record is reloaded: the same
  counter is retransmitted with RETRY, at once. Frames after it use higher counters.
* More presses are the same incident. Before the first ACK the retransmissions stay
  byte-for-byte the original ALARM (a retransmission with different bytes under the
  same counter would be deduplicated away by the gateway, press count and all); the
  extra presses are counted, persisted, and travel in an ALARM_UPDATE right after
  the ACK. After the ACK each press sends an ALARM_UPDATE, at most one per 5 s.
* ACK ``alarm_state`` drives the feedback: delivered (steady), acknowledged by an
  operator ("help is coming"), resolved (three flashes, then idle). After
  `NOT_THROUGH_AFTER` tries without an ACK the bell shows "not through yet" and
  keeps trying.
* Once delivered, ALARM_UPDATE keep-alives with RX_OPEN (every ``keepalive_s``,
  default 20 s plus up to 25 % jitter; three times slower once acknowledged) give the
  operator's acknowledgement and the resolution a receive window. They stop when
  resolved, or ``alarm_timeout_s`` (default 30 min) after delivery.

**Health**: a HEARTBEAT every ``heartbeat_s`` (default 1 h; at once after a cold boot
and on each deep-sleep timer wake) with battery, temperature, uptime, active faults,
firmware version and the last downlink's RSSI/SNR. FAULT frames once per change of
each fault (tamper open, button stuck > ``stuck_s``, battery < ``low_battery_mv``
with 100 mV hysteresis, self-test failure, radio failure, storage failure); the
bitmap in every heartbeat repairs a lost FAULT. A self-test after each cold boot and
every ``selftest_h`` hours (default 24), reported in a SELFTEST frame.

**Downlinks** are authenticated by the codec and must carry a downlink counter above
the last accepted one (persisted): a replayed ACK or COMMAND is dropped and counted.

No config (or an invalid one) in the store: provisioning mode, shown on the LED, and
the store is checked every few seconds until provisioning writes a config.
"""

from codec import FLAG_MORE, FLAG_RETRY, FLAG_RX_OPEN, FLAG_TEST, Codec
from compat import const, ticks_add, ticks_diff
from errors import ProtocolError
from feedback import (
    ACKNOWLEDGED,
    DELIVERED,
    IDLE,
    NOT_THROUGH,
    PROVISIONING,
    RESOLVED,
    RESOLVED_MS,
    SENDING,
)

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional

    Ticks = Any  # a ticks_ms() value: only ticks_add/ticks_diff may do arithmetic

FW_VERSION = const(0x10)  # 1.0: major in bits 7..4, minor in 3..0 (PROTOCOL.md 3.3)

# Action kinds
SLEEP = const(0)
TRANSMIT = const(1)
FEEDBACK = const(2)
SELFTEST = const(3)
REBOOT = const(4)

# Why the board booted (the glue maps machine.reset_cause()/wake_reason()).
BOOT_COLD = const(0)  # power-on, brownout, hard reset: RTC memory lost
BOOT_WARM = const(1)  # soft or watchdog reset: RTC memory kept
BOOT_TIMER = const(2)  # deep-sleep timer: the heartbeat is due
BOOT_BUTTON = const(3)  # deep-sleep wake by the button (ESP32 ext0): a press

# transmitted() results
TX_OK = const(0)
TX_BUSY = const(1)  # LBT: channel busy on every try, nothing sent
TX_ERROR = const(2)  # the radio failed (driver exception)

# Alarm states. The numbers of the ACK's alarm_state (PROTOCOL.md 4.1) are mapped
# in _on_ack; these order the bell's own progress.
ALARM_NONE = const(0)
ALARM_PENDING = const(1)  # sent, not acknowledged by the gateway yet
ALARM_DELIVERED = const(2)  # the gateway journaled it
ALARM_ACKNOWLEDGED = const(3)  # an operator acknowledged: help is coming

# FAULT codes (PROTOCOL.md 3.4); heartbeat bitmap bit = code - 1.
FAULT_TAMPER = const(2)
FAULT_STUCK_BUTTON = const(3)
FAULT_LOW_BATTERY = const(4)
FAULT_SELFTEST = const(5)
FAULT_RADIO = const(6)
FAULT_STORAGE = const(7)
_FAULT_CODES = const(8)

# SELFTEST check bits (PROTOCOL.md 3.6)
CHECK_LED = const(0x01)
CHECK_BUZZER = const(0x02)
CHECK_RADIO = const(0x04)
CHECK_BATTERY = const(0x08)
CHECK_BUTTON = const(0x10)
CHECK_TAMPER = const(0x20)
CHECK_STORAGE = const(0x80)

# ALARM alarm_flags (PROTOCOL.md 3.1)
_AF_TAMPER = const(0x01)
_AF_LOW_BATTERY = const(0x02)

# What the frame in flight is, so transmitted() knows what it reports on.
_K_NONE = const(0)
_K_ALARM = const(1)
_K_UPDATE = const(2)
_K_FAULT = const(3)
_K_HEARTBEAT = const(4)
_K_SELFTEST = const(5)

NOT_THROUGH_AFTER = const(3)  # tries without an ACK before "not through yet"
_DEBOUNCE_MS = const(50)  # button contact bounce
_TAMPER_SETTLE_MS = const(500)  # a tamper switch must hold its new level this long
_RX_DELAY_MS = const(1000)  # PROTOCOL.md 1.4
_RX_WINDOW_MS = const(1500)
_RETRY_FIRST_MS = const(1000)  # first retry base; LoRaWAN RETRANSMIT_TIMEOUT is 2+-1 s
_RETRY_CAP_MS = const(30000)  # base cap: retries every 30-60 s
_RETRY_SLOW_AFTER_MS = const(1800000)  # after 30 min unacknowledged...
_RETRY_SLOW_CAP_MS = const(150000)  # ... every 150-300 s
_UPDATE_MIN_MS = const(5000)  # at most one press-triggered ALARM_UPDATE per 5 s
_ACKED_SLOWDOWN = const(3)  # keep-alives this much slower once acknowledged
_OTHER_RETRY_MS = const(30000)  # a heartbeat/fault that found the channel busy
_PROVISION_POLL_MS = const(5000)  # look for a config this often
_BATTERY_HYSTERESIS_MV = const(100)
_FAR_MS = const(0x1FFFFFFF)  # "not before transmitted()": the largest ticks_add delta

_CONFIG_INTS = {
    # key: (default, minimum, maximum)
    "heartbeat_s": (3600, 60, 86400),
    "keepalive_s": (20, 5, 600),
    "alarm_timeout_s": (1800, 60, 86400),
    "stuck_s": (30, 5, 3600),
    "low_battery_mv": (3300, 0, 5100),
    "selftest_h": (24, 1, 720),
    "button": (0, 0, 2),
}


def parse_config(cfg: "Any") -> "Dict[str, Any]":
    """Validate a config dict from the store; defaults filled in.

    Raises ValueError naming the key and the bad value. ``device_id`` is an int or a
    hex string, ``key`` 32 hex digits (the 128-bit device key).
    """
    if not isinstance(cfg, dict):
        raise ValueError("config must be a JSON object")
    out: "Dict[str, Any]" = {}
    dev = cfg.get("device_id")
    if isinstance(dev, str):
        try:
            dev = int(dev, 16)
        except ValueError:
            raise ValueError("device_id: not hex: %r" % (dev,)) from None
    if not isinstance(dev, int) or isinstance(dev, bool) or not 0 <= dev <= 0xFFFFFFFF:
        raise ValueError("device_id: need a 32-bit id, not %r" % (dev,))
    out["device_id"] = dev
    key = cfg.get("key")
    if not isinstance(key, str) or len(key) != 32:
        raise ValueError("key: need 32 hex digits")
    try:
        out["key"] = bytes.fromhex(key)
    except ValueError:
        raise ValueError("key: not hex") from None
    for name in _CONFIG_INTS:
        default, lo, hi = _CONFIG_INTS[name]
        v = cfg.get(name, default)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError("%s: need an integer %d..%d, not %r" % (name, lo, hi, v))
        out[name] = v
    out["test"] = bool(cfg.get("test", False))
    return out


class Action:
    """What the glue should do next; one instance, rewritten by each `next_action`."""

    def __init__(self) -> None:
        self.kind = SLEEP
        self.frame: "Any" = None  # TRANSMIT: a memoryview, valid until the next encode
        self.rx_open = False  # TRANSMIT: listen in the receive window afterwards
        self.pattern = IDLE  # FEEDBACK
        self.restart = False  # FEEDBACK: restart the pattern even if unchanged
        self.sleep_ms = 0  # SLEEP: at most this long (an input event ends it early)
        self.deep = False  # SLEEP: deep sleep allowed (RAM lost, reboot on wake)
        self.wake_button = True  # SLEEP deep: arm the button wake (not while stuck)
        self.wake_tamper = True  # SLEEP deep: arm the tamper wake (not while open)


class Bell:
    """One emergency bell. See the module docstring for the behaviour."""

    def __init__(
        self,
        store: "Any",
        clock: "Callable[[], Ticks]",
        rand: "Callable[[int], int]",
        sensors: "Any",
        codec: "Any" = None,
        fw_version: int = FW_VERSION,
    ) -> None:
        self._store = store
        self._clock = clock
        self._rand = rand
        self._sensors = sensors
        self._codec = codec
        self._fw = fw_version
        self._act = Action()
        self.cfg: "Dict[str, Any]" = {}
        self.provisioning = False
        self._prov_next: "Ticks" = 0
        # inputs
        self._btn = False  # debounced: pressed
        self._btn_raw = False
        self._btn_at: "Ticks" = 0  # when the debounced state last changed
        self._btn_raw_at: "Ticks" = 0  # when the raw level last changed
        self._tamper = False  # debounced: open
        self._tamper_raw = False
        self._tamper_raw_at: "Ticks" = 0
        # alarm
        self.state = ALARM_NONE
        self.alarm_counter = -1
        self.press_count = 0
        self._a_button = 0
        self._a_sent_presses = 0  # press_count in the ALARM frame, then last update
        self._a_battery = 0
        self._a_flags = 0
        self._a_sent = False  # transmitted at least once (then RETRY is set)
        self._a_tries = 0  # transmissions without an ACK
        self._a_next: "Ticks" = 0  # next ALARM transmission due
        self._a_started: "Ticks" = 0
        self._delivered_at: "Ticks" = 0
        self._ka_next: "Ticks" = 0  # next ALARM_UPDATE due
        self._last_update_at: "Ticks" = 0
        self._tx_presses = 0
        self._resolved_until: "Optional[Ticks]" = None
        # faults: active bitmap and detail per code
        self.faults = 0
        self._fault_detail = [0] * (_FAULT_CODES + 1)
        self._tx_fault_bit = 0
        self._tx_fault_active = False
        # schedule
        self._hb_next: "Ticks" = 0
        self._other_next: "Ticks" = 0  # heartbeats/faults/self-test frames wait until then
        self._st_due = False  # a self-test should run
        self._st_running = False  # SELFTEST action emitted, result not back yet
        self._st_result: "Optional[tuple]" = None  # (ran, passed) to send
        self._tx_kind = _K_NONE
        self._reboot = False
        self._fb_shown = -1  # pattern last emitted
        self._fb_restart = False
        # counters, for tests and STATUS
        self.presses = 0
        self.rx_rejected = 0
        self.rx_replayed = 0

    # -- properties --------------------------------------------------------------------

    def pattern(self) -> int:
        """The feedback pattern the bell's state calls for now."""
        if self.provisioning:
            return PROVISIONING
        st = self.state
        if st == ALARM_PENDING:
            return NOT_THROUGH if self._a_tries >= NOT_THROUGH_AFTER else SENDING
        if st == ALARM_DELIVERED:
            return DELIVERED
        if st == ALARM_ACKNOWLEDGED:
            return ACKNOWLEDGED
        if self._resolved_until is not None:
            return RESOLVED
        return IDLE

    # -- events ------------------------------------------------------------------------

    def boot(self, cause: int, button_pressed: bool = False, tamper_open: bool = False) -> None:
        """The board started. ``button_pressed``/``tamper_open`` are the pin levels now."""
        now = self._clock()
        self._btn_raw = button_pressed
        self._btn_raw_at = now
        self._btn_at = ticks_add(now, -_DEBOUNCE_MS)
        self._tamper = self._tamper_raw = tamper_open
        self._tamper_raw_at = now
        if not self._load_config(now):
            return
        self._start(now, cause, button_pressed)

    def _load_config(self, now: "Ticks") -> bool:
        try:
            cfg = parse_config(self._store.load_config())
        except ValueError:
            self.provisioning = True
            self._prov_next = ticks_add(now, _PROVISION_POLL_MS)
            return False
        self.cfg = cfg
        self.provisioning = False
        if self._codec is None or self._codec.device_id != cfg["device_id"]:
            self._codec = Codec(cfg["device_id"], cfg["key"])
        return True

    def _start(self, now: "Ticks", cause: int, button_pressed: bool) -> None:
        store = self._store
        warm = store.open()  # a cold boot forgets what was reported: all is re-reported
        self.faults = store.faults_active if warm else 0
        # Inputs as they are now. Tamper and battery are re-derived at every boot.
        self._set_fault(FAULT_TAMPER, self._tamper, 0)
        self._check_battery()
        self._resume_alarm(now)
        if button_pressed or cause == BOOT_BUTTON:
            if cause != BOOT_BUTTON and self._reported(FAULT_STUCK_BUTTON):
                # Still held since before the deep sleep: stuck, not a new press.
                self._btn = True
                self._btn_at = now
                self._set_fault(FAULT_STUCK_BUTTON, True, self.cfg["stuck_s"])
            else:
                self._btn = button_pressed
                self._btn_at = now
                self._press(now)
        elif self.faults & _bit(FAULT_STUCK_BUTTON):
            self._set_fault(FAULT_STUCK_BUTTON, False, 0)  # released while asleep
        hb = self.cfg["heartbeat_s"] * 1000
        due_now = cause != BOOT_BUTTON
        self._hb_next = now if due_now else ticks_add(now, hb)
        self._other_next = now
        if not warm:
            self._st_due = True  # a self-test after every power-up

    def _reported(self, code: int) -> bool:
        return bool(self._store.faults_reported & _bit(code))

    def button(self, pressed: bool) -> None:
        """The button's level now (call on each edge the ISR saw, and when asked)."""
        now = self._clock()
        if pressed != self._btn_raw:
            self._btn_raw = pressed
            self._btn_raw_at = now
        self._update_inputs(now)

    def tamper(self, is_open: bool) -> None:
        """The tamper switch's level now: True when the enclosure is open."""
        now = self._clock()
        if is_open != self._tamper_raw:
            self._tamper_raw = is_open
            self._tamper_raw_at = now
        self._update_inputs(now)

    def transmitted(self, result: int, tx_end: "Optional[Ticks]" = None) -> None:
        """The frame of the last TRANSMIT went out (TX_OK, ending at ``tx_end``) or
        not (TX_BUSY, TX_ERROR)."""
        now = self._clock()
        kind = self._tx_kind
        self._tx_kind = _K_NONE
        ok = result == TX_OK
        end = tx_end if (ok and tx_end is not None) else now
        if ok:
            if self.faults & _bit(FAULT_RADIO):
                self._set_fault(FAULT_RADIO, False, 0)
        elif result == TX_ERROR:
            self._set_fault(FAULT_RADIO, True, 0)
        # When the receive window after this frame closes; nothing is due before.
        after = ticks_add(end, _RX_DELAY_MS + _RX_WINDOW_MS) if ok else now
        if kind == _K_ALARM:
            self._a_tries += 1
            if ok:
                self._a_sent = True
            self._a_next = ticks_add(after, self._retry_delay(now))
        elif kind == _K_UPDATE:
            if ok:
                self._a_sent_presses = self._tx_presses
                self._last_update_at = now
            self._ka_next = ticks_add(after, self._keepalive_ms())
        elif kind == _K_FAULT:
            if ok:
                r = self._store.faults_reported
                b = self._tx_fault_bit
                self._store.faults_reported = (r | b) if self._tx_fault_active else (r & ~b)
                self._store.save_warm()
            else:
                self._other_next = ticks_add(now, self._other_retry())
        elif kind == _K_HEARTBEAT:
            if ok:
                self._hb_next = ticks_add(now, self.cfg["heartbeat_s"] * 1000)
                self._store.heartbeats += 1
                if self._store.heartbeats >= self._selftest_every():
                    self._st_due = True
                self._store.save_warm()
            else:
                self._other_next = ticks_add(now, self._other_retry())
        elif kind == _K_SELFTEST:
            if ok:
                self._st_result = None
            else:
                self._other_next = ticks_add(now, self._other_retry())

    def received(self, data: "Any", rssi: int = 0, snr_x4: int = 0) -> bool:
        """A packet heard in a receive window. Returns True if more downlinks follow
        (MORE flag): the glue listens one more window."""
        if self._codec is None:
            return False
        store = self._store
        try:
            name, _dev, counter, flags, fields = self._codec.decode(data, store.down_last)
        except ProtocolError:
            self.rx_rejected += 1  # another device's frame, garbage, bad MIC
            return False
        if name not in ("ACK", "COMMAND", "TIME"):
            self.rx_rejected += 1  # an uplink (ours, echoed?): not for us
            return False
        last = store.down_last
        if last is not None and counter <= last:
            self.rx_replayed += 1
            return False
        try:
            store.accept_downlink(counter)
        except OSError:
            self._set_fault(FAULT_STORAGE, True, 0)
            store.down_last = counter  # still reject replays until the next reboot
        store.last_rssi = rssi
        store.last_snr = snr_x4 // 4 if snr_x4 >= 0 else -((-snr_x4) // 4)
        store.save_warm()
        now = self._clock()
        if name == "ACK":
            self._on_ack(now, fields["acked_counter"], fields["alarm_state"])
        elif name == "COMMAND":
            op = fields["opcode"]
            if op == "SELFTEST":
                self._st_due = True
            elif op == "REBOOT":
                self._reboot = True
            elif op == "CONFIG":
                self._on_config(fields["key"], fields["value"])
        return bool(flags & FLAG_MORE)

    def selftest_done(self, ran: int, passed: int) -> None:
        """The glue ran the checks of a SELFTEST action; bitmaps as PROTOCOL.md 3.6."""
        passed &= ran
        self._st_running = False
        self._st_due = False
        self._st_result = (ran, passed)
        self._store.heartbeats = 0
        failed = ran & ~passed
        self._set_fault(FAULT_SELFTEST, failed != 0, failed)
        self._store.save_warm()

    # -- the schedule ------------------------------------------------------------------

    def next_action(self) -> Action:
        """What to do now. The returned `Action` is reused by the next call."""
        now = self._clock()
        act = self._act
        act.kind = SLEEP
        act.frame = None
        act.rx_open = False
        act.restart = False
        self._update_inputs(now)
        self._check_timers(now)
        # 1. Feedback first: the resident sees "sending" before the radio is busy.
        want = self.pattern()
        if want != self._fb_shown or self._fb_restart:
            act.kind = FEEDBACK
            act.pattern = want
            act.restart = self._fb_restart
            self._fb_shown = want
            self._fb_restart = False
            return act
        if self.provisioning:
            if ticks_diff(now, self._prov_next) >= 0:
                if self._load_config(now):
                    self._btn = self._btn_raw  # a held button is not a press
                    self._start(now, BOOT_COLD, False)
                    return self.next_action()
                self._prov_next = ticks_add(now, _PROVISION_POLL_MS)
            return self._sleep(act, now, ticks_diff(self._prov_next, now), False)
        if self._reboot and self._tx_kind == _K_NONE:
            self._reboot = False
            act.kind = REBOOT
            return act
        st = self.state
        # 2. The alarm, and nothing else while it is unacknowledged.
        if st == ALARM_PENDING:
            if ticks_diff(now, self._a_next) >= 0:
                return self._send_alarm(act)
            return self._sleep(act, now, self._until(now), False)
        if st != ALARM_NONE and ticks_diff(now, self._ka_next) >= 0:
            return self._send_update(act, now)
        # 3. Faults, self-test, heartbeat, in that order.
        if ticks_diff(now, self._other_next) >= 0:
            changed = self.faults ^ self._store.faults_reported
            if changed:
                return self._send_fault(act, changed)
            if self._st_result is not None:
                return self._send_selftest(act)
            if self._st_due and not self._st_running:
                self._st_running = True
                act.kind = SELFTEST
                return act
            if ticks_diff(now, self._hb_next) >= 0:
                return self._send_heartbeat(act)
        return self._sleep(act, now, self._until(now), self._may_deep_sleep(now))

    def _sleep(self, act: Action, now: "Ticks", ms: int, deep: bool) -> Action:
        act.kind = SLEEP
        act.sleep_ms = ms if ms > 0 else 0
        act.deep = deep
        act.wake_button = not (self.faults & _bit(FAULT_STUCK_BUTTON))
        act.wake_tamper = not self._tamper
        return act

    def _reports_waiting(self) -> bool:
        """A fault change, a self-test or its result waits to go out."""
        if self.faults ^ self._store.faults_reported or self._st_result is not None:
            return True
        return self._st_due and not self._st_running

    def _until(self, now: "Ticks") -> int:
        """Milliseconds to the earliest deadline."""
        if self.state == ALARM_PENDING:
            best = ticks_diff(self._a_next, now)  # nothing else may go out first
        else:
            other = ticks_diff(self._other_next, now)
            best = ticks_diff(self._hb_next, now)
            if best < other:
                best = other  # a heartbeat waits for the channel too
            if self._reports_waiting():
                best = _min(best, other)
            if self.state != ALARM_NONE:
                best = _min(best, ticks_diff(self._ka_next, now))
                timeout = ticks_add(self._delivered_at, self.cfg["alarm_timeout_s"] * 1000)
                best = _min(best, ticks_diff(timeout, now))
        if self._btn_raw != self._btn:
            best = _min(best, ticks_diff(ticks_add(self._btn_raw_at, _DEBOUNCE_MS), now))
        if self._btn and not (self.faults & _bit(FAULT_STUCK_BUTTON)):
            stuck_at = ticks_add(self._btn_at, self.cfg["stuck_s"] * 1000)
            best = _min(best, ticks_diff(stuck_at, now))
        if self._tamper_raw != self._tamper:
            best = _min(best, ticks_diff(ticks_add(self._tamper_raw_at, _TAMPER_SETTLE_MS), now))
        if self._resolved_until is not None:
            best = _min(best, ticks_diff(self._resolved_until, now))
        return best

    def _may_deep_sleep(self, now: "Ticks") -> bool:
        """Deep sleep loses RAM: only when nothing but the heartbeat is scheduled."""
        if self.state != ALARM_NONE or self._resolved_until is not None:
            return False
        if self._btn_raw != self._btn or self._tamper_raw != self._tamper:
            return False  # an input is settling
        if self._btn and not (self.faults & _bit(FAULT_STUCK_BUTTON)):
            return False  # held: the stuck-button check is due
        if self._reports_waiting() or self._st_running:
            return False  # a report or a self-test waits
        return ticks_diff(self._other_next, self._hb_next) <= 0

    # -- inputs and timers -------------------------------------------------------------

    def _update_inputs(self, now: "Ticks") -> None:
        raw = self._btn_raw
        if raw != self._btn:
            stable = ticks_diff(now, self._btn_raw_at) >= _DEBOUNCE_MS
            if raw and (stable or ticks_diff(now, self._btn_at) >= _DEBOUNCE_MS):
                # Leading edge: react at once if the button was released long enough
                # for this not to be a bounce of the previous press.
                self._btn = True
                self._btn_at = now
                self._press(now)
            elif not raw and stable:
                held = ticks_diff(now, self._btn_at)
                self._btn = False
                self._btn_at = now
                if self.faults & _bit(FAULT_STUCK_BUTTON):
                    self._set_fault(FAULT_STUCK_BUTTON, False, held // 1000)
        if self._tamper_raw != self._tamper:
            if ticks_diff(now, self._tamper_raw_at) >= _TAMPER_SETTLE_MS:
                self._tamper = self._tamper_raw
                self._set_fault(FAULT_TAMPER, self._tamper, 0)

    def _check_timers(self, now: "Ticks") -> None:
        if not self.cfg:
            return
        if self._btn and not (self.faults & _bit(FAULT_STUCK_BUTTON)):
            held = ticks_diff(now, self._btn_at)
            if held >= self.cfg["stuck_s"] * 1000:
                self._set_fault(FAULT_STUCK_BUTTON, True, held // 1000)
        st = self.state
        if st == ALARM_DELIVERED or st == ALARM_ACKNOWLEDGED:
            if ticks_diff(now, self._delivered_at) >= self.cfg["alarm_timeout_s"] * 1000:
                self._end_alarm(now, False)
        if self._resolved_until is not None and ticks_diff(now, self._resolved_until) >= 0:
            self._resolved_until = None

    def _check_battery(self) -> int:
        mv = self._sensors.battery_mv()
        low = self.cfg["low_battery_mv"]
        if mv > 0:  # 0: mains powered or not measured
            if mv < low:
                self._set_fault(FAULT_LOW_BATTERY, True, mv)
            elif mv >= low + _BATTERY_HYSTERESIS_MV:
                self._set_fault(FAULT_LOW_BATTERY, False, mv)
        return mv

    def _set_fault(self, code: int, active: bool, detail: int) -> None:
        b = _bit(code)
        was = bool(self.faults & b)
        if active == was:
            return
        self.faults = (self.faults | b) if active else (self.faults & ~b)
        self._fault_detail[code] = detail if 0 <= detail <= 0xFFFF else 0xFFFF
        self._store.faults_active = self.faults
        self._store.save_warm()

    # -- the alarm ---------------------------------------------------------------------

    def _press(self, now: "Ticks") -> None:
        self.presses += 1
        if self.provisioning:
            self._fb_restart = True  # the resident sees the bell is not set up
            return
        self._fb_restart = True  # immediate light/sound for every press
        if self.state == ALARM_NONE:
            self._new_alarm(now)
            return
        if self.press_count < 0xFF:
            self.press_count += 1
        self._save_alarm()
        if self.state != ALARM_PENDING:
            # Tell the gateway soon, at a bounded rate.
            soon = ticks_add(self._last_update_at, _UPDATE_MIN_MS)
            self._ka_next = soon if ticks_diff(soon, now) > 0 else now

    def _new_alarm(self, now: "Ticks") -> None:
        battery = self._check_battery()
        flags = 0
        if self._tamper:
            flags |= _AF_TAMPER
        if self.faults & _bit(FAULT_LOW_BATTERY):
            flags |= _AF_LOW_BATTERY
        self.alarm_counter = self._next_uplink()
        self.press_count = 1
        self._a_button = self.cfg["button"]
        self._a_sent_presses = 1
        self._a_battery = battery
        self._a_flags = flags
        self._a_sent = False
        self._a_tries = 0
        self._a_started = now
        self._a_next = now
        self._resolved_until = None
        self.state = ALARM_PENDING
        # Persisted before the first transmission (invariant 3).
        self._save_alarm()

    def _resume_alarm(self, now: "Ticks") -> None:
        rec = self._store.load_alarm()
        if rec is None:
            return
        try:
            self.alarm_counter = int(rec["c"])
            self.press_count = int(rec["p"])
            self._a_button = int(rec["b"])
            self._a_sent_presses = int(rec["s"])
            self._a_battery = int(rec["v"])
            self._a_flags = int(rec["f"])
            st = int(rec["st"])
        except (KeyError, ValueError, TypeError):
            return  # unreadable: nothing to resume
        # Never hand out the alarm's counter (or anything below) again.
        self._store.ensure_above(self.alarm_counter)
        self.state = st if ALARM_PENDING <= st <= ALARM_ACKNOWLEDGED else ALARM_PENDING
        self._a_sent = True  # it may have gone out before the reboot: mark RETRY
        self._a_tries = 0
        self._a_started = now
        self._a_next = now
        self._delivered_at = now  # the timeout restarts: keep-alives resume
        self._ka_next = now

    def _save_alarm(self) -> None:
        rec = {
            "c": self.alarm_counter,
            "p": self.press_count,
            "b": self._a_button,
            "s": self._a_sent_presses,
            "v": self._a_battery,
            "f": self._a_flags,
            "st": self.state,
        }
        try:
            self._store.save_alarm(rec)
        except OSError:
            self._set_fault(FAULT_STORAGE, True, 0)

    def _on_ack(self, now: "Ticks", acked: int, alarm_state: int) -> None:
        st = self.state
        if st == ALARM_NONE:
            return  # late ACK after the incident ended
        # An ACK of this incident: of the ALARM or of one of its ALARM_UPDATEs.
        if acked < self.alarm_counter or acked >= self._store.up_next:
            return
        if alarm_state == 0 and acked != self.alarm_counter:
            return  # a plain ACK of an update says nothing new
        if alarm_state >= 3:
            self._end_alarm(now, True)
            return
        new = ALARM_ACKNOWLEDGED if alarm_state == 2 else ALARM_DELIVERED
        if new <= st:
            return
        self.state = new
        if st == ALARM_PENDING:
            self._delivered_at = now
            self._a_tries = 0
            if self.press_count != self._a_sent_presses:
                self._ka_next = now  # presses while pending: report them now
            else:
                self._ka_next = ticks_add(now, self._keepalive_ms())
        self._save_alarm()

    def _end_alarm(self, now: "Ticks", resolved: bool) -> None:
        self.state = ALARM_NONE
        self._resolved_until = ticks_add(now, RESOLVED_MS) if resolved else None
        try:
            self._store.clear_alarm()
        except OSError:
            self._set_fault(FAULT_STORAGE, True, 0)

    def _retry_delay(self, now: "Ticks") -> int:
        """Back-off before the next ALARM try: ``base + rand(base)``, base doubling."""
        shift = self._a_tries - 1
        if shift < 0:
            shift = 0
        elif shift > 8:
            shift = 8  # 256 s: already above both caps
        base = _RETRY_FIRST_MS << shift
        slow = ticks_diff(now, self._a_started) >= _RETRY_SLOW_AFTER_MS
        cap = _RETRY_SLOW_CAP_MS if slow else _RETRY_CAP_MS
        if base > cap:
            base = cap
        return base + self._rand(base)

    def _keepalive_ms(self) -> int:
        ms = self.cfg["keepalive_s"] * 1000
        if self.state == ALARM_ACKNOWLEDGED:
            ms *= _ACKED_SLOWDOWN
        return ms + self._rand(ms // 4)

    def _other_retry(self) -> int:
        return _OTHER_RETRY_MS + self._rand(_OTHER_RETRY_MS)

    def _selftest_every(self) -> int:
        n = self.cfg["selftest_h"] * 3600 // self.cfg["heartbeat_s"]
        return n if n > 0 else 1

    # -- frames ------------------------------------------------------------------------

    def _next_uplink(self) -> int:
        store = self._store
        errors = store.write_errors
        c = store.next_uplink()
        if store.write_errors != errors:
            self._set_fault(FAULT_STORAGE, True, 0)
        return c

    def _test_flag(self) -> int:
        return FLAG_TEST if self.cfg["test"] else 0

    def _transmit(self, act: Action, kind: int, frame: "Any", rx_open: bool) -> Action:
        act.kind = TRANSMIT
        act.frame = frame
        act.rx_open = rx_open
        self._tx_kind = kind
        return act

    def _send_alarm(self, act: Action) -> Action:
        flags = FLAG_RX_OPEN | self._test_flag()
        if self._a_sent:
            flags |= FLAG_RETRY
        frame = self._codec.encode_alarm(
            self.alarm_counter,
            flags,
            self._a_button,
            self._a_sent_presses,
            self._a_battery,
            self._a_flags,
        )
        # Not due again until transmitted() schedules the retry.
        self._a_next = ticks_add(self._clock(), _FAR_MS)
        return self._transmit(act, _K_ALARM, frame, True)

    def _send_update(self, act: Action, now: "Ticks") -> Action:
        counter = self._next_uplink()
        self._tx_presses = self.press_count
        frame = self._codec.encode_alarm_update(
            counter,
            FLAG_RX_OPEN | self._test_flag(),
            self.alarm_counter,
            self.press_count,
            self._sensors.battery_mv(),
        )
        self._ka_next = ticks_add(now, _FAR_MS)
        return self._transmit(act, _K_UPDATE, frame, True)

    def _send_fault(self, act: Action, changed: int) -> Action:
        code = 1
        while not changed & _bit(code):
            code += 1
        b = _bit(code)
        active = bool(self.faults & b)
        self._tx_fault_bit = b
        self._tx_fault_active = active
        frame = self._codec.encode_fault(
            self._next_uplink(), 0, code, 1 if active else 0, self._fault_detail[code]
        )
        return self._transmit(act, _K_FAULT, frame, False)

    def _send_selftest(self, act: Action) -> Action:
        result = self._st_result
        ran, passed = result if result is not None else (0, 0)
        frame = self._codec.encode_selftest(
            self._next_uplink(), 0, ran, passed, self._sensors.battery_mv()
        )
        return self._transmit(act, _K_SELFTEST, frame, False)

    def _send_heartbeat(self, act: Action) -> Action:
        s = self._sensors
        store = self._store
        battery = self._check_battery()
        if self.faults ^ store.faults_reported:
            # The battery reading just changed a fault: report that first.
            return self._send_fault(act, self.faults ^ store.faults_reported)
        frame = self._codec.encode_heartbeat(
            self._next_uplink(),
            0,
            battery,
            s.temperature_c(),
            s.uptime_h(),
            self.faults,
            self._fw,
            store.last_rssi,
            store.last_snr,
        )
        return self._transmit(act, _K_HEARTBEAT, frame, False)

    def _on_config(self, key: str, value: str) -> None:
        if key not in _CONFIG_INTS:
            return
        try:
            v = int(value)
        except ValueError:
            return
        _d, lo, hi = _CONFIG_INTS[key]
        if not lo <= v <= hi:
            return
        cfg = self._store.load_config()
        if not isinstance(cfg, dict):
            return
        cfg[key] = v
        try:
            self._store.save_config(cfg)
        except OSError:
            self._set_fault(FAULT_STORAGE, True, 0)
        self.cfg[key] = v


def _bit(code: int) -> int:
    return 1 << (code - 1)


def _min(a: int, b: int) -> int:
    return a if a < b else b
