"""`anshim firmware …`: build a role for a board, cache its packages, flash a board."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.anshim.common import CliError, print_json
from tools.anshim.gateway import add_config_options, settings_from
from tools.anshim.progress import ProgressBar
from tools.crew import CrewError, UsageError
from tools.crew import devices as dv
from tools.crew import firmware as fw
from tools.crew import mip as miplib
from tools.crew.devconfig import device_config


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    noun = subparsers.add_parser("firmware", help="build, cache packages, flash boards")
    verbs = noun.add_subparsers(dest="verb", metavar="<verb>", required=True)

    build = verbs.add_parser("build", help="compile a role for a board into a folder")
    _role_board(build)
    build.add_argument("--device", metavar="ID", help="include this device's config (key!)")
    build.add_argument("--out", type=Path, required=True, metavar="DIR")
    add_config_options(build)
    build.add_argument("--json", action="store_true")
    build.set_defaults(handler=build_command)

    fetch = verbs.add_parser("fetch-deps", help="cache the device packages for offline flashing")
    fetch.add_argument("--out", type=Path, required=True, metavar="CACHE")
    fetch.add_argument("--index", default=miplib.DEFAULT_INDEX, metavar="URL")
    fetch.add_argument(
        "--role", choices=fw.ROLES, action="append", help="only this role's packages"
    )
    fetch.add_argument(
        "--package", action="append", metavar="NAME", help="a package instead of the roles'"
    )
    fetch.add_argument("--json", action="store_true")
    fetch.set_defaults(handler=fetch_command)

    flash = verbs.add_parser("flash", help="install packages, firmware and config on a board")
    flash.add_argument("--port", required=True, help="serial port, or 'auto' (by USB id)")
    _role_board(flash)
    flash.add_argument("--device", metavar="ID", help="also write this device's config")
    flash.add_argument("--index", metavar="URL|CACHE", help=f"default {miplib.DEFAULT_INDEX}")
    flash.add_argument("--no-deps", action="store_true", help="skip the package install")
    flash.add_argument("--no-reset", action="store_true", help="leave the board in the REPL")
    add_config_options(flash)
    flash.add_argument("--json", action="store_true")
    flash.set_defaults(handler=flash_command)


def _role_board(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", required=True, choices=fw.ROLES)
    p.add_argument("--board", required=True, choices=fw.BOARD_NAMES)


def _fail(exc: CrewError) -> CliError:
    return CliError(str(exc), exit_code=2 if isinstance(exc, UsageError) else 1)


def _config_for(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.device:
        return None
    try:
        device_id = dv.parse_device_id(args.device)
        settings = settings_from(args)
        with dv.open_registry(settings) as registry:
            device = registry.get(device_id)
            if device is None:
                raise CrewError(f"no device {device_id:08x} in the registry")
            if device.kind != args.role:
                raise UsageError(f"device {device.hex_id} is a {device.kind}, not a {args.role}")
            return device_config(device, settings)
    except CrewError as exc:
        raise _fail(exc) from None


def build_command(args: argparse.Namespace) -> int:
    config = _config_for(args)
    try:
        with ProgressBar("compiling") as bar:
            result = fw.build(args.role, args.board, args.out, config=config, progress=bar)
    except CrewError as exc:
        raise _fail(exc) from None
    if args.json:
        print_json(result.as_dict())
        return 0
    print(f"{result.role} for {result.board}, version {result.version}, in {result.out}")
    for f in result.files:
        print(f"  {f.size:>7}  {f.path}")
    print(f"  {result.total:>7}  total")
    if result.config:
        print(f"  config of {result.device_id} in {result.config} (keep this folder private)")
    return 0


def fetch_command(args: argparse.Namespace) -> int:
    if args.package:
        names = list(dict.fromkeys(args.package))
    else:
        roles = args.role or list(fw.ROLES)
        names = list(dict.fromkeys(n for r in roles for n in fw.DEPENDENCIES[r]))
    try:
        with ProgressBar("fetching") as bar:
            result = miplib.fetch_deps(args.index, args.out, names, progress=bar)
    except CrewError as exc:
        raise _fail(exc) from None
    if args.json:
        print_json(
            {
                "out": str(result.out),
                "packages": {p.name: p.version for p in result.packages},
                "files": result.files,
                "bytes": result.bytes,
            }
        )
        return 0
    print(f"cached {len(result.packages)} packages, {result.files} files, {result.bytes} bytes")
    print(f"  {', '.join(f'{p.name} {p.version}' for p in result.packages)}")
    print(f"flash offline with: --index {result.out}")
    return 0


def flash_command(args: argparse.Namespace) -> int:
    from tools.crew.flash import flash

    config = _config_for(args)
    try:
        port = fw.find_port(args.board) if args.port == "auto" else args.port
        with tempfile.TemporaryDirectory(prefix="anshim-build-") as tmp:
            out = Path(tmp) / "build"
            with ProgressBar("compiling") as bar:
                build = fw.build(args.role, args.board, out, config=config, progress=bar)
            say = None if args.json else (lambda text: print(text, file=sys.stderr))
            with ProgressBar("flashing") as bar:
                result = flash(
                    port,
                    build,
                    index=args.index,
                    deps=() if args.no_deps else None,
                    progress=bar,
                    say=say,
                    reset=not args.no_reset,
                )
    except CrewError as exc:
        raise _fail(exc) from None
    if config is not None:
        from tools.crew.provisioning import key_check

        expected = key_check(bytes.fromhex(config["key"]))
        if (result.config_device, result.config_key_check) != (config["device_id"], expected):
            raise CliError(
                f"the board holds config {result.config_device}/{result.config_key_check}, "
                f"expected {config['device_id']}/{expected}"
            )
    if args.json:
        print_json(result.as_dict())
        return 0
    new = sum(1 for _, _, w in result.files if w) + sum(1 for d in result.deps if d.written)
    print(
        f"flashed {build.role} ({build.version}) to {port}: {len(result.files)} files, "
        f"{len(result.deps)} package files, {new} written, {result.verified} verified"
    )
    if result.config_device:
        print(f"  config: device {result.config_device}, key check {result.config_key_check}")
    return 0
