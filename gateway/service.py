"""The gateway service: one asyncio loop, one TaskGroup, resources owned with `async with`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from gateway import db
from gateway.config import Settings
from gateway.core import Core
from gateway.journal import Journal
from gateway.registry import Registry
from gateway.transports.base import Transport
from gateway.transports.sim import SimTransport
from gateway.upstream import Upstream

log = logging.getLogger("anshim.gateway")

GC_YOUNG = 20_000  # allocations between collections of young objects (CPython: 700)

VERSION = "0.1.0"


def build_transports(settings: Settings, clock: Callable[[], float]) -> list[Transport]:
    transports: list[Transport] = []
    if settings.serial is not None:
        from gateway.transports.serial import SerialTransport

        transports.append(SerialTransport(settings.serial, clock=clock))
    if settings.ble is not None:
        from gateway.transports.ble import BleTransport

        transports.append(BleTransport(settings.ble, clock=clock))
    if settings.sim is not None:
        transports.append(SimTransport(settings.sim.receiver, clock=clock))
    return transports


class Gateway:
    """Owns the database, the core, the transports and the upstream while it runs."""

    def __init__(
        self,
        settings: Settings,
        *,
        transports: Sequence[Transport] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._transports = list(transports) if transports is not None else None
        self.core: Core | None = None
        self.upstream: Upstream | None = None
        self.started = asyncio.Event()

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Core]:
        conn = db.connect(self.settings.database)
        try:
            core = Core(self.settings, Registry(conn), Journal(conn), clock=self.clock)
            transports = self._transports
            if transports is None:
                transports = build_transports(self.settings, self.clock)
            for t in transports:
                core.transports[t.name] = t
            self.core = core
            try:
                yield core
            finally:
                await core.drain_tasks()
                core.close()
        finally:
            conn.close()

    async def run(self) -> None:
        for line in self.settings.summary():
            log.info("%s", line)
        async with self.open() as core, asyncio.TaskGroup() as tg:
            for transport in core.transports.values():
                tg.create_task(transport.run(core.on_frame), name=f"transport {transport.name}")
            if self.settings.mqtt.url:
                self.upstream = Upstream(core, version=VERSION)
                tg.create_task(self.upstream.run(), name="upstream")
            tg.create_task(self._supervise(core), name="supervision")
            # Start-up objects (registry cache, modules) live as long as the service: keep
            # them out of the collector's full passes, which otherwise add ms to an alarm.
            gc.freeze()
            # A frame's objects are short-lived and free of cycles (reference counting
            # frees them): collect young objects every 20,000 allocations, not 700 —
            # 4 % of the CPU at 10,000 frames/s, a few MB at most between passes.
            gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
            self.started.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """`run` in a task for the duration of the block: started on entry (a failure at
        start-up is raised here), cancelled and awaited on exit. For embedding the
        service: the simulator, tests, benchmarks."""
        task = asyncio.create_task(self.run(), name=f"gateway {self.settings.gateway_id}")
        started = asyncio.ensure_future(self.started.wait())
        done, _ = await asyncio.wait({started, task}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            started.cancel()
            task.result()  # raises what stopped it
            raise RuntimeError(f"gateway {self.settings.gateway_id} stopped at start-up")
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self, core: Core) -> None:
        while True:
            await asyncio.sleep(self.settings.supervision.check_every_s)
            core.check_supervision()

    def status(self) -> dict[str, Any]:
        if self.core is None:
            return {"state": "stopped"}
        out = self.core.status()
        out["upstream"] = (
            {"connected": self.upstream.connected, "published": self.upstream.published}
            if self.upstream
            else None
        )
        return out
