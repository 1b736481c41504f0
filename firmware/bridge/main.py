"""The radio bridge on the board: USB serial <-> `Bridge` <-> SX1262.

Thin glue, the only place that touches ``machine``. The board sits on the gateway's
USB port; the serial link (PROTOCOL.md 5) runs over the board's console, so:

* ``micropython.kbd_intr(-1)``: a 0x03 byte in a link frame must not raise
  KeyboardInterrupt, and nothing may ever ``print`` (stdout *is* the link: the bridge
  reports through LOG messages);
* serial input is polled (``select.poll`` on ``sys.stdin``) and read byte by byte into a
  preallocated buffer, never blocking the radio.

Tasks: ``serial_loop`` feeds the bytes to the bridge; ``radio_loop`` owns the modem:
it starts the transmission that is due (retuning for its frequency/SF/power, LBT in
`radio.Radio`, then back to the receive settings), otherwise listens in slices that end
when the next timed transmission must start; ``housekeeping`` ticks the bridge (STATUS,
clock) and feeds the watchdog. The noise floor for STATUS is sampled between receive
slices every 10 s.
"""

import asyncio
import random
import select
import sys
from time import ticks_us

import machine
import micropython
from board import load_board, lora_cfg, make_modem
from compat import ticks_add, ticks_diff, ticks_ms
from link import FAIL_CHANNEL_BUSY, FAIL_RADIO_TIMEOUT
from radio import ChannelBusy, Radio, Sx126xRssi

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

# On the device this app's modules sit next to main.py ("import bridge"); the type check
# sees firmware/bridge/ as the package firmware.bridge, so that no two apps' main.py clash.
if TYPE_CHECKING:
    from firmware.bridge.bridge import Bridge
else:
    from bridge import Bridge

_CHUNK = 64  # serial bytes fed to the bridge at a time
_RX_SLICE_MS = 500  # the longest receive before looking at the TX queue again
_HOUSEKEEPING_MS = 100
_NOISE_EVERY_MS = 10_000
_WDT_MS = 10_000


def tx_cfg(bridge, job):
    """The radio settings for one TX request: its channel, SF, bandwidth and power."""
    c = bridge.config
    return lora_cfg(
        {
            "freq_khz": job.freq_khz,
            "sf": job.sf,
            "bw_khz": job.bw_khz,
            "cr": c["cr"],
            "preamble": c["preamble"],
            "power_dbm": job.power_dbm,
        }
    )


async def serial_loop(bridge):
    stdin = sys.stdin.buffer
    poller = select.poll()
    poller.register(sys.stdin, select.POLLIN)
    chunk = bytearray(_CHUNK)
    mv = memoryview(chunk)
    while True:
        n = 0
        while n < _CHUNK and poller.poll(0):
            if stdin.readinto(mv[n : n + 1]) == 1:
                n += 1
        if n:
            bridge.serial_in(mv[0:n])
        else:
            await asyncio.sleep_ms(2)


async def transmit(bridge, modem, radio, job):
    modem.configure(tx_cfg(bridge, job))
    try:
        end = await radio.transmit(job.frame)
        bridge.transmit_done(job, bridge.now() - ticks_diff(ticks_ms(), end) * 1000)
    except ChannelBusy:
        bridge.transmit_failed(job, FAIL_CHANNEL_BUSY)
    except (RuntimeError, OSError) as exc:  # BUSY-line timeout, SPI error
        bridge.transmit_failed(job, FAIL_RADIO_TIMEOUT)
        bridge.log(40, "radio: %r" % (exc,))
    modem.configure(lora_cfg(bridge.config))


async def radio_loop(bridge, modem, radio):
    rssi = Sx126xRssi(modem)
    noise_at = ticks_ms()
    crc_seen = getattr(modem, "crc_errors", 0) + radio.rx_crc_errors
    while True:
        if bridge.config_changed:
            bridge.config_changed = False
            modem.configure(lora_cfg(bridge.config))
        job = bridge.next_tx()
        if job is not None:
            await transmit(bridge, modem, radio, job)
            continue
        if ticks_diff(ticks_ms(), noise_at) >= _NOISE_EVERY_MS:
            # Noise floor for STATUS, sampled between receive slices (never during one).
            noise_at = ticks_ms()
            rssi.begin()
            await asyncio.sleep_ms(2)
            bridge.noise_dbm = rssi.read()
            rssi.end()
        wait_us = bridge.us_until_next_tx()
        slice_ms = _RX_SLICE_MS if wait_us < 0 else min(_RX_SLICE_MS, wait_us // 1000)
        if slice_ms <= 0:
            await asyncio.sleep_ms(0)
            continue
        p = await radio.receive(ticks_add(ticks_ms(), slice_ms))
        if p is not None:
            bridge.received(p, p.rssi, p.snr, ticks_diff(ticks_ms(), p.ticks_ms) * 1000)
        crc = getattr(modem, "crc_errors", 0) + radio.rx_crc_errors
        if crc != crc_seen:  # packets the driver (or the adapter) dropped for a bad CRC
            bridge.rx_bad += crc - crc_seen
            crc_seen = crc


async def housekeeping(bridge, wdt):
    while True:
        bridge.tick()
        wdt.feed()
        await asyncio.sleep_ms(_HOUSEKEEPING_MS)


async def main():
    micropython.kbd_intr(-1)  # 0x03 is data on the link, not Ctrl-C
    board = load_board()
    wdt = machine.WDT(timeout=_WDT_MS)
    out = sys.stdout.buffer
    bridge = Bridge(out.write, ticks_us)
    modem = make_modem(board, bridge.config)
    bridge.config_changed = False
    radio = Radio(modem, random.randrange)
    bridge.start()
    await asyncio.gather(
        serial_loop(bridge),
        radio_loop(bridge, modem, radio),
        housekeeping(bridge, wdt),
    )


asyncio.run(main())
