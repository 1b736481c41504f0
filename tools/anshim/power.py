"""`anshim power`: battery life of a device from its board file, and where the charge goes.

``anshim power --board heltec-v3 --role bell`` prints a year of charge by consumer
(sleep, boot/wake, transmissions, receive windows, the alarm, feedback, self-discharge),
the battery life on the chosen cell, and how the result moves when one assumption
changes. ``--goal-years N`` turns it into a check (exit 1 when the bell falls short).
The arithmetic is `tools.power`; the figures come from hardware/boards/<board>.json.
"""

from __future__ import annotations

import argparse
from typing import Any

from tools import power
from tools.anshim.common import CliError, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``power`` noun (it has no verbs: ``anshim power --board ...``)."""
    p = subparsers.add_parser(
        "power",
        help="battery life and power budget of a device",
        description=(
            "Battery life of a bell from its board file's currents and the LoRa time on "
            "air, with the charge broken down by consumer; for lights and bridges "
            "(mains powered) the average draw."
        ),
    )
    p.add_argument(
        "--board", required=True, help="board file name: " + ", ".join(power.board_names())
    )
    p.add_argument("--role", default="bell", choices=power.ROLES, help="device role (bell)")
    p.add_argument("--battery", default="er14505", help="cell: " + ", ".join(power.BATTERIES))
    p.add_argument(
        "--heartbeat", default="3600", metavar="SECONDS", help="heartbeat interval (3600)"
    )
    p.add_argument("--presses-per-week", default="1", metavar="N", help="alarms per week (1)")
    p.add_argument(
        "--boot", default="frozen", choices=power.BOOT_PROFILES, help="MicroPython boot per wake"
    )
    p.add_argument("--sf", default="9", metavar="7..12", help="spreading factor (9)")
    p.add_argument("--power", default="14", metavar="DBM", help="TX power, dBm (14)")
    p.add_argument(
        "--incident-min", default="10", metavar="MIN", help="minutes an alarm stays active (10)"
    )
    p.add_argument(
        "--alarm-mcu",
        default="awake",
        choices=("awake", "lightsleep"),
        help="MCU between exchanges during an alarm (awake: the firmware today)",
    )
    p.add_argument("--goal-years", metavar="YEARS", help="exit 1 if the battery lasts less")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=power_command)


def _number(option: str, text: str, kind: type = int) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise CliError(f"{option} must be a number, got {text!r}", exit_code=2) from None


def power_command(args: argparse.Namespace) -> int:
    """Handler of ``anshim power``."""
    try:
        profile = power.Profile(
            heartbeat_s=_number("--heartbeat", args.heartbeat),
            presses_per_week=_number("--presses-per-week", args.presses_per_week, float),
            boot=args.boot,
            sf=_number("--sf", args.sf),
            power_dbm=_number("--power", args.power),
            incident_min=_number("--incident-min", args.incident_min, float),
            alarm_mcu=args.alarm_mcu,
        )
        result = power.budget(args.board, args.role, args.battery, profile)
        bell = args.role == "bell"
        rows = power.sensitivity(args.board, args.battery, profile) if bell else []
        named = power.scenarios(args.board, args.battery) if bell else []
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from None
    goal = _number("--goal-years", args.goal_years, float) if args.goal_years else None
    met = goal is None or (result.years is not None and result.years >= goal)

    if args.json:
        out = result.as_dict()
        out["sensitivity"] = rows
        out["scenarios"] = named
        out["goal_years"] = goal
        out["goal_met"] = None if goal is None else met
        print_json(out)
        return 0 if met else 1

    board = power.load_board(args.board)
    data = result.as_dict()
    if result.years is None:
        print(f"{board.title} as a {args.role}: mains powered, listening all the time")
        for s in data["shares"]:
            print(f"  {s['name']:<14} {s['how']}")
        print(f"average draw {result.average_ua / 1000:.1f} mA")
        return 0
    cell = power.BATTERIES[args.battery]
    print(
        f"{board.title} as a bell on {cell.title}: "
        f"{cell.capacity_mah:g} mAh, {result.usable_mah:g} usable"
    )
    print(
        f"heartbeat {profile.heartbeat_s // 60} min, {profile.presses_per_week:g} press(es)/week, "
        f"{profile.boot} boot, SF{profile.sf}/{profile.bw_khz} kHz at {profile.power_dbm} dBm, "
        f"alarms of {profile.incident_min:g} min with the MCU {profile.alarm_mcu}"
    )
    for s in data["shares"]:
        print(
            f"  {s['name']:<14} {s['mah_per_year']:>8.1f} mAh/yr {s['percent']:>5.1f} %  {s['how']}"
        )
    print(f"  {'total':<14} {data['total_mah_per_year']:>8.1f} mAh/yr")
    verdict = ""
    if goal is not None:
        verdict = f" (goal {goal:g} years: {'met' if met else 'NOT met'})"
    print(
        f"average draw {result.average_ua:.1f} uA; battery life {result.years:.1f} years{verdict}"
    )
    print("what decides it (one assumption changed at a time):")
    last = None
    for r in rows:
        name = r["assumption"] if r["assumption"] != last else ""
        last = r["assumption"]
        print(f"  {name:<20} {r['value']:<20} {r['years']:>5.1f} years")
    print("from the firmware today to the design target (hourly heartbeats):")
    for r in named:
        print(f"  {r['years']:>5.1f} years  {r['scenario']}")
    return 0 if met else 1
