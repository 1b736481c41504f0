"""An asyncio event loop whose clock is virtual: the simulator runs faster than real time.

`VirtualTimeLoop` is asyncio's own selector loop with two changes:

* ``time()`` returns a virtual clock;
* when no callback is ready, instead of sleeping until the next timer the loop polls
  its sockets once (``select(0)``) and, if nothing arrived, *jumps* the clock to that
  timer. Everything scheduled with ``call_at``/``call_later``/``asyncio.sleep`` runs in
  order and at the right virtual instants, as fast as the CPU allows.

Real sockets and pipes still work (they are polled on every pass), which is how real
gateways talk to a real mosquitto from inside a simulation. While a reply from the
outside world is expected the clock must not run away from it, so the loop can *hold*:
`hold_for` (a real duration) or `add_hold` (a predicate, e.g. "the MQTT outbox is not
empty") make the virtual clock advance at exactly the wall-clock rate until the hold
ends; ``max_speed`` additionally caps the virtual/real ratio (for code with its own
timeouts on real I/O, like an MQTT client's keep-alive and publish timers).

The same simulation code runs unchanged on a normal loop in real time (the demo).
`run` is ``asyncio.run`` on this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_HOLD_POLL_S = 0.005  # while holding on a predicate, look at it again this often (real s)
_SPEED_CREDIT_S = 0.05  # real seconds of unused speed budget that may be spent at once


class _Selector(selectors.DefaultSelector):
    """The platform selector, its ``select`` routed through the loop's virtual clock."""

    loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        real = super().select
        if self.loop is None:
            return real(timeout)
        return self.loop._select(real, timeout)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock (see the module docstring)."""

    def __init__(self, *, start: float = 0.0, max_speed: float | None = None) -> None:
        selector = _Selector()
        super().__init__(selector)
        selector.loop = self
        self._vtime = float(start)
        self._real_anchor: float | None = None  # set while the clock follows the wall
        self._hold_until = 0.0  # monotonic deadline of `hold_for`
        self._holds: list[Callable[[], bool]] = []
        self.max_speed = max_speed
        self._speed_real = time.monotonic()
        self._speed_virtual = self._vtime
        self.jumps = 0  # how many times the clock skipped ahead (statistics)
        self.jumped_s = 0.0  # virtual seconds skipped

    # -- the clock ------------------------------------------------------------------------

    def time(self) -> float:
        anchor = self._real_anchor
        if anchor is None:
            return self._vtime
        return self._vtime + (time.monotonic() - anchor)

    def hold_for(self, real_s: float) -> None:
        """Run at wall-clock speed for at least ``real_s`` real seconds from now."""
        self._hold_until = max(self._hold_until, time.monotonic() + real_s)

    def add_hold(self, predicate: Callable[[], bool]) -> Callable[[], None]:
        """Run at wall-clock speed whenever ``predicate()`` is true; returns a remover."""
        self._holds.append(predicate)

        def remove() -> None:
            if predicate in self._holds:
                self._holds.remove(predicate)

        return remove

    def _holding(self) -> bool:
        if time.monotonic() < self._hold_until:
            return True
        return any(p() for p in self._holds)

    def _follow_wall(self, on: bool) -> None:
        if on and self._real_anchor is None:
            self._real_anchor = time.monotonic()
        elif not on and self._real_anchor is not None:
            self._vtime = self.time()
            self._real_anchor = None

    # -- the poll ---------------------------------------------------------------------------

    def _select(
        self, real: Callable[[float | None], list[Any]], timeout: float | None
    ) -> list[Any]:
        if timeout == 0:
            return real(0)
        events = real(0)
        if events:
            return events
        if self._holding():
            self._follow_wall(True)
            wait = _HOLD_POLL_S if timeout is None else min(timeout, _HOLD_POLL_S)
            return real(wait)
        self._follow_wall(False)
        if timeout is None:
            return real(None)  # nothing scheduled: only the outside world can wake us
        speed = self.max_speed
        if speed is not None:
            now = time.monotonic()
            # The latest virtual time the speed limit allows now; never bank more than a
            # short credit (a slow stretch must not buy a long burst later).
            limit = self._speed_virtual + (now - self._speed_real) * speed
            if limit - self._vtime > _SPEED_CREDIT_S * speed:
                self._speed_real = now - _SPEED_CREDIT_S
                self._speed_virtual = self._vtime
                limit = self._vtime + _SPEED_CREDIT_S * speed
            if self._vtime + timeout > limit:
                # Too fast: go as far as allowed, then let the wall clock catch up while
                # watching the sockets; the next pass goes on from there.
                step = max(limit - self._vtime, 0.0)
                self._advance(step)
                return real((timeout - step) / speed)
        self._advance(timeout)
        return []

    def _advance(self, seconds: float) -> None:
        if seconds > 0:
            self._vtime += seconds
            self.jumps += 1
            self.jumped_s += seconds


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0, max_speed: float | None = None) -> T:
    """``asyncio.run(main)`` on a `VirtualTimeLoop`."""

    def factory() -> VirtualTimeLoop:
        return VirtualTimeLoop(start=start, max_speed=max_speed)

    with asyncio.Runner(loop_factory=factory) as r:
        return r.run(main)


@contextlib.contextmanager
def holding() -> Iterator[None]:
    """Wall-clock speed for as long as the block runs (e.g. connecting to a broker)."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualTimeLoop):
        yield
        return
    remove = loop.add_hold(lambda: True)
    try:
        yield
    finally:
        remove()


def hold_for(real_s: float) -> None:
    """`VirtualTimeLoop.hold_for` on the running loop; nothing on a normal loop."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualTimeLoop):
        loop.hold_for(real_s)


def is_virtual() -> bool:
    return isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
