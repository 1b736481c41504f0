"""The simulator's transport: frames injected in-process, downlinks handed to a callback.

The fleet simulator and the tests use it to drive the real pipeline without a radio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gateway.transports.base import FrameSink, Reception

Deliver = Callable[[bytes, Reception | None], None]


class SimTransport:
    can_send = True

    def __init__(
        self,
        name: str = "sim",
        *,
        deliver: Deliver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.deliver = deliver
        self.clock = clock
        self.sent: list[tuple[bytes, Reception | None]] = []
        self._sink: FrameSink | None = None
        self._ready = asyncio.Event()
        self.received = 0

    async def run(self, sink: FrameSink) -> None:
        self._sink = sink
        self._ready.set()
        await asyncio.Event().wait()  # frames arrive through `inject`

    async def ready(self) -> None:
        await self._ready.wait()

    def inject(
        self,
        data: bytes,
        *,
        rssi: int = -90,
        snr: float = 7.5,
        sf: int = 9,
        context: Any = None,
        at: float | None = None,
    ) -> None:
        """Hand one received frame to the gateway, as a radio would."""
        if self._sink is None:
            raise RuntimeError("the sim transport is not running yet")
        self.received += 1
        self._sink(
            data,
            Reception(
                self.name,
                self.clock() if at is None else at,
                rssi,
                snr,
                freq_khz=922_100,
                sf=sf,
                bw_khz=125,
                context=context,
            ),
        )

    async def send(self, data: bytes, *, reply_to: Reception | None) -> bool:
        self.sent.append((data, reply_to))
        if self.deliver is not None:
            self.deliver(data, reply_to)
        return True

    def status(self) -> dict[str, Any]:
        return {"kind": "sim", "received": self.received, "sent": len(self.sent)}
