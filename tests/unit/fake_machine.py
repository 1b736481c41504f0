"""MicroPython's ``machine`` classes and asyncio names, faked for the roles' main.py tests.

Each factory closes over the test's fake world (pin levels, PWM duties, interrupt
handlers), so a test reads what the glue did to the hardware from plain dicts. The
signatures are MicroPython's (docs.micropython.org, machine.Pin/PWM/WDT).
"""

from __future__ import annotations

import asyncio
from typing import Any


def make_pin(levels: dict[Any, int], irqs: dict[Any, Any] | None = None) -> type:
    """machine.Pin over ``levels`` (pin number → level); handlers also land in ``irqs``."""

    class Pin:
        IN, OUT, PULL_UP, PULL_DOWN = 1, 3, 1, 2
        IRQ_FALLING, IRQ_RISING = 2, 1

        def __init__(self, n: Any, mode: int = -1, pull: int = -1, value: int | None = None):
            self.n = n
            self.handler: Any = None
            if value is not None:
                levels[n] = value

        def value(self, v: int | None = None) -> int:
            if v is not None:
                levels[self.n] = v
            return levels.get(self.n, 0)

        __call__ = value

        def init(self, *a: Any, **k: Any) -> None:
            pass

        def irq(self, handler: Any = None, trigger: int = 0, wake: Any = None) -> None:
            self.handler = handler
            if irqs is not None:
                irqs[self.n] = handler

    return Pin


def make_pwm(duty: dict[Any, int], freq_hz: int | None = None) -> type:
    """machine.PWM writing each pin's duty_u16 into ``duty``; checks the frequency."""

    class PWM:
        def __init__(self, pin: Any, freq: int = 0, duty_u16: int = 0) -> None:
            assert freq_hz is None or freq == freq_hz
            self.pin = pin
            duty[pin.n] = duty_u16

        def duty_u16(self, d: int) -> None:
            duty[self.pin.n] = d

    return PWM


def make_wdt(min_timeout_ms: int = 0) -> type:
    """machine.WDT that checks the glue asked for at least ``min_timeout_ms``."""

    class WDT:
        def __init__(self, id: int = 0, timeout: int = 5000) -> None:
            assert timeout >= min_timeout_ms

        def feed(self) -> None:
            pass

    return WDT


class ThreadSafeFlag:
    """MicroPython's asyncio.ThreadSafeFlag over an asyncio.Event (wait() clears it)."""

    def __init__(self) -> None:
        self._e = asyncio.Event()

    def set(self) -> None:
        self._e.set()

    def clear(self) -> None:
        self._e.clear()

    async def wait(self) -> None:
        await self._e.wait()
        self._e.clear()


async def _sleep_ms(ms: int) -> None:
    await asyncio.sleep(ms / 1000)


async def _wait_for_ms(aw: Any, ms: int) -> Any:
    return await asyncio.wait_for(aw, ms / 1000)


def micropython_asyncio(monkeypatch: Any) -> None:
    """Give CPython's asyncio the MicroPython names the glue uses (sleep_ms,
    wait_for_ms, ThreadSafeFlag), for the duration of a test."""
    monkeypatch.setattr(asyncio, "sleep_ms", _sleep_ms, raising=False)
    monkeypatch.setattr(asyncio, "wait_for_ms", _wait_for_ms, raising=False)
    monkeypatch.setattr(asyncio, "ThreadSafeFlag", ThreadSafeFlag, raising=False)
