"""LoRa adapter: KR920 listen-before-talk, transmit, and the receive window.

The modem is micropython-lib's ``lora.AsyncSX1262`` (packages ``lora-sx126x`` and
``lora-async``, installed on the board with ``mip``), built by ``main.py`` and passed
in. This module never imports ``lora``: its coroutines only call the driver's
documented API (``send(packet, tx_at_ms=None)``, ``recv(timeout_ms=None,
rx_length=0xFF, rx_packet=None)``, ``start_recv``, ``standby``, ``sleep``), so tests
drive it with a fake of exactly that interface, in CPython and in the WebAssembly port.

**Listen before talk** (KR920: carrier sense >= 5 ms, free when RSSI <= -65 dBm; we
sense 6 ms as LoRaMac-node's ``KR920_CARRIER_SENSE_TIME``). `Lbt` holds the decision
logic, pure: samples in, CLEAR / BUSY / keep sensing out, then a random back-off that
grows with each busy try, and "channel busy" after `LBT_MAX_TRIES`. KR920 also asks
for a pause of at least 50 ms between transmissions; `Radio` keeps it.

**Reading instantaneous RSSI.** The micropython-lib SX126x driver has no public API
for it (it reports RSSI only per received packet, ``RxPacket.rssi``), and no channel
activity detection either. The least-bad option, `Sx126xRssi`, puts the modem in
continuous receive through the public ``start_recv(continuous=True)`` and sends the
chip's GetRssiInst command (opcode 0x15, SX1261/2 datasheet rev 2.1 section 13.5.4:
response Status, RssiInst; power = -RssiInst/2 dBm) through the driver's private
``_cmd(fmt, *args, n_read=...)``, which every command of ``sx126x.py`` uses. It is a
private method of lora-sx126x 0.1.x: `Sx126xRssi` checks for it at construction and
fails loudly, so a driver update that changes it is caught at boot, not at the first
alarm. Caveats, to measure on hardware before certification: the chip stays in LoRa
mode (the driver has no FSK mode), whereas Semtech's reference LBT
(LoRaMac-node ``RadioIsChannelFree``) senses in FSK receive with a set bandwidth;
and a LoRa receiver may refresh RssiInst only once per symbol (reported for SX1280 in
ExpressLRS PR #1243), i.e. 1-2 fresh readings in 6 ms at SF9/125 kHz. The clean fix is
a public ``rssi_inst()`` upstream in micropython-lib; the RSSI source is injected, so
swapping it in is one line in ``main.py``.

**Receive window** (PROTOCOL.md 1.4): after an uplink with RX_OPEN, listen from
``tx_end + RX_DELAY_MS`` for ``RX_WINDOW_MS``. The receiver opens `_RX_EARLY_MS` early
(our own scheduling latency and clock error) and the window closes at its nominal end.
The SX126x stops its RX timeout timer when it detects a sync word or header (the
default of SetStopRxTimerOnPreambleDetect, SX1261/2 datasheet), so a downlink whose
header arrives inside the window is received to its end.
"""

from compat import const, ticks_add, ticks_diff, ticks_ms

try:
    from asyncio import sleep_ms as _sleep_ms  # MicroPython
except ImportError:  # CPython
    import asyncio as _asyncio

    async def _sleep_ms(ms):  # type: ignore[no-redef]
        await _asyncio.sleep(ms / 1000)


try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Optional, Union

    Buffer = Union[bytes, bytearray, memoryview]
    Ticks = Any  # a ticks_ms() value: only ticks_add/ticks_diff may do arithmetic

RX_DELAY_MS = const(1000)  # PROTOCOL.md 1.4
RX_WINDOW_MS = const(1500)  # PROTOCOL.md 1.4: the SF12 preamble fits
_RX_EARLY_MS = const(20)  # open the window this much early: our wake-up latency

LBT_THRESHOLD_DBM = const(-65)  # KR920: channel free when RSSI <= -65 dBm
LBT_SENSE_MS = const(6)  # KR920: carrier sense >= 5 ms; LoRaMac-node uses 6
LBT_MAX_TRIES = const(5)  # then report "channel busy" (LoRaMac-node #357: bound it)
LBT_BACKOFF_MIN_MS = const(20)
LBT_BACKOFF_MAX_MS = const(200)  # first try's back-off range; doubles per busy try
_LBT_SAMPLE_MS = const(1)  # time between RSSI samples
_LBT_SETTLE_MS = const(1)  # after entering RX, before the first sample (LoRaMac-node)
_TX_PAUSE_MS = const(50)  # KR920: pause >= 50 ms between transmissions

