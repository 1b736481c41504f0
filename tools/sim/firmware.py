"""The device firmware, imported from firmware/ as the devices import it.

The firmware's modules import each other by bare name (``import codec``, ``from bell
import Bell``), as on the device where ``lib/`` and the app sit on ``sys.path``. This
puts firmware/lib and the app folders on ``sys.path`` (as the tests do) and returns the
modules; they are typed ``Any`` here, the firmware has its own type check.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"


class Firmware:
    """The firmware modules the simulator drives."""

    def __init__(self) -> None:
        for sub in ("bridge", "light", "bell", "lib"):
            path = str(FIRMWARE / sub)
            if path not in sys.path:
                sys.path.insert(0, path)
        self.bell: Any = _load("bell")
        self.light: Any = _load("light")
        self.bridge: Any = _load("bridge")
        self.codec: Any = _load("codec")
        self.store: Any = _load("store")
        self.radio: Any = _load("radio")
        self.feedback: Any = _load("feedback")
        self.compat: Any = _load("compat")
        self.astro: Any = _load("astro")
        self.link: Any = _load("link")
        self.errors: Any = _load("errors")
        if self.compat.MICROPY:  # pragma: no cover - a CPython tool
            raise RuntimeError("the simulator runs the firmware on CPython")


def _load(name: str) -> ModuleType:
    module = importlib.import_module(name)
    expected = FIRMWARE.resolve()
    origin = Path(getattr(module, "__file__", "") or "").resolve()
    if expected not in origin.parents:
        raise ImportError(f"module {name!r} comes from {origin}, not from {expected}")
    return module


_FIRMWARE: Firmware | None = None


def firmware() -> Firmware:
    global _FIRMWARE
    if _FIRMWARE is None:
        _FIRMWARE = Firmware()
    return _FIRMWARE


TICKS_MASK = (1 << 30) - 1  # MicroPython's ticks_ms period on 31-bit small-int ports


class MemoryBackend:
    """A store backend in RAM (the device's NVS or flash files), same interface as
    `store.FileBackend`: records survive a simulated reboot because this object does."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.writes = 0

    def read(self, name: str, buf: bytearray) -> int:
        data = self.records.get(name)
        if data is None:
            return -1
        n = min(len(data), len(buf))
        buf[0:n] = data[:n]
        return n

    def write(self, name: str, data: Any) -> None:
        self.records[name] = bytes(data)
        self.writes += 1

    def delete(self, name: str) -> None:
        self.records.pop(name, None)


class MemoryRtc:
    """``machine.RTC()`` memory: kept through deep sleep, lost on power loss."""

    def __init__(self) -> None:
        self.mem = b""

    def memory(self, data: Any = None) -> Any:
        if data is None:
            return self.mem
        self.mem = bytes(data)
        return None
