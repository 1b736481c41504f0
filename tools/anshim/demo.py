"""`anshim demo`: the main job on embedded defaults, with nothing to set up.

Real gateways (on embedded defaults, data in a temporary folder unless ``--data-dir``)
hear the simulated Seongbuk-gu fleet — the real bell and light firmware on the simulator's
radio channel — while a simulated operator acknowledges each alarm after a few seconds.
Bells are pressed at intervals; a live view shows each alarm's states with their timings,
what the resident sees on the bell, the lights strobing around it, devices online and
offline, and the counters. ``--mqtt URL`` also publishes everything to a broker (then
``mosquitto_sub -t 'anshim/#' -v`` shows the event stream). Ctrl-C stops cleanly and prints
a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gateway.registry import Place, distance_m
from tools.anshim.common import CliError, print_json
from tools.sim import Operator, SimEvent, Simulation, load_scenario, vloop

# What the resident sees on the bell, in words.
PATTERN_WORDS = {
    "IDLE": "idle",
    "SENDING": "sending… (fast blink)",
    "NOT_THROUGH": "not through yet, still trying",
    "DELIVERED": "delivered (steady light)",
    "ACKNOWLEDGED": "help is coming",
    "RESOLVED": "resolved",
    "PROVISIONING": "provisioning",
}
STATE_STYLE = {
    "pressed": "bold red",
    "raised": "red",
    "delivered": "yellow",
    "acknowledged": "green",
    "resolved": "dim",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = subparsers.add_parser(
        "demo",
        help="the simulated Seongbuk-gu fleet through real gateways, live",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=180.0,
        metavar="S",
        help="seconds to run (default 180; Ctrl-C stops earlier)",
    )
    demo.add_argument("--seed", type=int, default=1, help="for a reproducible run")
    demo.add_argument(
        "--press-every",
        type=float,
        default=20.0,
        metavar="S",
        help="a bell is pressed about this often (default 20 s)",
    )
    demo.add_argument(
        "--mqtt", metavar="URL", help="also publish to this broker (mqtt://host:port)"
    )
    demo.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="keep the gateways' journals here (default: a temporary folder)",
    )
    demo.add_argument(
        "--fast",
        action="store_true",
        help="simulated time as fast as the machine allows (no live view)",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(handler=demo_command)


@dataclass
class Incident:
    """One press as the demo follows it."""

    bell: str
    label: str
    trail: str
    pressed_t: float
    event_id: str | None = None
    times: dict[str, float] = field(default_factory=dict)  # state -> t
    pattern: str = "SENDING"
    rssi: float | None = None
    gateways: set[str] = field(default_factory=set)

    @property
    def state(self) -> str:
        for s in ("resolved", "acknowledged", "delivered", "raised"):
            if s in self.times:
                return s
        return "pressed"

    def after(self, state: str) -> float | None:
        t = self.times.get(state)
        return None if t is None else t - self.pressed_t


@dataclass
class DemoState:
    """Everything the live view shows, folded from the simulation's events."""

    incidents: list[Incident] = field(default_factory=list)
    by_event: dict[str, Incident] = field(default_factory=dict)
    open_by_bell: dict[str, Incident] = field(default_factory=dict)
    strobing: dict[str, float] = field(default_factory=dict)  # light -> until t
    offline: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=8))
    now: float = 0.0

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


