"""The simulator's virtual-time event loop: timers in order at their virtual instants,
no real waiting, real sockets still served, and holds at wall-clock speed."""

from __future__ import annotations

import asyncio
import socket
import time

from tools.sim import vloop


def test_a_day_of_timers_takes_no_real_time_and_keeps_order() -> None:
    fired: list[tuple[str, float]] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        loop.call_later(7200, lambda: fired.append(("b", loop.time() - t0)))
        loop.call_later(3600, lambda: fired.append(("a", loop.time() - t0)))
        await asyncio.sleep(86400)
        return loop.time() - t0

    started = time.monotonic()
    elapsed = vloop.run(main(), start=1000.0)
    assert time.monotonic() - started < 2
    assert elapsed == 86400
    assert fired == [("a", 3600), ("b", 7200)]


def test_real_sockets_are_served_between_virtual_timers() -> None:
    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got: asyncio.Future[bytes] = loop.create_future()
        loop.add_reader(b, lambda: got.done() or got.set_result(b.recv(100)))

        async def ticker() -> None:
            while True:
                await asyncio.sleep(1)

        t = asyncio.create_task(ticker())
        t0 = loop.time()
        loop.call_later(5, a.send, b"hello")
        data = await asyncio.wait_for(got, 60)
        t.cancel()
        loop.remove_reader(b)
        a.close()
        b.close()
        return data, loop.time() - t0

    data, when = vloop.run(main())
    assert data == b"hello"
    assert 5 <= when < 6


def test_a_hold_runs_the_clock_at_wall_speed() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        assert vloop.is_virtual()
        v0, r0 = loop.time(), time.monotonic()
        vloop.hold_for(0.2)
        await asyncio.sleep(0.15)  # held: it really takes 0.15 s
        real = time.monotonic() - r0
        await asyncio.sleep(3600)  # not held any more: instant
        return loop.time() - v0, real

    virtual, real = vloop.run(main())
    assert 0.14 < real < 1.0
    assert virtual >= 3600.15


def test_a_predicate_hold_and_a_speed_cap() -> None:
    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, vloop.VirtualTimeLoop)
        busy = [True]
        remove = loop.add_hold(lambda: busy[0])
        loop.call_later(0.05, busy.__setitem__, 0, False)
        r0 = time.monotonic()
        await asyncio.sleep(0.1)  # 50 ms held at wall speed, the rest jumps
        held = time.monotonic() - r0
        remove()
        loop.max_speed = 100.0
        r0 = time.monotonic()
        await asyncio.sleep(10)  # at most 100x: about 0.1 s
        capped = time.monotonic() - r0
        return held, capped

    held, capped = vloop.run(main())
    assert 0.04 < held < 1.0
    assert 0.05 < capped < 2.0


def test_the_same_code_runs_on_a_normal_loop() -> None:
    async def main() -> bool:
        vloop.hold_for(1.0)  # a no-op outside the virtual loop
        await asyncio.sleep(0.01)
        return vloop.is_virtual()

    assert asyncio.run(main()) is False
