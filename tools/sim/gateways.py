"""Simulated gateways: a real `gateway.service.Gateway` each, with its own journal.

Frames reach the gateway the way its radio would hand them over, in one of two ways:

* **sim transport** (default): `SimTransport.inject` at the end of each reception, with
  the RSSI/SNR the channel computed; downlinks come back through the transport's
  ``deliver`` callback and go on the air through `GatewayRadio`, which schedules them as
  the radio bridge does (at the receive window, ``LEAD_US`` early for LBT) and transmits
  with the firmware's `radio.Radio` (LBT, 50 ms pause, half duplex: the gateway hears
  nothing while it transmits).
* **serial** (``GatewaySpec.serial``): the bridge firmware (`bridge.Bridge`) runs on the
  simulated radio and talks to the gateway's real `SerialTransport` over a pseudo-terminal
  pair, byte for byte as over USB (PROTOCOL.md 5). Real I/O: the loop holds its virtual
  clock at wall-clock speed while bytes are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import db
from gateway.config import (
    BleSettings,
    MqttSettings,
    RulesSettings,
    SerialSettings,
    Settings,
    SupervisionSettings,
)
from gateway.registry import Place, Registry
from gateway.service import Gateway
from gateway.transports.base import Reception, Transport
from gateway.transports.sim import SimTransport
from tools.sim import vloop
from tools.sim.channel import Node, Receiver, Transmission
from tools.sim.devices import RadioHost
from tools.sim.scenario import DeviceSpec, GatewaySpec

if TYPE_CHECKING:
    from tools.sim.fleet import Simulation

RX_DELAY_S = 1.0  # PROTOCOL.md 1.4
LEAD_S = 0.015  # firmware/bridge/bridge.py LEAD_US: start LBT this early
LATE_S = 0.1  # bridge.py LATE_US: later than this past its time, a TX is "too late"


class BleSimTransport(SimTransport):
    """BLE advertising is one-way: the gateway can hear, never answer."""

    can_send = False

    def status(self) -> dict[str, Any]:
        return {**super().status(), "kind": "sim-ble"}


@dataclass
class _Job:
    at: float | None  # loop time the frame must start (None: as soon as possible)
    data: bytes
    seq: int


class GatewayRadio(RadioHost):
    """The gateway's SX1262 (the bridge's radio loop, without the serial hop)."""

    kind = "gateway"

    def __init__(self, sim: Simulation, gw: SimGateway, node: Node, seed: int) -> None:
        super().__init__(sim, node, seed)
        self.gw = gw
        self.rx = Receiver(sim.channel, node, on_frame=gw.on_frame)
        self.receiver = self.rx
        sim.channel.add_receiver(self.rx)
        self.jobs: list[_Job] = []
        self._seq = 0
        self._new: asyncio.Future[None] | None = None
        self.sent = 0
        self.too_late = 0
        self.busy = 0  # LBT found the channel busy on every try
        self.tx_s = 0.0

    def enqueue(self, data: bytes, at: float | None) -> None:
        self._seq += 1
        self.jobs.append(_Job(at, data, self._seq))
        # Immediate jobs first, in arrival order; then timed ones by time (bridge.py).
        self.jobs.sort(key=lambda j: (j.at is not None, j.at or 0.0, j.seq))
        if self._new is not None and not self._new.done():
            self._new.set_result(None)

    async def run(self) -> None:
        loop = self.sim.loop
        radio = self.make_radio()
        self.rx.listen()
        while True:
            if not self.jobs:
                await self._idle(None)
                continue
            job = self.jobs[0]
            if job.at is not None and job.at - LEAD_S > loop.time():
                await self._idle(job.at - LEAD_S)
                continue
            self.jobs.pop(0)
            if job.at is not None and loop.time() > job.at + LATE_S:
                self.too_late += 1
                continue
            self.rx.deafen("half-duplex")  # the receive slice ends before a TX
            try:
                await radio.transmit(job.data)
                self.sent += 1
            except self.fw.radio.ChannelBusy:
                self.busy += 1
            finally:
                self.rx.listen()

    async def _idle(self, until: float | None) -> None:
        loop = self.sim.loop
        fut: asyncio.Future[None] = loop.create_future()
        self._new = fut
        handle = loop.call_at(until, _done, fut) if until is not None else None
        try:
            await fut
        finally:
            if handle is not None:
                handle.cancel()
            self._new = None

    def before_tx(self) -> None:
        self.rx.deafen("half-duplex")

    def on_tx(self, tx: Transmission) -> None:
        super().on_tx(tx)
        self.tx_s += tx.toa
        self.sim.on_gateway_tx(self.gw, tx)


def _done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class SimGateway:
    """One community centre: a `Gateway` service, its radio and its registry."""

    def __init__(self, sim: Simulation, spec: GatewaySpec, node: Node, index: int) -> None:
        self.sim = sim
        self.spec = spec
        self.gateway_id = spec.gateway_id
        self.node = node
        self.data_dir = sim.data_dir / spec.gateway_id
        self.radio = GatewayRadio(sim, self, node, 0x6A7E0000 + index)
        self.transport: Transport
        self.pty: PtyBridge | None = None
        self.ble: BleSimTransport | None = None
        self.service: Gateway | None = None
        self.devices: set[int] = set()  # registered here
        self.answers: set[int] = set()  # registered here and not listen-only
        self.processing: list[float] = []  # wall seconds per frame through the pipeline
        self._radio_task: asyncio.Task[None] | None = None
        self._raised: dict[str, float] = {}
        self._raising: str | None = None  # an alarm raised by the frame being injected
        self._unhold: Callable[[], None] | None = None

    # -- set-up -------------------------------------------------------------------------

    def settings(self) -> Settings:
        sim = self.sim
        mqtt = MqttSettings(url=sim.mqtt_url, client_id=f"anshim-sim-{self.gateway_id}")
        serial = None
        if self.spec.serial:
            serial = SerialSettings(
                port=str(self.data_dir / "bridge.tty"),
                freq_khz=sim.channel.settings.freq_khz,
                sf=sim.channel.settings.sf,
            )
        return Settings(
            gateway_id=self.gateway_id,
            site=sim.scenario.site,
            data_dir=self.data_dir,
            serial=serial,
            ble=BleSettings() if self.spec.ble else None,
            mqtt=mqtt,
            supervision=SupervisionSettings(check_every_s=sim.supervision_every_s),
            rules=RulesSettings(),
        )

    def register(self, devices: list[tuple[DeviceSpec, bool]]) -> None:
        """The installer's registration of the devices this gateway covers: (device,
        listen-only) pairs."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conn = db.connect(self.data_dir / "anshim.db")
        try:
            Registry(conn).add_many(
                [
                    {
                        "kind": d.kind,
                        "device_id": d.device_id,
                        "key": d.key,
                        "heartbeat_s": d.heartbeat_s,
                        "cameras": d.cameras,
                        "listen_only": listen_only,
                        "place": Place(
                            lat=d.lat,
                            lon=d.lon,
                            label=d.label,
                            national_point_number=d.national_point_number,
                            plate_id=d.plate_id,
                            trail=d.trail,
                        ),
                    }
                    for d, listen_only in devices
                ]
            )
        finally:
            conn.close()
        self.devices = {d.device_id for d, _ in devices}
        self.answers = {d.device_id for d, listen_only in devices if not listen_only}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SimGateway]:
        sim = self.sim
        settings = self.settings()
        transports: list[Transport] = []
        if self.spec.serial:
            self.pty = PtyBridge(sim, self, self.data_dir / "bridge.tty")
            from gateway.transports.serial import SerialTransport

            assert settings.serial is not None
            serial = SerialTransport(settings.serial, clock=sim.wall, reopen_s=0.05)
            transports.append(serial)
            self.transport = serial
        else:
            lora = SimTransport("lora", deliver=self._deliver, clock=sim.wall)
            transports.append(lora)
            self.transport = lora
        if self.spec.ble:
            self.ble = BleSimTransport("ble", clock=sim.wall)
            transports.append(self.ble)
        self.service = Gateway(settings, transports=transports, clock=sim.wall)
        try:
            async with self.service.running():
                core = self.service.core
                assert core is not None
                core.listeners.append(self._on_core)
                if self.pty is not None:
                    self.pty.start()
                else:
                    assert isinstance(self.transport, SimTransport)
                    await self.transport.ready()
                    self._radio_task = asyncio.create_task(self.radio.run())
                if self.ble is not None:
                    await self.ble.ready()
                if sim.mqtt_url:
                    await self._upstream_ready()
                try:
                    yield self
                finally:
                    if self._unhold is not None:
                        self._unhold()
                        self._unhold = None
                    if self._radio_task is not None:
                        self._radio_task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await self._radio_task
        finally:
            if self.pty is not None:
                self.pty.close()

    async def _upstream_ready(self) -> None:
        service = self.service
        assert service is not None
        with vloop.holding():  # connecting is real I/O: real time until it is done
            while service.upstream is None or not service.upstream.connected:
                await asyncio.sleep(0.01)
        service.upstream.on_puback = self._on_puback
        loop = asyncio.get_running_loop()
        if isinstance(loop, vloop.VirtualTimeLoop):
            upstream = service.upstream
            core = service.core
            assert core is not None
            # While anything waits in the outbox the broker is working for us: real time.
            self._unhold = loop.add_hold(
                lambda: upstream.connected and core.journal.outbox_size() > 0
            )

    # -- frames in ----------------------------------------------------------------------

    def on_frame(self, tx: Transmission, rssi: float, snr: float) -> None:
        """The radio received a frame (the channel says so)."""
        self.sim.on_gateway_rx(self, tx, rssi, snr)
        if self.pty is not None:
            self.pty.received(tx, rssi, snr)
            return
        transport = self.transport
        assert isinstance(transport, SimTransport)
        self._raising = None
        started = time.perf_counter()
        transport.inject(
            tx.data,
            rssi=round(rssi),
            snr=round(snr * 4) / 4,
            sf=tx.sf,
            context=tx.end,
            at=self.sim.wall_at(tx.end),
        )
        spent = time.perf_counter() - started
        self.processing.append(spent)
        if self._raising is not None:
            self.sim.on_alarm_committed(self, self._raising, spent)

    def on_ble(self, data: bytes, rssi: float) -> None:
        if self.ble is not None:
            self.ble.inject(data, rssi=round(rssi), snr=0.0)

    def _deliver(self, data: bytes, reply_to: Reception | None) -> None:
        at = None
        if reply_to is not None and isinstance(reply_to.context, float):
            at = reply_to.context + RX_DELAY_S
        self.radio.enqueue(data, at)

    def _on_core(self, what: str, payload: dict[str, Any]) -> None:
        if what == "alarm":
            event_id = payload.get("event_id", "")
            if payload.get("state") == "raised" and event_id not in self._raised:
                self._raised[event_id] = self.sim.loop.time()
                self._raising = event_id
                if self.pty is not None:  # the serial path: not timed per frame
                    self.sim.on_alarm_committed(self, event_id, None)
        self.sim.on_gateway_event(self, what, payload)

    def _on_puback(self, row: Any) -> None:
        if "/alarm/" in row.topic and '"state":"raised"' in row.payload:
            self.sim.on_alarm_published(self, row.topic.rsplit("/", 1)[-1])