# Lbt.sample() verdicts
SENSING = const(0)
CLEAR = const(1)
BUSY = const(2)

_CMD_GET_RSSI_INST = const(0x15)  # SX1261/2 DS 13.5.4


class ChannelBusy(Exception):
    """LBT found the channel busy on every try: nothing was sent."""


class Lbt:
    """KR920 listen-before-talk decisions, with no I/O and no clock of its own.

    For each try: `start` at the time sensing begins, then `sample` each RSSI reading
    until it says CLEAR (the channel stayed <= threshold for `sense_ms`) or BUSY (one
    reading above the threshold). After BUSY, `backoff` gives the random wait before
    the next try, or -1 when the tries are used up.
    """

    def __init__(
        self,
        rand: "Callable[[int], int]",
        threshold_dbm: int = LBT_THRESHOLD_DBM,
        sense_ms: int = LBT_SENSE_MS,
        max_tries: int = LBT_MAX_TRIES,
        backoff_min_ms: int = LBT_BACKOFF_MIN_MS,
        backoff_max_ms: int = LBT_BACKOFF_MAX_MS,
    ) -> None:
        if sense_ms < 5:
            raise ValueError("KR920 needs a carrier sense of at least 5 ms")
        self._rand = rand
        self.threshold_dbm = threshold_dbm
        self.sense_ms = sense_ms
        self.max_tries = max_tries
        self._bmin = backoff_min_ms
        self._bmax = backoff_max_ms
        self.tries = 0  # busy tries so far in this transmission
        self.samples = 0  # readings in the current try
        self._start = 0

    def reset(self) -> None:
        """Before a new transmission."""
        self.tries = 0

    def start(self, now: "Ticks") -> None:
        """Sensing begins now (the receiver has settled)."""
        self._start = now
        self.samples = 0

    def sample(self, now: "Ticks", rssi_dbm: int) -> int:
        """One RSSI reading taken at ``now``: BUSY, CLEAR, or SENSING (keep going)."""
        self.samples += 1
        if rssi_dbm > self.threshold_dbm:
            return BUSY
        if ticks_diff(now, self._start) >= self.sense_ms:
            return CLEAR
        return SENSING

    def backoff(self) -> int:
        """After BUSY: ms to wait before the next try, or -1 if no tries are left.

        Random in ``[min, max) << tries`` so that two devices that heard the same
        busy channel do not try again together (binary exponential back-off).
        """
        self.tries += 1
        if self.tries >= self.max_tries:
            return -1
        lo = self._bmin << (self.tries - 1)
        hi = self._bmax << (self.tries - 1)
        return lo + self._rand(hi - lo)


class Sx126xRssi:
    """Instantaneous RSSI from micropython-lib's SX126x driver (see the module doc)."""

    def __init__(self, modem: "Any") -> None:
        if not callable(getattr(modem, "_cmd", None)):
            raise RuntimeError("lora-sx126x has no _cmd(): cannot read RSSI for LBT")
        self._modem = modem

    def begin(self) -> None:
        # GetRssiInst is valid only in receive mode (DS 13.5.4); continuous receive
        # keeps the receiver on for as long as we sense.
        self._modem.start_recv(None, True)

    def read(self) -> int:
        """RSSI now, dBm, rounded toward 0 (exact for an integer threshold)."""
        raw = self._modem._cmd("B", _CMD_GET_RSSI_INST, n_read=2)[1]
        # -raw/2 dBm: with raw = 2k+1 this gives -k, so "> -65" holds exactly when
        # the true -raw/2 > -65 (raw <= 129); no float is allocated.
        return -(raw >> 1)

    def end(self) -> None:
        self._modem.standby()


