"""`anshim device …`: the device registry in the gateway's database.

add · list · show · retire · rekey · import · export. Keys are printed only with
``--show-key`` (``device add``, ``show``, ``rekey``) or ``export --with-keys``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.registry import KINDS, Device, Registry
from tools.anshim.common import CliError, print_json
from tools.anshim.gateway import add_config_options, settings_from
from tools.anshim.progress import ProgressBar
from tools.crew import CrewError, UsageError
from tools.crew import devices as dv


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    device = subparsers.add_parser("device", help="register and manage devices")
    verbs = device.add_subparsers(dest="verb", metavar="<verb>", required=True)

    add = verbs.add_parser("add", help="register a device: a new id and key")
    add_config_options(add)
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--name", required=True, help="place label, e.g. '형제봉 입구 비상벨'")
    add.add_argument("--lat", required=True, type=float, help="degrees north (WGS84)")
    add.add_argument("--lon", required=True, type=float, help="degrees east (WGS84)")
    add.add_argument(
        "--national-point-number", metavar="NPN", help="국가지점번호, '다사 5678 1234'"
    )
    add.add_argument("--plate-id", help="the id on the device's plate")
    add.add_argument("--trail", help="trail or path name")
    add.add_argument(
        "--camera", dest="cameras", action="extend", nargs="+", default=[], metavar="ID"
    )
    add.add_argument("--heartbeat-s", type=int, metavar="S", help="heartbeat interval")
    add.add_argument("--anywhere", action="store_true", help="allow places outside Korea")
    add.add_argument("--show-key", action="store_true", help="also print the new key")
    add.add_argument("--json", action="store_true")
    add.set_defaults(handler=add_command)

    ls = verbs.add_parser("list", help="registered devices")
    add_config_options(ls)
    ls.add_argument("--kind", choices=KINDS)
    ls.add_argument("--offline", action="store_true", help="only devices the gateway marks offline")
    ls.add_argument("--all", action="store_true", help="include retired devices")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=list_command)

    show = verbs.add_parser("show", help="one device in full")
    add_config_options(show)
    show.add_argument("device_id", metavar="ID")
    show.add_argument("--show-key", action="store_true")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=show_command)

    retire = verbs.add_parser("retire", help="retire a device: the gateway stops accepting it")
    add_config_options(retire)
    retire.add_argument("device_id", metavar="ID")
    retire.add_argument("--json", action="store_true")
    retire.set_defaults(handler=retire_command)

    rekey = verbs.add_parser("rekey", help="a fresh key (re-provision the device afterwards)")
    add_config_options(rekey)
    rekey.add_argument("device_id", metavar="ID")
    rekey.add_argument("--show-key", action="store_true")
    rekey.add_argument("--json", action="store_true")
    rekey.set_defaults(handler=rekey_command)

    imp = verbs.add_parser("import", help="register devices from a CSV file (all or nothing)")
    add_config_options(imp)
    imp.add_argument("csv", type=Path, metavar="devices.csv")
    imp.add_argument("--anywhere", action="store_true", help="allow places outside Korea")
    imp.add_argument(
        "--listen-only",
        action="store_true",
        help="this gateway hears these devices, their home gateway answers them "
        "(import the home gateway's `export --with-keys`)",
    )
    imp.add_argument("--json", action="store_true")
    imp.set_defaults(handler=import_command)

    exp = verbs.add_parser("export", help="the registry as CSV (the import format)")
    add_config_options(exp)
    exp.add_argument("--with-keys", action="store_true", help="include device keys")
    exp.add_argument("--all", action="store_true", help="include retired devices")
    exp.add_argument("--out", type=Path, metavar="FILE", help="write here (0600), not stdout")
    exp.set_defaults(handler=export_command)


@contextmanager
def _registry(args: argparse.Namespace, *, create: bool = False) -> Iterator[Registry]:
    settings = settings_from(args)
    try:
        with dv.open_registry(settings, create=create) as registry:
            yield registry
    except UsageError as exc:
        raise CliError(str(exc), exit_code=2) from None
    except CrewError as exc:
        raise CliError(str(exc)) from None


def _device_id(text: str) -> int:
    try:
        return dv.parse_device_id(text)
    except UsageError as exc:
        raise CliError(str(exc), exit_code=2) from None


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def add_command(args: argparse.Namespace) -> int:
    with _registry(args, create=True) as registry:
        device = dv.add_device(
            registry,
            kind=args.kind,
            name=args.name,
            lat=args.lat,
            lon=args.lon,
            national_point_number=args.national_point_number,
            plate_id=args.plate_id,
            trail=args.trail,
            cameras=args.cameras,
            heartbeat_s=args.heartbeat_s,
            anywhere=args.anywhere,
        )
    if args.json:
        print_json(device.as_dict(with_key=args.show_key))
    else:
        print(device.hex_id)
        if args.show_key:
            print(f"key {device.key.hex()}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    with _registry(args) as registry:
        rows = dv.list_devices(
            registry, kind=args.kind, offline=args.offline, include_retired=args.all
        )
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no devices")
        return 0
    print(f"{'ID':<9} {'KIND':<6} {'STATE':<8} {'LAST SEEN':<16} {'LAT':>9} {'LON':>10}  NAME")
    for r in rows:
        state = "retired" if r["retired"] else _state(r["online"])
        print(
            f"{r['device_id']:<9} {r['kind']:<6} {state:<8} {_when(r['last_seen']):<16}"
            f" {r['place']['lat']:>9.5f} {r['place']['lon']:>10.5f}  {r['name']}"
        )
    return 0


def _state(online: bool | None) -> str:
    return "never" if online is None else ("online" if online else "offline")


def show_command(args: argparse.Namespace) -> int:
    device_id = _device_id(args.device_id)
    with _registry(args) as registry:
        try:
            info = dv.show_device(registry, device_id, with_key=args.show_key)
        except CrewError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json(info)
        return 0
    place = info["place"]
    lines: list[tuple[str, Any]] = [
        ("device", info["device_id"]),
        ("kind", info["kind"]),
        ("name", info["name"]),
        ("place", f"{place['lat']:.6f}, {place['lon']:.6f}"),
        ("national point number", place["national_point_number"] or "-"),
        ("plate", place["plate_id"] or "-"),
        ("trail", place["trail"] or "-"),
        ("cameras", ", ".join(info["cameras"]) or "-"),
        ("heartbeat", f"{info['heartbeat_s']} s" if info["heartbeat_s"] else "gateway default"),
        ("registered", _when(info["created_at"])),
        ("state", "retired" if info["retired"] else _state(info["online"])),
        ("last seen", _when(info["last_seen"])),
    ]
    if info["rssi"] is not None:
        lines.append(("signal", f"{info['rssi']} dBm, SNR {info['snr']} dB via {info['receiver']}"))
    if info["battery_mv"] is not None:
        lines.append(("battery", f"{info['battery_mv']} mV"))
    if args.show_key:
        lines.append(("key", info["key"]))
    for label, value in lines:
        print(f"{label + ':':<24}{value}")
    return 0


def retire_command(args: argparse.Namespace) -> int:
    device_id = _device_id(args.device_id)
    with _registry(args) as registry:
        try:
            device = dv.retire_device(registry, device_id)
        except CrewError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json(device.as_dict())
    else:
        print(f"retired {device.hex_id} ({device.name}); the gateway no longer accepts it")
    return 0


def rekey_command(args: argparse.Namespace) -> int:
    device_id = _device_id(args.device_id)
    with _registry(args) as registry:
        try:
            device = dv.rekey_device(registry, device_id)
        except CrewError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json(device.as_dict(with_key=args.show_key))
        return 0
    print(f"new key for {device.hex_id}; provision the device with it now:")
    print(f"  anshim provision serial --port PORT --device {device.hex_id}")
    if args.show_key:
        print(f"key {device.key.hex()}")
    return 0


def import_command(args: argparse.Namespace) -> int:
    with _registry(args, create=True) as registry:
        bar = ProgressBar(f"importing {args.csv.name}")
        try:
            with bar:
                result = dv.import_csv(
                    registry,
                    args.csv,
                    anywhere=args.anywhere,
                    listen_only=args.listen_only,
                    progress=bar,
                )
        except UsageError as exc:
            raise CliError(f"{exc}; nothing was imported", exit_code=1) from None
        devices = [registry.require(i) for i in result.device_ids]
    if args.json:
        print_json(
            {"imported": result.count, "device_ids": [f"{i:08x}" for i in result.device_ids]}
        )
    else:
        print(f"imported {result.count} devices from {args.csv}{_kinds(devices)}")
    return 0


def _kinds(devices: list[Device]) -> str:
    counts: dict[str, int] = {}
    for d in devices:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    return f" ({', '.join(f'{n} {k}' for k, n in sorted(counts.items()))})" if counts else ""


def export_command(args: argparse.Namespace) -> int:
    with _registry(args) as registry:
        if args.out is None:
            count = dv.export_csv(
                registry, sys.stdout, with_keys=args.with_keys, include_retired=args.all
            )
        else:
            try:
                fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:
                raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
            os.fchmod(fd, 0o600)
            with open(fd, "w", encoding="utf-8", newline="") as f:
                count = dv.export_csv(
                    registry, f, with_keys=args.with_keys, include_retired=args.all
                )
            print(f"exported {count} devices to {args.out}", file=sys.stderr)
    return 0
