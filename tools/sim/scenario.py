"""Scenarios: which devices and gateways stand where, how they are configured, who presses.

A scenario is a JSON (or TOML) file; `load_scenario` reads one (or a shipped name:
``seongbuk``) and checks it, naming the key and the bad value on error. `city` generates
one at city scale. The file's shape::

    {
      "name": "seongbuk", "title": "...", "site": "seongbuk",
      "start": "2026-11-26T17:00:00+09:00",        # the simulated wall clock at t = 0
      "boot": "naive",                              # bell wake: "naive" or "frozen" boot
      "board": "heltec-v3",                         # hardware/boards/<board>.json currents
      "radio": {"sf": 9, "freq_khz": 922100, "power_dbm": 11,
                "path_loss": {"pl0_db": 127, "exponent": 3.5, "shadowing_db": 7, ...}},
      "gateways": [{"id": "...", "label": "...", "lat": ..., "lon": ..., "ble": false}],
      "devices": [{"id": "0a000101", "kind": "bell", "lat": ..., "lon": ...,
                   "label": "...", "national_point_number": "다사 5460 5532",
                   "plate_id": "성북-01-001", "trail": "...", "cameras": ["CCTV-SB-1001"],
                   "heartbeat_s": 3600, "radio": "lora"}],
      "presses": [{"device": "0a000104", "at_s": 120, "hold_s": 0.4}]
    }

``heartbeat_s`` is a bell's heartbeat interval and a light's LIGHT_STATUS interval
(``status_s``). ``radio: "ble"`` makes a bell advertise over BLE instead of LoRa.
Device keys are derived from the scenario name and device id unless given (``key``, 32
hex digits): simulated keys, never real ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import tomllib
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tools.sim.channel import PathLoss, RadioSettings
from tools.sim.places import SEONGBUK_CORE, national_point_number

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
KINDS = ("bell", "light")
BOOTS = ("naive", "frozen")


class ScenarioError(ValueError):
    """A scenario problem; the message names the key and the bad value."""


@dataclass(frozen=True, kw_only=True)
class DeviceSpec:
    device_id: int
    kind: str
    lat: float
    lon: float
    label: str = ""
    national_point_number: str | None = None
    plate_id: str | None = None
    trail: str | None = None
    cameras: tuple[str, ...] = ()
    heartbeat_s: int = 3600
    radio: str = "lora"  # "lora" or "ble" (bells only)
    key: bytes = field(default=b"", repr=False)

    @property
    def hex_id(self) -> str:
        return f"{self.device_id:08x}"


@dataclass(frozen=True, kw_only=True)
class GatewaySpec:
    gateway_id: str
    lat: float
    lon: float
    label: str = ""
    ble: bool = False  # also scans for BLE adverts
    serial: bool = False  # radio through the bridge firmware on a pty (the serial path)


@dataclass(frozen=True, kw_only=True)
class PressSpec:
    device_id: int
    at_s: float  # seconds after the start of the run
    hold_s: float = 0.4


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    title: str = ""
    site: str = "sim"
    start: datetime | None = None  # simulated wall clock at t = 0 (None: now)
    boot: str = "naive"
    board: str = "heltec-v3"
    radio: RadioSettings = field(default_factory=RadioSettings)
    gateways: tuple[GatewaySpec, ...] = ()
    devices: tuple[DeviceSpec, ...] = ()
    presses: tuple[PressSpec, ...] = ()

    @property
    def origin(self) -> tuple[float, float]:
        pts = [(d.lat, d.lon) for d in self.devices] + [(g.lat, g.lon) for g in self.gateways]
        return (sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts))

    def device(self, ref: str | int) -> DeviceSpec:
        """A device by id (int or hex) or exact label."""
        for d in self.devices:
            if d.device_id == ref or d.hex_id == ref or d.label == ref:
                return d
        if isinstance(ref, str):
            try:
                return self.device(int(ref, 16))
            except ValueError:
                pass
        raise ScenarioError(f"no device {ref!r} in scenario {self.name}")

    def with_gateways(self, **changes: Any) -> Scenario:
        """The same scenario with every gateway changed (e.g. ``serial=True``)."""
        return replace(self, gateways=tuple(replace(g, **changes) for g in self.gateways))


def device_key(scenario: str, device_id: int) -> bytes:
    return hashlib.sha256(f"anshim-sim:{scenario}:{device_id:08x}".encode()).digest()[:16]


# -- reading ------------------------------------------------------------------------------


class _Table:
    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where}: must be an object, got {data!r}")
        self.data = dict(data)
        self.where = where

    def _key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def take(self, name: str, kinds: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                raise ScenarioError(f"{self._key(name)}: missing")
            return default
        value = self.data.pop(name)
        ks = kinds if isinstance(kinds, tuple) else (kinds,)
        if (isinstance(value, bool) and bool not in ks) or not isinstance(value, ks):
            names = " or ".join(k.__name__ for k in ks)
            raise ScenarioError(f"{self._key(name)}: {value!r} must be {names}")
        return value

    def number(self, name: str, default: Any, lo: float, hi: float) -> float:
        value = self.take(name, (int, float), default)
        if not lo <= value <= hi:
            raise ScenarioError(f"{self._key(name)}: {value!r} must be between {lo} and {hi}")
        return float(value)

    def finish(self) -> None:
        if self.data:
            raise ScenarioError(f"{self._key(sorted(self.data)[0])}: unknown key")


def _radio(data: Any) -> RadioSettings:
    t = _Table(data, "radio")
    base = RadioSettings()
    pl = _Table(t.take("path_loss", dict, {}), "radio.path_loss")
    d = PathLoss()
    path_loss = PathLoss(
        pl0_db=pl.number("pl0_db", d.pl0_db, 60, 200),
        exponent=pl.number("exponent", d.exponent, 1.5, 6),
        ground_pl0_db=pl.number("ground_pl0_db", d.ground_pl0_db, 60, 200),
        ground_exponent=pl.number("ground_exponent", d.ground_exponent, 1.5, 6),
        d0_m=pl.number("d0_m", d.d0_m, 1, 10_000),
        shadowing_db=pl.number("shadowing_db", d.shadowing_db, 0, 20),
        fading_db=pl.number("fading_db", d.fading_db, 0, 20),
    )
    pl.finish()
    settings = RadioSettings(
        freq_khz=int(t.number("freq_khz", base.freq_khz, 920_900, 923_300)),
        sf=int(t.number("sf", base.sf, 7, 12)),
        bw_khz=int(t.number("bw_khz", base.bw_khz, 125, 500)),
        cr=int(t.number("cr", base.cr, 5, 8)),
        preamble=int(t.number("preamble", base.preamble, 6, 65535)),
        power_dbm=t.number("power_dbm", base.power_dbm, -9, 22),
        gateway_power_dbm=t.number("gateway_power_dbm", base.gateway_power_dbm, -9, 22),
        device_antenna_dbi=t.number("device_antenna_dbi", base.device_antenna_dbi, -10, 15),
        gateway_antenna_dbi=t.number("gateway_antenna_dbi", base.gateway_antenna_dbi, -10, 20),
        noise_figure_db=t.number("noise_figure_db", base.noise_figure_db, 0, 20),
        capture_db=t.number("capture_db", base.capture_db, 0, 30),
        downlink_iq_inverted=t.take("downlink_iq_inverted", bool, False),
        path_loss=path_loss,
    )
    t.finish()
    if settings.bw_khz not in (125, 250, 500):
        raise ScenarioError(f"radio.bw_khz: {settings.bw_khz} must be 125, 250 or 500")
    return settings


def _hex_id(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        try:
            n = int(value, 16)
        except ValueError:
            raise ScenarioError(f"{where}: {value!r} is not a hex device id") from None
    else:
        raise ScenarioError(f"{where}: {value!r} must be a hex device id")
    if not 0 < n <= 0xFFFFFFFF:
        raise ScenarioError(f"{where}: {value!r} is out of range")
    return n


def parse_scenario(data: Any, *, name: str = "scenario") -> Scenario:
    """Check and convert a scenario's data (see the module docstring)."""
    root = _Table(data, "")
    name = root.take("name", str, name)
    title = root.take("title", str, "")
    site = root.take("site", str, "sim")
    start_text = root.take("start", str, None)
    start = None
    if start_text is not None:
        try:
            start = datetime.fromisoformat(start_text)
        except ValueError:
            raise ScenarioError(f"start: {start_text!r} is not an ISO 8601 time") from None
        if start.tzinfo is None:
            raise ScenarioError(f"start: {start_text!r} needs a UTC offset (+09:00)")
    boot = root.take("boot", str, "naive")
    if boot not in BOOTS:
        raise ScenarioError(f"boot: {boot!r} must be one of {', '.join(BOOTS)}")
    board = root.take("board", str, "heltec-v3")
    radio = _radio(root.take("radio", dict, {}))
    root.take("cameras", list, [])  # informational: where the cameras stand

    gateways = []
    for i, raw in enumerate(root.take("gateways", list)):
        g = _Table(raw, f"gateways[{i}]")
        gateways.append(
            GatewaySpec(
                gateway_id=g.take("id", str),
                label=g.take("label", str, ""),
                lat=g.number("lat", ..., -90, 90),
                lon=g.number("lon", ..., -180, 180),
                ble=g.take("ble", bool, False),
                serial=g.take("serial", bool, False),
            )
        )
        g.finish()
    if not gateways:
        raise ScenarioError("gateways: at least one gateway is needed")
    if len({g.gateway_id for g in gateways}) != len(gateways):
        raise ScenarioError("gateways: ids must be unique")

    devices = []
    seen: set[int] = set()
    for i, raw in enumerate(root.take("devices", list)):
        where = f"devices[{i}]"
        d = _Table(raw, where)
        device_id = _hex_id(d.take("id", (str, int)), f"{where}.id")
        if device_id in seen:
            raise ScenarioError(f"{where}.id: {device_id:08x} appears twice")
        seen.add(device_id)
        kind = d.take("kind", str)
        if kind not in KINDS:
            raise ScenarioError(f"{where}.kind: {kind!r} must be one of {', '.join(KINDS)}")
        key_hex = d.take("key", str, None)
        try:
            key = bytes.fromhex(key_hex) if key_hex else device_key(name, device_id)
        except ValueError:
            raise ScenarioError(f"{where}.key: not hex") from None
        if len(key) != 16:
            raise ScenarioError(f"{where}.key: must be 32 hex digits")
        radio_kind = d.take("radio", str, "lora")
        if radio_kind not in ("lora", "ble") or (radio_kind == "ble" and kind != "bell"):
            raise ScenarioError(f"{where}.radio: {radio_kind!r} must be lora (or ble for a bell)")
        cams = d.take("cameras", list, [])
        if not all(isinstance(c, str) for c in cams):
            raise ScenarioError(f"{where}.cameras: must be a list of camera ids")
        devices.append(
            DeviceSpec(
                device_id=device_id,
                kind=kind,
                lat=d.number("lat", ..., -90, 90),
                lon=d.number("lon", ..., -180, 180),
                label=d.take("label", str, ""),
                national_point_number=d.take("national_point_number", str, None),
                plate_id=d.take("plate_id", str, None),
                trail=d.take("trail", str, None),
                cameras=tuple(cams),
                heartbeat_s=int(d.number("heartbeat_s", 3600, 60, 86400)),
                radio=radio_kind,
                key=key,
            )
        )
        d.finish()
    if not devices:
        raise ScenarioError("devices: at least one device is needed")

    presses = []
    for i, raw in enumerate(root.take("presses", list, [])):
        where = f"presses[{i}]"
        p = _Table(raw, where)
        device_id = _hex_id(p.take("device", (str, int)), f"{where}.device")
        if device_id not in seen:
            raise ScenarioError(f"{where}.device: no device {device_id:08x}")
        presses.append(
            PressSpec(
                device_id=device_id,
                at_s=p.number("at_s", ..., 0, 10 * 86400),
                hold_s=p.number("hold_s", 0.4, 0.01, 60),
            )
        )
        p.finish()
    root.finish()
    return Scenario(
        name=name,
        title=title,
        site=site,
        start=start,
        boot=boot,
        board=board,
        radio=radio,
        gateways=tuple(gateways),
        devices=tuple(devices),
        presses=tuple(sorted(presses, key=lambda p: p.at_s)),
    )


