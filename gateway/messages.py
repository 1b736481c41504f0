"""The MQTT contract (gateway/MQTT.md): topic names and JSON payloads, in one place."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from gateway.journal import AlarmRecord
from gateway.registry import Device
from protocol.frames import FaultCode

ALARM_STATES = ("raised", "delivered", "acknowledged", "resolved")
FAULT_NAMES = {code.value: code.name.lower() for code in FaultCode}


def iso(ts: float | None) -> str | None:
    """UTC, milliseconds, "Z": what datetime's isoformat(timespec="milliseconds") gives."""
    if ts is None:
        return None
    sec = math.floor(ts)
    us = round((ts - sec) * 1e6)  # datetime.fromtimestamp rounds half to even, as round()
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    if sec != _iso_second[0]:
        _iso_second[:] = [sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))]
    return f"{_iso_second[1]}.{us // 1000:03d}Z"


_iso_second: list[Any] = [None, ""]  # the last second formatted, and its text


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(data: Any) -> str:
    """Compact UTF-8 JSON, as every message goes out (one encoder, built once)."""
    return _encode(data)


def fault_names(bitmap: int) -> list[str]:
    return [FAULT_NAMES.get(bit + 1, f"fault_{bit + 1}") for bit in range(8) if bitmap >> bit & 1]


class Topics:
    def __init__(self, prefix: str, gateway_id: str) -> None:
        self.prefix = prefix
        self.gateway_id = gateway_id

    def alarm(self, event_id: str) -> str:
        return f"{self.prefix}/alarm/{event_id}"

    def device_event(self, device_id: int, etype: str) -> str:
        return f"{self.prefix}/device/{device_id:08x}/event/{etype}"

    def device_state(self, device_id: int) -> str:
        return f"{self.prefix}/device/{device_id:08x}/state"

    @property
    def status(self) -> str:
        return f"{self.prefix}/gateway/{self.gateway_id}/status"

    @property
    def error(self) -> str:
        return f"{self.prefix}/gateway/{self.gateway_id}/error"

    @property
    def command_filters(self) -> list[str]:
        return [
            f"{self.prefix}/alarm/+/ack",
            f"{self.prefix}/alarm/+/resolve",
            f"{self.prefix}/device/+/command",
        ]


def alarm_payload(alarm: AlarmRecord, device: Device | None, gateway_id: str) -> dict[str, Any]:
    return {
        "event_id": alarm.event_id,
        "device_id": f"{alarm.device_id:08x}",
        "state": alarm.state,
        "test": alarm.test,
        "pressed_at": iso(alarm.pressed_at),
        "received_at": iso(alarm.received_at),
        "updated_at": iso(alarm.updated_at),
        "press_count": alarm.press_count,
        "battery": {"mv": alarm.battery_mv} if alarm.battery_mv else None,
        "tamper": bool(alarm.alarm_flags & 0x01),
        "place": device.place.as_dict() if device else None,
        "cameras": list(device.cameras) if device else [],
        "receptions": alarm.receptions,
        "operator": alarm.operator,
        "message": alarm.message,
        "gateway_id": gateway_id,
    }


def device_static_json(device: Device, gateway_id: str) -> str:
    """The parts of a device event that never change, as JSON members (computed once)."""
    static = {
        "device_id": device.hex_id,
        "kind": device.kind,
        "place": device.place.as_dict(),
        "gateway_id": gateway_id,
    }
    return dumps(static)[1:-1]


def event_json(
    static: str,
    *,
    event_id: str,
    etype: str,
    counter: int,
    received_at: float,
    fields: dict[str, Any],
    receptions: list[dict[str, Any]],
) -> str:
    """A device event (schemas/device-event.json); ``static`` from `device_static_json`."""
    variable = dumps({"fields": fields, "receptions": receptions})[1:-1]
    return (
        f'{{"event_id":"{event_id}","type":"{etype}","counter":{counter},'
        f'"received_at":"{iso(received_at)}",{variable},{static}}}'
    )


def state_payload(device: Device, state: dict[str, Any], gateway_id: str) -> dict[str, Any]:
    fw = state.get("fw_version")
    return {
        "device_id": device.hex_id,
        "kind": device.kind,
        "online": bool(state.get("online", 1)),
        "last_seen": iso(state.get("last_seen")),
        "battery_mv": state.get("battery_mv"),
        "temperature": state.get("temperature"),
        "faults": fault_names(state.get("faults") or 0),
        "firmware": f"{fw >> 4}.{fw & 15}" if fw is not None else None,
        "rssi": state.get("rssi"),
        "snr": state.get("snr"),
        "receiver": state.get("receiver"),
        "level": state.get("level"),
        "energy_wh": state.get("energy_wh"),
        "place": device.place.as_dict(),
        "gateway_id": gateway_id,
    }
