"""`anshim bench`: every benchmark entry, medians of several runs, `--json` for scripts."""

from __future__ import annotations

import argparse
import sys

from tools import benchmarks
from tools.anshim.common import CliError, print_json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="run the benchmarks",
        description="Measure Anshim's speed goals. Entries: " + ", ".join(benchmarks.ENTRIES),
    )
    bench.add_argument("entries", nargs="*", metavar="ENTRY", help="entries to run (default all)")
    bench.add_argument("--runs", type=int, default=5, help="runs per entry; the median is shown")
    bench.add_argument("--json", action="store_true", help="machine-readable output")
    bench.add_argument("--profile", action="store_true", help="print the profiles taken")
    bench.set_defaults(handler=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise CliError(f"--runs must be at least 1, got {args.runs}", exit_code=2)
    try:
        report = benchmarks.run(
            args.entries or None,
            runs=args.runs,
            progress=None if args.json else lambda n: print(f"running {n} …", file=sys.stderr),
        )
    except KeyError as exc:
        raise CliError(str(exc.args[0]), exit_code=2) from None
    if args.json:
        print_json(report)
        return 0
    m = report["machine"]
    print(
        f"anshim bench — {m['cpu']}, {m['cores']} cores, {m['implementation']} {m['python']}, "
        f"median of {report['runs']} runs"
    )
    profiles = []
    for r in report["results"]:
        goal = f"   goal {r['goal']}" if r["goal"] else ""
        extra = f"  ({r['engine']})" if "engine" in r else ""
        if "with_code_in_ram_kb" in r:
            extra = f"  ({r['with_code_in_ram_kb']} KB with the code loaded into RAM)"
        if "with_all_of_lib_kb" in r:
            extra = f"  ({r['with_all_of_lib_kb']} KB with all of firmware/lib)"
        value = f"{r['median']:>14,.0f}" if r["median"] >= 100 else f"{r['median']:>14,.2f}"
        print(f"  {r['name']:<36} {value} {r['unit']}{goal}{extra}")
        if r.get("profile"):
            profiles.append((r["name"], r["profile"]))
    if args.profile:
        for name, text in profiles:
            print(f"\nwhere the time goes: {name}\n{text}")
    return 0
