"""`anshim field-test --port …|--ble …`: self-test, a test frame, what the gateway heard."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from tools.anshim.common import CliError, print_json
from tools.anshim.gateway import add_config_options, settings_from
from tools.crew import CrewError, UsageError
from tools.crew import devices as dv
from tools.crew import fieldtest as ft
from tools.crew import provisioning as pv
from tools.crew.firmware import BOARD_NAMES, find_port


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "field-test", help="run a device's self-test and test frame; report the gateway's view"
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="the device's USB serial port ('auto' with --board)")
    where.add_argument("--ble", metavar="ADDRESS", help="the device's BLE address")
    p.add_argument("--board", choices=BOARD_NAMES, help="for --port auto")
    add_config_options(p)
    p.add_argument("--mqtt", metavar="URL", help="ask the broker instead of the database")
    p.add_argument("--wait", type=float, default=30.0, metavar="S", help="for the gateway")
    p.add_argument("--stay", action="store_true", help="stay in provisioning mode after")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=field_test_command)


async def _field_test(args: argparse.Namespace) -> dict[str, Any]:
    settings = settings_from(args)
    if args.ble:
        link: pv.Link = pv.BleLink(args.ble)
    else:
        port = args.port
        if port == "auto":
            if not args.board:
                raise UsageError("--port auto needs --board")
            port = find_port(args.board)
        link = pv.SerialLink(port)
    with dv.open_registry(settings) as registry:
        run = await pv.run_device_test(link, registry, end=not args.stay)
    counter = run.frame.get("counter")
    out: dict[str, Any] = {
        "device_id": f"{run.device_id:08x}",
        "role": run.hello.role,
        "board": run.hello.board,
        "selftest": run.selftest,
        "frame": run.frame,
        "heard": None,
    }
    if isinstance(counter, int):
        heard = await ft.wait_heard(
            settings, run.device_id, counter, wait_s=args.wait, mqtt_url=args.mqtt
        )
        if heard is not None:
            out["heard"] = {
                "source": heard.source,
                "event_id": heard.event_id,
                "state": heard.state,
                "receptions": heard.receptions,
            }
    return out


def field_test_command(args: argparse.Namespace) -> int:
    try:
        out = asyncio.run(_field_test(args))
    except UsageError as exc:
        raise CliError(str(exc), exit_code=2) from None
    except CrewError as exc:
        raise CliError(str(exc)) from None
    ok = bool(out["selftest"].get("ok")) and out["heard"] is not None
    if args.json:
        print_json(out)
        return 0 if ok else 1
    what = " ".join(x for x in (out["role"], out["board"]) if x)
    checks = out["selftest"].get("checks") or {}
    detail = ", ".join(f"{k} {_v(v)}" for k, v in checks.items())
    verdict = "ok" if out["selftest"].get("ok") else "FAILED"
    print(
        f"device {out['device_id']} ({what}): self-test {verdict}"
        + (f" ({detail})" if detail else "")
    )
    for name, why in (out["selftest"].get("notes") or {}).items():
        print(f"  {name}: {why}")
    frame = out["frame"]
    print(f"test frame: {frame.get('type', '?')} counter {frame.get('counter', '?')}")
    if "downlink" in frame:  # firmware that listens for the gateway's ACK says so
        down = frame["downlink"]
        if isinstance(down, dict) and down.get("rssi") is not None:
            print(
                f"device heard the gateway's ACK: RSSI {down['rssi']} dBm  SNR {down.get('snr')} dB"
            )
        else:
            print("the device heard no ACK in its receive window", file=sys.stderr)
    heard = out["heard"]
    if heard is None:
        print(f"the gateway did not hear it within {args.wait:g} s", file=sys.stderr)
        return 1
    state = f", {heard['state']}" if heard.get("state") else ""
    print(f"gateway heard {heard['event_id']} ({heard['source']}{state}):")
    for r in heard["receptions"]:
        print(f"  {r.get('receiver', '?'):<12} RSSI {r.get('rssi')} dBm  SNR {r.get('snr')} dB")
    return 0 if ok else 1


def _v(value: Any) -> str:
    if value is True:
        return "ok"
    if value is False:
        return "FAILED"
    return str(value)