class Demo:
    def __init__(self, sim: Simulation, *, live: bool, console: Console) -> None:
        self.sim = sim
        self.state = DemoState()
        self.live = live
        self.console = console
        self.labels = (
            {f"{d.spec.device_id:08x}": d.spec for d in sim.devices.values()} if sim.devices else {}
        )

    # --- events ---------------------------------------------------------------------

    def on_event(self, ev: SimEvent) -> None:
        st = self.state
        st.now = ev.t
        d = ev.data
        k = ev.kind
        if k in ("tx", "rx"):
            st.count("frames on air" if k == "tx" else "frames received")
            if k == "rx" and ev.source in self._gateway_ids():
                inc = st.open_by_bell.get(str(d.get("src", "")))
                if inc is not None and d.get("frame") == "ALARM":
                    inc.gateways.add(ev.source)
                    inc.rssi = d.get("rssi")
            return
        if k == "press":
            spec = self._spec(ev.source)
            inc = st.open_by_bell.get(ev.source)
            if inc is None or inc.state == "resolved":
                inc = Incident(
                    ev.source,
                    d.get("label") or (spec.label if spec else ev.source),
                    (spec.trail or "") if spec else "",
                    ev.t,
                )
                st.incidents.append(inc)
                st.open_by_bell[ev.source] = inc
                self._say(
                    ev.t,
                    f"PRESS  {inc.label} ({inc.trail})" if inc.trail else f"PRESS  {inc.label}",
                )
            else:
                self._say(ev.t, f"press again at {inc.label}: the same incident")
            st.count("presses")
        elif k == "feedback":
            inc = st.open_by_bell.get(ev.source)
            if inc is not None:
                inc.pattern = str(d.get("pattern", inc.pattern))
                if inc.pattern == "NOT_THROUGH":
                    self._say(ev.t, f"{inc.label}: not through yet, the bell keeps trying")
        elif k == "alarm":
            event_id = str(d.get("event_id"))
            state = str(d.get("state"))
            inc = st.by_event.get(event_id)
            if inc is None:
                inc = st.open_by_bell.get(str(d.get("device", ev.source)))
                if inc is not None:
                    inc.event_id = event_id
                    st.by_event[event_id] = inc
            if inc is not None and state not in inc.times:
                inc.times[state] = ev.t
                took = inc.after(state)
                self._say(
                    ev.t,
                    f"{state.upper():<12} {inc.label}  {event_id}"
                    + (f"  +{took:.1f} s after the press" if took is not None else ""),
                )
                if state == "resolved":
                    st.open_by_bell.pop(inc.bell, None)
        elif k == "strobe_start":
            st.strobing[ev.source] = ev.t + float(d.get("seconds", 0))
            st.count("strobe commands")
        elif k == "strobe_stop":
            st.strobing.pop(ev.source, None)
        elif k == "offline":
            st.offline.add(str(d.get("device", ev.source)))
            self._say(ev.t, f"OFFLINE {self._name(str(d.get('device', ev.source)))}")
        elif k == "online":
            dev = str(d.get("device", ev.source))
            if dev in st.offline:
                st.offline.discard(dev)
                self._say(ev.t, f"online again: {self._name(dev)}")

    def _gateway_ids(self) -> set[str]:
        return {g.gateway_id for g in self.sim.gateways}

    def _spec(self, hex_id: str) -> Any:
        try:
            dev = self.sim.devices.get(int(hex_id, 16))
        except ValueError:
            return None
        return dev.spec if dev is not None else None

    def _name(self, hex_id: str) -> str:
        spec = self._spec(hex_id)
        return f"{spec.label} ({hex_id})" if spec is not None else hex_id

    def _say(self, t: float, text: str) -> None:
        line = f"{_clock(t)}  {text}"
        self.state.log.append(line)
        if not self.live:
            self.console.print(line, highlight=False, soft_wrap=True)

    # --- view -------------------------------------------------------------------------

    def render(self) -> Group:
        st = self.state
        sim = self.sim
        title = (
            f"Anshim demo — Seongbuk-gu: {len(sim.bells)} bells, {len(sim.lights)} lights, "
            f"{len(sim.gateways)} gateways   t = {_clock(st.now)}   Ctrl-C stops"
        )
        alarms = Table(expand=True, box=None, header_style="bold")
        alarms.add_column("bell", ratio=3, overflow="fold")
        alarms.add_column("state", no_wrap=True)
        for col in ("raised", "delivered", "ack'd", "resolved"):
            alarms.add_column(col, no_wrap=True, justify="right")
        alarms.add_column("the resident sees", ratio=2, overflow="fold")
        alarms.add_column("heard by", no_wrap=True)
        for inc in st.incidents[-8:]:
            where = f"{inc.label}\n[dim]{inc.trail}[/dim]" if inc.trail else inc.label
            cells: list[Any] = [where, Text(inc.state, STATE_STYLE[inc.state])]
            for state in ("raised", "delivered", "acknowledged", "resolved"):
                took = inc.after(state)
                cells.append("" if took is None else f"+{took:.1f} s")
            cells.append(PATTERN_WORDS.get(inc.pattern, inc.pattern))
            heard = f"{len(inc.gateways)} gw" if inc.gateways else ""
            if inc.rssi is not None:
                heard += f", {inc.rssi:.0f} dBm"
            cells.append(heard)
            alarms.add_row(*cells)
        strobing = [self._label(h) for h, until in st.strobing.items() if until > st.now]
        devices = Table.grid(padding=(0, 2))
        devices.add_row(
            "online",
            str(len(sim.devices) - len(st.offline)),
            "offline",
            str(len(st.offline)),
            "strobing",
            ", ".join(strobing[:6]) or "-",
        )
        counters = "   ".join(f"{k} {v}" for k, v in sorted(st.counts.items()))
        return Group(
            Panel(alarms, title=title, title_align="left"),
            Panel(devices, title="devices", title_align="left"),
            Text(counters, style="dim"),
            Panel(
                "\n".join(st.log) or "waiting for the first press…",
                title="events",
                title_align="left",
            ),
        )

    def _label(self, hex_id: str) -> str:
        spec = self._spec(hex_id)
        return spec.label if spec is not None else hex_id

    def summary(self) -> dict[str, Any]:
        st = self.state
        incidents = st.incidents

        def stat(state: str) -> dict[str, float] | None:
            xs = [t for i in incidents if (t := i.after(state)) is not None]
            if not xs:
                return None
            return {
                "median_s": round(statistics.median(xs), 2),
                "max_s": round(max(xs), 2),
                "n": len(xs),
            }

        return {
            "ran_s": round(st.now, 1),
            "presses": st.counts.get("presses", 0),
            "incidents": len(incidents),
            "raised": stat("raised"),
            "delivered": stat("delivered"),
            "acknowledged": stat("acknowledged"),
            "resolved": stat("resolved"),
            "not_acknowledged": [i.label for i in incidents if "acknowledged" not in i.times],
            "strobe_commands": st.counts.get("strobe commands", 0),
            "offline_now": sorted(st.offline),
            "frames_on_air": st.counts.get("frames on air", 0),
            "frames_received": st.counts.get("frames received", 0),
        }


