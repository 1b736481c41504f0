"""The gateway's own LoRa radio (the bridge firmware) on a USB serial port.

pyserial on a real tty, read without threads (the port's file descriptor is watched by
the event loop), bytes fed to the `protocol.link.Framer`, which resynchronises after
garbage. When the USB device disappears the port is closed and reopened until it returns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import serial

from gateway.config import SerialSettings
from gateway.transports.base import FrameSink, Reception
from protocol import link as ln

log = logging.getLogger("anshim.gateway.serial")

RX_DELAY_US = 1_000_000  # PROTOCOL.md 1.4
TX_TIMEOUT_S = 6.0  # a scheduled TX is at most ~1 s ahead plus SF12 time on air
REOPEN_S = 1.0


class SerialTransport:
    can_send = True

    def __init__(
        self,
        settings: SerialSettings,
        *,
        clock: Callable[[], float] = time.time,
        reopen_s: float = REOPEN_S,
    ) -> None:
        self.settings = settings
        self.name = settings.receiver
        self.clock = clock
        self.reopen_s = reopen_s
        self.framer = ln.Framer()
        self._port: serial.Serial | None = None
        self._seq = 0
        self._pending: dict[int, asyncio.Future[ln.Message]] = {}
        self.bridge_status: ln.Status | None = None
        self.counts = {"rx": 0, "tx_done": 0, "tx_failed": 0, "opens": 0, "disconnects": 0}
        self._warned = False

    @property
    def connected(self) -> bool:
        return self._port is not None

    async def run(self, sink: FrameSink) -> None:
        while True:
            try:
                port = self._open()
            except (serial.SerialException, OSError) as exc:
                if not self._warned:
                    log.warning(
                        "radio bridge %s not available (%s); retrying", self.settings.port, exc
                    )
                    self._warned = True
                await asyncio.sleep(self.reopen_s)
                continue
            self._warned = False
            self.counts["opens"] += 1
            log.info("radio bridge on %s", self.settings.port)
            try:
                await self._session(port, sink)
            except (serial.SerialException, OSError) as exc:
                self.counts["disconnects"] += 1
                log.warning("radio bridge %s lost (%s); reopening", self.settings.port, exc)
            finally:
                self._port = None
                for fut in self._pending.values():
                    if not fut.done():
                        fut.cancel()
                self._pending.clear()
                port.close()
            await asyncio.sleep(self.reopen_s)

    def _open(self) -> serial.Serial:
        # DTR and RTS stay low: on ESP32 boards' USB-serial chips they drive EN and GPIO0,
        # and raising them on open would reset the bridge (or hold it in its bootloader).
        port = serial.Serial()
        port.port = self.settings.port
        port.baudrate = self.settings.baud
        port.timeout = 0
        port.dtr = False
        port.rts = False
        port.open()
        return port

    async def _session(self, port: serial.Serial, sink: FrameSink) -> None:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = port.fileno()
        loop.add_reader(fd, readable.set)
        self._port = port
        self.framer = ln.Framer()
        try:
            s = self.settings
            port.write(b"\x00")  # flush whatever half-frame the bridge holds
            self._write(
                ln.Config(
                    seq=self._next_seq(),
                    freq_khz=s.freq_khz,
                    sf=s.sf,
                    bw_khz=s.bw_khz,
                    cr=s.cr,
                    preamble=s.preamble,
                    power_dbm=s.power_dbm,
                )
            )
            self._write(ln.StatusRequest(seq=self._next_seq()))
            while True:
                await readable.wait()
                readable.clear()
                data = port.read(max(port.in_waiting, 1))
                if not data:
                    continue
                for message in self.framer.feed(data):
                    self._handle(message, sink)
        finally:
            loop.remove_reader(fd)

    def _handle(self, m: ln.Message, sink: FrameSink) -> None:
        if isinstance(m, ln.Rx):
            self.counts["rx"] += 1
            sink(
                m.frame,
                Reception(
                    self.name,
                    self.clock(),
                    m.rssi,
                    m.snr_x4 / 4,
                    tmst=m.tmst,
                    freq_khz=m.freq_khz,
                    sf=m.sf,
                    bw_khz=m.bw_khz,
                ),
            )
        elif isinstance(m, ln.TxDone | ln.TxFailed):
            fut = self._pending.pop(m.seq, None)
            if fut is not None and not fut.done():
                fut.set_result(m)
        elif isinstance(m, ln.Status):
            self.bridge_status = m
        elif isinstance(m, ln.Log):
            log.log(m.level if m.level in (10, 20, 30, 40, 50) else 20, "bridge: %s", m.text)

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _write(self, message: ln.Message) -> None:
        if self._port is None:
            raise OSError("radio bridge not connected")
        self._port.write(ln.encode_message(message))

    async def send(self, data: bytes, *, reply_to: Reception | None) -> bool:
        if self._port is None:
            return False
        s = self.settings
        seq = self._next_seq()
        if reply_to is not None and reply_to.tmst is not None:
            tx = ln.Tx(
                seq=seq,
                mode=ln.TxMode.AT_TMST,
                tmst=(reply_to.tmst + RX_DELAY_US) & 0xFFFFFFFF,
                freq_khz=reply_to.freq_khz or s.freq_khz,
                sf=reply_to.sf or s.sf,
                bw_khz=reply_to.bw_khz or s.bw_khz,
                power_dbm=s.power_dbm,
                frame=data,
            )
        else:
            tx = ln.Tx(
                seq=seq,
                mode=ln.TxMode.NOW,
                tmst=0,
                freq_khz=s.freq_khz,
                sf=s.sf,
                bw_khz=s.bw_khz,
                power_dbm=s.power_dbm,
                frame=data,
            )
        fut: asyncio.Future[ln.Message] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        self._write(tx)
        try:
            result = await asyncio.wait_for(fut, TX_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            self._pending.pop(seq, None)
            self.counts["tx_failed"] += 1
            return False
        if isinstance(result, ln.TxDone):
            self.counts["tx_done"] += 1
            return True
        self.counts["tx_failed"] += 1
        reason = getattr(result, "reason", 0)
        log.info("bridge could not transmit: %s", _reason(reason))
        return False

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "serial",
            "port": self.settings.port,
            "connected": self.connected,
            **self.counts,
            "link_errors": self.framer.stats.errors,
        }
        if self.bridge_status is not None:
            out["bridge"] = self.bridge_status.to_fields()
        return out


def _reason(code: int) -> str:
    try:
        return ln.TxFailure(code).name.lower()
    except ValueError:
        return f"reason {code}"
