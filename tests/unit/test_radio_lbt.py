"""firmware/lib/radio.py: KR920 listen-before-talk and the receive window.

The modem is a fake of micropython-lib's ``lora.AsyncSX1262`` with exactly the
signatures radio.py uses (lora/lora/modem.py, lora-async/lora/async_modem.py,
lora-sx126x/lora/sx126x.py @ee4bb8ff): ``async send(packet, tx_at_ms=None)`` returning
the ticks when sending finished, ``async recv(timeout_ms=None, rx_length=0xFF,
rx_packet=None)`` returning an ``RxPacket`` or None, ``start_recv(timeout_ms=None,
continuous=False, rx_length=0xFF)``, ``standby()``, ``sleep(warm_start=True)``, and
``_cmd(fmt, *write_args, n_read=0, write_buf=None, read_buf=None)`` returning a view of
``n_read`` response bytes (status first). Coroutines are driven by hand (`run`), which
works the same in CPython and in the WebAssembly port (no asyncio.run there).

Runs under pytest and in MicroPython (tests/micropython/test_bell_mp.py).
"""

try:
    from tests.unit.test_bell_fakes import Clock, lcg
except ImportError:  # MicroPython
    from test_bell_fakes import Clock, lcg

from compat import ticks_diff
from radio import (
    BUSY,
    CLEAR,
    LBT_MAX_TRIES,
    RX_DELAY_MS,
    RX_WINDOW_MS,
    SENSING,
    ChannelBusy,
    Lbt,
    Radio,
    Sx126xRssi,
)


def run(coro):
    """Drive a coroutine whose awaits never really suspend (the fakes'); its result."""
    try:
        while True:
            coro.send(None)
    except StopIteration as e:
        return e.value


class RxPacket(bytearray):
    """lora.modem.RxPacket: the payload, with metadata as the SX126x driver sets it."""

    def __init__(self, payload, ticks_ms=None, snr=None, rssi=None, valid_crc=True):
        super().__init__(payload)
        self.ticks_ms = ticks_ms
        self.snr = snr
        self.rssi = rssi
        self.valid_crc = valid_crc


class FakeModem:
    """The slice of lora.AsyncSX1262 that radio.py touches, over a fake clock.

    ``channel(ms)`` is the RF power on the channel at elapsed time ``ms`` (dBm).
    ``downlinks`` are packets that start at an elapsed time: (start_ms, payload,
    rssi, snr_x4, crc_error).
    """

    def __init__(self, clock, channel=None, toa_ms=206):
        self.clock = clock
        self.channel = channel if channel is not None else (lambda ms: -110)
        self.toa_ms = toa_ms
        self.rx_mode = False
        self.continuous = False
        self.sent = []  # (start elapsed ms, bytes)
        self.rssi_reads = []  # elapsed ms of each GetRssiInst
        self.downlinks = []
        self.recv_calls = []  # (elapsed ms, timeout_ms)
        self.asleep = False
        self._buf = memoryview(bytearray(9))

    def start_recv(self, timeout_ms=None, continuous=False, rx_length=0xFF):
        if continuous and timeout_ms is not None:
            raise ValueError
        self.rx_mode = True
        self.continuous = continuous
        return None  # the DIO1 pin when IRQs are wired; None: polled

    def standby(self):
        self.rx_mode = False
        self.continuous = False

    def sleep(self, warm_start=True):
        self.standby()
        self.asleep = True

    def _cmd(self, fmt, *write_args, n_read=0, write_buf=None, read_buf=None):
        assert fmt == "B" and write_args == (0x15,) and n_read == 2, (fmt, write_args)
        assert self.rx_mode and self.continuous, "GetRssiInst is valid only in RX (DS 13.5.4)"
        t = self.clock.elapsed
        self.rssi_reads.append(t)
        raw = -2 * self.channel(t)
        raw = 0 if raw < 0 else (255 if raw > 255 else raw)
        self._buf[1] = 0x52  # status: STDBY... RX mode bits, no error
        self._buf[2] = raw
        return self._buf[1:3]

    async def send(self, packet, tx_at_ms=None):
        assert not self.rx_mode, "radio.py must leave RX (standby) before sending"
        self.asleep = False
        self.sent.append((self.clock.elapsed, bytes(packet)))
        self.clock.advance(self.toa_ms)
        return self.clock()

    async def recv(self, timeout_ms=None, rx_length=0xFF, rx_packet=None):
        self.asleep = False
        start = self.clock.elapsed
        self.recv_calls.append((start, timeout_ms))
        end = start + timeout_ms if timeout_ms is not None else start + 10**9
        for d in self.downlinks:
            if start <= d[0] < end:
                self.downlinks.remove(d)
                self.clock.advance(d[0] - start + 60)  # preamble in the window, then ToA
                if rx_packet is None or len(rx_packet) != len(d[1]):
                    rx_packet = RxPacket(d[1])
                else:
                    rx_packet[:] = d[1]
                rx_packet.ticks_ms = self.clock()
                rx_packet.rssi = d[2]
                rx_packet.snr = d[3]
                rx_packet.crc_error = d[4]
                return rx_packet
        self.clock.advance(end - start)
        return None


