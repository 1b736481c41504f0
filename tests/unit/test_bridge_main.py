"""firmware/bridge/main.py, the bridge's glue, booted in CPython on fake hardware.

The USB console is a fake ``sys.stdin``/``sys.stdout`` pair polled through a fake
``select.poll``; the modem is a fake of micropython-lib's AsyncSX1262. The gateway's
side (``protocol.link``) writes the requests, garbage included, and decodes everything
the bridge wrote. The board is the real hardware/boards/heltec-v3.json.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from protocol import link as ln
from tools import firmware_bench as fb

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "firmware" / "bridge" / "main.py"
BOARD = json.loads((ROOT / "hardware" / "boards" / "heltec-v3.json").read_text(encoding="utf-8"))
for _p in (ROOT / "firmware" / "lib", ROOT / "firmware" / "bridge"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))


class World:
    def __init__(self) -> None:
        self.stdin = bytearray()
        self.stdout = bytearray()
        self.kbd_intr: list[int] = []
        self.sent: list[tuple[bytes, dict[str, Any]]] = []
        self.configs: list[dict[str, Any]] = []
        self.packets: list[bytes] = []
        self.cfg: dict[str, Any] = {}


class Console:
    """sys.stdin / sys.stdout: ``.buffer`` with readinto / write."""

    def __init__(self, w: World) -> None:
        self.buffer = self
        self._w = w

    def readinto(self, mv: Any) -> int:
        n = min(len(mv), len(self._w.stdin))
        mv[0:n] = self._w.stdin[0:n]
        del self._w.stdin[0:n]
        return n

    def write(self, data: Any) -> int:
        self._w.stdout.extend(bytes(data))
        return len(data)


def fake_modules(w: World) -> dict[str, types.ModuleType]:
    machine = types.ModuleType("machine")

    class Pin:
        IN, OUT = 1, 3

        def __init__(self, n: Any, mode: int = -1, value: int | None = None) -> None:
            self.n = n

    class WDT:
        def __init__(self, id: int = 0, timeout: int = 5000) -> None:
            pass

        def feed(self) -> None:
            pass

    machine.Pin = Pin  # type: ignore[attr-defined]
    machine.WDT = WDT  # type: ignore[attr-defined]
    machine.SPI = lambda *a, **k: object()  # type: ignore[attr-defined]

    micropython = types.ModuleType("micropython")
    micropython.kbd_intr = w.kbd_intr.append  # type: ignore[attr-defined]
    micropython.const = lambda x: x  # type: ignore[attr-defined]

    select = types.ModuleType("select")

    class Poll:
        def register(self, stream: Any, mask: int) -> None:
            pass

        def poll(self, timeout: int = -1) -> list[Any]:
            return [1] if w.stdin else []

    select.poll = Poll  # type: ignore[attr-defined]
    select.POLLIN = 1  # type: ignore[attr-defined]

    lora = types.ModuleType("lora")

    class RxPacket(bytearray):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.rssi, self.snr, self.crc_error = -88, -14, False
            from compat import ticks_ms

            self.ticks_ms = ticks_ms()

    class AsyncSX1262:
        crc_errors = 0

        def __init__(self, spi: Any, cs: Any, busy: Any, dio1: Any = None, **kw: Any) -> None:
            assert kw["dio3_tcxo_millivolts"] == 1800
            w.cfg = dict(kw["lora_cfg"])
            self.rx = False

        def configure(self, cfg: dict[str, Any]) -> None:
            w.configs.append(dict(cfg))
            w.cfg.update(cfg)

        def start_recv(self, timeout_ms: Any = None, continuous: bool = False, rx_length=0xFF):
            self.rx = True

        def standby(self) -> None:
            self.rx = False

        def _cmd(self, fmt: str, *args: Any, n_read: int = 0) -> bytes:
            assert self.rx and args == (0x15,)
            return bytes((0x52, 200))  # -100 dBm

        async def send(self, packet: Any, tx_at_ms: Any = None) -> int:
            w.sent.append((bytes(packet), dict(w.cfg)))
            await asyncio.sleep(0.05)  # on air
            from compat import ticks_ms

            return ticks_ms()

        async def recv(self, timeout_ms: Any = None, rx_length=0xFF, rx_packet: Any = None):
            await asyncio.sleep(min(timeout_ms or 10, 10) / 1000)
            if w.packets:
                return RxPacket(w.packets.pop(0))
            return None

    lora.AsyncSX1262 = AsyncSX1262  # type: ignore[attr-defined]
    return {"machine": machine, "micropython": micropython, "select": select, "lora": lora}


async def _sleep_ms(ms: int) -> None:
    await asyncio.sleep(ms / 1000)


def test_bridge_relays_and_transmits_over_the_console(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    for name, mod in fake_modules(w).items():
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(asyncio, "sleep_ms", _sleep_ms, raising=False)
    monkeypatch.setattr(
        time, "ticks_us", lambda: time.monotonic_ns() // 1000 & (1 << 30) - 1, raising=False
    )
    console = Console(w)
    monkeypatch.setattr(sys, "stdin", console)
    monkeypatch.setattr(sys, "stdout", console)
    src = MAIN.read_text(encoding="utf-8").replace("\nasyncio.run(main())\n", "\n")
    ns: dict[str, Any] = {"__name__": "bridge_main"}
    exec(compile(src, str(MAIN), "exec"), ns)
    ns["load_board"] = lambda path=None: BOARD
    uplink = bytes([0x23]) + bytes(range(23))

    async def gateway() -> None:
        w.stdin.extend(b"\x03garbage\x03\x00")  # Ctrl-C bytes and junk: data, not a stop
        w.stdin.extend(ln.encode_message(ln.StatusRequest(seq=1)))
        w.stdin.extend(
            ln.encode_message(
                ln.Config(seq=2, freq_khz=922_300, sf=9, bw_khz=125, cr=5, preamble=8, power_dbm=14)
            )
        )
        await asyncio.sleep(0.1)
        w.packets.append(uplink)
        await asyncio.sleep(0.1)
        w.stdin.extend(fb.bridge_tx(7, 0, 0, freq_khz=922_500))  # now, on another channel
        await asyncio.sleep(0.4)

    async def both() -> None:
        main = asyncio.ensure_future(ns["main"]())
        await gateway()
        main.cancel()

    asyncio.run(both())
    assert w.kbd_intr == [-1]
    messages = ln.Framer().feed(bytes(w.stdout))
    kinds = [type(m).__name__ for m in messages]
    assert kinds[:2] == ["Log", "Status"]  # hello at boot
    assert "Status" in kinds[2:]  # the requested one
    rx = [m for m in messages if isinstance(m, ln.Rx)]
    assert len(rx) == 1 and rx[0].frame == uplink and rx[0].freq_khz == 922_300
    assert (rx[0].rssi, rx[0].snr_x4) == (-88, -14)
    done = [m for m in messages if isinstance(m, ln.TxDone)]
    assert len(done) == 1 and done[0].seq == 7
    # Sent on the requested channel, then back to the receive channel.
    assert len(w.sent) == 1 and w.sent[0][1]["freq_khz"] == 922_500
    assert w.cfg["freq_khz"] == 922_300
