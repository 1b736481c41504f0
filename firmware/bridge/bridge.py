"""The gateway's own radio: LoRa packets <-> the bridge serial link (PROTOCOL.md 5).

A pure class, no `asyncio`, no `machine`: `main.py` feeds it the bytes that arrived on
USB serial and the packets the SX1262 received, asks it which transmission is due, and
tells it how each one went. Everything it sends to the gateway goes through the
injected ``write(buf)`` at once (a view of one preallocated buffer, valid during the
call), so nothing is queued on the serial side.

* **RX**: each received packet becomes one RX message: ``tmst`` (the bridge's 32-bit
  microsecond clock at the end of reception, as the Semtech packet forwarder's tmst),
  RSSI (dBm), SNR (dB x 4), and the frequency, SF and bandwidth it was received on.
* **TX**: a request is checked (frame 1..255 bytes, KR920 band 920.9-923.3 MHz, SF5-12,
  BW 125/250/500 kHz, power at most ``max_power_dbm``) and queued; mode 0 goes out as
  soon as the radio is free, mode 1 at ``tmst``. `next_tx` hands the glue the job whose
  time has come, ``LEAD_US`` early for listen-before-talk; the glue reports back with
  `transmit_done` (TX_DONE: end time and time on air) or `transmit_failed` (TX_FAILED:
  channel busy, radio timeout). Refused at once: invalid (4), queue full (5); and too late (3) when
  ``tmst`` is already more than ``LATE_US`` in the past when it is queued or due.
* **CONFIG** sets the receive (and default transmit) radio settings; the glue applies
  them when ``config_changed`` is set. An invalid CONFIG is refused with a LOG line.
* **STATUS** on request (an empty STATUS) and every ``status_s`` seconds.
* **Garbage** on the serial line costs nothing but a counter: `link.Framer` drops what
  does not decode and resynchronises at the next 0x00; a LOG warning reports link
  errors at most once per ``status_s``.

The microsecond clock: ``clock_us`` is ``time.ticks_us`` (on the device it wraps every
2**30 us, about 18 minutes); `Bridge` extends it to the link's u32 ``tmst`` (which wraps
every 71.6 minutes) and must therefore be ticked at least every few minutes.
"""

from board import RADIO_DEFAULTS
from compat import const, ticks_add, ticks_diff
from errors import ProtocolError
from link import FAIL_INVALID, FAIL_QUEUE_FULL, FAIL_TOO_LATE, TX_AT_TMST, Framer, Writer

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Union

    Buffer = Union[bytes, bytearray, memoryview]
    Ticks = Any  # a value on a ticks-like wrapping clock: ticks_add/ticks_diff only

FW_VERSION = const(0x10)  # 1.0

LEAD_US = const(15_000)  # start LBT this early: 1 ms settle + 6 ms sense + margin
LATE_US = const(100_000)  # a TX more than this past its tmst is "too late"
MAX_AHEAD_US = const(30_000_000)  # a tmst further ahead than this is invalid
QUEUE_MAX = const(8)  # TX requests waiting
_U32 = 0xFFFFFFFF
_HALF = 0x80000000
_LO_PERIOD = const(0x40000000)  # 2**30: the low part of tmst

# KR920 (protocol/kr920.py, LoRaMac-node RegionKR920): 920.9-923.3 MHz, 200 kHz raster.
BAND_LOW_KHZ = const(920_900)
BAND_HIGH_KHZ = const(923_300)
RASTER_KHZ = const(100)  # accept 100 kHz steps: the plan's 200 kHz raster and its centres
BANDWIDTHS_KHZ = (125, 250, 500)

# Log levels (PROTOCOL.md 5.2).
DEBUG = const(10)
INFO = const(20)
WARNING = const(30)
ERROR = const(40)

# The radio the bridge starts on until the gateway sends CONFIG: the roles' shared defaults.
DEFAULT_CONFIG = RADIO_DEFAULTS


