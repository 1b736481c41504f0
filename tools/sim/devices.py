"""The host HAL: the real bell and light firmware, one instance per simulated device.

Each device runs its firmware class (`bell.Bell`, `light.Light`) and the firmware's own
radio adapter (`radio.Radio`: KR920 listen-before-talk, receive windows) over a
`SimModem` on the simulated channel. What the glue does follows the devices' ``main.py``
(firmware/bell/main.py ``Glue``, firmware/light/main.py ``radio_loop``): keep the two in
step when either changes.

A bell deep-sleeps whenever the firmware allows it: RAM is lost, so on the wake (timer,
or the button with ext0) the simulator boots a *new* `Bell` over the same store and RTC
memory, after the board's boot time (``naive`` MicroPython boot 635 ms, ``frozen``
48.8 ms: hardware/boards/*.json). A press is a button level held for ``hold_s``; the glue
reads the level when its loop runs, as main.py does, so a short press while the bell is
busy transmitting or booting can be missed (the simulator counts those).

A light is ticked every ``Simulation.light_tick_s`` (10 s; main.py ticks every 100 ms):
its schedule, photocell, supervision and status timer need no more, and the firmware
integrates energy exactly over steps up to 10 s; a strobe's 500 ms flashes are not
resolved, its start and end are (events). Its receiver is on whenever it is not sending.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tools.sim.channel import Node, Receiver, Transmission
from tools.sim.firmware import TICKS_MASK, MemoryBackend, MemoryRtc, firmware
from tools.sim.scenario import DeviceSpec

if TYPE_CHECKING:
    from tools.sim.fleet import Simulation

MAX_WAIT_MS = 5000  # firmware/bell/main.py _MAX_WAIT_MS: the loop runs at least this often
SELFTEST_MS = 200  # firmware/bell/main.py selftest: LED (and buzzer) on, then the battery
FEEDBACK_NAMES = (
    "IDLE",
    "PROVISIONING",
    "SENDING",
    "NOT_THROUGH",
    "DELIVERED",
    "ACKNOWLEDGED",
    "RESOLVED",
)


class RxPacket(bytearray):
    """micropython-lib's ``lora.RxPacket``: the bytes, plus how they were received."""

    def __init__(self, data: bytes, *, rssi: int = 0, snr_x4: int = 0, ticks_ms: int = 0):
        super().__init__(data)
        self.rssi = rssi
        self.snr = snr_x4
        self.ticks_ms = ticks_ms
        self.crc_error = False
        self.valid_crc = True


@dataclass
class Energy:
    """What a device spent its charge on (see report.py for the currents)."""

    wakes: int = 0
    awake_s: float = 0.0  # MCU running (bells: from boot to deep sleep)
    sleep_s: float = 0.0  # deep sleep
    tx_s: float = 0.0
    rx_s: float = 0.0  # receiver on: carrier sense and receive windows
    led_s: float = 0.0  # a feedback pattern other than IDLE shown
    tx_frames: int = 0


@dataclass
class PressRecord:
    """One resident's press, and what became of it."""

    device_id: int
    at: float  # loop time of the press
    hold_s: float
    event_id: str | None = None  # the incident it opened (None: joined one, or missed)
    joined: bool = False  # pressed while an incident was already open
    missed: bool = False  # the bell never saw it (released while the glue was busy)
    first_tx: float | None = None  # the ALARM's first transmission started
    tries_to_gateway: int | None = None  # ALARM transmissions until a gateway heard one
    gateway_rx: float | None = None  # end of the first ALARM copy any gateway received
    processing_s: float | None = None  # wall time of that gateway's pipeline (measured)
    mqtt: float | None = None  # PUBACK of the first "raised" publish (loop time)
    delivered: float | None = None  # the bell heard "delivered"
    acknowledged: float | None = None  # the bell heard "help is coming"
    resolved: float | None = None
    alarm_tries: int = 0  # ALARM transmissions until the bell heard an ACK