class PtyBridge(RadioHost):
    """The bridge firmware on the simulated radio, on the far end of a pseudo-terminal."""

    kind = "bridge"

    def __init__(self, sim: Simulation, gw: SimGateway, path: Path) -> None:
        super().__init__(sim, gw.node, 0xB41D6E)
        self.gw = gw
        self.path = path
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(os.ttyname(self.slave))
        self.bridge: Any = self.fw.bridge.Bridge(self._write, self._clock_us)
        self.rx = Receiver(sim.channel, gw.node, on_frame=gw.on_frame)
        self.receiver = self.rx
        sim.channel.add_receiver(self.rx)
        self._tasks: list[asyncio.Task[None]] = []
        self._tx_wake: asyncio.Future[None] | None = None
        self.sent = 0
        self.tx_s = 0.0

    def _clock_us(self) -> int:
        return (int(self.sim.loop.time() * 1_000_000) + self._tick_offset) & ((1 << 30) - 1)

    def _write(self, buf: Any) -> None:
        os.write(self.master, bytes(buf))
        vloop.hold_for(0.05)  # bytes in flight to the gateway: let them arrive

    def start(self) -> None:
        loop = self.sim.loop
        loop.add_reader(self.master, self._readable)
        self.bridge.start()
        self.bridge.config_changed = False
        self._tasks = [
            asyncio.create_task(self._radio_loop()),
            asyncio.create_task(self._housekeeping()),
        ]
        self.rx.listen()

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        self.bridge.serial_in(data)
        vloop.hold_for(0.05)
        if self._tx_wake is not None and not self._tx_wake.done():
            self._tx_wake.set_result(None)

    def received(self, tx: Transmission, rssi: float, snr: float) -> None:
        self.bridge.received(tx.data, round(rssi), round(snr * 4), 0)
        # A frame that opens a receive window is answered after the gateway's 50 ms
        # gathering: keep to real time until the TX request is back over the pty.
        vloop.hold_for(0.3 if tx.data[1] & 0x01 else 0.05)

    async def _housekeeping(self) -> None:
        while True:
            self.bridge.tick()
            await asyncio.sleep(0.1)

    async def _radio_loop(self) -> None:
        """firmware/bridge/main.py ``radio_loop``: the due job, or listen until it is."""
        loop = self.sim.loop
        radio = self.make_radio()
        bridge = self.bridge
        while True:
            job = bridge.next_tx()
            if job is not None:
                self.rx.deafen("half-duplex")
                try:
                    end = await radio.transmit(bytes(job.frame))
                    age_us = self.fw.compat.ticks_diff(self.ticks(), end) * 1000
                    bridge.transmit_done(job, bridge.now() - age_us)
                    self.sent += 1
                except self.fw.radio.ChannelBusy:
                    bridge.transmit_failed(job, self.fw.link.FAIL_CHANNEL_BUSY)
                finally:
                    self.rx.listen()
                continue
            wait_us = bridge.us_until_next_tx()
            fut: asyncio.Future[None] = loop.create_future()
            self._tx_wake = fut
            handle = loop.call_later(0.5 if wait_us < 0 else wait_us / 1e6, _done, fut)
            try:
                await fut
            finally:
                handle.cancel()
                self._tx_wake = None

    def on_tx(self, tx: Transmission) -> None:
        super().on_tx(tx)
        self.tx_s += tx.toa
        self.sim.on_gateway_tx(self.gw, tx)

    def before_tx(self) -> None:
        self.rx.deafen("half-duplex")

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        with contextlib.suppress(Exception):
            self.sim.loop.remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.path.unlink()
