"""The figures of a simulation run: as data, as text, as PNG plots.

What is measured and what is modelled (the report says it again in its ``basis``):

* **Modelled** (virtual time): everything on the air. Boot time after a deep-sleep wake
  (board file), listen-before-talk, time on air, collisions and capture, the receive
  window, retries — the firmware's own logic decides *when*, the channel model decides
  *whether* a frame gets through.
* **Measured** (wall clock, this machine): the gateway pipeline for the frame that raised
  each alarm — `Core.on_frame` from the radio's hand-over to the committed journal
  (decode, MIC, SQLite commit; the journals live in RAM, /dev/shm, unless ``--data-dir``).
  With a broker (``--mqtt``) also the publish: the loop's clock runs at wall speed while
  the outbox is not empty, so the PUBACK's time is real. Without a broker the publish is
  *modelled* as +1 ms (QoS 1 to a loopback mosquitto, p99 0.8 ms, notes §5).
* Through the serial path (``--serial``: the bridge firmware on a pty) the pipeline is
  not timed per frame; the pty's own latency runs in real time but is not added.
* press → gateway = press → end of the first ALARM copy any gateway received (modelled);
  press → MQTT = that + pipeline (measured) + publish (measured or modelled);
  acknowledged = the bell heard the gateway's ACK (its LED turns steady, "delivered").
* Energy: the time each bell spent asleep, awake, transmitting and listening, counted
  by the simulation, times the board file's currents (tools/power.py's `Board`).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools import power
from tools.sim.devices import PressRecord

if TYPE_CHECKING:
    from tools.sim.fleet import Simulation

GOAL_P99_S = 1.0  # press -> MQTT p99
GOAL_ACK_S = 10.0
GOAL_ACK_SHARE = 0.999
YEAR_S = 365.25 * 86400


def percentiles(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))]

    return {
        "n": len(v),
        "p50": round(q(0.50), 4),
        "p90": round(q(0.90), 4),
        "p99": round(q(0.99), 4),
        "max": round(v[-1], 4),
        "mean": round(statistics.fmean(v), 4),
    }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 5) if b else None


def press_figures(sim: Simulation) -> dict[str, Any]:
    from tools.sim.fleet import MODELLED_PUBLISH_S

    end = sim.t0 + sim.ran_s
    # Presses that should have opened an incident and had time to: not joined, and
    # pressed at least GOAL_ACK_S before the end of the run.
    counted: list[PressRecord] = [
        p for p in sim.presses if not p.joined and p.at + GOAL_ACK_S <= end and p.hold_s > 0
    ]
    to_gw, to_mqtt, to_ack, processing, tries = [], [], [], [], []
    acked_in_time = 0
    for p in counted:
        if p.gateway_rx is not None:
            to_gw.append(p.gateway_rx - p.at)
            if p.processing_s is not None:
                processing.append(p.processing_s)
            if sim.mqtt_url:
                if p.mqtt is not None:
                    to_mqtt.append(p.mqtt - p.at + (p.processing_s or 0.0))
            else:
                to_mqtt.append(p.gateway_rx - p.at + (p.processing_s or 0.0) + MODELLED_PUBLISH_S)
        if p.delivered is not None:
            to_ack.append(p.delivered - p.at)
            tries.append(p.alarm_tries)
            if p.delivered - p.at <= GOAL_ACK_S:
                acked_in_time += 1
    never_heard = sum(1 for p in counted if p.gateway_rx is None)
    return {
        "presses": len(sim.presses),
        "counted": len(counted),
        # Never seen by the bell: released while its loop was busy (or still unseen).
        "missed_by_bell": sum(1 for p in counted if p.missed or p.event_id is None),
        "joined_open_incident": sum(1 for p in sim.presses if p.joined),
        "never_heard_by_a_gateway": never_heard,
        "never_acknowledged": sum(1 for p in counted if p.delivered is None),
        "press_to_gateway_s": percentiles(to_gw),
        "press_to_mqtt_s": percentiles(to_mqtt),
        "press_to_acknowledged_s": percentiles(to_ack),
        "gateway_pipeline_ms": {
            k: (round(v * 1000, 3) if isinstance(v, float) else v)
            for k, v in percentiles(processing).items()
        },
        "alarm_tries_until_ack": percentiles([float(t) for t in tries]),
        "acknowledged_within_10s": _ratio(acked_in_time, len(counted)),
        "mqtt_basis": "measured (broker PUBACK)" if sim.mqtt_url else "modelled (+1 ms publish)",
        "records": [_record(p, sim.t0) for p in sim.presses],
        "samples": {
            "press_to_gateway_s": to_gw,
            "press_to_mqtt_s": to_mqtt,
            "press_to_acknowledged_s": to_ack,
        },
    }


def _record(p: PressRecord, t0: float) -> dict[str, Any]:
    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - p.at, 4)

    return {
        "device_id": f"{p.device_id:08x}",
        "event_id": p.event_id,
        "pressed_s": round(p.at - t0, 3),  # after the start of the run
        "hold_s": round(p.hold_s, 3),
        "joined": p.joined,
        "missed": p.missed,
        "gateway_s": rel(p.gateway_rx),
        "pipeline_ms": None if p.processing_s is None else round(p.processing_s * 1000, 3),
        "mqtt_s": rel(p.mqtt),
        "acknowledged_s": rel(p.delivered),
        "help_coming_s": rel(p.acknowledged),
        "resolved_s": rel(p.resolved),
        "alarm_tries": p.alarm_tries,
    }


def goals(presses: dict[str, Any]) -> dict[str, Any]:
    p99 = presses["press_to_mqtt_s"].get("p99")
    n_mqtt = presses["press_to_mqtt_s"].get("n", 0)
    counted = presses["counted"]
    # A press that never reached MQTT is worse than any latency: p99 over all presses.
    unheard = counted - n_mqtt
    p99_all = p99 if unheard <= 0.01 * counted else math.inf
    share = presses["acknowledged_within_10s"]
    return {
        "press_to_mqtt_p99_le_1s": {
            "value_s": p99 if p99_all != math.inf else None,
            "presses_not_on_mqtt": unheard,
            "met": bool(counted) and p99_all <= GOAL_P99_S,
        },
        "acknowledged_within_10s_ge_99_9pct": {
            "value": share,
            "met": share is not None and share >= GOAL_ACK_SHARE,
        },
    }


def channel_figures(sim: Simulation) -> dict[str, Any]:
    st = sim.stats
    duration = max(sim.ran_s, 1e-9)
    gws = {}
    for g in sim.gateways:
        host = g.pty if g.pty is not None else g.radio
        receiver = host.receiver
        busy = receiver.busy_s if receiver is not None else 0.0
        if receiver is not None and receiver.busy_count:
            busy += sim.loop.time() - receiver.busy_since
        core = g.service.core if g.service else None
        gws[g.gateway_id] = {
            "devices_registered": len(g.devices),
            "devices_answered": len(g.answers),
            "frames_received": st.gateway_rx.get(g.gateway_id, 0),
            "channel_busy": round(busy / duration, 5),
            "own_tx_duty": round(host.tx_s / duration, 5),
            "downlinks_sent": host.sent,
            "downlinks_too_late": getattr(host, "too_late", 0),
            "downlinks_lbt_busy": getattr(host, "busy", 0),
            "pipeline": dict(sorted(core.metrics.counts.items())) if core else {},
        }
    uplinks = {
        k: {
            "sent": v,
            "heard": st.uplinks_heard.get(k, 0),
            "ratio": _ratio(st.uplinks_heard.get(k, 0), v),
        }
        for k, v in sorted(st.uplinks.items())
    }
    downlinks = {
        k: {
            "sent": v,
            "delivered": st.downlinks_delivered.get(k, 0),
            "ratio": _ratio(st.downlinks_delivered.get(k, 0), v),
        }
        for k, v in sorted(st.downlinks.items())
    }
    sent = sum(st.uplinks.values())
    heard = sum(st.uplinks_heard.values())
    replays = sum(b.rx_replayed + (b.bell.rx_replayed if b.bell else 0) for b in sim.bells)
    replays += sum(li.light.replays for li in sim.lights if li.light is not None)
    foreign = sum(b.rx_rejected + (b.bell.rx_rejected if b.bell else 0) for b in sim.bells)
    airtime = sum(st.toa_s.values())
    return {
        "uplinks": {
            "sent": sent,
            "heard": heard,
            "delivery_ratio": _ratio(heard, sent),
            "by_type": uplinks,
            "alarm_retransmissions": st.uplink_retries,
            "lost": dict(sorted(st.uplink_lost.items())),
            "overlapped": st.overlapped,
            "captured": st.captured,
        },
        "downlinks": {
            "sent": sum(st.downlinks.values()),
            "delivered": sum(st.downlinks_delivered.values()),
            "by_type": downlinks,
            "lost": dict(sorted(st.downlink_lost.items())),
            "rejected_as_replay_by_devices": replays,
            # Frames a bell got in its receive window that were not for it (another
            # device's uplink): the glue stops listening at the first one (main.py).
            "foreign_frames_in_bell_windows": foreign,
        },
        "devices_out_of_coverage": sim.uncovered,
        "field_test_db": sim.field_test_db,
        "devices_failing_field_test": sum(
            1 for d in sim.devices.values() if not sim.field_tested(d)
        ),
        # Heartbeats are heard as an ALARM's first try is (same size, same air): the share
        # of first tries that get through, at the field-tested devices, from many frames.
        "first_try_estimate": _ratio(st.tested_heartbeats_heard, st.tested_heartbeats),
        "lbt_gave_up": st.lbt_gave_up,
        "airtime_s": {k: round(v, 1) for k, v in sorted(st.toa_s.items())},
        "offered_load_erlang": round(airtime / duration, 4),
        "gateways": gws,
        "ble": {"adverts": st.ble_adverts, "heard": st.ble_heard},
    }


def energy_figures(sim: Simulation) -> dict[str, Any]:
    board = power.load_board(sim.scenario.board)
    profile = power.Profile()
    battery = power.BATTERIES["er14505"]
    boot = sim.scenario.boot
    duration = max(sim.ran_s, 1e-9)
    tx_ma = board.tx_ma(math.ceil(sim.scenario.radio.power_dbm))
    rows = []
    for b in sim.bells:
        e = b.energy
        mc = (
            e.wakes * (board.wake_mc[boot] + profile.app_ms[boot] * board.mcu_awake_ma / 1000)
            + e.awake_s * board.mcu_awake_ma
            + e.tx_s * tx_ma
            + e.rx_s * board.radio_rx_ma
            + e.sleep_s * board.sleep_ma
            + e.led_s * profile.led_ma
        )
        # Time not covered above (the boot itself) is short; count it as asleep.
        rest = max(0.0, duration - e.awake_s - e.sleep_s)
        mc += rest * board.sleep_ma
        mah_year = mc / 3600 * YEAR_S / duration
        years = (
            battery.capacity_mah
            * battery.usable
            / (mah_year + battery.capacity_mah * battery.self_discharge_per_year)
        )
        was_pressed = any(p.device_id == b.device_id for p in sim.presses)
        rows.append((b, mc, mah_year, years, was_pressed))
    quiet = [r for r in rows if not r[4]]
    pressed = [r for r in rows if r[4]]
    out: dict[str, Any] = {
        "board": board.name,
        "boot": boot,
        "battery": battery.title,
        "basis": "simulated time asleep/awake/TX/RX x board currents (hardware/boards)",
    }
    if quiet:
        # Means, not medians: in a run shorter than the heartbeat many bells never woke.
        base_mc = statistics.fmean(r[1] for r in quiet)
        base_mah_year = statistics.fmean(r[2] for r in quiet)
        incidents = {r[0].device_id: 0 for r in pressed}
        for p in sim.presses:
            if p.event_id is not None and p.device_id in incidents:
                incidents[p.device_id] += 1
        per_press = [
            (r[1] - base_mc) / incidents[r[0].device_id]
            for r in pressed
            if incidents.get(r[0].device_id)
        ]
        press_mc = statistics.median(per_press) if per_press else None
        weekly = None
        if press_mc is not None:
            weekly = (
                battery.capacity_mah
                * battery.usable
                / (
                    base_mah_year
                    + 52.18 * press_mc / 3600
                    + battery.capacity_mah * battery.self_discharge_per_year
                )
            )
        out["bell"] = {
            "count": len(rows),
            "mc_per_day_unpressed": round(base_mc * 86400 / duration, 1),
            "wakes_per_day": round(
                statistics.fmean(r[0].energy.wakes for r in quiet) * 86400 / duration, 1
            ),
            "years_unpressed": round(
                battery.capacity_mah
                * battery.usable
                / (base_mah_year + battery.capacity_mah * battery.self_discharge_per_year),
                1,
            ),
            "mc_per_press": round(press_mc, 1) if press_mc is not None else None,
            "years_at_1_press_per_week": round(weekly, 1) if weekly is not None else None,
            "tools_power_years": {
                "no_presses": round(
                    power.budget(board, "bell", boot=boot, presses_per_week=0).years or 0, 1
                ),
                "1_press_per_week": round(power.budget(board, "bell", boot=boot).years or 0, 1),
            },
        }
    if sim.lights:
        wh = [li.light.energy_wh for li in sim.lights if li.light is not None]
        mains = power.budget(board, "light")
        out["light"] = {
            "count": len(sim.lights),
            "mains": True,
            "controller_average_ma": round(mains.average_ua / 1000, 1),
            "lamp_wh_per_day_mean": round(statistics.fmean(wh) * 86400 / duration, 1)
            if wh
            else None,
        }
    return out


def _years(b: power.Budget) -> float:
    return round(b.years or 0.0, 1)


def build_report(sim: Simulation) -> dict[str, Any]:
    sc = sim.scenario
    presses = press_figures(sim)
    device_hours = len(sc.devices) * sim.ran_s / 3600
    kinds = {k: sum(1 for d in sc.devices if d.kind == k) for k in ("bell", "light")}
    return {
        "scenario": {
            "name": sc.name,
            "title": sc.title,
            "devices": kinds,
            "gateways": [g.gateway_id for g in sc.gateways],
            "sf": sc.radio.sf,
            "freq_khz": sc.radio.freq_khz,
            "power_dbm": sc.radio.power_dbm,
            "boot": sc.boot,
            "downlink_iq_inverted": sc.radio.downlink_iq_inverted,
            "seed": sim.seed,
            "registration": sim.registration,
            "started_at": sim.started_at,
            "mqtt": bool(sim.mqtt_url),
        },
        "run": {
            "simulated_s": round(sim.ran_s, 1),
            "wall_s": round(sim.wall_s, 2),
            "speedup": round(sim.ran_s / sim.wall_s, 1) if sim.wall_s else None,
            "device_hours": round(device_hours, 1),
            "device_hours_per_wall_s": round(device_hours / sim.wall_s, 1) if sim.wall_s else None,
        },
        "presses": presses,
        "goals": goals(presses),
        "radio": channel_figures(sim),
        "energy": energy_figures(sim),
        "consistency": consistency(sim, presses),
        "basis": __doc__.split("What is measured and what is modelled", 1)[1].strip(),
    }


def consistency(sim: Simulation, presses: dict[str, Any]) -> list[str]:
    """Cross-checks any run must pass; returns what failed (empty: all good)."""
    problems = []
    st = sim.stats
    for k, sent in st.uplinks.items():
        if st.uplinks_heard.get(k, 0) > sent:
            problems.append(f"{k}: heard {st.uplinks_heard[k]} > sent {sent}")
    for k, sent in st.downlinks.items():
        if st.downlinks_delivered.get(k, 0) > sent:
            problems.append(f"{k}: delivered {st.downlinks_delivered[k]} > sent {sent}")
    toa, _ = sim.channel.airtime(20, sim.scenario.radio.sf, sim.scenario.radio.bw_khz)
    for name in ("press_to_gateway_s", "press_to_mqtt_s", "press_to_acknowledged_s"):
        low = [v for v in presses["samples"][name] if v < toa]
        if low:
            problems.append(f"{name}: {len(low)} below the ALARM's time on air {toa:.3f} s")
    return problems


# -- text -----------------------------------------------------------------------------------


def _pct(d: dict[str, Any], key: str = "p99", scale: float = 1.0, unit: str = "s") -> str:
    v = d.get(key)
    return "—" if v is None else f"{v * scale:.3f} {unit}"


def format_text(r: dict[str, Any]) -> str:
    sc, run, pr, rd, en = r["scenario"], r["run"], r["presses"], r["radio"], r["energy"]
    lines = [
        f"Anshim fleet simulation — {sc['title'] or sc['name']}",
        f"  {sc['devices'].get('bell', 0)} bells, {sc['devices'].get('light', 0)} lights, "
        f"{len(sc['gateways'])} gateways; SF{sc['sf']} on {sc['freq_khz'] / 1000:.1f} MHz, "
        f"{sc['power_dbm']:g} dBm; {sc['boot']} boot; registration "
        f"{sc['registration']!r}; downlink IQ "
        f"{'inverted' if sc['downlink_iq_inverted'] else 'as uplinks'}; seed {sc['seed']}",
        f"  simulated {run['simulated_s'] / 3600:.2f} h in {run['wall_s']:.1f} s wall "
        f"(x{run['speedup']}); {run['device_hours']:.0f} device-hours, "
        f"{run['device_hours_per_wall_s']} device-hours per wall second",
        "",
        f"Presses: {pr['counted']} counted ({pr['presses']} in all; "
        f"{pr['joined_open_incident']} joined an open incident; {pr['missed_by_bell']} missed "
        f"by the bell's glue; {pr['never_heard_by_a_gateway']} never heard; "
        f"{pr['never_acknowledged']} never acknowledged)",
    ]
    for label, key in (
        ("press -> gateway", "press_to_gateway_s"),
        ("press -> MQTT", "press_to_mqtt_s"),
        ("press -> ack at the bell", "press_to_acknowledged_s"),
    ):
        d = pr[key]
        lines.append(
            f"  {label:<26} p50 {_pct(d, 'p50')}  p90 {_pct(d, 'p90')}  p99 {_pct(d)}  "
            f"max {_pct(d, 'max')}  (n {d.get('n', 0)})"
        )
    gp = pr["gateway_pipeline_ms"]
    lines.append(
        f"  gateway pipeline (measured) p50 {gp.get('p50', '—')} ms  p99 {gp.get('p99', '—')} ms;"
        f" MQTT hop {pr['mqtt_basis']}"
    )
    t = pr["alarm_tries_until_ack"]
    lines.append(
        f"  ALARM transmissions until the ACK: mean {t.get('mean', '—')}, p99 {t.get('p99', '—')},"
        f" max {t.get('max', '—')}"
    )
    g = r["goals"]
    g1, g2 = g["press_to_mqtt_p99_le_1s"], g["acknowledged_within_10s_ge_99_9pct"]
    lines += [
        "",
        "Goals:",
        f"  press -> MQTT p99 <= 1 s ............. {'MET' if g1['met'] else 'NOT MET'} "
        f"(p99 {g1['value_s'] if g1['value_s'] is not None else 'n/a'} s; "
        f"{g1['presses_not_on_mqtt']} presses never on MQTT)",
        f"  >= 99.9 % acknowledged within 10 s ... {'MET' if g2['met'] else 'NOT MET'} "
        f"({(g2['value'] or 0) * 100:.2f} %)",
        "",
    ]
    up, down = rd["uplinks"], rd["downlinks"]
    lines.append(
        f"Uplinks: {up['sent']} sent, {up['heard']} heard by a gateway "
        f"({(up['delivery_ratio'] or 0) * 100:.2f} %); offered load "
        f"{rd['offered_load_erlang']} Erlang; {rd['devices_out_of_coverage']} devices out of "
        "every gateway's median range"
    )
    if rd["field_test_db"] is not None:
        lines.append(
            f"  presses only at bells that pass a field test ({rd['field_test_db']:g} dB margin);"
            f" {rd['devices_failing_field_test']} devices would fail it"
        )
    if rd["first_try_estimate"] is not None:
        lines.append(
            f"  a first try gets through {rd['first_try_estimate'] * 100:.2f} % of the time "
            "(heartbeats of field-tested devices heard)"
        )
    for k, v in up["by_type"].items():
        lines.append(
            f"  {k:<13} {v['sent']:>8} sent {v['heard']:>8} heard  {(v['ratio'] or 0) * 100:6.2f} %"
        )
    lines.append(
        f"  lost: {up['lost'] or 'none'}; {up['overlapped']} overlapped another frame, "
        f"{up['captured']} of them still received (capture); "
        f"{up['alarm_retransmissions']} ALARM retransmissions; "
        f"LBT gave up {rd['lbt_gave_up']} times"
    )
    lines.append(
        f"Downlinks: {down['sent']} sent, {down['delivered']} delivered to their device; "
        f"{down['rejected_as_replay_by_devices']} rejected by devices as replays; "
        f"{down['foreign_frames_in_bell_windows']} other devices' frames ended a bell's window"
    )
    for k, v in down["by_type"].items():
        ratio = (v["ratio"] or 0) * 100
        lines.append(f"  {k:<13} {v['sent']:>8} sent {v['delivered']:>8} delivered {ratio:6.2f} %")
    lines.append(f"  lost: {down['lost'] or 'none'}")
    air = rd["airtime_s"]
    total_air = sum(air.values()) or 1.0
    lines.append(
        "Airtime by frame type: "
        + ", ".join(
            f"{k} {v / total_air * 100:.0f} %"
            for k, v in sorted(air.items(), key=lambda kv: -kv[1])
        )
    )
    lines.append("Channel per gateway (share of time a detectable frame is on the air there):")
    for gid, gw in rd["gateways"].items():
        p = gw["pipeline"]
        lines.append(
            f"  {gid:<22} busy {gw['channel_busy'] * 100:5.2f} %  "
            f"own TX {gw['own_tx_duty'] * 100:5.2f} %"
            f"  {gw['devices_registered']} devices ({gw['devices_answered']} answered),"
            f" {gw['frames_received']} frames in,"
            f" {p.get('duplicate_copies', 0)} duplicate copies, {p.get('alarms', 0)} alarms,"
            f" {p.get('offline', 0)} offline events"
        )
    lines.append("")
    if "bell" in en:
        b = en["bell"]
        tp = b["tools_power_years"]
        lines.append(
            f"Energy ({en['board']}, {en['boot']} boot, {en['battery']}): a bell spends "
            f"{b['mc_per_day_unpressed']} mC/day ({b['wakes_per_day']} wakes/day) -> "
            f"{b['years_unpressed']} years; an alarm costs {b['mc_per_press'] or '—'} mC -> "
            f"{b['years_at_1_press_per_week'] or '—'} years at 1 press/week "
            f"(tools/power.py: {tp['no_presses']} / {tp['1_press_per_week']} years)"
        )
    if "light" in en:
        li = en["light"]
        lines.append(
            f"  lights are mains powered: controller {li['controller_average_ma']} mA on average,"
            f" lamp {li['lamp_wh_per_day_mean']} Wh/day"
        )
    if r["consistency"]:
        lines.append("CONSISTENCY PROBLEMS: " + "; ".join(r["consistency"]))
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------


def plot(r: dict[str, Any], out: Path) -> list[Path]:
    """PNG plots of a report into ``out``; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    samples = r["presses"]["samples"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for key, label in (
        ("press_to_gateway_s", "press → gateway"),
        ("press_to_mqtt_s", "press → MQTT"),
        ("press_to_acknowledged_s", "press → ACK at the bell"),
    ):
        v = sorted(samples[key])
        if v:
            ax.step(v, [(i + 1) / len(v) for i in range(len(v))], where="post", label=label)
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.axvline(10.0, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("seconds after the press")
    ax.set_ylabel("share of presses")
    ax.set_title(f"Press latency — {r['scenario']['name']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    files.append(_save(fig, out / "latency_cdf.png"))

    gws = r["radio"]["gateways"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(gws)
    busy = [gws[n]["channel_busy"] * 100 for n in names]
    own = [gws[n]["own_tx_duty"] * 100 for n in names]
    ax.bar(names, busy, label="channel busy (heard)")
    ax.bar(names, own, label="own downlinks", alpha=0.8)
    ax.set_ylabel("% of time")
    ax.set_title("Channel utilisation per gateway")
    ax.legend()
    files.append(_save(fig, out / "channel.png"))

    by_type = r["radio"]["uplinks"]["by_type"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.bar(list(by_type), [v["ratio"] * 100 if v["ratio"] else 0 for v in by_type.values()])
    ax.set_ylim(0, 100)
    ax.set_ylabel("% heard by a gateway")
    ax.set_title("Uplink delivery by frame type")
    files.append(_save(fig, out / "delivery.png"))
    return files


def plot_sweep(rows: list[dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [row["devices"] for row in rows]
    fig, ax1 = plt.subplots(figsize=(7, 4.2))
    p99 = [
        row["press_to_mqtt_p99_s"] if row["press_to_mqtt_p99_s"] is not None else float("nan")
        for row in rows
    ]
    ax1.plot(n, p99, "o-", label="press → MQTT p99 (s)")
    ax1.axhline(GOAL_P99_S, color="C0", ls=":")
    ax1.set_xlabel("devices (hourly reports, one channel)")
    ax1.set_ylabel("seconds")
    ax2 = ax1.twinx()
    ax2.plot(
        n,
        [(row["acknowledged_within_10s"] or 0) * 100 for row in rows],
        "s-",
        color="C1",
        label="acknowledged ≤ 10 s (%)",
    )
    ax2.axhline(GOAL_ACK_SHARE * 100, color="C1", ls=":")
    ax2.set_ylabel("% of presses")
    fig.legend(loc="lower left")
    ax1.set_title("Where the goals break")
    ax1.grid(True, alpha=0.3)
    return _save(fig, out / "sweep.png")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
