"""The device registry: ids, keys, places and nearest cameras, in the gateway's SQLite.

A small API that the gateway and the crew CLI share. Keys never leave it except through
`key_of` (the gateway's MIC check) and explicit exports; `Device.__repr__` hides them.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

KINDS = ("bell", "light", "bridge")
# South Korea's extent, with its islands (Dokdo 131.87 E, Marado 33.11 N).
KOREA_BOUNDS = (33.0, 38.7, 124.5, 132.0)
# 국가지점번호: two Hangul grid letters, then 4 + 4 digits (e.g. "다사 5678 1234").
_NPN = re.compile(r"^[가-힣]{2} ?[0-9]{4} ?[0-9]{4}$")  # ASCII digits only
_NPN_LETTERS = "가나다라마바사아자차카타파하"


class RegistryError(ValueError):
    """A registry problem, named: which device, which field, which value."""


@dataclass(frozen=True, kw_only=True)
class Place:
    lat: float
    lon: float
    label: str = ""
    national_point_number: str | None = None
    plate_id: str | None = None
    trail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "lat": self.lat,
            "lon": self.lon,
            "label": self.label,
            "national_point_number": self.national_point_number,
            "plate_id": self.plate_id,
            "trail": self.trail,
        }


@dataclass(frozen=True, kw_only=True)
class Device:
    device_id: int
    kind: str
    place: Place
    key: bytes = field(repr=False)
    cameras: tuple[str, ...] = ()
    heartbeat_s: int | None = None
    created_at: float = 0.0
    retired_at: float | None = None
    # Heard here, answered by its home gateway: where a device is in range of several
    # gateways, only one sends it downlinks (ACKs, commands), so their transmissions do
    # not collide at the device and its downlink counter has one owner.
    listen_only: bool = False

    @property
    def hex_id(self) -> str:
        return f"{self.device_id:08x}"

    @property
    def name(self) -> str:
        return self.place.label

    def as_dict(self, *, with_key: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device_id": self.hex_id,
            "kind": self.kind,
            "place": self.place.as_dict(),
            "cameras": list(self.cameras),
            "heartbeat_s": self.heartbeat_s,
            "listen_only": self.listen_only,
            "created_at": self.created_at,
            "retired": self.retired_at is not None,
        }
        if with_key:
            out["key"] = self.key.hex()
        return out


def normalise_npn(text: str) -> str:
    """Check and normalise a national point number (국가지점번호) to "다사 5678 1234"."""
    compact = text.strip()
    if not _NPN.match(compact):
        raise RegistryError(
            f"national point number {text!r} must be two Hangul letters and 4+4 digits, "
            "e.g. '다사 5678 1234'"
        )
    digits = compact.replace(" ", "")
    letters, east, north = digits[:2], digits[2:6], digits[6:10]
    if any(ch not in _NPN_LETTERS for ch in letters):
        raise RegistryError(
            f"national point number {text!r}: grid letters must be among {_NPN_LETTERS}"
        )
    return f"{letters} {east} {north}"


def check_place(place: Place, *, anywhere: bool = False) -> Place:
    if not (-90 <= place.lat <= 90 and -180 <= place.lon <= 180):
        raise RegistryError(f"coordinates {place.lat}, {place.lon} are not on Earth")
    lat_lo, lat_hi, lon_lo, lon_hi = KOREA_BOUNDS
    if not anywhere and not (lat_lo <= place.lat <= lat_hi and lon_lo <= place.lon <= lon_hi):
        raise RegistryError(
            f"coordinates {place.lat}, {place.lon} are outside South Korea (use --anywhere)"
        )
    if place.national_point_number:
        place = replace(place, national_point_number=normalise_npn(place.national_point_number))
    return place


def distance_m(a: Place, b: Place) -> float:
    """Great-circle distance (haversine, mean Earth radius)."""
    r = 6_371_008.8
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(h)))


class Registry:
    """Devices in the gateway's database (see `gateway.db`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # --- reading ---

    def get(self, device_id: int) -> Device | None:
        row = self.conn.execute(
            "SELECT * FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        return None if row is None else _device(row, self.conn)

    def require(self, device_id: int) -> Device:
        device = self.get(device_id)
        if device is None:
            raise RegistryError(f"no device {device_id:08x}")
        return device

    def devices(self, *, kind: str | None = None, include_retired: bool = False) -> list[Device]:
        sql = "SELECT * FROM devices"
        where, args = [], []
        if kind:
            where.append("kind = ?")
            args.append(kind)
        if not include_retired:
            where.append("retired_at IS NULL")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_device(r, self.conn) for r in self.conn.execute(sql + " ORDER BY device_id", args)]

    def previous_keys(self, device_id: int) -> list[bytes]:
        """Keys `rekey` replaced, newest first: a device not yet re-provisioned holds one."""
        try:
            rows = self.conn.execute(
                "SELECT key FROM replaced_keys WHERE device_id = ? ORDER BY replaced_at DESC",
                (device_id,),
            ).fetchall()
        except sqlite3.OperationalError:  # no rekey ever happened in this database
            return []
        return [bytes(r[0]) for r in rows]

    def state(self, device_id: int) -> dict[str, Any] | None:
        """The gateway's view of the device (last seen, signal, battery, online), or None."""
        cur = self.conn.execute("SELECT * FROM device_state WHERE device_id = ?", (device_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return dict(zip([c[0] for c in cur.description], row, strict=True))

    def offline_ids(self) -> set[int]:
        """Devices the gateway has marked offline (no frame within their heartbeat grace)."""
        return {
            r[0] for r in self.conn.execute("SELECT device_id FROM device_state WHERE online = 0")
        }

    def active_keys(self) -> Iterator[tuple[int, bytes]]:
        yield from self.conn.execute("SELECT device_id, key FROM devices WHERE retired_at IS NULL")

    def nearby(self, place: Place, radius_m: float, *, kind: str) -> list[tuple[Device, float]]:
        out = []
        for device in self.devices(kind=kind):
            d = distance_m(place, device.place)
            if d <= radius_m:
                out.append((device, d))
        return sorted(out, key=lambda pair: pair[1])

    # --- writing (each call is one transaction) ---

    def add(self, **fields: Any) -> Device:
        """Register one device (fields as `_new_device`); one transaction."""
        device = self._new_device(**fields)
        with _transaction(self.conn):
            self._insert(device)
        return device

    def add_many(
        self,
        rows: Iterable[dict[str, Any]],
        *,
        anywhere: bool = False,
        added: list[Device] | None = None,
    ) -> int:
        """Insert many devices in one transaction: all or nothing.

        ``added``, if given, receives the new devices (with their assigned ids) once the
        transaction has committed.
        """
        new: list[Device] = []
        with _transaction(self.conn):
            for row in rows:
                device = self._new_device(anywhere=anywhere, **row)
                self._insert(device)
                new.append(device)
        if added is not None:
            added.extend(new)
        return len(new)

    def retire(self, device_id: int) -> Device:
        self.require(device_id)
        with _transaction(self.conn):
            self.conn.execute(
                "UPDATE devices SET retired_at = ? WHERE device_id = ? AND retired_at IS NULL",
                (time.time(), device_id),
            )
        return self.require(device_id)

    def rekey(self, device_id: int) -> Device:
        """A fresh key; the counters start again from zero (the device is re-provisioned).

        The replaced key is kept (`previous_keys`): re-provisioning the device needs proof
        of the key it still holds (firmware/PROVISIONING.md).
        """
        old = self.require(device_id)
        with _transaction(self.conn):
            self.conn.execute(
                "CREATE TABLE IF NOT EXISTS replaced_keys (device_id INTEGER NOT NULL,"
                " key BLOB NOT NULL, replaced_at REAL NOT NULL)"
            )
            self.conn.execute(
                "INSERT INTO replaced_keys (device_id, key, replaced_at) VALUES (?, ?, ?)",
                (device_id, old.key, time.time()),
            )
            self.conn.execute(
                "UPDATE devices SET key = ? WHERE device_id = ?",
                (secrets.token_bytes(16), device_id),
            )
            self.conn.execute(
                "UPDATE device_state SET up_counter = NULL, down_counter = 0 WHERE device_id = ?",
                (device_id,),
            )
        return self.require(device_id)

    def _new_device(
        self,
        *,
        kind: str,
        place: Place,
        cameras: Iterable[str] = (),
        heartbeat_s: int | None = None,
        device_id: int | None = None,
        key: bytes | None = None,
        anywhere: bool = False,
        listen_only: bool = False,
    ) -> Device:
        if kind not in KINDS:
            raise RegistryError(f"kind {kind!r} must be one of {', '.join(KINDS)}")
        place = check_place(place, anywhere=anywhere)
        if device_id is None:
            device_id = self._free_id(kind)
        if not 0 < device_id <= 0xFFFFFFFF:
            raise RegistryError(f"device id {device_id} is out of range")
        if key is None:
            key = secrets.token_bytes(16)
        if len(key) != 16:
            raise RegistryError(f"device {device_id:08x}: key must be 16 bytes, got {len(key)}")
        cams = tuple(str(c).strip() for c in cameras if str(c).strip())
        if heartbeat_s is not None and not 10 <= heartbeat_s <= 7 * 86400:
            raise RegistryError(f"heartbeat {heartbeat_s} s must be between 10 s and 7 days")
        return Device(
            device_id=device_id,
            kind=kind,
            place=place,
            key=key,
            cameras=cams,
            heartbeat_s=heartbeat_s,
            created_at=time.time(),
            listen_only=bool(listen_only),
        )

    def _free_id(self, kind: str) -> int:
        # Ids carry the kind in the top byte (0a bells, 0b lights, 0c bridges) for readability.
        top = {"bell": 0x0A, "light": 0x0B, "bridge": 0x0C}[kind] << 24
        row = self.conn.execute(
            "SELECT MAX(device_id) FROM devices WHERE device_id BETWEEN ? AND ?",
            (top, top | 0xFFFFFF),
        ).fetchone()
        return (row[0] or top) + 1

    def _insert(self, d: Device) -> None:
        try:
            self.conn.execute(
                "INSERT INTO devices (device_id, kind, name, key, lat, lon, national_point_number,"
                " plate_id, trail, cameras, heartbeat_s, created_at, listen_only) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d.device_id,
                    d.kind,
                    d.place.label,
                    d.key,
                    d.place.lat,
                    d.place.lon,
                    d.place.national_point_number,
                    d.place.plate_id,
                    d.place.trail,
                    json.dumps(list(d.cameras)),
                    d.heartbeat_s,
                    d.created_at,
                    int(d.listen_only),
                ),
            )
            self.conn.execute(
                "INSERT OR IGNORE INTO device_state (device_id) VALUES (?)", (d.device_id,)
            )
        except sqlite3.IntegrityError:
            raise RegistryError(f"device {d.device_id:08x} already exists") from None


class _transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def _device(row: tuple[Any, ...], conn: sqlite3.Connection) -> Device:
    names = [c[0] for c in conn.execute("SELECT * FROM devices LIMIT 0").description]
    r = dict(zip(names, row, strict=True))
    return Device(
        device_id=r["device_id"],
        kind=r["kind"],
        key=bytes(r["key"]),
        place=Place(
            lat=r["lat"],
            lon=r["lon"],
            label=r["name"],
            national_point_number=r["national_point_number"],
            plate_id=r["plate_id"],
            trail=r["trail"],
        ),
        cameras=tuple(json.loads(r["cameras"])),
        heartbeat_s=r["heartbeat_s"],
        created_at=r["created_at"],
        retired_at=r["retired_at"],
        listen_only=bool(r.get("listen_only", 0)),
    )
