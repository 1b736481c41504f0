"""`Simulation`: a scenario's devices, channel and gateways, running on asyncio.

See the package docstring (tools/sim/__init__.py) for the API and an example.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.sim import vloop
from tools.sim.channel import Channel, Node, Transmission, project, sensitivity_dbm
from tools.sim.devices import PressRecord, SimBell, SimDevice, SimLight
from tools.sim.firmware import firmware
from tools.sim.gateways import SimGateway
from tools.sim.scenario import DeviceSpec, Scenario

# Where a device is registered: "home" at every gateway that hears it, answered only by
# the one that hears it best (the others listen only: gateway/MQTT.md); "covering" at
# every such gateway, each answering; "best" at its best gateway only.
REGISTRATIONS = ("home", "covering", "best")
FRAME_TYPES = {
    0x01: "ALARM",
    0x02: "ALARM_UPDATE",
    0x03: "HEARTBEAT",
    0x04: "FAULT",
    0x05: "LIGHT_STATUS",
    0x06: "SELFTEST",
    0x11: "ACK",
    0x12: "COMMAND",
    0x13: "TIME",
}
# hardware/boards/heltec-v3.json currents.wake: boot to main.py after a deep-sleep wake.
WAKE_S = {"naive": 0.635, "frozen": 0.0488}
# BLE: 0 dBm advert, 2.44 GHz free space at 1 m 40.2 dB, exponent 3 outdoors, scanner
# floor -90 dBm, one advert in five missed by the scan window.
BLE_TX_DBM = 0.0
BLE_PL1M_DB = 40.2
BLE_EXPONENT = 3.0
BLE_FLOOR_DBM = -90.0
BLE_SCAN_HIT = 0.8
# Without a broker the last hop is modelled: QoS 1 publish to a loopback mosquitto,
# p99 0.8 ms at 200 msg/s (notes/radio-and-performance.md section 5, measured).
MODELLED_PUBLISH_S = 0.001


@dataclass(frozen=True, kw_only=True)
class Operator:
    """The control center's operator: acknowledges each alarm, then resolves it."""

    ack_after_s: tuple[float, float] = (5.0, 20.0)
    resolve_after_s: tuple[float, float] | None = (60.0, 180.0)
    name: str = "상황실 (simulated)"