def time_on_air_us(payload_len, sf, bw_khz, cr=5, preamble=8, crc=True, implicit=False):
    """LoRa time on air in microseconds (SX1261/2 datasheet 6.1.4, integers only).

    The same formula as protocol/airtime.py; exact for 125/250/500 kHz, where a symbol
    is a whole number of microseconds. LDRO is on from 16 ms symbols (SF11/SF12 at
    125 kHz), as micropython-lib and RadioLib choose it.
    """
    tsym = (1000 << sf) // bw_khz  # us
    ldro = 1 if tsym >= 16000 else 0
    bits = 8 * payload_len - 4 * sf + (16 if crc else 0) + (0 if implicit else 20)
    if sf <= 6:
        fixed_x4 = 25  # 6.25 symbols; no +8 bits at SF5/SF6 on the SX126x
    else:
        fixed_x4 = 17  # 4.25 symbols
        bits += 8
    per_block = 4 * (sf - 2 * ldro)
    blocks = (bits + per_block - 1) // per_block if bits > 0 else 0
    symbols_x4 = 4 * preamble + fixed_x4 + 4 * (8 + blocks * cr)
    return symbols_x4 * tsym // 4


class TxJob:
    """One transmission the gateway asked for (fields as in the TX message)."""

    def __init__(self, seq, mode, tmst, freq_khz, sf, bw_khz, power_dbm, frame):
        self.seq = seq
        self.mode = mode
        self.tmst = tmst
        self.freq_khz = freq_khz
        self.sf = sf
        self.bw_khz = bw_khz
        self.power_dbm = power_dbm
        self.frame = frame
        self.due: "Ticks" = 0  # when to start, on the bridge clock's low 30 bits (set when queued)

    def airtime_us(self, cr, preamble):
        return time_on_air_us(len(self.frame), self.sf, self.bw_khz, cr, preamble)


