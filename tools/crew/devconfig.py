"""A registered device's config, as the firmware's store keeps it.

One flat JSON object (firmware/PROVISIONING.md "Config"): identity and key, the radio
settings the gateway listens on, intervals, and the place. The bell reads it with
``bell.parse_config``, the light through its settings; unknown keys are ignored by both,
so the place label and the national point number travel along for the crew's benefit.
"""

from __future__ import annotations

from typing import Any

from gateway.config import Settings
from gateway.registry import Device
from tools.crew import CrewError

# The radio settings when the gateway has no serial radio configured: the KR920 default
# channel, SF9/125 kHz, 14 dBm (firmware/light/main.py RADIO_DEFAULTS, gateway/config.py).
RADIO_DEFAULTS: dict[str, int] = {
    "freq_khz": 922_100,
    "sf": 9,
    "bw_khz": 125,
    "cr": 5,
    "preamble": 8,
    "power_dbm": 14,
}
# The interval key each role reads, and the range its firmware accepts.
INTERVAL_KEY = {"bell": ("heartbeat_s", 60, 86_400), "light": ("status_s", 60, 86_400)}
STR_MAX = 120  # firmware/lib/provision.py STR_MAX


def radio_settings(settings: Settings | None) -> dict[str, int]:
    radio = dict(RADIO_DEFAULTS)
    serial = settings.serial if settings is not None else None
    if serial is not None:
        radio.update(
            freq_khz=serial.freq_khz,
            sf=serial.sf,
            bw_khz=serial.bw_khz,
            cr=serial.cr,
            preamble=serial.preamble,
            power_dbm=serial.power_dbm,
        )
    return radio


def device_config(device: Device, settings: Settings | None = None) -> dict[str, Any]:
    """The config the device must hold, key included (hex)."""
    if device.retired_at is not None:
        raise CrewError(f"device {device.hex_id} is retired: register a new one")
    cfg: dict[str, Any] = {
        "device_id": device.hex_id,
        "key": device.key.hex(),
        "kind": device.kind,
    }
    cfg.update(radio_settings(settings))
    if device.heartbeat_s is not None and device.kind in INTERVAL_KEY:
        key, lo, hi = INTERVAL_KEY[device.kind]
        if not lo <= device.heartbeat_s <= hi:
            raise CrewError(
                f"device {device.hex_id}: heartbeat {device.heartbeat_s} s is outside "
                f"{lo}..{hi} s, what the {device.kind} firmware accepts"
            )
        cfg[key] = device.heartbeat_s
    place = device.place
    cfg["lat"] = place.lat
    cfg["lon"] = place.lon
    for key, value in (
        ("name", place.label),
        ("national_point_number", place.national_point_number),
        ("plate_id", place.plate_id),
        ("trail", place.trail),
    ):
        if value:
            cfg[key] = value[:STR_MAX]
    return cfg


def without_key(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in ("key", "key_wrapped")}


def same_config(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal as the device reads them back (floats may be single precision there)."""
    if a.keys() != b.keys():
        return False
    for k, x in a.items():
        y = b[k]
        if isinstance(x, float) or isinstance(y, float):
            if not isinstance(x, int | float) or not isinstance(y, int | float):
                return False
            if abs(x - y) > 1e-5 * (1 + abs(x)):
                return False
        elif x != y:
            return False
    return True
