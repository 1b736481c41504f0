"""Scenario files, the shipped Seongbuk-gu scenario and its Korean place fields, and the
city generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.registry import Place, check_place, normalise_npn
from tools.sim import places
from tools.sim.scenario import (
    SCENARIOS_DIR,
    ScenarioError,
    city,
    load_scenario,
    parse_scenario,
)


def test_national_point_numbers_from_utm_k() -> None:
    # Seoul City Hall: EPSG:5179 about (953 900, 1 952 030), square 다사.
    e, n = places.utm_k(37.5665, 126.9780)
    assert e == pytest.approx(953_900, abs=50)
    assert n == pytest.approx(1_952_030, abs=50)
    assert places.national_point_number(37.5665, 126.9780) == "다사 5390 5203"
    # The projection's origin is exactly its false easting and northing.
    assert places.utm_k(38.0, 127.5) == pytest.approx((1_000_000, 2_000_000))
    # Busan City Hall (E 1 143 467, N 1 688 282) is two squares east and three south: 마라.
    assert places.national_point_number(35.1796, 129.0756) == "마라 4346 8828"


def test_the_shipped_seongbuk_scenario_is_the_generator_output() -> None:
    shipped = json.loads((SCENARIOS_DIR / "seongbuk.json").read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(places.seongbuk(), ensure_ascii=False))


def test_seongbuk_devices_are_in_the_district_with_korean_place_fields() -> None:
    sc = load_scenario("seongbuk")
    lat_lo, lat_hi, lon_lo, lon_hi = places.SEONGBUK_BOUNDS
    bells = [d for d in sc.devices if d.kind == "bell"]
    lights = [d for d in sc.devices if d.kind == "light"]
    assert len(bells) >= 30 and len(lights) >= 30 and len(sc.gateways) == 2
    trails = {d.trail for d in bells}
    assert {"북악하늘길", "정릉계곡길", "개운산 산책로"} <= trails
    for d in sc.devices:
        assert lat_lo <= d.lat <= lat_hi and lon_lo <= d.lon <= lon_hi, d
        # What the gateway's registry accepts, unchanged.
        place = Place(
            lat=d.lat, lon=d.lon, label=d.label, national_point_number=d.national_point_number
        )
        assert check_place(place).national_point_number == d.national_point_number
        assert d.national_point_number == normalise_npn(d.national_point_number or "")
        assert d.national_point_number == places.national_point_number(d.lat, d.lon)
        assert d.plate_id and d.plate_id.startswith("성북-")
        assert d.cameras and all(c.startswith("CCTV-SB-") for c in d.cameras)
    for g in sc.gateways:
        assert g.label.endswith("주민센터")
        assert lat_lo <= g.lat <= lat_hi and lon_lo <= g.lon <= lon_hi
    assert sc.presses and all(sc.device(p.device_id).kind == "bell" for p in sc.presses)


def test_city_generator() -> None:
    sc = city(1000, 4, seed=3, lights_share=0.25)
    assert len(sc.devices) == 1000 and len(sc.gateways) == 4
    assert sum(d.kind == "light" for d in sc.devices) == 250
    assert len({d.device_id for d in sc.devices}) == 1000
    assert len({d.key for d in sc.devices}) == 1000
    lat_lo, lat_hi, lon_lo, lon_hi = places.SEONGBUK_CORE
    assert all(lat_lo <= g.lat <= lat_hi and lon_lo <= g.lon <= lon_hi for g in sc.gateways)
    assert city(1000, 4, seed=3) == city(1000, 4, seed=3)  # reproducible


def test_a_toml_scenario(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        """
name = "two"
start = "2026-11-26T21:00:00+09:00"
boot = "frozen"
[radio]
sf = 7
[radio.path_loss]
exponent = 3.0
[[gateways]]
id = "gw"
lat = 37.6
lon = 127.0
ble = true
[[devices]]
id = "0a000001"
kind = "bell"
lat = 37.6005
lon = 127.0005
radio = "ble"
[[presses]]
device = "0a000001"
at_s = 30
""",
        encoding="utf-8",
    )
    sc = load_scenario(path)
    assert sc.boot == "frozen" and sc.radio.sf == 7 and sc.radio.path_loss.exponent == 3.0
    assert sc.devices[0].radio == "ble" and sc.gateways[0].ble
    assert sc.presses[0].at_s == 30 and sc.start is not None and sc.start.hour == 21


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"devices": []}, "devices: at least one"),
        ({"gateways": []}, "gateways: at least one"),
        ({"boot": "slow"}, "boot: 'slow'"),
        ({"radio": {"sf": 13}}, "radio.sf: 13"),
        ({"radio": {"colour": 1}}, "radio.colour: unknown key"),
        ({"presses": [{"device": "0a0000ff", "at_s": 1}]}, "presses[0].device: no device 0a0000ff"),
        ({"start": "tomorrow"}, "start: 'tomorrow'"),
    ],
)
def test_errors_name_the_key_and_value(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "gateways": [{"id": "gw", "lat": 37.6, "lon": 127.0}],
        "devices": [{"id": "0a000001", "kind": "bell", "lat": 37.6, "lon": 127.0}],
    }
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario({**base, **change})


def test_unknown_scenario_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match="seongbuk"):
        load_scenario("gangnam")