class Bridge:
    """Relays between the radio and the gateway's serial link. See the module doc."""

    def __init__(
        self,
        write: "Callable[[Buffer], Any]",
        clock_us: "Callable[[], Any]",
        status_s: int = 60,
        max_power_dbm: int = 14,
        fw_version: int = FW_VERSION,
    ) -> None:
        self._write = write
        self._clock = clock_us
        self.status_s = status_s
        self.max_power_dbm = max_power_dbm
        self.fw_version = fw_version
        self._framer = Framer()
        self._writer = Writer()
        self._seq = 0
        self.config: "Dict[str, int]" = dict(DEFAULT_CONFIG)
        self.config_changed = True  # the glue applies the config at start, too
        self._queue: "List[TxJob]" = []
        self.busy = False  # a job is on the radio (from next_tx to transmit_done/failed)
        # The u32 microsecond clock, extended from clock_us.
        self._last_us = clock_us()
        # tmst as two small ints, so keeping the clock allocates nothing: the low 30
        # bits and the number of 2**30 wraps (mod 4). The u32 is built only for a
        # message or a TX decision (a long int on the device: 2**32 > small int).
        self._lo: "Ticks" = 0
        self._wraps = 0
        self._uptime_us = 0
        self._uptime_s = 0
        self._next_status_s = status_s
        self._link_errors_reported = 0
        # Counters for STATUS.
        self.rx_ok = 0
        self.rx_bad = 0  # packets with a bad CRC or that did not fit a message
        self.tx_ok = 0
        self.tx_failed = 0
        self.noise_dbm = 0  # set by the glue from idle RSSI readings

    # -- time ---------------------------------------------------------------------------

    def _advance(self) -> None:
        us = self._clock()
        el = ticks_diff(us, self._last_us)
        if el <= 0:
            return
        self._last_us = us
        lo = self._lo + el
        while lo >= _LO_PERIOD:
            lo -= _LO_PERIOD
            self._wraps = (self._wraps + 1) & 3
        self._lo = lo
        up = self._uptime_us + el
        if up >= 1_000_000:
            self._uptime_s += up // 1_000_000
            up %= 1_000_000
        self._uptime_us = up

    def now(self) -> int:
        """The bridge's u32 microsecond clock (tmst) now."""
        self._advance()
        return (self._wraps << 30) | self._lo

    @staticmethod
    def until(tmst: int, now: int) -> int:
        """Signed microseconds from ``now`` to ``tmst`` on the wrapping u32 clock."""
        d = (tmst - now) & _U32
        return d - 0x100000000 if d >= _HALF else d

    @property
    def uptime_s(self) -> int:
        return self._uptime_s

    def tick(self) -> None:
        """Periodic work: keep the clock extended, send STATUS when due, expire jobs."""
        self._advance()
        if self._uptime_s >= self._next_status_s:
            self._next_status_s = self._uptime_s + self.status_s
            self.send_status()
            errors = self._framer.errors
            if errors != self._link_errors_reported:
                self.log(
                    WARNING,
                    "serial link: %d bad frames (crc %d, framing %d, message %d, overflow %d)"
                    % (
                        errors - self._link_errors_reported,
                        self._framer.bad_crc,
                        self._framer.bad_framing,
                        self._framer.bad_message,
                        self._framer.overflow,
                    ),
                )
                self._link_errors_reported = errors
        if self._queue and not self.busy:
            self._expire()

    def start(self) -> None:
        """At boot: tell the gateway who is there, and how it is."""
        self.log(
            INFO, "Anshim radio bridge fw %d.%d up" % (self.fw_version >> 4, self.fw_version & 15)
        )
        self.send_status()

    # -- serial side --------------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def serial_in(self, data: "Buffer") -> None:
        """Bytes from the USB serial line, any amount, garbage included."""
        for kind, seq, fields in self._framer.feed(data):
            if kind == "TX":
                self._tx_request(seq, fields)
            elif kind == "STATUS":
                if not fields:
                    self.send_status()
            elif kind == "CONFIG":
                self._configure(fields)
            # RX, TX_DONE, TX_FAILED and LOG only travel bridge -> gateway: ignored.

    @property
    def link_errors(self) -> int:
        return self._framer.errors

    def send_status(self) -> None:
        noise = self.noise_dbm
        noise = -0x8000 if noise < -0x8000 else (0x7FFF if noise > 0x7FFF else noise)
        self._write(
            self._writer.message(
                "STATUS",
                self._next_seq(),
                {
                    "uptime_s": self._uptime_s & _U32,
                    "rx_ok": self.rx_ok & _U32,
                    "rx_bad": self.rx_bad & _U32,
                    "tx_ok": self.tx_ok & _U32,
                    "tx_failed": self.tx_failed & _U32,
                    "noise_dbm": noise,
                    "fw_version": self.fw_version,
                },
            )
        )

    def log(self, level: int, text: str) -> None:
        """A LOG line to the gateway (the bridge has no console: stdout is the link)."""
        if len(text) > 200:
            text = text[:200]
        try:
            self._write(
                self._writer.message("LOG", self._next_seq(), {"level": level, "text": text})
            )
        except ProtocolError:  # text that does not fit (multi-byte): drop the line
            pass

    def _configure(self, fields: "Dict[str, int]") -> None:
        why = self._check_radio(
            fields["freq_khz"], fields["sf"], fields["bw_khz"], fields["power_dbm"]
        )
        if why is None and not 5 <= fields["cr"] <= 8:
            why = "coding rate 4/%d" % fields["cr"]
        if why is None and fields["preamble"] < 6:
            why = "preamble %d" % fields["preamble"]
        if why is not None:
            self.log(ERROR, "CONFIG refused: " + why)
            return
        cfg = self.config
        for key in DEFAULT_CONFIG:
            cfg[key] = fields[key]
        self.config_changed = True
        self.log(
            INFO,
            "config %d kHz SF%d BW%d CR4/%d preamble %d %d dBm"
            % (
                cfg["freq_khz"],
                cfg["sf"],
                cfg["bw_khz"],
                cfg["cr"],
                cfg["preamble"],
                cfg["power_dbm"],
            ),
        )

    def _check_radio(self, freq_khz: int, sf: int, bw_khz: int, power_dbm: int) -> "Optional[str]":
        if not BAND_LOW_KHZ <= freq_khz <= BAND_HIGH_KHZ or (freq_khz - BAND_LOW_KHZ) % RASTER_KHZ:
            return "frequency %d kHz outside KR920" % freq_khz
        if not 5 <= sf <= 12:
            return "SF%d" % sf
        if bw_khz not in BANDWIDTHS_KHZ:
            return "bandwidth %d kHz" % bw_khz
        if power_dbm > self.max_power_dbm:
            return "power %d dBm above %d" % (power_dbm, self.max_power_dbm)
        return None

    # -- transmit requests --------------------------------------------------------------

    def _fail(self, seq: int, reason: int) -> None:
        self.tx_failed += 1
        self._write(self._writer.message("TX_FAILED", seq, {"reason": reason}))

    def _tx_request(self, seq: int, f: "Dict[str, Any]") -> None:
        frame = f["frame"]
        mode = f["mode"]
        if (
            mode > TX_AT_TMST
            or len(frame) > 255
            or self._check_radio(f["freq_khz"], f["sf"], f["bw_khz"], f["power_dbm"]) is not None
        ):
            self._fail(seq, FAIL_INVALID)
            return
        ahead = 0
        if mode == TX_AT_TMST:
            ahead = self.until(f["tmst"], self.now())
            if ahead < -LATE_US:
                self._fail(seq, FAIL_TOO_LATE)
                return
            if ahead > MAX_AHEAD_US:
                self._fail(seq, FAIL_INVALID)
                return
        if len(self._queue) >= QUEUE_MAX:
            self._fail(seq, FAIL_QUEUE_FULL)
            return
        job = TxJob(
            seq, mode, f["tmst"], f["freq_khz"], f["sf"], f["bw_khz"], f["power_dbm"], frame
        )
        # When it is due, on the clock's small low part: every later decision about the
        # job is then small-int arithmetic (ticks_diff), no long ints per loop.
        job.due = ticks_add(self._lo, ahead)
        q = self._queue
        i = len(q)
        if mode != TX_AT_TMST:  # immediate jobs first, in arrival order
            i = 0
            while i < len(q) and q[i].mode != TX_AT_TMST:
                i += 1
        else:  # then by time
            lo = self._lo
            while i > 0 and q[i - 1].mode == TX_AT_TMST:
                if ticks_diff(q[i - 1].due, lo) <= ahead:
                    break
                i -= 1
        q.insert(i, job)

    def _left(self, job: TxJob) -> int:
        """Microseconds until ``job`` is due (negative: late); 0 for an immediate job."""
        if job.mode != TX_AT_TMST:
            return 0
        return ticks_diff(job.due, self._lo)

    def _expire(self) -> None:
        q = self._queue
        i = 0
        while i < len(q):  # an immediate job never expires
            if self._left(q[i]) < -LATE_US:
                self._fail(q.pop(i).seq, FAIL_TOO_LATE)
            else:
                i += 1

    def us_until_next_tx(self) -> int:
        """Microseconds until a queued job must start (LBT lead included); -1: none."""
        if not self._queue:
            return -1
        self._advance()
        wait = self._left(self._queue[0]) - LEAD_US
        return wait if wait > 0 else 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def next_tx(self) -> "Optional[TxJob]":
        """The job to start now (LBT then send), or None. Marks the radio busy."""
        if self.busy or not self._queue:
            return None
        self._advance()
        self._expire()
        if not self._queue:
            return None
        job = self._queue[0]
        if self._left(job) > LEAD_US:
            return None
        self._queue.pop(0)
        self.busy = True
        return job

    def transmit_done(self, job: TxJob, end_tmst: int) -> None:
        """The job's transmission ended at ``end_tmst`` (the bridge clock)."""
        self.busy = False
        self.tx_ok += 1
        airtime = job.airtime_us(self.config["cr"], self.config["preamble"])
        self._write(
            self._writer.message(
                "TX_DONE", job.seq, {"tmst": end_tmst & _U32, "airtime_us": airtime}
            )
        )

    def transmit_failed(self, job: TxJob, reason: int) -> None:
        """The job could not be sent: channel busy (1) or radio timeout (2)."""
        self.busy = False
        self._fail(job.seq, reason)

    # -- receive ------------------------------------------------------------------------

    def received(self, frame: "Buffer", rssi: int, snr_x4: int, age_us: int = 0) -> None:
        """A packet the radio received, ``age_us`` ago (its end: RxDone), on the config."""
        n = len(frame)
        if n == 0 or n > 255:
            self.rx_bad += 1
            return
        cfg = self.config
        tmst = (self.now() - age_us) & _U32
        rssi = -0x8000 if rssi < -0x8000 else (0x7FFF if rssi > 0x7FFF else rssi)
        snr_x4 = -0x80 if snr_x4 < -0x80 else (0x7F if snr_x4 > 0x7F else snr_x4)
        self.rx_ok += 1
        self._write(
            self._writer.rx(
                self._next_seq(),
                tmst,
                rssi,
                snr_x4,
                cfg["freq_khz"],
                cfg["sf"],
                cfg["bw_khz"],
                frame,
            )
        )

    def crc_error(self) -> None:
        """The radio dropped a packet with a bad CRC."""
        self.rx_bad += 1
