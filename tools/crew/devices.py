"""The device registry for crews: add, list, show, retire, rekey, CSV import and export.

Everything goes through `gateway.registry.Registry` in the gateway's own database
(`gateway.db`, created 0600: it holds device keys), so a device registered here is the
device the gateway authenticates. Keys leave only through `show_device(with_key=True)`
and `export_csv(with_keys=True)`.

A CSV import is one transaction (`Registry.add_many`): every row is checked first, and
an error names the file, the line and the field; then all rows go in, or none.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gateway import db
from gateway.config import Settings
from gateway.registry import (
    KINDS,
    KOREA_BOUNDS,
    Device,
    Place,
    Registry,
    RegistryError,
    check_place,
    normalise_npn,
)
from tools.crew import CrewError, UsageError

CSV_COLUMNS = (
    "device_id",
    "kind",
    "name",
    "lat",
    "lon",
    "national_point_number",
    "plate_id",
    "trail",
    "cameras",
    "heartbeat_s",
    "key",
)
REQUIRED_COLUMNS = ("kind", "name", "lat", "lon")
NAME_MAX = 100
HEARTBEAT_RANGE = (10, 7 * 86400)  # as Registry checks it
_HEX_ID = re.compile(r"^(0x)?[0-9a-fA-F]{1,8}$")

Progress = Callable[[int, int], None]


@contextmanager
def open_registry(settings: Settings, *, create: bool = False) -> Iterator[Registry]:
    """The registry in the gateway's data folder; ``create`` makes the database if missing."""
    path = settings.database
    if not create and not path.exists():
        raise CrewError(
            f"no gateway database in {settings.data_dir}: register a device with "
            "`anshim device add`, or point --data-dir/--config at the gateway's data"
        )
    try:
        conn = db.connect(path)
    except OSError as exc:
        raise CrewError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        yield Registry(conn)
    finally:
        conn.close()


def parse_device_id(text: str) -> int:
    """A device id as the crew types it: 8 hex digits (``0a000001``), ``0x`` allowed."""
    cleaned = text.strip()
    if not _HEX_ID.match(cleaned):
        raise UsageError(f"device id {text!r} must be up to 8 hex digits, e.g. 0a000001")
    value = int(cleaned.lower().removeprefix("0x"), 16)
    if value == 0:
        raise UsageError(f"device id {text!r} must not be zero")
    return value


def _require(registry: Registry, device_id: int) -> Device:
    device = registry.get(device_id)
    if device is None:
        raise CrewError(f"no device {device_id:08x} in the registry")
    return device


def add_device(
    registry: Registry,
    *,
    kind: str,
    name: str,
    lat: float,
    lon: float,
    national_point_number: str | None = None,
    plate_id: str | None = None,
    trail: str | None = None,
    cameras: Sequence[str] = (),
    heartbeat_s: int | None = None,
    anywhere: bool = False,
) -> Device:
    """Register one device: a new id and a fresh 128-bit key (`secrets`)."""
    name = name.strip()
    if not name:
        raise UsageError("--name must not be empty")
    if len(name) > NAME_MAX:
        raise UsageError(f"--name is {len(name)} characters, at most {NAME_MAX}")
    place = Place(
        lat=lat,
        lon=lon,
        label=name,
        national_point_number=national_point_number or None,
        plate_id=plate_id or None,
        trail=trail or None,
    )
    try:
        return registry.add(
            kind=kind, place=place, cameras=cameras, heartbeat_s=heartbeat_s, anywhere=anywhere
        )
    except RegistryError as exc:
        raise UsageError(str(exc)) from None


def device_summary(registry: Registry, device: Device, *, with_key: bool = False) -> dict[str, Any]:
    """A device as shown to the crew: registry fields plus what the gateway last saw."""
    out = device.as_dict(with_key=with_key)
    state = registry.state(device.device_id) or {}
    out["name"] = device.name
    out["online"] = bool(state.get("online", 1)) if state.get("last_seen") else None
    out["last_seen"] = state.get("last_seen")
    for key in ("rssi", "snr", "receiver", "battery_mv", "fw_version", "faults"):
        out[key] = state.get(key)
    out["retired_at"] = device.retired_at
    return out


def list_devices(
    registry: Registry,
    *,
    kind: str | None = None,
    offline: bool = False,
    include_retired: bool = False,
) -> list[dict[str, Any]]:
    devices = registry.devices(kind=kind, include_retired=include_retired)
    if offline:
        down = registry.offline_ids()
        devices = [d for d in devices if d.device_id in down]
    return [device_summary(registry, d) for d in devices]


