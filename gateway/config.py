"""Gateway settings: TOML in, frozen typed settings out.

Every key has a sane default, so the gateway runs with no file at all (a data folder, no
upstream: events wait in the outbox). An error names the key and the bad value.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SYSTEM_DATA_DIR = Path("/var/lib/anshim")


def default_data_dir() -> Path:
    """/var/lib/anshim where the service may write it (root, or the systemd StateDirectory);
    otherwise the user's own data folder, so `anshim gateway run` works for anyone."""
    if os.access(SYSTEM_DATA_DIR, os.W_OK) or (
        not SYSTEM_DATA_DIR.exists() and os.access(SYSTEM_DATA_DIR.parent, os.W_OK)
    ):
        return SYSTEM_DATA_DIR
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "anshim"


DEFAULT_DATA_DIR = default_data_dir()


class ConfigError(ValueError):
    """A configuration problem; the message names the key and the bad value."""


@dataclass(frozen=True, kw_only=True)
class SerialSettings:
    """The gateway's own LoRa radio (the bridge firmware) on a USB serial port."""

    port: str
    baud: int = 115200
    freq_khz: int = 922_100
    sf: int = 9
    bw_khz: int = 125
    cr: int = 5
    preamble: int = 8
    power_dbm: int = 11  # +13.15 dBm EIRP with a 2.15 dBi antenna: KR920 allows +14
    receiver: str = "serial"


@dataclass(frozen=True, kw_only=True)
class BleSettings:
    adapter: str | None = None
    scanning_mode: str = "passive"
    receiver: str = "ble"


@dataclass(frozen=True, kw_only=True)
class SimSettings:
    receiver: str = "sim"


@dataclass(frozen=True, kw_only=True)
class MqttSettings:
    url: str | None = None
    client_id: str | None = None
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_prefix: str | None = None
    keepalive: int = 30
    max_inflight: int = 100

    @property
    def host(self) -> str:
        return urlsplit(self.url or "").hostname or "localhost"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url or "")
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url or "").scheme == "mqtts"

    def password(self) -> str | None:
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").strip()


@dataclass(frozen=True, kw_only=True)
class SupervisionSettings:
    heartbeat_interval_s: int = 3600  # what a device's heartbeat interval is, unless registered
    heartbeat_grace: float = 2.5  # OFFLINE after grace x interval without a frame
    check_every_s: float = 30.0


@dataclass(frozen=True, kw_only=True)
class RulesSettings:
    strobe_radius_m: float = 150.0
    strobe_duration_s: int = 300
    alarm_timeout_s: int = 3600  # an unresolved alarm resolves itself after this