class SimModem:
    """The SX1262 as `radio.Radio` drives it (micropython-lib ``lora`` interface)."""

    def __init__(self, device: RadioHost) -> None:
        self.device = device

    async def send(self, packet: Any, tx_at_ms: Any = None) -> int:
        dev = self.device
        loop = dev.sim.loop
        fut: asyncio.Future[Transmission] = loop.create_future()
        dev.before_tx()
        tx = dev.sim.channel.transmit(dev.node, bytes(packet), done=fut.set_result)
        dev.on_tx(tx)
        await fut
        dev.energy.tx_s += tx.toa
        dev.energy.tx_frames += 1
        return dev.ticks()

    async def recv(
        self, timeout_ms: Any = None, rx_length: int = 0xFF, rx_packet: Any = None
    ) -> Any:
        return await self.device.listen(timeout_ms)

    def start_recv(
        self, timeout_ms: Any = None, continuous: bool = False, rx_packet: Any = None
    ) -> None:
        return None

    def standby(self) -> None:
        return None

    def sleep(self) -> None:
        return None


class ChannelRssi:
    """`radio.Sx126xRssi` for the simulated channel: the instantaneous RSSI here."""

    def __init__(self, device: RadioHost) -> None:
        self.device = device
        self._since = 0.0

    def begin(self) -> None:
        self._since = self.device.sim.loop.time()

    def read(self) -> int:
        return int(self.device.sim.channel.rssi_at(self.device.node))  # toward 0, as -raw/2

    def end(self) -> None:
        self.device.energy.rx_s += self.device.sim.loop.time() - self._since


class RadioHost:
    """Anything with an SX1262 run by the firmware's `radio.Radio`: a device, or a
    gateway's radio bridge. Clock, randomness, the modem's hooks, receiving."""

    kind = "radio"

    def __init__(self, sim: Simulation, node: Node, seed: int) -> None:
        self.sim = sim
        self.node = node
        self.rng = random.Random(sim.seed * 1_000_003 + seed)
        self.energy = Energy()
        self._tick_offset = self.rng.randrange(TICKS_MASK + 1)
        self.fw = firmware()
        self.receiver: Receiver | None = None
        self._rx_future: asyncio.Future[Any] | None = None
        self.margin_db = 0.0  # best median link above the sensitivity (set by the simulation)
        self.tx_log: deque[tuple[float, float]] = deque(maxlen=4)  # recent (start, end)

    # -- time and randomness, as the device sees them ----------------------------------

    def ticks(self) -> int:
        return (int(self.sim.loop.time() * 1000) + self._tick_offset) & TICKS_MASK

    def rand(self, n: int) -> int:
        return self.rng.randrange(n) if n > 0 else 0

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(ms / 1000)

    def make_radio(self) -> Any:
        return self.fw.radio.Radio(
            SimModem(self),
            self.rand,
            clock=self.ticks,
            sleep_ms=self.sleep_ms,
            rssi=ChannelRssi(self),
        )

    # -- the modem's hooks ------------------------------------------------------------

    def before_tx(self) -> None:
        if self.receiver is not None:
            self.receiver.deafen("half-duplex")

    def on_tx(self, tx: Transmission) -> None:
        self.tx_log.append((tx.start, tx.end))

    def transmitted_between(self, start: float, end: float) -> bool:
        return any(s < end and e > start for s, e in self.tx_log)

    async def listen(self, timeout_ms: Any) -> Any:
        """The modem's ``recv``: listen until a frame or the timeout (stopped once a
        preamble is caught, as the SX126x stops its RX timer on a header)."""
        loop = self.sim.loop
        if self.receiver is None:
            self.receiver = Receiver(
                self.sim.channel, self.node, on_frame=self._rx_frame, on_corrupt=self._rx_corrupt
            )
        fut: asyncio.Future[Any] = loop.create_future()
        self._rx_future = fut
        start = loop.time()
        self.receiver.listen()
        timeout = (timeout_ms if timeout_ms is not None else 1000) / 1000
        handle = loop.call_at(start + timeout, self._rx_timeout, fut)
        try:
            return await fut
        finally:
            handle.cancel()
            self.receiver.deafen("receive window closed")
            self._rx_future = None
            self.energy.rx_s += loop.time() - start

    def _rx_timeout(self, fut: asyncio.Future[Any]) -> None:
        if self.receiver is not None and self.receiver.locked is not None:
            return  # a frame is coming in: the radio waits for its end
        if not fut.done():
            fut.set_result(None)

    def _rx_frame(self, tx: Transmission, rssi: float, snr: float) -> None:
        fut = self._rx_future
        if fut is None or fut.done():
            return
        packet = RxPacket(tx.data, rssi=round(rssi), snr_x4=round(snr * 4), ticks_ms=self.ticks())
        fut.set_result(packet)

    def _rx_corrupt(self, tx: Transmission) -> None:
        fut = self._rx_future
        if fut is None or fut.done():
            return
        packet = RxPacket(b"")
        packet.crc_error = True
        packet.valid_crc = False
        fut.set_result(packet)