def show_device(registry: Registry, device_id: int, *, with_key: bool = False) -> dict[str, Any]:
    device = _require(registry, device_id)
    out = device_summary(registry, device, with_key=with_key)
    out["previous_keys"] = len(registry.previous_keys(device_id))
    return out


def retire_device(registry: Registry, device_id: int) -> Device:
    device = _require(registry, device_id)
    if device.retired_at is not None:
        raise CrewError(f"device {device_id:08x} is already retired")
    return registry.retire(device_id)


def rekey_device(registry: Registry, device_id: int) -> Device:
    device = _require(registry, device_id)
    if device.retired_at is not None:
        raise CrewError(f"device {device_id:08x} is retired: nothing to rekey")
    return registry.rekey(device_id)


# --- CSV -------------------------------------------------------------------------------


@dataclass
class CsvRow:
    line: int
    row: dict[str, Any] = field(default_factory=dict)


class CsvProblem(UsageError):
    """A bad CSV value: names the file, the line and the field."""

    def __init__(self, path: Path, line: int, column: str | None, message: str) -> None:
        where = f"{path.name} line {line}" + (f", field {column}" if column else "")
        super().__init__(f"{where}: {message}")
        self.line = line
        self.column = column


def _number(value: str, path: Path, line: int, column: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CsvProblem(path, line, column, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise CsvProblem(path, line, column, f"{value!r} is not a finite number")
    return number


def _parse_row(
    raw: dict[str, str], path: Path, line: int, *, anywhere: bool, seen: dict[int, int]
) -> dict[str, Any]:
    def get(column: str) -> str:
        return (raw.get(column) or "").strip()

    kind = get("kind")
    if kind not in KINDS:
        raise CsvProblem(path, line, "kind", f"{kind!r} must be one of {', '.join(KINDS)}")
    name = get("name")
    if not name:
        raise CsvProblem(path, line, "name", "must not be empty")
    if len(name) > NAME_MAX:
        raise CsvProblem(path, line, "name", f"{len(name)} characters, at most {NAME_MAX}")
    lat = _number(get("lat"), path, line, "lat")
    lon = _number(get("lon"), path, line, "lon")
    lat_lo, lat_hi, lon_lo, lon_hi = KOREA_BOUNDS
    if not -90 <= lat <= 90:
        raise CsvProblem(path, line, "lat", f"{lat} is not a latitude")
    if not -180 <= lon <= 180:
        raise CsvProblem(path, line, "lon", f"{lon} is not a longitude")
    if not anywhere and not lat_lo <= lat <= lat_hi:
        raise CsvProblem(path, line, "lat", f"{lat} is outside South Korea (use --anywhere)")
    if not anywhere and not lon_lo <= lon <= lon_hi:
        raise CsvProblem(path, line, "lon", f"{lon} is outside South Korea (use --anywhere)")
    npn = get("national_point_number") or None
    if npn is not None:
        try:
            npn = normalise_npn(npn)
        except RegistryError as exc:
            raise CsvProblem(path, line, "national_point_number", str(exc)) from None
    place = Place(
        lat=lat,
        lon=lon,
        label=name,
        national_point_number=npn,
        plate_id=get("plate_id") or None,
        trail=get("trail") or None,
    )
    check_place(place, anywhere=anywhere)  # the registry's own check, for anything missed
    row: dict[str, Any] = {
        "kind": kind,
        "place": place,
        "cameras": [c.strip() for c in get("cameras").split(";") if c.strip()],
    }
    heartbeat = get("heartbeat_s")
    if heartbeat:
        try:
            hb = int(heartbeat)
        except ValueError:
            raise CsvProblem(
                path, line, "heartbeat_s", f"{heartbeat!r} is not a whole number"
            ) from None
        lo, hi = HEARTBEAT_RANGE
        if not lo <= hb <= hi:
            raise CsvProblem(path, line, "heartbeat_s", f"{hb} must be between {lo} and {hi} s")
        row["heartbeat_s"] = hb
    ident = get("device_id")
    if ident:
        try:
            device_id = parse_device_id(ident)
        except UsageError as exc:
            raise CsvProblem(path, line, "device_id", str(exc)) from None
        if device_id in seen:
            raise CsvProblem(
                path, line, "device_id", f"{device_id:08x} is also on line {seen[device_id]}"
            )
        seen[device_id] = line
        row["device_id"] = device_id
    key = get("key")
    if key:
        try:
            key_bytes = bytes.fromhex(key)
        except ValueError:
            raise CsvProblem(path, line, "key", "is not hex") from None
        if len(key_bytes) != 16:
            raise CsvProblem(path, line, "key", f"must be 32 hex digits, got {len(key)}")
        row["key"] = key_bytes
    return row


def read_csv(path: Path, *, anywhere: bool = False) -> list[CsvRow]:
    """Parse and check every row (nothing is written); raise `CsvProblem` at the first bad one."""
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    rows: list[CsvRow] = []
    seen: dict[int, int] = {}
    with f:
        reader = csv.DictReader(f)
        try:
            header = reader.fieldnames
        except (csv.Error, UnicodeDecodeError) as exc:
            raise CsvProblem(path, 1, None, f"not a CSV file ({exc})") from None
        if not header:
            raise CsvProblem(path, 1, None, "empty file: expected a header row")
        names = [h.strip() for h in header]
        reader.fieldnames = names
        for name in names:
            if name not in CSV_COLUMNS:
                raise CsvProblem(
                    path, 1, name, f"unknown column (columns: {', '.join(CSV_COLUMNS)})"
                )
        for name in REQUIRED_COLUMNS:
            if name not in names:
                raise CsvProblem(path, 1, name, "required column is missing")
        start = reader.line_num + 1
        try:
            for raw in reader:
                line = start
                start = reader.line_num + 1
                if None in raw:
                    raise CsvProblem(path, line, None, "more values than columns")
                if not any((v or "").strip() for v in raw.values()):
                    continue  # blank line
                rows.append(CsvRow(line, _parse_row(raw, path, line, anywhere=anywhere, seen=seen)))
        except csv.Error as exc:
            raise CsvProblem(path, reader.line_num, None, str(exc)) from None
        except UnicodeDecodeError:
            raise CsvProblem(path, reader.line_num + 1, None, "not UTF-8 text") from None
    return rows


@dataclass(frozen=True)
class ImportResult:
    count: int
    device_ids: list[int]


def import_csv(
    registry: Registry,
    path: Path,
    *,
    anywhere: bool = False,
    listen_only: bool = False,
    progress: Progress | None = None,
) -> ImportResult:
    """Import every row of ``path`` in one transaction: all of them, or none.

    ``listen_only``: this gateway hears these devices but another (their home gateway,
    whose export with keys this file is) answers them."""
    rows = read_csv(path, anywhere=anywhere)
    for r in rows:
        device_id = r.row.get("device_id")
        if device_id is not None and registry.get(device_id) is not None:
            raise CsvProblem(path, r.line, "device_id", f"{device_id:08x} is already registered")
    total = len(rows)
    current = CsvRow(0)

    def feed() -> Iterator[dict[str, Any]]:
        for i, r in enumerate(rows):
            current.line = r.line
            yield {**r.row, "listen_only": True} if listen_only else r.row
            if progress is not None and (i % 50 == 49 or i == total - 1):
                progress(i + 1, total)

    if progress is not None:
        progress(0, total)
    added: list[Device] = []
    try:
        count = registry.add_many(feed(), anywhere=anywhere, added=added)
    except RegistryError as exc:
        raise CsvProblem(path, current.line, None, str(exc)) from None
    ids = [d.device_id for d in added]
    return ImportResult(count, sorted(ids))


def export_csv(
    registry: Registry, out: TextIO, *, with_keys: bool = False, include_retired: bool = False
) -> int:
    """Write the registry as CSV (the import format); keys only with ``with_keys``."""
    columns = [c for c in CSV_COLUMNS if with_keys or c != "key"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    devices = registry.devices(include_retired=include_retired)
    for d in devices:
        row = {
            "device_id": d.hex_id,
            "kind": d.kind,
            "name": d.place.label,
            "lat": repr(d.place.lat),
            "lon": repr(d.place.lon),
            "national_point_number": d.place.national_point_number or "",
            "plate_id": d.place.plate_id or "",
            "trail": d.place.trail or "",
            "cameras": ";".join(d.cameras),
            "heartbeat_s": "" if d.heartbeat_s is None else str(d.heartbeat_s),
        }
        if with_keys:
            row["key"] = d.key.hex()
        writer.writerow(row)
    return len(devices)
