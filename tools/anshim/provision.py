"""`anshim provision serial|ble`: write a registered device's config without reflashing.

The device must be in provisioning mode (its button held while it powers on); the
protocol is firmware/PROVISIONING.md. An already provisioned device is reconfigured only
with proof of the key it holds, found in the registry (also after `device rekey`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tools.anshim.common import CliError, print_json
from tools.anshim.gateway import add_config_options, settings_from
from tools.crew import CrewError, UsageError
from tools.crew import devices as dv
from tools.crew import provisioning as pv
from tools.crew.firmware import BOARD_NAMES, find_port


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    noun = subparsers.add_parser("provision", help="write a device's config over USB or BLE")
    verbs = noun.add_subparsers(dest="verb", metavar="<verb>", required=True)
    serial = verbs.add_parser("serial", help="over the USB serial port")
    serial.add_argument("--port", required=True, help="serial port, or 'auto' with --board")
    serial.add_argument("--board", choices=BOARD_NAMES, help="for --port auto")
    ble = verbs.add_parser("ble", help="over BLE (the device's provisioning GATT service)")
    ble.add_argument("--address", required=True, help="the device's BLE address")
    for p in (serial, ble):
        p.add_argument("--device", required=True, metavar="ID", help="the registered device")
        add_config_options(p)
        p.add_argument(
            "--factory-reset",
            action="store_true",
            help="wipe the device first (hold its button down meanwhile)",
        )
        p.add_argument("--stay", action="store_true", help="stay in provisioning mode after")
        p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="per message")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=provision_command)


def link_for(args: argparse.Namespace) -> pv.Link:
    if getattr(args, "address", None):
        return pv.BleLink(args.address)
    port = args.port
    if port == "auto":
        if not args.board:
            raise UsageError("--port auto needs --board to know which USB ids to look for")
        port = find_port(args.board)
    return pv.SerialLink(port)


def provision_command(args: argparse.Namespace) -> int:
    say = None if args.json else (lambda text: print(text, file=sys.stderr))
    try:
        device_id = dv.parse_device_id(args.device)
        settings = settings_from(args)
        link = link_for(args)
        with dv.open_registry(settings) as registry:
            result = asyncio.run(
                pv.provision(
                    link,
                    registry,
                    device_id,
                    settings,
                    end=not args.stay,
                    factory_reset=args.factory_reset,
                    timeout=args.timeout,
                    say=say,
                )
            )
    except UsageError as exc:
        raise CliError(str(exc), exit_code=2) from None
    except CrewError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print_json(result.as_dict())
        return 0
    was = f" (was {result.previously})" if result.previously else ""
    print(f"provisioned {result.device_id}{was} on {link.name}: key check {result.key_check}")
    cfg = result.config
    print(
        f"  radio {cfg.get('freq_khz')} kHz SF{cfg.get('sf')} {cfg.get('bw_khz')} kHz"
        f" {cfg.get('power_dbm')} dBm; place {cfg.get('lat')}, {cfg.get('lon')}"
        f" {cfg.get('name', '')}"
    )
    print("  the device restarts into its app" if result.ended else "  still in provisioning mode")
    return 0
