"""`anshim sim`: a simulated fleet against real gateways, faster than real time.

``anshim sim --scenario city --devices 5000 --gateways 3 --hours 24 --out DIR`` runs the
real bell and light firmware for every device over the LoRa channel model into one real
gateway per community centre, and reports latency (press → gateway, press → MQTT, press
→ ACK at the bell), delivery, collisions, channel use per gateway and battery life, as
text (stdout), JSON and PNG plots (in ``--out``). ``--sweep`` runs the city scenario at
several fleet sizes and says where each goal breaks. The library is `tools.sim`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from tools.anshim.common import CliError, print_json
from tools.anshim.progress import ProgressBar


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "sim",
        help="simulate a fleet against real gateways and report",
        description=(
            "Run the real firmware of every simulated bell and light over a LoRa channel "
            "model into real gateways (one per community centre), in virtual time, and "
            "report latency, delivery, collisions, channel use and battery life."
        ),
    )
    p.add_argument(
        "--scenario",
        default="city",
        metavar="city|seongbuk|FILE",
        help="city (generated, --devices/--gateways), a shipped scenario, or a .json/.toml file",
    )
    p.add_argument("--devices", type=int, default=5000, help="city: number of devices (5000)")
    p.add_argument("--gateways", type=int, default=3, help="city: number of gateways (3)")
    p.add_argument("--lights-share", type=float, default=0.3, help="city: share of lights (0.3)")
    p.add_argument("--sf", type=int, default=9, help="city: spreading factor (9)")
    p.add_argument("--hours", type=float, default=24.0, help="simulated hours (24)")
    p.add_argument(
        "--presses",
        type=int,
        default=None,
        help="random presses over the run (default 40 per hour for city, none otherwise)",
    )
    p.add_argument("--boot", choices=("naive", "frozen"), help="bell boot after a wake")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument("--cold", action="store_true", help="every device powers on at the start")
    p.add_argument(
        "--serial", action="store_true", help="gateways hear through the bridge firmware on a pty"
    )
    p.add_argument(
        "--mqtt",
        metavar="URL",
        help="publish to this broker (mqtt://host:port), or 'local' for a private mosquitto",
    )
    p.add_argument(
        "--register",
        choices=("home", "covering", "best"),
        default="home",
        help="home (default): at every gateway that hears the device, answered by the best "
        "one only (the others listen only); covering: every such gateway answers; best: "
        "registered at its best gateway only",
    )
    p.add_argument(
        "--iq-inverted",
        action="store_true",
        help="model downlinks with inverted IQ, as LoRaWAN sends them (Anshim does not)",
    )
    p.add_argument(
        "--field-test-db",
        type=float,
        metavar="DB",
        help="press only bells whose best link clears the sensitivity by DB, as the crew's "
        "field test would (default 10 for city and the sweep, none for a scenario file)",
    )
    p.add_argument("--data-dir", type=Path, help="keep the gateways' journals here")
    p.add_argument("--out", type=Path, help="write report.json, report.txt and plots here")
    p.add_argument(
        "--sweep",
        nargs="?",
        const="default",
        metavar="N,N,...",
        help="city at several fleet sizes: where each goal breaks",
    )
    p.add_argument(
        "--sweep-hours",
        type=float,
        help="simulated hours per size (default: 3-24 h, enough for ~200 presses)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(handler=sim_command)


@contextlib.contextmanager
def _broker(url: str | None, out: Path | None) -> Iterator[str | None]:
    if url != "local":
        yield url
        return
    import tempfile

    from tools.mosquitto import Broker, BrokerMissing

    with tempfile.TemporaryDirectory(prefix="anshim-sim-mqtt-") as tmp:
        try:
            with Broker(Path(tmp)) as broker:
                yield broker.url
        except BrokerMissing as exc:
            raise CliError(str(exc)) from None


def sim_command(args: argparse.Namespace) -> int:
    # A simulation raises thousands of alarms: the gateways' warnings are not news here.
    logger = logging.getLogger("anshim")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return _sim(args)
    finally:
        logger.setLevel(level)


def _sim(args: argparse.Namespace) -> int:
    from tools.sim import report as rp
    from tools.sim import sweep as sw
    from tools.sim import vloop
    from tools.sim.fleet import Simulation
    from tools.sim.scenario import ScenarioError, city, load_scenario

    if args.hours <= 0 or args.devices < 1 or args.gateways < 1:
        raise CliError("--hours, --devices and --gateways must be positive", exit_code=2)
    if args.mqtt and args.mqtt != "local" and not args.mqtt.startswith(("mqtt://", "mqtts://")):
        raise CliError(f"--mqtt {args.mqtt!r}: give mqtt://host:port or 'local'", exit_code=2)
    if args.sweep is not None:
        return _sweep(args, sw, rp)
    try:
        if args.scenario == "city":
            scenario = city(
                args.devices,
                args.gateways,
                seed=args.seed,
                lights_share=args.lights_share,
                sf=args.sf,
                boot=args.boot or "naive",
                iq_inverted=args.iq_inverted,
            )
        else:
            scenario = load_scenario(args.scenario)
            if args.boot:
                scenario = replace(scenario, boot=args.boot)
            if args.iq_inverted:
                radio = replace(scenario.radio, downlink_iq_inverted=True)
                scenario = replace(scenario, radio=radio)
    except ScenarioError as exc:
        raise CliError(str(exc), exit_code=2) from None
    if args.serial:
        scenario = scenario.with_gateways(serial=True)
    duration = args.hours * 3600
    field_test = args.field_test_db
    if field_test is None and args.scenario == "city":
        field_test = sw.FIELD_TEST_DB
    presses = args.presses
    if presses is None:
        presses = round(40 * args.hours) if args.scenario == "city" else 0
    with _broker(args.mqtt, args.out) as url:
        sim = Simulation(
            scenario,
            seed=args.seed,
            data_dir=args.data_dir,
            mqtt_url=url,
            warm=not args.cold,
            random_presses=presses,
            press_window=(60.0, max(61.0, duration - 120.0)),
            registration=args.register,
            field_test_db=field_test,
        )
        bar = None if args.quiet else ProgressBar(f"simulating {scenario.name}")
        try:
            vloop.run(
                sim.run(duration, progress=bar),
                max_speed=200.0 if url else None,
            )
        finally:
            if bar is not None:
                bar.close()
    report = sim.report()
    text = rp.format_text(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(_dumps(report), encoding="utf-8")
        (args.out / "report.txt").write_text(text + "\n", encoding="utf-8")
        rp.plot(report, args.out)
    if args.json:
        print_json(_strip_samples(report))
    else:
        print(text)
        if args.out is not None:
            print(f"\nreport.json, report.txt and plots in {args.out}")
    return 0


def _sweep(args: argparse.Namespace, sw: Any, rp: Any) -> int:
    if args.sweep == "default":
        sizes = list(sw.DEFAULT_SIZES)
    else:
        try:
            sizes = [int(x) for x in args.sweep.split(",") if x.strip()]
        except ValueError:
            raise CliError(
                f"--sweep {args.sweep!r}: give sizes like 500,1000,5000", exit_code=2
            ) from None
        if not sizes or min(sizes) < 1:
            raise CliError("--sweep sizes must be positive", exit_code=2)

    def progress(n: int, row: dict[str, Any]) -> None:
        if not args.quiet:
            print(f"  {n} devices done in {row['wall_s']:.0f} s", file=sys.stderr)

    result = sw.sweep(
        sizes,
        gateways=args.gateways,
        hours=args.sweep_hours,
        seed=args.seed,
        sf=args.sf,
        boot=args.boot or "naive",
        registration=args.register,
        iq_inverted=args.iq_inverted,
        field_test_db=sw.FIELD_TEST_DB if args.field_test_db is None else args.field_test_db,
        progress=progress,
    )
    text = sw.format_sweep(result)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sweep.json").write_text(_dumps(result), encoding="utf-8")
        (args.out / "sweep.txt").write_text(text + "\n", encoding="utf-8")
        rp.plot_sweep(result["rows"], args.out)
    if args.json:
        print_json(result)
    else:
        print(text)
    return 0


def _strip_samples(report: dict[str, Any]) -> dict[str, Any]:
    out = dict(report)
    out["presses"] = {k: v for k, v in report["presses"].items() if k not in ("samples", "records")}
    return out


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1, default=str) + "\n"
