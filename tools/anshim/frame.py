"""`anshim frame …`: read and write Anshim radio frames, for crews reading captures.

``anshim frame decode HEX [--key HEX]`` shows every field; with a key it checks the MIC
(a wrong key says "MIC mismatch"), without one it says the MIC was not checked.
``anshim frame encode TYPE --device ID --counter N --key HEX field=value …`` builds one.
"""

from __future__ import annotations

import argparse
from typing import Any

from protocol import frames as fr
from protocol.errors import ProtocolError
from tools.anshim.common import CliError, parse_hex, print_json

_FLAG_NAMES = {
    "rx_open": fr.Flags.RX_OPEN,
    "more": fr.Flags.MORE,
    "retry": fr.Flags.RETRY,
    "test": fr.Flags.TEST,
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``frame`` noun and its verbs."""
    frame = subparsers.add_parser("frame", help="decode and encode radio frames")
    verbs = frame.add_subparsers(dest="verb", metavar="<verb>", required=True)

    dec = verbs.add_parser(
        "decode",
        help="decode a frame from hex",
        description="Decode one radio frame; with --key, verify its MIC.",
    )
    dec.add_argument("hex", metavar="HEX", help="the frame's bytes in hex (spaces allowed)")
    dec.add_argument("--key", metavar="HEX", help="the device's 128-bit key, to check the MIC")
    dec.add_argument(
        "--last-counter",
        type=_int,
        metavar="N",
        help="last counter accepted from the device (reconstructs counters > 65535)",
    )
    dec.add_argument("--json", action="store_true", help="machine-readable output")
    dec.set_defaults(handler=decode_command)

    enc = verbs.add_parser(
        "encode",
        help="encode a frame",
        description="Build one radio frame. Types: "
        + ", ".join(t.name for t in fr.FrameType)
        + ". COMMAND takes opcode=SET_LEVEL|STROBE|SCHEDULE|REBOOT|CONFIG|SELFTEST.",
    )
    enc.add_argument("type", metavar="TYPE", help="frame type, e.g. ALARM or HEARTBEAT")
    enc.add_argument(
        "fields",
        nargs="*",
        metavar="field=value",
        help="payload fields, e.g. press_count=1 battery_mv=3600",
    )
    enc.add_argument("--device", required=True, metavar="ID", help="device id, 8 hex digits")
    enc.add_argument("--counter", required=True, type=_int, metavar="N", help="full frame counter")
    enc.add_argument("--key", required=True, metavar="HEX", help="the device's 128-bit key")
    enc.add_argument(
        "--flags", default="", metavar="LIST", help="comma-separated: rx_open (more), retry, test"
    )
    enc.add_argument("--json", action="store_true", help="machine-readable output")
    enc.set_defaults(handler=encode_command)


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def parse_device_id(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise CliError(
            f"device id must be hex (e.g. 0a000001), got {text!r}", exit_code=2
        ) from None
    if not 0 <= value <= 0xFFFFFFFF or len(cleaned) > 8:
        raise CliError(f"device id {text!r} is longer than 32 bits", exit_code=2)
    return value


def parse_key(text: str) -> bytes:
    key = parse_hex(text, what="--key")
    if len(key) != fr.KEY_LEN:
        raise CliError(
            f"--key must be {fr.KEY_LEN} bytes (32 hex digits), got {len(key)} bytes", exit_code=2
        )
    return key


def _parse_flags(text: str) -> fr.Flags:
    flags = fr.Flags.NONE
    for name in filter(None, (part.strip().lower() for part in text.split(","))):
        if name not in _FLAG_NAMES:
            raise CliError(f"unknown flag {name!r} (known: {', '.join(_FLAG_NAMES)})", exit_code=2)
        flags |= _FLAG_NAMES[name]
    return flags


def _parse_fields(items: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CliError(f"field {item!r} must be written name=value", exit_code=2)
        try:
            values[name] = int(text, 0)
        except ValueError:
            values[name] = text  # CONFIG key/value and COMMAND opcode are text
    return values


def describe(frame: fr.Frame) -> dict[str, Any]:
    """The frame as plain data for JSON and for the human view."""
    return {
        "type": frame.type.name,
        "direction": "uplink" if frame.direction is fr.Direction.UP else "downlink",
        "device_id": f"{frame.device_id:08x}",
        "counter": frame.counter,
        "flags": [
            name
            for name, bit in _FLAG_NAMES.items()
            if frame.flags & bit
            and (name != "more" or frame.direction is fr.Direction.DOWN)
            and (name != "rx_open" or frame.direction is fr.Direction.UP)
        ],
        "fields": frame.payload.to_fields(),
        "event_id": frame.event_id,
    }


def decode_command(args: argparse.Namespace) -> int:
    data = parse_hex(args.hex, what="frame")
    try:
        if args.key is None:
            frame = fr.decode_unverified(data)
            mic = "not checked (no --key)"
        else:
            key = fr.DeviceKey.of(parse_key(args.key), args.last_counter)
            frame = fr.decode(data, lambda device_id, direction: key)
            mic = "ok"
    except ProtocolError as exc:
        raise CliError(str(exc)) from None
    info = describe(frame)
    info["length"] = len(data)
    info["mic"] = mic
    if args.key is None:
        info["counter_note"] = "low 16 bits only; the full counter needs the key"
        del info["event_id"]
    if args.json:
        print_json(info)
        return 0
    flags = ",".join(info["flags"]) or "-"
    print(
        f"{info['type']} {info['direction']}  device {info['device_id']}  "
        f"counter {info['counter']}  flags {flags}  ({len(data)} bytes)"
    )
    width = max((len(k) for k in info["fields"]), default=0)
    for name, value in info["fields"].items():
        print(f"  {name:<{width}}  {value}")
    print(f"MIC {mic}")
    if "event_id" in info:
        print(f"event id {info['event_id']}")
    return 0


def encode_command(args: argparse.Namespace) -> int:
    device_id = parse_device_id(args.device)
    key = parse_key(args.key)
    flags = _parse_flags(args.flags)
    try:
        payload = fr.payload_from_fields(args.type, _parse_fields(args.fields))
        frame = fr.Frame(device_id, args.counter, payload, flags)
        wire = fr.encode(frame, key)
    except ProtocolError as exc:
        raise CliError(str(exc), exit_code=2) from None
    if args.json:
        print_json({**describe(frame), "length": len(wire), "hex": wire.hex()})
    else:
        print(wire.hex())
    return 0