def _radio(channel=None, seed=3):
    clock = Clock()
    modem = FakeModem(clock, channel)

    async def sleep_ms(ms):
        clock.advance(ms)

    return Radio(modem, lcg(seed), clock=clock, sleep_ms=sleep_ms), modem, clock


def test_lbt_decisions():
    lbt = Lbt(lcg(1))
    lbt.start(1000)
    assert lbt.sample(1000, -90) == SENSING
    assert lbt.sample(1005, -65) == SENSING  # -65 dBm is still free (<= threshold)
    assert lbt.sample(1006, -80) == CLEAR  # 6 ms of quiet
    lbt.start(0)
    assert lbt.sample(0, -64) == BUSY
    # Back-off: random, growing with each busy try, bounded, then "busy".
    lbt.reset()
    waits = []
    while True:
        w = lbt.backoff()
        if w < 0:
            break
        waits.append(w)
    assert len(waits) == LBT_MAX_TRIES - 1
    for i in range(len(waits)):
        assert (20 << i) <= waits[i] < (200 << i), waits
    try:
        Lbt(lcg(1), sense_ms=4)
        raise AssertionError("a 4 ms carrier sense must be refused")
    except ValueError:
        pass


def test_transmit_senses_6ms_then_sends():
    radio, modem, clock = _radio()
    end = run(radio.transmit(b"\x21frame"))
    assert len(modem.sent) == 1 and modem.sent[0][1] == b"\x21frame"
    assert end == clock() and not modem.rx_mode
    reads = modem.rssi_reads
    assert reads and modem.sent[0][0] - reads[0] >= 6 and reads[-1] - reads[0] >= 6
    assert radio.tx_ok == 1


def test_busy_channel_backs_off_then_sends():
    radio, modem, _clock = _radio(channel=lambda ms: -40 if ms < 150 else -100)
    run(radio.transmit(b"x"))
    assert len(modem.sent) == 1 and modem.sent[0][0] >= 150
    assert radio.lbt.tries >= 1


def test_always_busy_gives_up_with_channel_busy():
    radio, modem, clock = _radio(channel=lambda ms: -30)
    try:
        run(radio.transmit(b"x"))
        raise AssertionError("no ChannelBusy")
    except ChannelBusy:
        pass
    assert modem.sent == [] and radio.tx_busy == 1
    assert clock.elapsed < 20000  # bounded: a few back-offs, not forever
    assert not modem.rx_mode  # left in standby


def test_rssi_threshold_is_exact_in_half_dbm():
    clock = Clock()
    for raw, busy in ((129, True), (130, False), (131, False)):
        modem = FakeModem(clock)
        modem._cmd = _raw_cmd(modem, raw)
        rssi = Sx126xRssi(modem)
        rssi.begin()
        lbt = Lbt(lcg(1))
        lbt.start(0)
        assert (lbt.sample(0, rssi.read()) == BUSY) == busy, raw
        rssi.end()
    try:
        Sx126xRssi(object())
        raise AssertionError("a driver without _cmd must be refused at construction")
    except RuntimeError:
        pass


def _raw_cmd(modem, raw):
    def cmd(fmt, *write_args, n_read=0, write_buf=None, read_buf=None):
        assert modem.rx_mode
        return memoryview(bytearray((0x52, raw)))

    return cmd


def test_receive_window_timing_and_bad_crc():
    radio, modem, clock = _radio()
    tx_end = run(radio.transmit(b"up"))
    t_end = clock.elapsed
    modem.downlinks.append((t_end + 1000, b"crc-broken", -90, 20, True))
    modem.downlinks.append((t_end + 1100, b"ack", -91, -8, False))
    p = run(radio.receive_window(tx_end))
    assert bytes(p) == b"ack" and p.rssi == -91 and p.snr == -8
    first = modem.recv_calls[0]
    assert RX_DELAY_MS - 50 <= first[0] - t_end < RX_DELAY_MS  # opened a little early
    assert radio.rx_crc_errors == 1 and radio.rx_ok == 1
    # Nothing in the window: None once it has closed, and not before.
    tx_end = run(radio.transmit(b"up"))
    t_end = clock.elapsed
    modem.downlinks.append((t_end + RX_DELAY_MS + RX_WINDOW_MS + 100, b"late", -90, 0, False))
    assert run(radio.receive_window(tx_end)) is None
    assert ticks_diff(clock(), tx_end) >= RX_DELAY_MS + RX_WINDOW_MS
    # A downlink with MORE: one more window from now.
    modem.downlinks = [(clock.elapsed + 700, b"more", -80, 0, False)]
    assert bytes(run(radio.receive_more())) == b"more"


def test_pause_between_transmissions():
    radio, modem, _clock = _radio()
    run(radio.transmit(b"a"))
    run(radio.transmit(b"b"))
    gap = modem.sent[1][0] - (modem.sent[0][0] + modem.toa_ms)
    assert gap >= 50, gap  # KR920: >= 50 ms between transmissions
    radio.sleep()
    assert modem.asleep