@dataclass(frozen=True, kw_only=True)
class Settings:
    gateway_id: str = "gateway"
    site: str = "default"
    data_dir: Path = DEFAULT_DATA_DIR
    serial: SerialSettings | None = None
    ble: BleSettings | None = None
    sim: SimSettings | None = None
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    source: Path | None = None  # the file these came from, None = embedded defaults

    @property
    def topic_prefix(self) -> str:
        return self.mqtt.topic_prefix or f"anshim/{self.site}"

    @property
    def database(self) -> Path:
        return self.data_dir / "anshim.db"

    def summary(self) -> list[str]:
        """Lines for start-up: what runs and where, never a secret."""
        lines = [
            f"gateway {self.gateway_id} at site {self.site}, data in {self.data_dir}"
            + ("" if self.source else " (embedded defaults: no config file)")
        ]
        transports = [
            name
            for name, on in (("serial", self.serial), ("ble", self.ble), ("sim", self.sim))
            if on
        ]
        lines.append("transports: " + (", ".join(transports) or "none"))
        if self.mqtt.url:
            lines.append(f"upstream {self.mqtt.url} topics {self.topic_prefix}/#")
        else:
            lines.append("no upstream configured: events wait in the outbox")
        return lines


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Reader:
    """Takes values out of one TOML table, checking types and naming the key on error."""

    def __init__(self, table: dict[str, Any], where: str) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: must be a table, got {table!r}")
        self.table = dict(table)
        self.where = where

    def _key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def take(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if name not in self.table:
            return default
        value = self.table.pop(name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = False if isinstance(value, bool) and bool not in kinds else isinstance(value, kinds)
        if not ok:
            names = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"{self._key(name)}: {value!r} must be {names}")
        return value

    def number(self, name: str, default: Any, lo: float, hi: float, integer: bool = True) -> Any:
        value = self.take(name, int if integer else (int, float), default)
        if not lo <= value <= hi:
            raise ConfigError(f"{self._key(name)}: {value!r} must be between {lo} and {hi}")
        return value

    def path(self, name: str, default: Path | None, base: Path) -> Path | None:
        value = self.take(name, str, None)
        if value is None:
            return default
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else base / path

    def finish(self) -> None:
        if self.table:
            name = sorted(self.table)[0]
            raise ConfigError(f"{self._key(name)}: unknown key")


def parse_settings(data: dict[str, Any], *, base: Path, source: Path | None = None) -> Settings:
    root = _Reader(data, "")
    gw = _Reader(root.take("gateway", dict, {}), "gateway")
    gateway_id = gw.take("id", str, "gateway")
    site = gw.take("site", str, "default")
    for key, value in (("gateway.id", gateway_id), ("gateway.site", site)):
        if not _ID.match(value):
            raise ConfigError(f"{key}: {value!r} must be letters, digits, '-', '_' or '.'")
    data_dir = gw.path("data_dir", DEFAULT_DATA_DIR, base) or DEFAULT_DATA_DIR
    gw.finish()

    tr = _Reader(root.take("transports", dict, {}), "transports")
    serial = ble = sim = None
    if "serial" in tr.table:
        s = _Reader(tr.take("serial", dict, {}), "transports.serial")
        port = s.take("port", str, None)
        if not port:
            raise ConfigError("transports.serial.port: missing (e.g. /dev/ttyACM0)")
        serial = SerialSettings(
            port=port,
            baud=s.number("baud", 115200, 1200, 4_000_000),
            freq_khz=s.number("freq_khz", 922_100, 920_900, 923_300),
            sf=s.number("sf", 9, 7, 12),
            bw_khz=s.number("bw_khz", 125, 125, 500),
            cr=s.number("cr", 5, 5, 8),
            preamble=s.number("preamble", 8, 6, 65535),
            power_dbm=s.number("power_dbm", 11, -9, 22),
            receiver=s.take("receiver", str, "serial"),
        )
        if (serial.freq_khz - 920_900) % 200:
            raise ConfigError(
                f"transports.serial.freq_khz: {serial.freq_khz} is not on the KR920 200 kHz raster"
            )
        if serial.bw_khz not in (125, 250, 500):
            raise ConfigError(f"transports.serial.bw_khz: {serial.bw_khz} must be 125, 250 or 500")
        s.finish()
    if "ble" in tr.table:
        b = _Reader(tr.take("ble", dict, {}), "transports.ble")
        mode = b.take("scanning_mode", str, "passive")
        if mode not in ("active", "passive"):
            raise ConfigError(f"transports.ble.scanning_mode: {mode!r} must be active or passive")
        ble = BleSettings(
            adapter=b.take("adapter", str, None),
            scanning_mode=mode,
            receiver=b.take("receiver", str, "ble"),
        )
        b.finish()
    if "sim" in tr.table:
        m = _Reader(tr.take("sim", dict, {}), "transports.sim")
        sim = SimSettings(receiver=m.take("receiver", str, "sim"))
        m.finish()
    tr.finish()

    mq = _Reader(root.take("mqtt", dict, {}), "mqtt")
    url = mq.take("url", str, None)
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"mqtt.url: {url!r} must look like mqtt://host[:port] or mqtts://…")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ConfigError(f"mqtt.url: {url!r} has a bad port") from None
    prefix = mq.take("topic_prefix", str, None)
    if prefix is not None and (not prefix or any(c in prefix for c in "#+") or prefix[-1] == "/"):
        raise ConfigError(f"mqtt.topic_prefix: {prefix!r} must be a plain topic without # + or /")
    mqtt = MqttSettings(
        url=url,
        client_id=mq.take("client_id", str, None),
        username=mq.take("username", str, None),
        password_file=mq.path("password_file", None, base),
        ca_file=mq.path("ca_file", None, base),
        cert_file=mq.path("cert_file", None, base),
        key_file=mq.path("key_file", None, base),
        topic_prefix=prefix,
        keepalive=mq.number("keepalive", 30, 5, 3600),
        max_inflight=mq.number("max_inflight", 100, 1, 10_000),
    )
    mq.finish()

    sv = _Reader(root.take("supervision", dict, {}), "supervision")
    supervision = SupervisionSettings(
        heartbeat_interval_s=sv.number("heartbeat_interval_s", 3600, 10, 7 * 86400),
        heartbeat_grace=sv.number("heartbeat_grace", 2.5, 1.0, 100.0, integer=False),
        check_every_s=sv.number("check_every_s", 30.0, 0.01, 3600, integer=False),
    )
    sv.finish()

    ru = _Reader(root.take("rules", dict, {}), "rules")
    rules = RulesSettings(
        strobe_radius_m=ru.number("strobe_radius_m", 150.0, 0, 10_000, integer=False),
        strobe_duration_s=ru.number("strobe_duration_s", 300, 1, 65535),
        alarm_timeout_s=ru.number("alarm_timeout_s", 3600, 60, 7 * 86400),
    )
    ru.finish()
    root.finish()
    return Settings(
        gateway_id=gateway_id,
        site=site,
        data_dir=data_dir,
        serial=serial,
        ble=ble,
        sim=sim,
        mqtt=mqtt,
        supervision=supervision,
        rules=rules,
        source=source,
    )


def load_settings(path: Path | None = None, *, data_dir: Path | None = None) -> Settings:
    """Settings from ``path`` (None = embedded defaults); ``data_dir`` overrides the file's."""
    if path is None:
        settings = parse_settings({}, base=Path.cwd())
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        settings = parse_settings(data, base=path.resolve().parent, source=path)
    if data_dir is not None:
        settings = _replace(settings, data_dir=data_dir)
    return settings


def _replace(settings: Settings, **changes: Any) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)