class SimDevice(RadioHost):
    """What bells and lights share: identity, keys, the store's memory."""

    kind = "device"

    def __init__(self, sim: Simulation, spec: DeviceSpec, node: Node) -> None:
        super().__init__(sim, node, spec.device_id)
        self.spec = spec
        self.device_id = spec.device_id
        self.hex_id = spec.hex_id
        self.codec = self.fw.codec.Codec(spec.device_id, spec.key)
        self.backend = MemoryBackend()
        self.rtc = MemoryRtc()

    def on_tx(self, tx: Transmission) -> None:
        super().on_tx(tx)
        self.sim.on_device_tx(self, tx)

    def _rx_frame(self, tx: Transmission, rssi: float, snr: float) -> None:
        if self._rx_future is not None and not self._rx_future.done():
            self.sim.on_device_rx(self, tx, rssi, snr)
        super()._rx_frame(tx, rssi, snr)


class BleRadio:
    """A bell that advertises over BLE instead of LoRa (PROTOCOL.md 6), in place of
    `radio.Radio`: each frame goes out as ``ADVERTS`` legacy adverts ``INTERVAL_S``
    apart; nothing comes back (advertising is one-way), so a receive window stays empty."""

    ADVERTS = 3
    INTERVAL_S = 0.1

    def __init__(self, device: SimDevice) -> None:
        self.device = device

    async def transmit(self, frame: Any) -> int:
        data = bytes(frame)
        for _ in range(self.ADVERTS):
            self.device.sim.on_ble_advert(self.device, data)
            self.device.energy.tx_s += 0.001  # ~1 ms on air per advert on three channels
            await asyncio.sleep(self.INTERVAL_S)
        self.device.energy.tx_frames += 1
        return self.device.ticks()

    async def receive_window(self, tx_end: Any) -> Any:
        await asyncio.sleep(2.5)
        return None

    async def receive_more(self) -> Any:
        return None

    async def channel_clear(self) -> bool:
        return True

    def sleep(self) -> None:
        return None


class _Sensors:
    """What `Bell` reads: battery, temperature, uptime."""

    def __init__(self, bell: SimBell) -> None:
        self._bell = bell

    def battery_mv(self) -> int:
        return 3600

    def temperature_c(self) -> int:
        return 12

    def uptime_h(self) -> int:
        return int(self._bell.sim.loop.time() - self._bell.powered_at) // 3600