def _clock(t: float) -> str:
    m, s = divmod(int(t), 60)
    return f"{m:02d}:{s:02d}"


async def run_demo(demo_args: argparse.Namespace, console: Console, live: bool) -> Demo:
    scenario = load_scenario("seongbuk")
    sim = Simulation(
        scenario,
        seed=demo_args.seed,
        data_dir=demo_args.data_dir,
        mqtt_url=demo_args.mqtt,
        operator=Operator(ack_after_s=(3.0, 8.0), resolve_after_s=(20.0, 40.0)),
        stagger_s=20.0,
        warm=True,
    )
    demo = Demo(sim, live=live, console=console)
    sim.subscribe(demo.on_event)
    rng = random.Random(demo_args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)

    def lit(bell: Any) -> bool:  # a security light within the strobe radius (150 m)
        here = Place(lat=bell.spec.lat, lon=bell.spec.lon)
        return any(
            distance_m(here, Place(lat=x.spec.lat, lon=x.spec.lon)) <= 150 for x in sim.lights
        )

    async def presses() -> None:
        await asyncio.sleep(3.0)
        entrances = [b for b in sim.bells if lit(b)]
        while True:
            # Every other press at a trail entrance, where the lights around it strobe.
            bell = rng.choice(entrances if entrances and rng.random() < 0.5 else sim.bells)
            sim.press(f"{bell.spec.device_id:08x}")
            await asyncio.sleep(demo_args.press_every * rng.uniform(0.7, 1.3))

    async with sim.running():
        demo.labels = {f"{d.spec.device_id:08x}": d.spec for d in sim.devices.values()}
        pressing = asyncio.create_task(presses())
        try:
            if live:
                with Live(
                    demo.render(), console=console, refresh_per_second=4, transient=False
                ) as view:
                    end = loop.time() + demo_args.duration
                    while loop.time() < end and not stop.is_set():
                        demo.state.now = sim.now()
                        view.update(demo.render())
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.25)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), demo_args.duration)
        finally:
            pressing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pressing
            demo.state.now = sim.now()
    return demo


def demo_command(args: argparse.Namespace) -> int:
    if args.duration <= 0:
        raise CliError(f"--duration must be positive, got {args.duration}", exit_code=2)
    if args.press_every <= 0:
        raise CliError(f"--press-every must be positive, got {args.press_every}", exit_code=2)
    if args.mqtt and not args.mqtt.startswith(("mqtt://", "mqtts://")):
        raise CliError(f"--mqtt must look like mqtt://host:port, got {args.mqtt!r}", exit_code=2)
    console = Console(stderr=args.json)
    live = console.is_terminal and not args.fast and not args.json
    # The gateways log to the view's event list, not over it.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if not live and not args.json:
        console.print(
            f"Anshim demo: Seongbuk-gu, seed {args.seed}, {args.duration:.0f} s"
            + (" of simulated time" if args.fast else "")
            + (f", publishing to {args.mqtt}" if args.mqtt else ""),
            highlight=False,
        )
    try:
        if args.fast:
            demo = vloop.run(run_demo(args, console, live=False))
        else:
            demo = asyncio.run(run_demo(args, console, live))
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        raise CliError(f"demo: {exc}") from None
    summary = demo.summary()
    if args.json:
        print_json(summary)
        return 0
    console.print()
    console.print(
        f"summary: {summary['presses']} presses, {summary['incidents']} incidents "
        f"in {summary['ran_s']:.0f} s",
        highlight=False,
    )
    for state in ("raised", "delivered", "acknowledged", "resolved"):
        s = summary[state]
        if s:
            console.print(
                f"  press → {state:<12} median {s['median_s']:5.1f} s, "
                f"max {s['max_s']:5.1f} s  ({s['n']})",
                highlight=False,
            )
    if summary["not_acknowledged"]:
        console.print(
            f"  not acknowledged yet: {', '.join(summary['not_acknowledged'])}",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"  lights told to strobe: {summary['strobe_commands']}; frames on air "
        f"{summary['frames_on_air']}, received {summary['frames_received']}",
        highlight=False,
    )
    return 0
