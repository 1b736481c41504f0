"""`anshim radio …`: radio planning commands.

``anshim radio airtime`` prints how long a LoRa frame occupies the channel
(`protocol.airtime.time_on_air`) and whether it fits KR920's 4 s transmission limit
(`protocol.kr920.KR920`). Without ``--sf`` it prints one row per spreading factor
SF7–SF12, the KR920 data rates.
"""

from __future__ import annotations

import argparse
from typing import Any

from protocol.airtime import Airtime, time_on_air
from protocol.kr920 import KR920
from tools.anshim.common import CliError, print_json

TABLE_SFS = range(7, 13)  # KR920 DR5..DR0

# Library parameter names → the option a user typed, for error messages.
_OPTION_NAMES = {
    "payload_len": "--payload",
    "sf": "--sf",
    "bw_khz": "--bw",
    "cr": "--cr",
    "preamble": "--preamble",
}
_CODING_RATES = {"4/5": 5, "4/6": 6, "4/7": 7, "4/8": 8}
_LDRO = {"auto": None, "on": True, "off": False}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``radio`` noun and its verbs."""
    radio = subparsers.add_parser("radio", help="LoRa radio planning (time on air)")
    verbs = radio.add_subparsers(dest="verb", metavar="<verb>", required=True)

    airtime = verbs.add_parser(
        "airtime",
        help="time on air of a LoRa frame",
        description=(
            "LoRa time on air (SX1261/2 datasheet §6.1.4) and whether the frame fits "
            "KR920's 4 s transmission limit. Without --sf, a table over SF7-SF12."
        ),
    )
    # Values are taken as text and checked in the handler, so every bad value gives the
    # same one-line error (argparse's own errors print the usage as well).
    airtime.add_argument("--sf", metavar="5..12", help="spreading factor (default: table SF7-SF12)")
    airtime.add_argument("--payload", required=True, metavar="BYTES", help="LoRa payload, 0..255")
    airtime.add_argument("--bw", default="125", metavar="KHZ", help="bandwidth in kHz (125)")
    airtime.add_argument("--cr", default="4/5", metavar="4/5..4/8", help="coding rate (4/5)")
    airtime.add_argument("--preamble", default="8", metavar="SYMBOLS", help="preamble (8)")
    airtime.add_argument(
        "--implicit-header", action="store_true", help="no LoRa header (fixed-length frames)"
    )
    airtime.add_argument("--no-crc", action="store_true", help="payload CRC off")
    airtime.add_argument(
        "--ldro", default="auto", metavar="auto|on|off", help="low-data-rate optimisation (auto)"
    )
    airtime.add_argument("--json", action="store_true", help="machine-readable output, times in µs")
    airtime.set_defaults(handler=airtime_command)


def _int_option(option: str, text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise CliError(f"{option} must be an integer, got {text!r}", exit_code=2) from None


def _bw_option(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"--bw must be a number of kHz, got {text!r}", exit_code=2) from None
    return int(value) if value.is_integer() else value


def _choice(option: str, text: str, choices: dict[str, Any]) -> Any:
    if text not in choices:
        allowed = ", ".join(choices)
        raise CliError(f"{option} must be one of {allowed}, got {text!r}", exit_code=2)
    return choices[text]


def _compute(sf: int, params: dict[str, Any]) -> Airtime:
    try:
        return time_on_air(sf=sf, **params)
    except ValueError as exc:
        message = str(exc)
        name = message.split(" ", 1)[0]
        if name in _OPTION_NAMES:
            message = _OPTION_NAMES[name] + message[len(name) :]
        raise CliError(message, exit_code=2) from None


def _as_json(result: Airtime) -> dict[str, Any]:
    return {
        "sf": result.sf,
        "bw_khz": result.bw_khz,
        "cr": f"4/{result.cr}",
        "preamble": result.preamble,
        "payload_len": result.payload_len,
        "implicit_header": result.implicit_header,
        "crc": result.crc,
        "ldro": result.ldro,
        "symbol_time_us": result.symbol_time_us,
        "time_on_air_us": result.time_on_air_us,
        "fits_kr920_max_tx": result.time_on_air_us <= KR920.max_tx_time_us,
    }


def _describe(result: Airtime) -> str:
    header = "implicit header" if result.implicit_header else "explicit header"
    crc = "CRC on" if result.crc else "CRC off"
    return (
        f"{result.payload_len} B payload, BW {result.bw_khz:g} kHz, CR 4/{result.cr}, "
        f"preamble {result.preamble}, {header}, {crc}"
    )


def _fits(result: Airtime) -> str:
    return "yes" if result.time_on_air_us <= KR920.max_tx_time_us else "NO"


def airtime_command(args: argparse.Namespace) -> int:
    """Handler of ``anshim radio airtime``."""
    params: dict[str, Any] = {
        "payload_len": _int_option("--payload", args.payload),
        "bw_khz": _bw_option(args.bw),
        "cr": _choice("--cr", args.cr, _CODING_RATES),
        "preamble": _int_option("--preamble", args.preamble),
        "implicit_header": args.implicit_header,
        "crc": not args.no_crc,
        "ldro": _choice("--ldro", args.ldro, _LDRO),
    }
    limit_s = KR920.max_tx_time_ms / 1000

    if args.sf is not None:
        result = _compute(_int_option("--sf", args.sf), params)
        if args.json:
            print_json(_as_json(result))
            return 0
        print(f"SF{result.sf}, {_describe(result)}")
        print(f"time on air: {result.time_on_air_ms:.3f} ms")
        print(f"symbol time: {result.symbol_time_ms:.3f} ms")
        print(f"LDRO:        {'on' if result.ldro else 'off'}")
        print(f"fits KR920 {limit_s:g} s limit: {_fits(result)}")
        return 0

    rows = [_compute(sf, params) for sf in TABLE_SFS]
    if args.json:
        print_json([_as_json(row) for row in rows])
        return 0
    print(_describe(rows[0]))
    print(
        f"{'SF':>4}  {'time on air (ms)':>16}  {'symbol (ms)':>11}  {'LDRO':<4}  fits {limit_s:g} s"
    )
    for row in rows:
        ldro = "on" if row.ldro else "off"
        print(
            f"{row.sf:>4}  {row.time_on_air_ms:>16.3f}  {row.symbol_time_ms:>11.3f}  "
            f"{ldro:<4}  {_fits(row)}"
        )
    return 0