class SimBell(SimDevice):
    """An emergency bell: `bell.Bell` driven as firmware/bell/main.py drives it."""

    kind = "bell"

    def __init__(self, sim: Simulation, spec: DeviceSpec, node: Node, *, heartbeat_s: int) -> None:
        super().__init__(sim, spec, node)
        self.fw.store.Store(self.backend).save_config(
            {
                "device_id": spec.device_id,
                "key": spec.key.hex(),
                "heartbeat_s": heartbeat_s,
                "place": spec.label,
            }
        )
        self.bell: Any = None
        self.store: Any = None
        self.pressed = False  # the button's level
        self.powered_at = 0.0
        self.state = 0  # bell.ALARM_* as last seen
        self.pattern = "IDLE"
        self._pattern_since = 0.0
        self.alarm_counter = -1
        self.incident: PressRecord | None = None
        self.presses: deque[PressRecord] = deque()  # pressed, not yet seen by the bell
        self._registered: PressRecord | None = None  # seen by the bell, no incident yet
        self._seen_this_boot = 0  # bell.presses already accounted for
        self._wake: asyncio.Future[str] | None = None
        self._deep = False
        self._wake_button = True
        self.asleep_since: float | None = None
        self.boots = 0
        self.rx_rejected = 0  # frames heard in a window that were not for this bell
        self.rx_replayed = 0  # downlinks refused: counter not above the last accepted

    # -- inputs -------------------------------------------------------------------------

    def press(self, hold_s: float = 0.4) -> PressRecord:
        """A resident presses the button for ``hold_s`` seconds."""
        loop = self.sim.loop
        record = PressRecord(self.device_id, loop.time(), hold_s)
        if self.state != 0 and self.incident is not None:
            record.joined = True
            record.event_id = self.incident.event_id
        else:
            self.presses.append(record)
        self.pressed = True
        self._input("button")
        loop.call_later(hold_s, self._release)
        return record

    def _release(self) -> None:
        self.pressed = False
        self._input("button")

    def _input(self, what: str) -> None:
        fut = self._wake
        if fut is None or fut.done():
            return
        if self._deep and not (what == "button" and self.pressed and self._wake_button):
            return  # deep sleep: only an armed wake pin wakes the board
        fut.set_result(what)

    async def _wait(self, ms: float) -> str:
        loop = self.sim.loop
        fut: asyncio.Future[str] = loop.create_future()
        self._wake = fut
        handle = loop.call_later(ms / 1000, _set, fut, "timer")
        try:
            return await fut
        finally:
            handle.cancel()
            self._wake = None

    # -- the board ----------------------------------------------------------------------

    async def run(self, first_wake_at: float, *, warm: bool = True) -> None:
        """Power on at ``first_wake_at`` (``warm=False``: a cold boot), or (``warm``) be a
        bell that has been running for long and sleeps until its timer wakes it then."""
        b = self.fw.bell
        loop = self.sim.loop
        if warm:
            store = self.fw.store.Store(self.backend, self.rtc)
            store.open()
            store.save_warm()  # RTC memory valid: the next boot is a warm one
            self.powered_at = loop.time() - self.rng.uniform(0, 2000 * 3600)
            cause = await self._deep_sleep((first_wake_at - loop.time()) * 1000, True)
        else:
            await asyncio.sleep(max(0.0, first_wake_at - loop.time()))
            self.powered_at = loop.time()
            cause = b.BOOT_COLD
        while True:
            cause = await self._session(cause)

    async def _session(self, cause: int) -> int:
        """One boot: from the wake to the next deep sleep (or reboot); returns the next
        boot's cause."""
        b = self.fw.bell
        loop = self.sim.loop
        awake_from = loop.time()
        self.energy.wakes += 1
        self.boots += 1
        self.store = self.fw.store.Store(self.backend, self.rtc)
        bell = b.Bell(self.store, self.ticks, self.rand, _Sensors(self), codec=self.codec)
        self.bell = bell
        self._seen_this_boot = 0
        bell.boot(cause, self.pressed, False)
        if cause == b.BOOT_COLD and not bell.provisioning:
            self.store.power_on_s = int(loop.time())
            self.store.save_warm()
        self._observe()
        radio = BleRadio(self) if self.spec.radio == "ble" else self.make_radio()
        deep: tuple[float, bool] | None = None
        try:
            while True:
                bell.button(self.pressed)
                bell.tamper(False)
                act = bell.next_action()
                self._observe()
                k = act.kind
                if k == b.TRANSMIT:
                    await self._transmit(radio, bytes(act.frame), act.rx_open)
                elif k == b.FEEDBACK:
                    self._show(b, act.pattern)
                elif k == b.SELFTEST:
                    await radio.channel_clear()
                    await asyncio.sleep(SELFTEST_MS / 1000)
                    ran = b.CHECK_RADIO | b.CHECK_STORAGE | b.CHECK_BUTTON | b.CHECK_TAMPER
                    ran |= b.CHECK_BATTERY
                    bell.selftest_done(ran, ran & ~(b.CHECK_BUTTON if self.pressed else 0))
                elif k == b.REBOOT:
                    await asyncio.sleep(0.1)
                    break
                elif act.deep:
                    deep = (act.sleep_ms, act.wake_button)
                    break
                else:
                    wait = min(act.sleep_ms, MAX_WAIT_MS)
                    if wait > 0:
                        await self._wait(wait)
                    else:
                        await asyncio.sleep(0)
        finally:
            self.energy.awake_s += loop.time() - awake_from
            # The firmware's counters live in RAM: add them up before the next boot.
            self.rx_rejected += bell.rx_rejected
            self.rx_replayed += bell.rx_replayed
        if deep is None:
            return int(b.BOOT_WARM)
        return await self._deep_sleep(*deep)

    async def _deep_sleep(self, ms: float, wake_button: bool) -> int:
        b = self.fw.bell
        loop = self.sim.loop
        self._close_pattern()
        self._deep = True
        self._wake_button = wake_button
        self.asleep_since = loop.time()
        try:
            why = await self._wait(ms if ms > 0 else 1)
        finally:
            self._deep = False
            self.energy.sleep_s += loop.time() - self.asleep_since
            self.asleep_since = None
        # The board boots (ROM, MicroPython, main.py) before the bell sees anything.
        await asyncio.sleep(self.sim.wake_s)
        return int(b.BOOT_BUTTON if why == "button" else b.BOOT_TIMER)

    async def _transmit(self, radio: Any, frame: bytes, rx_open: bool) -> None:
        b = self.fw.bell
        bell = self.bell
        is_alarm = frame[0] & 0x1F == 0x01
        if is_alarm and self.incident is not None:
            self.incident.alarm_tries += 1
            if self.incident.first_tx is None:
                self.incident.first_tx = self.sim.loop.time()
        try:
            end = await radio.transmit(frame)
        except self.fw.radio.ChannelBusy:
            bell.transmitted(b.TX_BUSY)
            self.sim.stats.lbt_gave_up += 1
            return
        bell.transmitted(b.TX_OK, end)
        if rx_open:
            p = await radio.receive_window(end)
            while p is not None:
                more = bell.received(p, p.rssi, p.snr)
                self._observe()
                if not more:
                    break
                p = await radio.receive_more()
        radio.sleep()

    # -- what the resident sees ---------------------------------------------------------

    def _show(self, b: Any, pattern: int) -> None:
        name = FEEDBACK_NAMES[pattern] if 0 <= pattern < len(FEEDBACK_NAMES) else str(pattern)
        if name == self.pattern:
            return
        self._close_pattern()
        self.pattern = name
        self.sim.emit("feedback", self, pattern=name, state=self.state)

    def _close_pattern(self) -> None:
        now = self.sim.loop.time()
        if self.pattern not in ("IDLE", "PROVISIONING"):
            self.energy.led_s += now - self._pattern_since
        self._pattern_since = now

    def _observe(self) -> None:
        """Follow the bell's alarm: a new incident, delivered, acknowledged, resolved."""
        bell = self.bell
        now = self.sim.loop.time()
        if bell.presses > self._seen_this_boot:
            self._seen_this_boot = bell.presses
            if self.presses:
                # The bell saw the button down: the newest press. Older ones it never saw.
                self._registered = self.presses.pop()
                while self.presses:
                    missed = self.presses.popleft()
                    missed.missed = True
                    self.sim.on_missed_press(self, missed)
        counter = bell.alarm_counter
        state = bell.state
        if state != 0 and counter != self.alarm_counter and counter >= 0:
            self.alarm_counter = counter
            record = self._registered
            self._registered = None
            if record is None:  # resumed after a reboot, or a press we did not schedule
                record = PressRecord(self.device_id, now, 0.0)
            record.event_id = f"{self.device_id:08x}-{counter:08x}"
            self.incident = record
            self.sim.on_incident(self, record)
        inc = self.incident
        if state != self.state:
            if inc is not None:
                if state >= 2 and inc.delivered is None:  # ALARM_DELIVERED
                    inc.delivered = now
                if state >= 3 and inc.acknowledged is None:  # ALARM_ACKNOWLEDGED
                    inc.acknowledged = now
                if state == 0 and inc.resolved is None:
                    inc.resolved = now
            self.sim.emit("bell_state", self, state=_STATE_NAMES.get(state, str(state)))
            self.state = state
            if state == 0:
                self.incident = None