class Radio:
    """Transmit with KR920 LBT and listen in receive windows, over an AsyncModem.

    ``rand(n)`` gives an int in ``[0, n)``; ``clock`` is ``ticks_ms``; ``sleep_ms`` is
    an ``async`` sleep (``asyncio.sleep_ms`` on the device). ``rssi`` reads the
    channel (default `Sx126xRssi`). ``rx_packet`` is an optional preallocated
    ``lora.RxPacket``: the driver reuses it when the received length matches (a
    21-byte ACK), so the common downlink allocates nothing.
    """

    def __init__(
        self,
        modem: "Any",
        rand: "Callable[[int], int]",
        clock: "Callable[[], Ticks]" = ticks_ms,
        sleep_ms: "Callable[[int], Awaitable[Any]]" = _sleep_ms,
        rssi: "Any" = None,
        rx_packet: "Any" = None,
    ) -> None:
        self._modem = modem
        self._clock = clock
        self._sleep = sleep_ms
        self._rssi = rssi if rssi is not None else Sx126xRssi(modem)
        self._rx_packet = rx_packet
        self.lbt = Lbt(rand)
        self._last_tx_end: "Optional[Ticks]" = None
        # Counters for STATUS / tests.
        self.tx_ok = 0
        self.tx_busy = 0
        self.rx_ok = 0
        self.rx_crc_errors = 0

    async def channel_clear(self) -> bool:
        """One carrier sense: True if the channel stayed free for the sense time."""
        lbt = self.lbt
        rssi = self._rssi
        rssi.begin()
        try:
            await self._sleep(_LBT_SETTLE_MS)
            lbt.start(self._clock())
            while True:
                v = lbt.sample(self._clock(), rssi.read())
                if v != SENSING:
                    return v == CLEAR
                await self._sleep(_LBT_SAMPLE_MS)
        finally:
            rssi.end()

    async def transmit(self, frame: "Buffer") -> int:
        """Send ``frame`` after LBT; return the ``ticks_ms`` when it ended.

        Raises `ChannelBusy` if the channel was busy on every try. Driver errors
        (``RuntimeError`` for a BUSY-line timeout, ``OSError`` from SPI) propagate.
        """
        if self._last_tx_end is not None:
            wait = ticks_diff(ticks_add(self._last_tx_end, _TX_PAUSE_MS), self._clock())
            if wait > 0:
                await self._sleep(wait)
        lbt = self.lbt
        lbt.reset()
        while True:
            if await self.channel_clear():
                end = await self._modem.send(frame)
                self._last_tx_end = end
                self.tx_ok += 1
                return end
            wait = lbt.backoff()
            if wait < 0:
                self.tx_busy += 1
                raise ChannelBusy()
            await self._sleep(wait)

    async def receive(self, deadline: "Ticks") -> "Any":
        """Listen until ``deadline`` (ticks); return an ``RxPacket`` or None.

        Packets with a bad CRC (returned only if the modem's ``rx_crc_error`` is set;
        the SX126x driver marks them ``crc_error``) are dropped and listening goes on.
        """
        modem = self._modem
        while True:
            left = ticks_diff(deadline, self._clock())
            if left <= 0:
                return None
            p = await modem.recv(left, 0xFF, self._rx_packet)
            if p is None:
                return None
            if getattr(p, "crc_error", False) or not getattr(p, "valid_crc", True):
                self.rx_crc_errors += 1
                continue
            self.rx_ok += 1
            return p

    def window(self, tx_end: "Ticks") -> "tuple":
        """``(opens, closes)`` in ticks for the receive window after ``tx_end``."""
        opens = ticks_add(tx_end, RX_DELAY_MS - _RX_EARLY_MS)
        return opens, ticks_add(tx_end, RX_DELAY_MS + RX_WINDOW_MS)

    async def receive_window(self, tx_end: "Ticks") -> "Any":
        """Wait for the receive window after an uplink that ended at ``tx_end``;
        return the first good packet in it, or None."""
        opens, closes = self.window(tx_end)
        wait = ticks_diff(opens, self._clock())
        if wait > 0:
            await self._sleep(wait)
        return await self.receive(closes)

    async def receive_more(self) -> "Any":
        """After a downlink with MORE set: listen one more window from now."""
        return await self.receive(ticks_add(self._clock(), RX_WINDOW_MS))

    def sleep(self) -> None:
        """Radio to sleep (SX1262: 0.6 uA warm start vs 1.6 mA standby)."""
        self._modem.sleep()
