"""Fleet size against the goals: where each one breaks.

`sweep` runs the city scenario at each fleet size (same area, same gateways, every device
reporting hourly on one channel), with a light sprinkle of presses, and returns per size
the press → MQTT p99 and the share of presses acknowledged within 10 s, and for each goal
the largest size that met it and the smallest that did not. Presses add load (each opens
an incident: ALARM, ACKs, keep-alives until the operator resolves it), so they are kept
to ``presses_per_hour`` (default 40: a few per cent of the channel at 5,000 devices).
With n presses per size a share can be resolved to about 1/n: the 99.9 % goal is only
*shown* met with 1,000 presses or more; fewer give an upper bound on failures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tools.sim import vloop
from tools.sim.channel import PathLoss
from tools.sim.fleet import Simulation
from tools.sim.report import build_report
from tools.sim.scenario import city

DEFAULT_SIZES = (100, 250, 500, 1000, 2000, 3500, 5000, 7500, 10000)


def run_city(
    devices: int,
    gateways: int,
    hours: float,
    *,
    seed: int = 1,
    presses: int = 0,
    sf: int = 9,
    boot: str = "naive",
    lights_share: float = 0.3,
    path_loss: PathLoss | None = None,
    mqtt_url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Simulation:
    """One city run in virtual time; the finished `Simulation` (see ``.report()``)."""
    scenario = city(
        devices,
        gateways,
        seed=seed,
        sf=sf,
        boot=boot,
        lights_share=lights_share,
        path_loss=path_loss,
    )
    duration = hours * 3600
    sim = Simulation(
        scenario,
        seed=seed,
        mqtt_url=mqtt_url,
        random_presses=presses,
        press_window=(60.0, max(61.0, duration - 120.0)),
    )
    vloop.run(sim.run(duration, progress=progress), max_speed=200.0 if mqtt_url else None)
    return sim


def sweep(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    gateways: int = 3,
    hours: float = 3.0,
    seed: int = 1,
    presses_per_hour: float = 40.0,
    sf: int = 9,
    boot: str = "naive",
    progress: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    rows = []
    for n in sorted(sizes):
        sim = run_city(
            n,
            gateways,
            hours,
            seed=seed,
            presses=max(1, round(presses_per_hour * hours)),
            sf=sf,
            boot=boot,
        )
        r = build_report(sim)
        g = r["goals"]
        row = {
            "devices": n,
            "offered_load_erlang": r["radio"]["offered_load_erlang"],
            "uplink_delivery": r["radio"]["uplinks"]["delivery_ratio"],
            "presses": r["presses"]["counted"],
            "press_to_mqtt_p50_s": r["presses"]["press_to_mqtt_s"].get("p50"),
            "press_to_mqtt_p99_s": g["press_to_mqtt_p99_le_1s"]["value_s"],
            "acknowledged_within_10s": g["acknowledged_within_10s_ge_99_9pct"]["value"],
            "p99_goal_met": g["press_to_mqtt_p99_le_1s"]["met"],
            "ack_goal_met": g["acknowledged_within_10s_ge_99_9pct"]["met"],
            "wall_s": r["run"]["wall_s"],
        }
        rows.append(row)
        if progress is not None:
            progress(n, row)
    return {
        "gateways": gateways,
        "hours": hours,
        "sf": sf,
        "boot": boot,
        "presses_per_hour": presses_per_hour,
        "rows": rows,
        "breaks": {
            "press_to_mqtt_p99_le_1s": _break(rows, "p99_goal_met"),
            "acknowledged_within_10s_ge_99_9pct": _break(rows, "ack_goal_met"),
        },
    }


def _break(rows: list[dict[str, Any]], key: str) -> dict[str, int | None]:
    last_met = None
    for row in rows:
        if not row[key]:
            return {"last_met": last_met, "first_broken": row["devices"]}
        last_met = row["devices"]
    return {"last_met": last_met, "first_broken": None}


def format_sweep(s: dict[str, Any]) -> str:
    lines = [
        f"Sweep: city scenario, {s['gateways']} gateways, SF{s['sf']}, one channel, hourly "
        f"reports, {s['hours']:g} h per size, ~{s['presses_per_hour']:g} presses/h, "
        f"{s['boot']} boot",
        f"  {'devices':>8} {'load Erl':>9} {'uplinks ok':>10} {'presses':>8} "
        f"{'MQTT p50':>9} {'MQTT p99':>9} {'ack<=10s':>9}",
    ]
    for row in s["rows"]:
        p50 = row["press_to_mqtt_p50_s"]
        p99 = row["press_to_mqtt_p99_s"]
        ack = row["acknowledged_within_10s"]
        lines.append(
            f"  {row['devices']:>8} {row['offered_load_erlang']:>9.3f} "
            f"{(row['uplink_delivery'] or 0) * 100:>9.1f}% {row['presses']:>8} "
            f"{'—' if p50 is None else f'{p50:.2f} s':>9} "
            f"{'—' if p99 is None else f'{p99:.2f} s':>9} "
            f"{'—' if ack is None else f'{ack * 100:.1f}%':>9}"
        )
    for goal, label in (
        ("press_to_mqtt_p99_le_1s", "press -> MQTT p99 <= 1 s"),
        ("acknowledged_within_10s_ge_99_9pct", ">= 99.9 % acknowledged within 10 s"),
    ):
        b = s["breaks"][goal]
        if b["first_broken"] is None:
            lines.append(f"  {label}: met at every size tried (up to {b['last_met']})")
        else:
            lines.append(
                f"  {label}: met up to {b['last_met'] or 'no size tried'}, broken from "
                f"{b['first_broken']} devices"
            )
    return "\n".join(lines)