_STATE_NAMES = {0: "idle", 1: "pending", 2: "delivered", 3: "acknowledged"}


def _set(fut: asyncio.Future[str], value: str) -> None:
    if not fut.done():
        fut.set_result(value)


class _Settings:
    """firmware/light/main.py ``Settings``: the config record as get/set."""

    def __init__(self, store: Any, config: dict[str, Any]) -> None:
        self._store = store
        self._config = config

    def get(self, key: str, default: Any) -> Any:
        return self._config.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self._config[key] = value
        self._store.save_config(self._config)


class SimLight(SimDevice):
    """A security light: `light.Light` ticked by the simulation, its radio loop as
    firmware/light/main.py ``radio_loop`` (send what is queued, otherwise listen)."""

    kind = "light"

    def __init__(self, sim: Simulation, spec: DeviceSpec, node: Node, *, status_s: int) -> None:
        super().__init__(sim, spec, node)
        self.store: Any = self.fw.store.Store(self.backend, self.rtc)
        config = {"device_id": spec.device_id, "key": spec.key.hex(), "status_s": status_s}
        self.store.save_config(config)
        self.store.open()
        self.light: Any = None
        self.radio: Any = None
        self.listening_since: float | None = None
        self._sending = False
        self.level = 0
        self.online = False
        self.strobe_until: float | None = None
        self._strobe_handle: asyncio.TimerHandle | None = None
        self.motion_rate_per_s = 0.0

    def start(self) -> None:
        self.light = self.fw.light.Light(
            self.codec, self.store, _Settings(self.store, self.store.load_config()), self.ticks()
        )
        self.radio = self.make_radio()
        self.listening_since = self.sim.loop.time()
        self.energy.wakes = 1

    def tick(self, photo: int) -> None:
        light = self.light
        level = light.tick(self.ticks(), None, photo)
        if level != self.level:
            self.level = level
        if light.online != self.online:
            self.online = light.online
            self.sim.emit("light_link", self, online=self.online)
        if light.pending and not self._sending:
            self.kick(self.rng.uniform(0, self.sim.light_tick_s))

    def motion(self) -> None:
        self.light.motion(self.ticks())

    def kick(self, delay: float = 0.0) -> None:
        """Start the radio loop if frames wait and it is not running."""
        if self._sending:
            return
        self._sending = True
        self.sim.loop.call_later(delay, self._start_sending)

    def _start_sending(self) -> None:
        self.sim.spawn(self._send_queued())

    async def _send_queued(self) -> None:
        light = self.light
        loop = self.sim.loop
        try:
            while True:
                frame = light.next_uplink()
                if frame is None:
                    return
                self.listening_since = None  # the radio senses, then transmits
                try:
                    await self.radio.transmit(bytes(frame))
                except self.fw.radio.ChannelBusy:
                    light.uplink_failed()  # and straight on with it, as radio_loop does
                    self.sim.stats.lbt_gave_up += 1
                finally:
                    self.listening_since = loop.time()
        finally:
            self._sending = False

    def downlink(self, tx: Transmission, rssi: float, snr: float) -> None:
        """A frame for this light that its receiver got (the channel checked it)."""
        light = self.light
        before = self.store.down_last
        accepted = light.downlink(self.ticks(), tx.data, round(rssi), round(snr))
        self.sim.on_device_rx(self, tx, rssi, snr)
        if not accepted:
            return
        try:
            name, _dev, _counter, _flags, fields = self.codec.decode(tx.data, before)
        except self.fw.errors.ProtocolError:  # accepted by the light: cannot happen
            return
        if name == "COMMAND" and fields.get("opcode") == "STROBE":
            self._strobe(fields["seconds"])
        if light.pending:
            self.kick(self.rng.uniform(0.05, 0.5))

    def _strobe(self, seconds: int) -> None:
        loop = self.sim.loop
        if self.strobe_until is None:
            self.sim.emit("strobe_start", self, seconds=seconds)
        self.strobe_until = loop.time() + seconds
        if self._strobe_handle is not None:
            self._strobe_handle.cancel()
        self._strobe_handle = loop.call_at(self.strobe_until, self._strobe_over)

    def _strobe_over(self) -> None:
        self._strobe_handle = None
        self.strobe_until = None
        self.light.tick(self.ticks(), None, self.sim.photocell())
        self.sim.emit("strobe_stop", self)