def load_scenario(ref: str | Path) -> Scenario:
    """A shipped scenario by name (``seongbuk``) or a .json/.toml file."""
    path = Path(ref)
    if not path.suffix and not path.exists():
        path = SCENARIOS_DIR / f"{ref}.json"
        if not path.exists():
            shipped = ", ".join(sorted(p.stem for p in SCENARIOS_DIR.glob("*.json")))
            raise ScenarioError(f"no scenario {ref!r} (shipped: {shipped}, or give a file)")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = path.suffix.lstrip(".").upper() or "JSON"
        raise ScenarioError(f"{path}: not valid {kind} ({exc})") from None
    return parse_scenario(data, name=path.stem)


# -- city scale ---------------------------------------------------------------------------


def city(
    devices: int = 5000,
    gateways: int = 3,
    *,
    seed: int = 1,
    lights_share: float = 0.3,
    heartbeat_s: int = 3600,
    bounds: tuple[float, float, float, float] = SEONGBUK_CORE,
    sf: int = 9,
    boot: str = "naive",
    path_loss: PathLoss | None = None,
    iq_inverted: bool = False,
) -> Scenario:
    """``devices`` bells and lights spread uniformly over ``bounds`` (default: the core of
    Seongbuk-gu, 5.0 x 6.2 km), ``gateways`` on a regular grid over it, every device
    reporting every ``heartbeat_s`` (bells' heartbeats, lights' status), all on one
    channel at ``sf``."""
    if devices < 1 or gateways < 1:
        raise ScenarioError("city: needs at least one device and one gateway")
    rng = random.Random(seed)
    lat_lo, lat_hi, lon_lo, lon_hi = bounds
    # Gateways: the most square grid of cells with at least `gateways` cells, centres used.
    cols = max(1, round(math.sqrt(gateways * (lon_hi - lon_lo) * 0.79 / (lat_hi - lat_lo))))
    rows = math.ceil(gateways / cols)
    gws = []
    for i in range(gateways):
        r, c = divmod(i, cols)
        in_row = min(cols, gateways - r * cols)
        lat = lat_lo + (lat_hi - lat_lo) * (r + 0.5) / rows
        lon = lon_lo + (lon_hi - lon_lo) * (c + 0.5) / in_row
        gws.append(
            GatewaySpec(gateway_id=f"city-gw{i + 1}", label=f"gateway {i + 1}", lat=lat, lon=lon)
        )
    n_lights = round(devices * lights_share)
    specs = []
    name = f"city-{devices}x{gateways}"
    for i in range(devices):
        light = i < n_lights
        device_id = (0x0B000000 if light else 0x0A000000) + (i + 1)
        lat = rng.uniform(lat_lo, lat_hi)
        lon = rng.uniform(lon_lo, lon_hi)
        specs.append(
            DeviceSpec(
                device_id=device_id,
                kind="light" if light else "bell",
                lat=lat,
                lon=lon,
                label=f"{'보안등' if light else '비상벨'} {i + 1:05d}",
                national_point_number=national_point_number(lat, lon),
                heartbeat_s=heartbeat_s,
                key=device_key(name, device_id),
            )
        )
    radio = RadioSettings(
        sf=sf, path_loss=path_loss or PathLoss(), downlink_iq_inverted=iq_inverted
    )
    return Scenario(
        name=name,
        title=f"city scale: {devices} devices, {gateways} gateways, SF{sf}",
        site="city",
        boot=boot,
        radio=radio,
        gateways=tuple(gws),
        devices=tuple(specs),
    )
