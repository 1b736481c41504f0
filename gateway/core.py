"""The gateway's heart: ingest pipeline and engine, on one asyncio loop.

transport → `Core.on_frame` → header → registry → MIC → counter (replay) → de-duplication
→ journal (committed) → ACK downlink → engine (device state, alarm lifecycle, rules) →
outbox. Everything here is synchronous and fast; the only waits are the short gathering
of copies before choosing the receiver for a reply, and the journal's batch flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import messages as msg
from gateway.config import Settings
from gateway.journal import AlarmRecord, Journal, Priority
from gateway.registry import Device, Registry, distance_m
from gateway.transports.base import Reception, Transport
from protocol import frames as fr
from protocol.airtime import time_on_air
from protocol.errors import BadMic, CounterOutOfWindow, ProtocolError

log = logging.getLogger("anshim.gateway")

COPY_WINDOW_S = 1.5  # identical bytes within this are another receiver's copy, not a retry
REPLY_GATHER_S = 0.05  # wait for copies from other receivers before choosing one to answer
FLUSH_DELAY_S = 0.01  # heartbeats and other non-alarm events commit in batches
FLUSH_MAX = 2000
LOOKUP_EVERY_S = 30.0  # how often an unknown device id is looked up in the registry again
RECENT_MAX = 20_000
TIME_EVERY_S = 6 * 3600
KST_OFFSET_STEPS = 36  # UTC+9 in 15-minute steps (PROTOCOL.md 4.3)
_RX_OPEN = int(fr.Flags.RX_OPEN)

STATE_COLUMNS = (
    "up_counter",
    "down_counter",
    "last_seen",
    "online",
    "battery_mv",
    "temperature",
    "faults",
    "fw_version",
    "rssi",
    "snr",
    "receiver",
    "level",
    "energy_wh",
)
ACK_STATE = {
    "raised": fr.AlarmState.DELIVERED,
    "delivered": fr.AlarmState.DELIVERED,
    "acknowledged": fr.AlarmState.ACKNOWLEDGED,
    "resolved": fr.AlarmState.RESOLVED,
}


class Metrics:
    """Named counters, plus logging of a bad-input kind once per burst (not per frame)."""

    BURST_S = 60.0

    def __init__(self, clock: Callable[[], float]) -> None:
        self.counts: dict[str, int] = {}
        self._clock = clock
        self._last_log: dict[str, tuple[float, int]] = {}

    def inc(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def reject(self, name: str, key: str, detail: str) -> None:
        """Count a rejected input and log it once per burst for this (kind, key)."""
        self.inc(name)
        now = self._clock()
        tag = f"{name}:{key}"
        last = self._last_log.get(tag)
        if last is None or now - last[0] >= self.BURST_S:
            suppressed = self.counts[name] - last[1] - 1 if last else 0
            more = f" ({suppressed} more since the last report)" if suppressed > 0 else ""
            log.warning("%s: %s%s", name.replace("_", " "), detail, more)
            self._last_log[tag] = (now, self.counts[name])


@dataclass
class _Recent:
    data: bytes
    first_at: float
    receptions: list[Reception]
    event_id: str | None = None  # the alarm this frame belongs to, if any


@dataclass
class _Reply:
    device_id: int
    counter: int
    ftype: fr.FrameType
    alarm_event: str | None
    candidates: list[Reception] = field(default_factory=list)
    handle: asyncio.TimerHandle | None = None


class Core:
    """Ingest and engine. Build it, add transports, then feed frames to `on_frame`."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        journal: Journal,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.journal = journal
        self.clock = clock
        self.topics = msg.Topics(settings.topic_prefix, settings.gateway_id)
        self.metrics = Metrics(clock)
        self.transports: dict[str, Transport] = {}
        self.outbox_ready = asyncio.Event()
        self._devices: dict[int, Device] = {}
        self._keys: dict[int, fr.MicKey] = {}
        self._state: dict[int, dict[str, Any]] = {}
        self._recent: OrderedDict[tuple[int, int], _Recent] = OrderedDict()
        self._replies: dict[tuple[int, int], _Reply] = {}
        self._commands: dict[int, deque[tuple[int, fr.Payload]]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._static_json: dict[int, str] = {}
        self._lookups: dict[int, float] = {}
        self._dirty: set[int] = set()  # devices whose state is written at the next commit
        self._tasks: set[asyncio.Task[Any]] = set()
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        journal.on_outbox = self.outbox_ready.set
        self.reload()

    # --- registry cache ---------------------------------------------------------------

    def reload(self) -> None:
        """(Re)read devices, keys and state; call after the registry changed."""
        self._devices = {d.device_id: d for d in self.registry.devices()}
        self._static_json = {}
        self._keys = {d.device_id: fr.MicKey(d.key) for d in self._devices.values()}
        states = self.journal.device_states()
        for device_id in self._devices:
            self._state[device_id] = states.get(device_id) or {
                "device_id": device_id,
                "up_counter": None,
                "down_counter": 0,
                "online": 1,
                "faults": 0,
            }
        for row in self.journal.conn.execute(
            "SELECT id, device_id, command FROM downlinks ORDER BY id"
        ):
            payload = fr.payload_from_fields(fr.FrameType.COMMAND, msg_json(row[2]))
            self._commands.setdefault(row[1], deque()).append((row[0], payload))

    def device(self, device_id: int) -> Device | None:
        return self._devices.get(device_id) or self._registered_since_start(device_id)

    def _registered_since_start(self, device_id: int) -> Device | None:
        """A device the crew registered while the gateway runs (`anshim device add` on the
        same database): read once, then cached. Unknown ids are looked up at most every
        `LOOKUP_EVERY_S`, so a flood of foreign frames costs no database reads."""
        now = self.clock()
        if now - self._lookups.get(device_id, float("-inf")) < LOOKUP_EVERY_S:
            return None
        if len(self._lookups) >= RECENT_MAX:
            self._lookups.clear()
        self._lookups[device_id] = now
        device = self.registry.get(device_id)
        if device is None or device.retired_at is not None:
            return None
        self._devices[device_id] = device
        self._keys[device_id] = fr.MicKey(device.key)
        cur = self.journal.conn.execute(
            "SELECT * FROM device_state WHERE device_id = ?", (device_id,)
        )
        row = cur.fetchone()
        names = [c[0] for c in cur.description]
        self._state[device_id] = (
            dict(zip(names, row, strict=True))
            if row is not None
            else {
                "device_id": device_id,
                "up_counter": None,
                "down_counter": 0,
                "online": 1,
                "faults": 0,
            }
        )
        log.info("device %s registered since start-up: now accepted", device.hex_id)
        return device

    # --- ingest -------------------------------------------------------------------------

    def on_frame(self, data: bytes, rx: Reception) -> None:
        """The transports' sink: one copy of one frame. Never raises for bad input."""
        self.metrics.inc("frames_in")
        try:
            header = fr.peek(data)
        except ProtocolError as exc:
            self.metrics.reject("malformed", rx.receiver, f"{rx.receiver}: {exc}")
            return
        device_id = header.device_id
        device = self._devices.get(device_id) or self._registered_since_start(device_id)
        if device is None:
            self.metrics.reject(
                "unknown_device", f"{device_id:08x}", f"device {device_id:08x} via {rx.receiver}"
            )
            return
        if header.ftype.direction is fr.Direction.DOWN:
            self.metrics.inc("downlinks_overheard")
            return
        state = self._state[device_id]
        last = state["up_counter"]
        key = fr.DeviceKey(self._keys[device_id], last)
        try:
            frame = fr.decode(data, lambda d, direction: key, header=header)
        except CounterOutOfWindow as exc:
            self.metrics.reject("replayed", f"{device_id:08x}", f"{device.hex_id}: {exc}")
            return
        except BadMic as exc:
            self.metrics.reject("bad_mic", f"{device_id:08x}", f"{device.hex_id}: {exc}")
            return
        except ProtocolError as exc:
            self.metrics.reject("malformed", f"{device_id:08x}", f"{device.hex_id}: {exc}")
            return

        recent_key = (device_id, frame.counter)
        if last is not None and frame.counter == last:
            self._on_repeat(frame, device, data, rx, self._recent.get(recent_key))
            return

        # A new frame: the counter moves on first (it is journaled with the event).
        self.metrics.inc("accepted")
        state["up_counter"] = frame.counter
        self._seen(device, state, rx)
        self._dirty.add(device_id)
        recent = _Recent(data, rx.at, [rx])
        self._recent[recent_key] = recent
        if len(self._recent) > RECENT_MAX:
            self._recent.popitem(last=False)

        handler = self._HANDLERS.get(frame.type)
        urgent = handler(self, frame, device, rx, recent) if handler else False
        if int(frame.flags) & _RX_OPEN:  # (an int test: IntFlag's & is slow Python code)
            self._schedule_reply(frame, device, rx, recent.event_id)
            urgent = True  # the reply goes out only after the commit (invariant 1)
        if urgent:
            self.commit()
        else:
            self.flush_soon()

    def _on_repeat(
        self, frame: fr.Frame, device: Device, data: bytes, rx: Reception, recent: _Recent | None
    ) -> None:
        if recent is not None and recent.data == data and rx.at - recent.first_at < COPY_WINDOW_S:
            # Another receiver heard the same transmission: keep its reception only.
            self.metrics.inc("duplicate_copies")
            recent.receptions.append(rx)
            reply = self._replies.get((device.device_id, frame.counter))
            if reply is not None:
                reply.candidates.append(rx)
            if recent.event_id is not None:
                alarm = self.journal.alarm(recent.event_id)
                if alarm is not None:
                    alarm.receptions.append(_reception(rx))
                    self.journal.stage_alarm(alarm)
                    self.flush_soon()
            return
        # The device sent it again (it missed our ACK): answer again, do nothing else.
        self.metrics.inc("retransmissions")
        self._seen(device, self._state[device.device_id], rx)
        if recent is None:
            recent = _Recent(data, rx.at, [rx])
            self._recent[(device.device_id, frame.counter)] = recent
        if frame.type is fr.FrameType.ALARM:
            recent.event_id = frame.event_id
        elif frame.type is fr.FrameType.ALARM_UPDATE:
            assert isinstance(frame.payload, fr.AlarmUpdate)
            recent.event_id = fr.event_id(device.device_id, frame.payload.alarm_counter)
        if frame.flags & fr.Flags.RX_OPEN:
            self._schedule_reply(frame, device, rx, recent.event_id)

    def _seen(self, device: Device, state: dict[str, Any], rx: Reception) -> None:
        state["last_seen"] = rx.at
        state["receiver"] = rx.receiver
        state["rssi"] = rx.rssi
        state["snr"] = rx.snr
        if not state.get("online", 1):
            state["online"] = 1
            self._dirty.add(device.device_id)
            self._publish_presence(device, state, "online")

    # --- per type ---------------------------------------------------------------------

    def _alarm(self, frame: fr.Frame, device: Device, rx: Reception, recent: _Recent) -> bool:
        payload = frame.payload
        assert isinstance(payload, fr.Alarm)
        toa = time_on_air(payload_len=len(recent.data), sf=rx.sf or 9, bw_khz=rx.bw_khz or 125)
        recent.event_id = frame.event_id
        self._raise(
            frame,
            device,
            rx,
            counter=frame.counter,
            press_count=payload.press_count,
            battery_mv=payload.battery_mv,
            alarm_flags=payload.alarm_flags,
            pressed_at=rx.at - toa.time_on_air_us / 1e6,
        )
        return True

    def _alarm_update(
        self, frame: fr.Frame, device: Device, rx: Reception, recent: _Recent
    ) -> bool:
        payload = frame.payload
        assert isinstance(payload, fr.AlarmUpdate)
        event_id = fr.event_id(device.device_id, payload.alarm_counter)
        recent.event_id = event_id
        alarm = self.journal.alarm(event_id)
        if alarm is None:
            # We never heard the ALARM itself (another gateway did, or it was lost):
            # the update carries enough to raise it under the same event id.
            self._raise(
                frame,
                device,
                rx,
                counter=payload.alarm_counter,
                press_count=payload.press_count,
                battery_mv=payload.battery_mv,
                alarm_flags=0,
                pressed_at=rx.at,
            )
            return True
        changed = (payload.press_count, payload.battery_mv) != (alarm.press_count, alarm.battery_mv)
        if changed:
            alarm.press_count = max(alarm.press_count, payload.press_count)
            alarm.battery_mv = payload.battery_mv or alarm.battery_mv
            alarm.updated_at = rx.at
            self._save_alarm(alarm, device)
        return changed

    def _raise(
        self,
        frame: fr.Frame,
        device: Device,
        rx: Reception,
        *,
        counter: int,
        press_count: int,
        battery_mv: int,
        alarm_flags: int,
        pressed_at: float,
    ) -> None:
        """A new alarm: journaled and published as "raised"; nearby lights strobe."""
        now = rx.at
        alarm = AlarmRecord(
            event_id=fr.event_id(device.device_id, counter),
            device_id=device.device_id,
            counter=counter,
            state="raised",
            pressed_at=pressed_at,
            received_at=now,
            updated_at=now,
            press_count=press_count,
            battery_mv=battery_mv or None,
            alarm_flags=alarm_flags,
            test=bool(frame.flags & fr.Flags.TEST),
            receptions=[_reception(rx)],
            history=[{"state": "raised", "at": msg.iso(now)}],
        )
        self.metrics.inc("alarms")
        self._save_alarm(alarm, device)
        if not alarm.test:
            self._strobe_nearby(device)
        log.warning(
            "ALARM %s from %s (%s) via %s rssi %s",
            alarm.event_id,
            device.hex_id,
            device.place.label,
            rx.receiver,
            rx.rssi,
        )

    def _heartbeat(self, frame: fr.Frame, device: Device, rx: Reception, recent: _Recent) -> bool:
        p = frame.payload
        assert isinstance(p, fr.Heartbeat)
        state = self._state[device.device_id]
        before = (state.get("faults"), state.get("fw_version"), _band(state.get("battery_mv")))
        values = {
            "battery_mv": p.battery_mv or None,
            "temperature": p.temperature,
            "faults": p.faults,
            "fw_version": p.fw_version,
        }
        state.update(values)
        self._dirty.add(device.device_id)
        self._publish_event(frame, device, rx, "heartbeat", Priority.EVENT)
        if before != (p.faults, p.fw_version, _band(p.battery_mv or None)):
            self._publish_state(device)
        return False

    def _fault(self, frame: fr.Frame, device: Device, rx: Reception, recent: _Recent) -> bool:
        p = frame.payload
        assert isinstance(p, fr.Fault)
        state = self._state[device.device_id]
        bit = 1 << (p.code - 1) if p.code <= 8 else 0
        faults = (state.get("faults") or 0) | bit if p.active else (state.get("faults") or 0) & ~bit
        state["faults"] = faults
        self._dirty.add(device.device_id)
        self._publish_event(
            frame,
            device,
            rx,
            "fault",
            Priority.FAULT,
            extra={"fault": msg.FAULT_NAMES.get(p.code, f"fault_{p.code}")},
        )
        self._publish_state(device)
        self.metrics.inc("faults")
        return False

    def _light_status(
        self, frame: fr.Frame, device: Device, rx: Reception, recent: _Recent
    ) -> bool:
        p = frame.payload
        assert isinstance(p, fr.LightStatus)
        state = self._state[device.device_id]
        changed = state.get("level") != p.level
        state.update(level=p.level, energy_wh=p.energy_wh)
        self._dirty.add(device.device_id)
        # A light keeps its astronomical schedule on its own clock: set it now and then.
        # The answer also tells the light that the gateway hears it.
        if rx.at - state.get("time_sent", 0.0) >= TIME_EVERY_S:
            state["time_sent"] = rx.at
            self.send_now(device, fr.Time(int(rx.at), KST_OFFSET_STEPS), "time")
        self._publish_event(frame, device, rx, "light_status", Priority.EVENT)
        if changed:
            self._publish_state(device)
        return False

    def _selftest(self, frame: fr.Frame, device: Device, rx: Reception, recent: _Recent) -> bool:
        p = frame.payload
        assert isinstance(p, fr.SelfTest)
        failed = p.ran & ~p.passed
        self._publish_event(
            frame,
            device,
            rx,
            "selftest",
            Priority.FAULT if failed else Priority.EVENT,
            extra={"failed": failed != 0},
        )
        return False

    _HANDLERS: dict[fr.FrameType, Callable[[Core, fr.Frame, Device, Reception, _Recent], bool]] = {
        fr.FrameType.ALARM: _alarm,
        fr.FrameType.ALARM_UPDATE: _alarm_update,
        fr.FrameType.HEARTBEAT: _heartbeat,
        fr.FrameType.FAULT: _fault,
        fr.FrameType.LIGHT_STATUS: _light_status,
        fr.FrameType.SELFTEST: _selftest,
    }

    # --- publishing (staged in the journal's outbox) -------------------------------------

    def _save_alarm(self, alarm: AlarmRecord, device: Device | None) -> None:
        self.journal.stage_alarm(alarm)
        payload = msg.alarm_payload(alarm, device, self.settings.gateway_id)
        self.journal.stage_publish(
            Priority.ALARM, self.topics.alarm(alarm.event_id), msg.dumps(payload), retain=True
        )
        self._notify("alarm", payload)

    def _publish_event(
        self,
        frame: fr.Frame,
        device: Device,
        rx: Reception,
        etype: str,
        priority: Priority,
        extra: dict[str, Any] | None = None,
    ) -> None:
        fields = frame.payload.to_fields()
        if extra:
            fields.update(extra)
        static = self._static_json.get(device.device_id)
        if static is None:
            static = msg.device_static_json(device, self.settings.gateway_id)
            self._static_json[device.device_id] = static
        body = msg.event_json(
            static,
            event_id=frame.event_id,
            etype=etype,
            counter=frame.counter,
            received_at=rx.at,
            fields=fields,
            receptions=[_reception(rx)],
        )
        self.journal.stage_event(
            frame.event_id, device.device_id, etype, frame.counter, rx.at, body
        )
        self.journal.stage_publish(
            priority, self.topics.device_event(device.device_id, etype), body
        )

    def _publish_state(self, device: Device) -> None:
        payload = msg.state_payload(device, self._state[device.device_id], self.settings.gateway_id)
        self.journal.stage_publish(
            Priority.STATE,
            self.topics.device_state(device.device_id),
            msg.dumps(payload),
            retain=True,
        )
        self._notify("state", payload)

    def _publish_presence(self, device: Device, state: dict[str, Any], what: str) -> None:
        now = self.clock()
        body = {
            "device_id": device.hex_id,
            "kind": device.kind,
            "type": what,
            "at": msg.iso(now),
            "last_seen": msg.iso(state.get("last_seen")),
            "place": device.place.as_dict(),
            "gateway_id": self.settings.gateway_id,
        }
        self.journal.stage_publish(
            Priority.FAULT, self.topics.device_event(device.device_id, what), msg.dumps(body)
        )
        self._publish_state(device)
        self.metrics.inc(what)
        self._notify(what, body)

    def _notify(self, what: str, payload: dict[str, Any]) -> None:
        for listener in self.listeners:
            listener(what, payload)

    # --- downlinks ----------------------------------------------------------------------

    def _schedule_reply(
        self, frame: fr.Frame, device: Device, rx: Reception, alarm_event: str | None
    ) -> None:
        if device.listen_only:
            self.metrics.inc("replies_left_to_home_gateway")
            return
        key = (device.device_id, frame.counter)
        reply = self._replies.get(key)
        if reply is not None:
            reply.candidates.append(rx)
            return
        reply = _Reply(device.device_id, frame.counter, frame.type, alarm_event, [rx])
        self._replies[key] = reply
        reply.handle = asyncio.get_running_loop().call_later(REPLY_GATHER_S, self._send_reply, key)

    def _send_reply(self, key: tuple[int, int]) -> None:
        reply = self._replies.pop(key, None)
        if reply is None:
            return
        device = self._devices.get(reply.device_id)
        if device is None:
            return
        candidates = [c for c in reply.candidates if self._can_send(c.receiver)]
        if not candidates:
            self.metrics.inc("replies_no_transport")
            return
        best = max(candidates, key=lambda c: c.rssi if c.rssi is not None else -999)
        payload: fr.Payload
        self.commit()  # staged updates (a later copy's reception) first, then read
        alarm = self.journal.alarm(reply.alarm_event) if reply.alarm_event else None
        if alarm is not None:
            payload = fr.Ack(reply.counter, ACK_STATE[alarm.state])
        else:
            queued = self._commands.get(reply.device_id)
            if queued:
                row_id, payload = queued.popleft()
                self.journal.stage("DELETE FROM downlinks WHERE id = ?", (row_id,))
            else:
                payload = fr.Ack(reply.counter, fr.AlarmState.NONE)
        more = bool(self._commands.get(reply.device_id))
        data = self._build_downlink(device, payload, more=more)
        if alarm is not None and alarm.state == "raised":
            self._transition(alarm, "delivered")
        self.commit()  # the downlink counter (and the alarm's delivery) are durable first
        self._spawn(self._transmit(best.receiver, data, best, "ack"))

    def _build_downlink(self, device: Device, payload: fr.Payload, *, more: bool = False) -> bytes:
        state = self._state[device.device_id]
        counter = int(state.get("down_counter") or 0) + 1
        state["down_counter"] = counter
        self._dirty.add(device.device_id)
        flags = fr.Flags.MORE if more else fr.Flags.NONE
        return fr.encode(
            fr.Frame(device.device_id, counter, payload, flags), self._keys[device.device_id]
        )

    def _can_send(self, receiver: str) -> bool:
        transport = self.transports.get(receiver)
        return transport is not None and transport.can_send

    async def _transmit(
        self, receiver: str, data: bytes, reply_to: Reception | None, what: str
    ) -> None:
        transport = self.transports[receiver]
        try:
            ok = await transport.send(data, reply_to=reply_to)
        except Exception as exc:  # a transport failure must not end the pipeline
            log.warning("downlink %s via %s failed: %s", what, receiver, exc)
            ok = False
        self.metrics.inc(f"downlinks_{what}" if ok else "downlinks_failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def send_now(self, device: Device, payload: fr.Payload, what: str) -> bool:
        """Send a downlink to an always-listening device (a light) at once."""
        if device.listen_only:
            return False  # its home gateway sends it
        state = self._state[device.device_id]
        receiver = state.get("receiver")
        if not receiver or not self._can_send(receiver):
            receiver = next((n for n, t in self.transports.items() if t.can_send), None)
        if receiver is None:
            self.metrics.inc("downlinks_no_transport")
            return False
        data = self._build_downlink(device, payload)
        self.commit()
        self._spawn(self._transmit(receiver, data, None, what))
        return True

    def queue_command(self, device: Device, payload: fr.Payload) -> str:
        """A command for a device: lights get it now, bells at their next receive window."""
        if device.listen_only:
            return "left to its home gateway"
        if device.kind == "light" and self.send_now(device, payload, "command"):
            return "sent"
        now = self.clock()
        cur = self.journal.conn.execute(
            "INSERT INTO downlinks (device_id, command, created_at, expires_at) VALUES (?,?,?,?)",
            (device.device_id, msg.dumps(payload.to_fields()), now, now + 86400),
        )
        assert cur.lastrowid is not None
        self._commands.setdefault(device.device_id, deque()).append((cur.lastrowid, payload))
        return "queued"

    def _strobe_nearby(self, bell: Device) -> None:
        # From the registry cache, on the alarm's path: no database round trip per light.
        rules = self.settings.rules
        for light in self._devices.values():
            if light.kind != "light":
                continue
            dist = distance_m(bell.place, light.place)
            if dist <= rules.strobe_radius_m and self.send_now(
                light, fr.Strobe(rules.strobe_duration_s), "strobe"
            ):
                log.info("strobe %s (%.0f m from %s)", light.hex_id, dist, bell.hex_id)

    # --- operator and supervision -------------------------------------------------------

    def _transition(self, alarm: AlarmRecord, state: str, **extra: Any) -> None:
        now = self.clock()
        alarm.state = state
        alarm.updated_at = now
        for k, v in extra.items():
            setattr(alarm, k, v)
        alarm.history = [*(alarm.history or []), {"state": state, "at": msg.iso(now), **extra}]
        self._save_alarm(alarm, self._devices.get(alarm.device_id))
        self.metrics.inc(f"alarms_{state}")

    def operator_update(
        self,
        event_id: str,
        state: str,
        *,
        operator: str | None = None,
        message: str | None = None,
    ) -> AlarmRecord:
        """An operator acknowledged or resolved an alarm; the bell hears it at its next window."""
        alarm = self.journal.alarm(event_id)
        if alarm is None:
            raise LookupError(f"no alarm {event_id}")
        order = msg.ALARM_STATES
        if order.index(state) <= order.index(alarm.state):
            raise ValueError(f"alarm {event_id} is already {alarm.state}")
        self._transition(alarm, state, operator=operator, message=message)
        self.commit()
        return alarm

    def check_supervision(self, now: float | None = None) -> None:
        """OFFLINE for devices silent for grace x their heartbeat interval; alarm timeouts."""
        now = self.clock() if now is None else now
        sup = self.settings.supervision
        for device_id, device in self._devices.items():
            state = self._state[device_id]
            if not state.get("online", 1):
                continue
            interval = device.heartbeat_s or sup.heartbeat_interval_s
            since = state.get("last_seen") or device.created_at
            if now - since > sup.heartbeat_grace * interval:
                state["online"] = 0
                self._dirty.add(device_id)
                self._publish_presence(device, state, "offline")
        for alarm in self.journal.open_alarms():
            if now - alarm.received_at > self.settings.rules.alarm_timeout_s:
                self._transition(alarm, "resolved", operator="timeout")
        self.commit()

    # --- journal --------------------------------------------------------------------------

    def commit(self) -> None:
        """Write the device states that changed and commit everything staged, at once."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._dirty:
            state = self._state
            self.journal.stage_states(
                STATE_COLUMNS,
                [(*map(state[d].get, STATE_COLUMNS), d) for d in self._dirty],
            )
            self._dirty.clear()
        self.journal.commit()

    def flush_soon(self) -> None:
        if self.journal.pending >= FLUSH_MAX:
            self.commit()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self.commit)

    async def drain_tasks(self) -> None:
        """Wait for downlinks in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def close(self) -> None:
        """Stop timers and commit what is staged; the connection is closed by its owner."""
        for reply in self._replies.values():
            if reply.handle is not None:
                reply.handle.cancel()
        self._replies.clear()
        with contextlib.suppress(Exception):
            self.commit()

    def status(self) -> dict[str, Any]:
        return {
            "counters": dict(sorted(self.metrics.counts.items())),
            "devices": len(self._devices),
            "online": sum(1 for s in self._state.values() if s.get("online", 1)),
            "open_alarms": len(self.journal.open_alarms()),
            "outbox": self.journal.outbox_size(),
            "transports": {n: t.status() for n, t in self.transports.items()},
        }


def _reception(rx: Reception) -> dict[str, Any]:
    return rx.as_dict()


def _band(mv: int | None) -> int | None:
    return None if mv is None else mv // 100


def msg_json(text: str) -> dict[str, Any]:
    import json

    value: dict[str, Any] = json.loads(text)
    return value