@dataclass(frozen=True)
class SimEvent:
    """Something a demo may show. ``source`` is a device's hex id or a gateway id."""

    t: float  # seconds since the simulation started
    at: float  # simulated wall clock, Unix seconds
    kind: str
    source: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Stats:
    """Counters the report is built from."""

    uplinks: dict[str, int] = field(default_factory=dict)  # sent, by frame type
    uplinks_heard: dict[str, int] = field(default_factory=dict)  # by at least one gateway
    uplink_retries: int = 0  # ALARM retransmissions (RETRY flag)
    uplink_lost: dict[str, int] = field(default_factory=dict)  # why, when heard nowhere
    captured: int = 0  # heard although another frame overlapped it
    overlapped: int = 0  # uplinks that overlapped another frame on the channel
    downlinks: dict[str, int] = field(default_factory=dict)  # sent, by frame type
    downlinks_delivered: dict[str, int] = field(default_factory=dict)
    downlink_lost: dict[str, int] = field(default_factory=dict)
    gateway_rx: dict[str, int] = field(default_factory=dict)
    lbt_gave_up: int = 0  # transmissions dropped: channel busy on every LBT try
    ble_adverts: int = 0
    ble_heard: int = 0
    missed_presses: int = 0
    toa_s: dict[str, float] = field(default_factory=dict)  # airtime by frame type
    tested_heartbeats: int = 0  # heartbeats from field-tested devices ...
    tested_heartbeats_heard: int = 0  # ... and how many a gateway heard

    @staticmethod
    def add(table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


class Simulation:
    """A fleet on the air and its gateways. Build, then ``async with sim.running():``."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        data_dir: Path | None = None,
        mqtt_url: str | None = None,
        operator: Operator | None = Operator(),
        start: datetime | None = None,
        warm: bool = True,
        stagger_s: float | None = None,
        light_tick_s: float = 10.0,
        motion_per_hour: float = 0.0,
        random_presses: int = 0,
        press_window: tuple[float, float] | None = None,
        record_events: bool = False,
        supervision_every_s: float | None = None,
        registration: str = "home",
        field_test_db: float | None = None,
    ) -> None:
        if registration not in REGISTRATIONS:
            raise ValueError(
                f"registration must be one of {', '.join(REGISTRATIONS)}, got {registration!r}"
            )
        self.registration = registration
        self.field_test_db = field_test_db
        self.scenario = scenario
        self.seed = seed
        self.mqtt_url = mqtt_url
        self.operator = operator
        self.warm = warm
        self.light_tick_s = light_tick_s
        self.motion_per_hour = motion_per_hour
        self.random_presses = random_presses
        self.press_window = press_window
        self.record_events = record_events
        self.events: list[SimEvent] = []
        self._subscribers: list[Callable[[SimEvent], None]] = []
        self.rng = random.Random(seed)
        self.wake_s = WAKE_S[scenario.boot]
        hb = max(d.heartbeat_s for d in scenario.devices)
        self.stagger_s = float(hb if stagger_s is None else stagger_s)
        self.supervision_every_s = supervision_every_s or (
            30.0 if len(scenario.devices) <= 500 else 300.0
        )
        self._start = start
        self._own_data = data_dir is None
        self.data_dir = data_dir or Path()  # a temporary folder, made when the run starts
        self.stats = Stats()
        self.presses: list[PressRecord] = []
        self._by_event: dict[str, PressRecord] = {}
        self._operator_done: set[str] = set()
        self.devices: dict[int, SimDevice] = {}
        self.bells: list[SimBell] = []
        self.lights: list[SimLight] = []
        self.gateways: list[SimGateway] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.errors: list[BaseException] = []
        self._sun: tuple[int, tuple[int, int] | None] = (-1, None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.channel: Channel
        self.t0 = 0.0
        self.epoch = 0.0
        self.ran_s = 0.0
        self.wall_s = 0.0  # real seconds the run took
        self._mqtt_client: Any = None
        self._commands_in_flight: dict[tuple[str, str], float] = {}  # -> real deadline
        self.origin = (0.0, 0.0)  # the scenario's centre: the channel's (0, 0)
        self.uncovered = 0  # devices no gateway hears on a median day

    # -- clocks ---------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the simulation is not running"
        return self._loop

    def now(self) -> float:
        """Seconds since the simulation started."""
        return self.loop.time() - self.t0

    def wall(self) -> float:
        """The simulated wall clock (Unix seconds): the gateways' clock."""
        return self.epoch + (self.loop.time() - self.t0)

    def wall_at(self, loop_time: float) -> float:
        return self.epoch + (loop_time - self.t0)

    # -- events for a demo ------------------------------------------------------------------

    def subscribe(self, callback: Callable[[SimEvent], None]) -> None:
        """Call ``callback(event)`` for every `SimEvent` from now on."""
        self._subscribers.append(callback)

    @property
    def _emitting(self) -> bool:
        return self.record_events or bool(self._subscribers)

    def emit(self, what: str, source: Any, **data: Any) -> None:
        if not self._emitting:
            return
        name = getattr(source, "hex_id", None) or getattr(source, "gateway_id", None) or str(source)
        event = SimEvent(self.now(), self.wall(), what, name, data)
        if self.record_events:
            self.events.append(event)
        for cb in self._subscribers:
            cb(event)

    # -- building -------------------------------------------------------------------------

    def _build(self) -> None:
        sc = self.scenario
        loop = self.loop
        self.channel = Channel(sc.radio, now=loop.time, call_at=loop.call_at, seed=self.seed)
        self.channel.listeners.append(self._on_air)
        lat0, lon0 = self.origin
        for i, spec in enumerate(sc.gateways):
            x, y = project(spec.lat, spec.lon, lat0, lon0)
            node = self.channel.add_node(
                Node(spec.gateway_id, x, y, gateway=True, antenna_dbi=sc.radio.gateway_antenna_dbi)
            )
            self.gateways.append(SimGateway(self, spec, node, i))
        for d in sc.devices:
            x, y = project(d.lat, d.lon, lat0, lon0)
            node = self.channel.add_node(
                Node(d.hex_id, x, y, antenna_dbi=sc.radio.device_antenna_dbi)
            )
            dev: SimDevice
            if d.kind == "bell":
                dev = SimBell(self, d, node, heartbeat_s=d.heartbeat_s)
                self.bells.append(dev)
            else:
                dev = SimLight(self, d, node, status_s=d.heartbeat_s)
                self.lights.append(dev)
            self.devices[d.device_id] = dev
        # Each device is registered at every gateway that can hear it (median link at or
        # above the sensitivity), or at the best one if none can (see REGISTRATIONS).
        plan: dict[str, list[tuple[DeviceSpec, bool]]] = {g.gateway_id: [] for g in self.gateways}
        lora_floor = sensitivity_dbm(sc.radio.sf, sc.radio.bw_khz)
        for d in sc.devices:
            node = self.devices[d.device_id].node
            links = [(self.channel.mean_rssi(node, gw.node), gw) for gw in self.gateways]
            floor = lora_floor
            if d.radio == "ble":
                links = [(self._ble_rssi(node, gw.node), gw) for gw in self.gateways if gw.spec.ble]
                floor = BLE_FLOOR_DBM
            covered = [gw for rssi, gw in links if rssi >= floor]
            if links:
                self.devices[d.device_id].margin_db = max(r for r, _ in links) - floor
            if not covered:
                self.uncovered += 1
            best = max(links, key=lambda pair: pair[0])[1] if links else None
            if (not covered or self.registration == "best") and best is not None:
                covered = [best]
            for gw in covered:
                listen_only = self.registration == "home" and gw is not best
                plan[gw.gateway_id].append((d, listen_only))
        for gw in self.gateways:
            gw.register(plan[gw.gateway_id])

    def _ble_rssi(self, a: Node, b: Node) -> float:
        d = max(1.0, math.hypot(a.x - b.x, a.y - b.y))
        return BLE_TX_DBM - (BLE_PL1M_DB + 10 * BLE_EXPONENT * math.log10(d))

    # -- running --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Simulation]:
        """Build everything, start the gateways and the fleet; stop them on exit."""
        self._loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        start = self._start
        if start is None:
            start = self.scenario.start if vloop.is_virtual() else None
        self.epoch = start.timestamp() if start is not None else time.time()
        firmware()  # import the device code before the clock matters
        wall0 = time.monotonic()
        if self._own_data:
            self.data_dir = Path(tempfile.mkdtemp(prefix="anshim-sim-", dir=_ram_dir()))
        try:
            self.origin = self.scenario.origin
            self._build()
            async with contextlib.AsyncExitStack() as stack:
                for g in self.gateways:
                    await stack.enter_async_context(g.running())
                if self.mqtt_url and self.operator is not None:
                    await stack.enter_async_context(self._operator_client())
                self.t0 = self.loop.time()  # the fleet's time starts now
                self._start_fleet()
                # All gateways and devices share this process's heap: keep what survives
                # out of the collector's full passes (as the gateway service does with its
                # start-up objects), or their pauses, 100 ms and more at city scale, would
                # land in the gateway pipeline times measured here. Re-frozen every
                # simulated 10 minutes; a lone gateway's heap is far smaller.
                gc.freeze()
                self.spawn(self._refreeze())
                try:
                    yield self
                finally:
                    gc.unfreeze()
                    self.ran_s = self.now()
                    for task in list(self._tasks):
                        task.cancel()
                    await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.errors:  # a device's task died: the run is not to be trusted
                raise RuntimeError(
                    f"{len(self.errors)} simulated device task(s) failed"
                ) from self.errors[0]
        finally:
            self.wall_s = time.monotonic() - wall0
            if self._own_data:
                shutil.rmtree(self.data_dir, ignore_errors=True)

    async def run(
        self, duration_s: float, *, progress: Callable[[int, int], None] | None = None
    ) -> Simulation:
        """Run for ``duration_s`` simulated seconds; returns self (see `report`).
        ``progress(done, total)`` is called with simulated minutes as it goes."""
        async with self.running():
            total = max(1, math.ceil(duration_s / 60))
            if progress is None:
                await asyncio.sleep(duration_s)
            else:
                for minute in range(total):
                    await asyncio.sleep(min(60.0, duration_s - minute * 60))
                    progress(minute + 1, total)
        return self

    def spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    def _start_fleet(self) -> None:
        loop = self.loop
        rng = self.rng
        for bell in self.bells:
            spread = min(self.stagger_s, bell.spec.heartbeat_s)
            self.spawn(bell.run(loop.time() + rng.uniform(0, spread), warm=self.warm))
        groups = max(1, min(len(self.lights), 16))
        for i in range(groups):
            loop.call_later(
                self.light_tick_s * i / groups, self._tick_lights, self.lights[i::groups]
            )
        for light in self.lights:
            spread = min(self.stagger_s, light.spec.heartbeat_s)
            loop.call_later(rng.uniform(0, spread), light.start)
        for p in self.scenario.presses:
            loop.call_later(p.at_s, self._scheduled_press, p.device_id, p.hold_s)
        if self.random_presses:
            self._schedule_random_presses()

    async def _refreeze(self) -> None:
        while True:
            await asyncio.sleep(600)
            gc.freeze()

    def _scheduled_press(self, device_id: int, hold_s: float) -> None:
        self.press(device_id, hold_s=hold_s)

    def _schedule_random_presses(self) -> None:
        lo, hi = self.press_window or (60.0, 3600.0)
        times = sorted(self.rng.uniform(lo, hi) for _ in range(self.random_presses))
        for t in times:
            self.loop.call_later(t, self._random_press)

    def _random_press(self) -> None:
        """A press at a bell that is idle and was not pressed in the last 10 minutes."""
        now = self.loop.time()
        recent = {p.device_id for p in self.presses[-200:] if now - p.at < 600}
        lora = [b for b in self.bells if b.spec.radio == "lora" and self.field_tested(b)]
        if not lora:
            return
        for _ in range(50):
            bell = self.rng.choice(lora)
            if bell.state == 0 and bell.device_id not in recent:
                self.press(bell.device_id, hold_s=self.rng.uniform(0.2, 1.0))
                return

    def field_tested(self, dev: SimDevice) -> bool:
        """Would the crew's field test pass here (best median link at least
        ``field_test_db`` above the sensitivity)? Always, without a threshold."""
        return self.field_test_db is None or dev.margin_db >= self.field_test_db

    def press(self, ref: str | int, *, hold_s: float = 0.4) -> PressRecord:
        """A resident presses a bell (device id, hex id or label) now."""
        spec = self.scenario.device(ref)
        bell = self.devices[spec.device_id]
        if not isinstance(bell, SimBell):
            raise ValueError(f"{spec.hex_id} is a {spec.kind}, not a bell")
        record = bell.press(hold_s)
        self.presses.append(record)
        self.emit("press", bell, hold_s=hold_s, label=spec.label)
        return record

    # -- lights ---------------------------------------------------------------------------

    def _tick_lights(self, group: list[SimLight]) -> None:
        photo = self.photocell()
        night = photo < 300
        p_motion = self.motion_per_hour * self.light_tick_s / 3600 if night else 0.0
        for light in group:
            if light.light is None:
                continue
            if p_motion and self.rng.random() < p_motion:
                light.motion()
            light.tick(photo)
        self.loop.call_later(self.light_tick_s, self._tick_lights, group)

    def photocell(self) -> int:
        """The photocell's reading (mV at its ADC; higher is brighter) for the sun now."""
        astro = firmware().astro
        lat, lon = self.origin
        kst = 9 * 3600
        local = self.wall() + kst
        day, sec = int(local // 86400), local % 86400
        if self._sun[0] != day:
            self._sun = (day, astro.sun_times(day, lat, lon, 540))
        sun = self._sun[1]
        if sun is None:
            return 1500
        return 1500 if sun[0] <= sec < sun[1] else 100

    # -- the channel's news ---------------------------------------------------------------

    def on_device_tx(self, dev: SimDevice, tx: Transmission) -> None:
        if self._emitting:
            name = FRAME_TYPES.get(tx.data[0] & 0x1F, "?")
            self.emit("tx", dev, frame=name, toa_ms=round(tx.toa * 1000, 1), device=dev.kind)

    def on_gateway_tx(self, gw: SimGateway, tx: Transmission) -> None:
        if self._emitting:
            name = FRAME_TYPES.get(tx.data[0] & 0x1F, "?")
            self.emit("tx", gw, frame=name, to=f"{tx.dest:08x}", toa_ms=round(tx.toa * 1000, 1))

    def on_device_rx(self, dev: SimDevice, tx: Transmission, rssi: float, snr: float) -> None:
        if self._emitting:
            name = FRAME_TYPES.get(tx.data[0] & 0x1F, "?")
            self.emit("rx", dev, frame=name, src=tx.src.name, rssi=round(rssi), snr=round(snr, 1))

    def on_gateway_rx(self, gw: SimGateway, tx: Transmission, rssi: float, snr: float) -> None:
        Stats.add(self.stats.gateway_rx, gw.gateway_id)
        device_id = int.from_bytes(tx.data[2:6], "big")
        # An ALARM that this gateway can authenticate: the first copy of the incident?
        if tx.data[0] & 0x1F == 0x01 and device_id in gw.devices:
            dev = self.devices.get(device_id)
            inc = dev.incident if isinstance(dev, SimBell) else None
            if inc is not None and inc.gateway_rx is None and inc.event_id is not None:
                counter = int(inc.event_id[9:], 16)
                if int.from_bytes(tx.data[6:8], "big") == counter & 0xFFFF:
                    inc.gateway_rx = tx.end
                    inc.tries_to_gateway = inc.alarm_tries
        if self._emitting:
            name = FRAME_TYPES.get(tx.data[0] & 0x1F, "?")
            self.emit("rx", gw, frame=name, src=tx.src.name, rssi=round(rssi), snr=round(snr, 1))

    def on_ble_advert(self, dev: SimDevice, data: bytes) -> None:
        self.stats.ble_adverts += 1
        for g in self.gateways:
            if not g.spec.ble:
                continue
            rssi = self._ble_rssi(dev.node, g.node) + self.rng.gauss(0, 4)
            if rssi >= BLE_FLOOR_DBM and self.rng.random() < BLE_SCAN_HIT:
                self.stats.ble_heard += 1
                g.on_ble(data, rssi)

    def _on_air(self, what: str, tx: Transmission) -> None:
        if what != "end":
            return
        st = self.stats
        name = FRAME_TYPES.get(tx.data[0] & 0x1F, "?")
        st.toa_s[name] = st.toa_s.get(name, 0.0) + tx.toa
        if tx.downlink:
            Stats.add(st.downlinks, name)
            dest = self.devices.get(tx.dest or 0)
            if dest is None:
                return
            if isinstance(dest, SimLight):
                why = self.channel.receivable(
                    tx,
                    dest.node,
                    listening_since=dest.listening_since if dest.light is not None else None,
                    deaf=dest.transmitted_between,
                )
                if why is None:
                    Stats.add(st.downlinks_delivered, name)
                    rssi = self.channel.power(tx, dest.node)
                    dest.downlink(tx, rssi, self.channel.snr(rssi))
                else:
                    Stats.add(st.downlink_lost, why)
                return
            if dest.node.name in tx.heard_by:
                Stats.add(st.downlinks_delivered, name)
            else:
                Stats.add(st.downlink_lost, tx.lost_at.get(dest.node.name, "bell not listening"))
            return
        Stats.add(st.uplinks, name)
        if name == "ALARM" and tx.data[1] & 0x02:
            st.uplink_retries += 1
        tested = False
        if name == "HEARTBEAT":
            src = self.devices.get(int.from_bytes(tx.data[2:6], "big"))
            tested = src is not None and self.field_tested(src)
            st.tested_heartbeats += tested
        if tx.overlapped:
            st.overlapped += 1
        device_id = int.from_bytes(tx.data[2:6], "big")
        # Heard by a gateway that can use it (the device is registered there).
        if any(g.gateway_id in tx.heard_by and device_id in g.devices for g in self.gateways):
            Stats.add(st.uplinks_heard, name)
            st.tested_heartbeats_heard += tested
            if tx.overlapped:
                st.captured += 1
            return
        home = [g for g in self.gateways if device_id in g.devices]
        reasons = [tx.lost_at[g.gateway_id] for g in home if g.gateway_id in tx.lost_at]
        if not reasons and tx.heard_by:
            why = "heard only where not registered"
        elif not reasons:
            why = "too weak"
        elif any("collision" in r or "busy" in r or "captured" in r for r in reasons):
            why = "collision"
        else:
            why = reasons[0]
        Stats.add(st.uplink_lost, why)

    # -- the bells' and gateways' news ----------------------------------------------------

    def on_incident(self, bell: SimBell, record: PressRecord) -> None:
        if record.event_id is not None:
            self._by_event[record.event_id] = record
            self.emit("incident", bell, event_id=record.event_id, pressed_t=record.at - self.t0)
        if record not in self.presses:
            self.presses.append(record)

    def on_missed_press(self, bell: SimBell, record: PressRecord) -> None:
        self.stats.missed_presses += 1
        self.emit("missed_press", bell, pressed_at=record.at - self.t0)

    def on_alarm_committed(self, gw: SimGateway, event_id: str, spent: float | None) -> None:
        record = self._by_event.get(event_id)
        if record is not None and record.processing_s is None and spent is not None:
            record.processing_s = spent

    def on_alarm_published(self, gw: SimGateway, event_id: str) -> None:
        record = self._by_event.get(event_id)
        if record is not None and record.mqtt is None:
            record.mqtt = self.loop.time()

    def on_gateway_event(self, gw: SimGateway, what: str, payload: dict[str, Any]) -> None:
        if what == "alarm":
            event_id = payload.get("event_id", "")
            state = payload.get("state")
            self._commands_in_flight.pop((event_id, str(state)), None)
            self.emit("alarm", gw, event_id=event_id, state=state, device=payload.get("device_id"))
            if state == "raised" and event_id not in self._operator_done:
                self._operator_done.add(event_id)
                self._schedule_operator(event_id)
        elif what in ("online", "offline"):
            self.emit(what, gw, device=payload.get("device_id"), kind=payload.get("kind"))

    # -- the operator ---------------------------------------------------------------------

    def _schedule_operator(self, event_id: str) -> None:
        op = self.operator
        if op is None:
            return
        ack = self.rng.uniform(*op.ack_after_s)
        self.loop.call_later(ack, self._operate, event_id, "acknowledged")
        if op.resolve_after_s is not None:
            resolve = max(ack + 1, self.rng.uniform(*op.resolve_after_s))
            self.loop.call_later(resolve, self._operate, event_id, "resolved")

    def _operate(self, event_id: str, state: str) -> None:
        assert self.operator is not None
        self.emit("operator", "operator", event_id=event_id, state=state)
        if self._mqtt_client is not None:
            self.spawn(self._publish_command(event_id, state))
            return
        for g in self.gateways:
            core = g.service.core if g.service else None
            if core is None:
                continue
            with contextlib.suppress(LookupError, ValueError):
                core.operator_update(event_id, state, operator=self.operator.name)

    @contextlib.asynccontextmanager
    async def _operator_client(self) -> AsyncIterator[None]:
        import aiomqtt

        from gateway.config import MqttSettings

        m = MqttSettings(url=self.mqtt_url)
        client = aiomqtt.Client(m.host, m.port, identifier=f"anshim-sim-operator-{self.seed}")
        with vloop.holding():
            await client.__aenter__()
        self._mqtt_client = client
        loop = self.loop
        unhold = None
        if isinstance(loop, vloop.VirtualTimeLoop):
            # A command is on its way (broker -> gateways -> their journals): real time.
            unhold = loop.add_hold(
                lambda: any(t > time.monotonic() for t in self._commands_in_flight.values())
            )
        try:
            yield
        finally:
            if unhold is not None:
                unhold()
            self._mqtt_client = None
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def _publish_command(self, event_id: str, state: str) -> None:
        assert self.operator is not None and self._mqtt_client is not None
        verb = "ack" if state == "acknowledged" else "resolve"
        topic = f"anshim/{self.scenario.site}/alarm/{event_id}/{verb}"
        body = json.dumps({"operator": self.operator.name}, ensure_ascii=False)
        # Until a gateway applied it (or half a real second), the clock follows the wall.
        self._commands_in_flight[(event_id, state)] = time.monotonic() + 0.5
        with vloop.holding():
            await self._mqtt_client.publish(topic, body, qos=1)

    # -- results --------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The run's figures (see tools/sim/report.py)."""
        from tools.sim.report import build_report

        return build_report(self)

    @property
    def started_at(self) -> str:
        return datetime.fromtimestamp(self.epoch, UTC).isoformat(timespec="seconds")


def _ram_dir() -> str | None:
    """A RAM-backed folder for the gateways' journals when there is one (/dev/shm)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and _writable(shm) else None


def _writable(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False
