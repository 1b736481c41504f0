"""Commands from the control center (MQTT), checked and applied to the engine.

A bad command is answered with one error message naming what was wrong; it never
raises out of here.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from gateway.core import Core
from protocol import frames as fr
from protocol.errors import ProtocolError

log = logging.getLogger("anshim.gateway.commands")

_DEVICE_COMMANDS = {
    "set_level": ("SET_LEVEL", {"level", "minutes"}),
    "strobe": ("STROBE", {"seconds"}),
    "schedule": ("SCHEDULE", {"dusk_level", "night_level", "night_from", "night_until"}),
    "selftest": ("SELFTEST", set()),
    "reboot": ("REBOOT", set()),
    "config": ("CONFIG", {"key", "value"}),
}


class CommandError(ValueError):
    """A command the gateway refuses; the message says why."""


def _json(payload: bytes) -> dict[str, Any]:
    if not payload.strip():
        return {}
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"payload is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CommandError("payload must be a JSON object")
    return value


def _text(body: dict[str, Any], name: str, limit: int = 200) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise CommandError(f"{name} must be a string of at most {limit} characters")
    return value


def apply(core: Core, topic: str, payload: bytes) -> dict[str, Any]:
    """Apply one command; returns a small result. Raises `CommandError` for bad input."""
    prefix = core.topics.prefix + "/"
    if not topic.startswith(prefix):
        raise CommandError(f"topic {topic!r} is outside {prefix}#")
    parts = topic[len(prefix) :].split("/")
    body = _json(payload)
    if len(parts) == 3 and parts[0] == "alarm" and parts[2] in ("ack", "resolve"):
        state = "acknowledged" if parts[2] == "ack" else "resolved"
        try:
            alarm = core.operator_update(
                parts[1], state, operator=_text(body, "operator"), message=_text(body, "message")
            )
        except (LookupError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        return {"event_id": alarm.event_id, "state": alarm.state}
    if len(parts) == 3 and parts[0] == "device" and parts[2] == "command":
        try:
            device_id = int(parts[1], 16)
        except ValueError:
            raise CommandError(f"device id {parts[1]!r} is not hex") from None
        device = core.device(device_id)
        if device is None:
            raise CommandError(f"no device {parts[1]}")
        name = body.pop("command", None)
        if name not in _DEVICE_COMMANDS:
            raise CommandError(f"command {name!r} must be one of {', '.join(_DEVICE_COMMANDS)}")
        opcode, allowed = _DEVICE_COMMANDS[name]
        extra = sorted(set(body) - allowed)
        if extra:
            raise CommandError(f"{name} takes no field {extra[0]!r}")
        if device.kind == "bell" and name not in ("selftest", "reboot", "config", "strobe"):
            raise CommandError(f"{name} is for lights; device {parts[1]} is a bell")
        try:
            command = fr.payload_from_fields(fr.FrameType.COMMAND, {"opcode": opcode, **body})
        except ProtocolError as exc:
            raise CommandError(str(exc)) from None
        outcome = core.queue_command(device, command)
        return {"device_id": device.hex_id, "command": name, "outcome": outcome}
    raise CommandError(f"topic {topic!r} is not a command topic")
