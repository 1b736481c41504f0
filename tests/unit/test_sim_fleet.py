"""A small simulated fleet end to end in virtual time: real bell and light firmware, the
channel model, a real gateway (its own journal), a simulated operator, the report."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tools.sim import Operator, Simulation, parse_scenario, vloop
from tools.sim.report import build_report, consistency, format_text

# One gateway at a community centre, a bell 300 m away with a light 60 m from it, a far
# light (~1 km) and a second bell; night in Seoul, so the lights are on.
TRAIL = {
    "name": "trail",
    "site": "seongbuk",
    "start": "2026-11-26T21:00:00+09:00",
    "boot": "frozen",
    "gateways": [
        {"id": "gw-jeongneung", "label": "정릉3동 주민센터", "lat": 37.6094, "lon": 127.0058}
    ],
    "devices": [
        {
            "id": "0a000101",
            "kind": "bell",
            "lat": 37.6120,
            "lon": 127.0040,
            "label": "정릉계곡길 1번 비상벨",
            "national_point_number": "다사 5592 5737",
            "plate_id": "성북-03-001",
            "trail": "정릉계곡길",
            "cameras": ["CCTV-SB-1061"],
        },
        {"id": "0a000102", "kind": "bell", "lat": 37.6060, "lon": 127.0090},
        {"id": "0b000101", "kind": "light", "lat": 37.6124, "lon": 127.0046, "heartbeat_s": 900},
        {"id": "0b000102", "kind": "light", "lat": 37.6010, "lon": 127.0100, "heartbeat_s": 900},
    ],
    "presses": [{"device": "0a000101", "at_s": 100, "hold_s": 0.5}],
}


def trail_sim(**kw: Any) -> Simulation:
    options: dict[str, Any] = {
        "seed": 3,
        "operator": Operator(ack_after_s=(5, 5), resolve_after_s=(30, 30)),
        "record_events": True,
        "stagger_s": 60,
    }
    options.update(kw)
    return Simulation(parse_scenario(TRAIL), **options)


JOURNALED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def trail_run() -> Simulation:
    sim = trail_sim()

    async def main() -> None:
        async with sim.running():
            await asyncio.sleep(450)
            # The gateway's own journal, before the run ends and it closes.
            core = sim.gateways[0].service.core if sim.gateways[0].service else None
            assert core is not None
            JOURNALED.update({a.event_id: a for a in core.journal.open_alarms()})
            for p in sim.presses:
                if p.event_id:
                    JOURNALED[p.event_id] = core.journal.alarm(p.event_id)

    vloop.run(main())
    return sim


def test_a_press_is_raised_delivered_acknowledged_and_resolved(trail_run: Simulation) -> None:
    sim = trail_run
    bell = [(e.kind, e.data) for e in sim.events if e.source == "0a000101" and e.t >= 100]
    states = [d["state"] for k, d in bell if k == "bell_state"]
    assert states == ["pending", "delivered", "acknowledged", "idle"]
    patterns = [d["pattern"] for k, d in bell if k == "feedback"]
    assert patterns[:4] == ["SENDING", "DELIVERED", "ACKNOWLEDGED", "RESOLVED"]
    gateway = [e.data["state"] for e in sim.events if e.kind == "alarm"]
    assert gateway == ["raised", "delivered", "acknowledged", "resolved"]
    [press] = sim.presses
    assert press.event_id is not None and press.event_id.startswith("0a000101-")
    assert not press.missed
    [incident] = [e for e in sim.events if e.kind == "incident"]
    assert incident.data == {"event_id": press.event_id, "pressed_t": pytest.approx(100)}
    assert press.at < press.gateway_rx < press.delivered < press.acknowledged < press.resolved
    # Frozen boot (48.8 ms) + LBT (~7 ms) + 185 ms on air: the gateway hears it in ~0.25 s.
    assert 0.24 < press.gateway_rx - press.at < 0.30
    alarm = JOURNALED[press.event_id]
    assert (
        alarm is not None and alarm.state == "resolved" and alarm.operator == "상황실 (simulated)"
    )
    assert alarm.receptions[0]["receiver"] == "lora"


def test_the_light_next_to_the_bell_strobes_and_the_far_one_does_not(
    trail_run: Simulation,
) -> None:
    starts = [(e.source, e.t) for e in trail_run.events if e.kind == "strobe_start"]
    stops = [(e.source, e.t) for e in trail_run.events if e.kind == "strobe_stop"]
    assert [s for s, _ in starts] == ["0b000101"]
    assert [s for s, _ in stops] == ["0b000101"]
    assert stops[0][1] - starts[0][1] == pytest.approx(300, abs=1)  # rules.strobe_duration_s


def test_the_report_is_consistent(trail_run: Simulation) -> None:
    r = build_report(trail_run)
    assert consistency(trail_run, r["presses"]) == []
    up, down = r["radio"]["uplinks"], r["radio"]["downlinks"]
    assert 0 < up["heard"] <= up["sent"]
    for v in up["by_type"].values():
        assert v["heard"] <= v["sent"]
    for v in down["by_type"].values():
        assert v["delivered"] <= v["sent"]
    toa = 0.185344  # ALARM, 20 bytes at SF9
    for key in ("press_to_gateway_s", "press_to_mqtt_s", "press_to_acknowledged_s"):
        assert all(v >= toa for v in r["presses"]["samples"][key])
    assert r["presses"]["counted"] == 1 and r["presses"]["acknowledged_within_10s"] == 1.0
    assert r["goals"]["press_to_mqtt_p99_le_1s"]["met"]
    assert r["run"]["simulated_s"] == pytest.approx(450, abs=1)
    assert r["energy"]["bell"]["wakes_per_day"] > 0
    text = format_text(r)
    assert "press -> MQTT" in text and "Goals:" in text


def test_a_ble_bell_is_heard_but_never_acknowledged() -> None:
    data = {
        "name": "ble",
        "start": "2026-11-26T12:00:00+09:00",
        "gateways": [{"id": "gw", "lat": 37.6, "lon": 127.0, "ble": True}],
        "devices": [
            {"id": "0a000001", "kind": "bell", "lat": 37.6002, "lon": 127.0, "radio": "ble"},
            {"id": "0a000002", "kind": "bell", "lat": 37.61, "lon": 127.0, "radio": "ble"},
        ],
        "presses": [{"device": "0a000001", "at_s": 30}, {"device": "0a000002", "at_s": 30}],
    }
    sim = Simulation(parse_scenario(data), seed=1, operator=None, record_events=True)
    vloop.run(sim.run(120))
    raised = [e.data["device"] for e in sim.events if e.kind == "alarm"]
    assert raised == ["0a000001"]  # 22 m away: heard; 1.1 km: out of BLE range
    near, far = sim.presses
    assert near.gateway_rx is None  # not a LoRa reception
    assert near.delivered is None and far.delivered is None  # BLE is one-way
    assert sim.stats.ble_heard > 0
    core = sim.gateways[0].service.core if sim.gateways[0].service else None
    assert core is not None and core.metrics.counts.get("downlinks_ack", 0) == 0


def test_cold_start_boots_every_device_and_sends_a_selftest() -> None:
    sim = trail_sim(warm=False, stagger_s=5, operator=None)
    vloop.run(sim.run(60))
    assert sim.stats.uplinks.get("SELFTEST", 0) == 2  # each bell after its power-up
    assert all(b.boots >= 1 for b in sim.bells)


def test_the_same_seed_gives_the_same_run() -> None:
    from tools.sim.sweep import run_city

    def outcome() -> tuple[object, ...]:
        sim = run_city(150, 2, 0.25, seed=9, presses=4)
        st = sim.stats
        return (
            sorted(st.uplinks_heard.items()),
            sorted(st.downlinks_delivered.items()),
            sorted(st.uplink_lost.items()),
            [(p.event_id, p.gateway_rx, p.delivered) for p in sim.presses],
        )

    assert outcome() == outcome()
