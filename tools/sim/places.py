"""Korean place fields for simulated devices, and the Seongbuk-gu scenario's geography.

* `national_point_number` computes a 국가지점번호 (national point number) from latitude
  and longitude: the point's Korea 2000 / UTM-K coordinates (EPSG:5179, GRS80, transverse
  Mercator on 127.5° E, 38° N, scale 0.9996, false origin 1 000 000 m E, 2 000 000 m N),
  the 100 km square named by two Hangul letters (easting 가 = 700 km, northing 가 =
  1 300 km, in the order 가나다라마바사아자차카타파하) and the metres within it to 10 m,
  four digits each: Seoul is in square 다사.
* `seongbuk` builds the Seongbuk-gu scenario (tools/sim/scenarios/seongbuk.json is its
  output: ``python -m tools.sim.places > tools/sim/scenarios/seongbuk.json``): bells
  along trail segments of Bugaksan and Bukhansan and the district's hills, security lights
  along walking paths by the streams and the city wall, nearest cameras, and two gateways
  at community service centres.

Positions are traced by hand along the trails (about ±50 m): plausible, not surveyed.
The district spans about 37.576-37.632 N and 126.977-127.076 E (Encyclopedia of Korean
Culture gives 126°58′-127°04′ E, 37°34′-37°38′ N; the west and north ends are on the
Bukhansan ridge in 정릉동, the east end in 석관동, the south end in 보문동).
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from typing import Any

_LETTERS = "가나다라마바사아자차카타파하"

# Seongbuk-gu's extent (see the module docstring).
SEONGBUK_BOUNDS = (37.570, 37.635, 126.975, 127.080)  # lat_lo, lat_hi, lon_lo, lon_hi
# Its built-up core, 5.0 x 6.2 km (31 km2, the district's area is 24.6 km2): the city
# generator spreads devices over this box.
SEONGBUK_CORE = (37.575, 37.620, 126.990, 127.060)


def utm_k(lat: float, lon: float) -> tuple[float, float]:
    """Korea 2000 / Unified CS (EPSG:5179) easting and northing, metres (Snyder 1987, 8-9)."""
    a = 6_378_137.0
    f = 1 / 298.257222101
    e2 = f * (2 - f)
    ep2 = e2 / (1 - e2)
    k0 = 0.9996
    lat0, lon0 = math.radians(38.0), math.radians(127.5)

    def meridian(p: float) -> float:
        return a * (
            (1 - e2 / 4 - 3 * e2**2 / 64 - 5 * e2**3 / 256) * p
            - (3 * e2 / 8 + 3 * e2**2 / 32 + 45 * e2**3 / 1024) * math.sin(2 * p)
            + (15 * e2**2 / 256 + 45 * e2**3 / 1024) * math.sin(4 * p)
            - (35 * e2**3 / 3072) * math.sin(6 * p)
        )

    p, lam = math.radians(lat), math.radians(lon)
    n = a / math.sqrt(1 - e2 * math.sin(p) ** 2)
    t = math.tan(p) ** 2
    c = ep2 * math.cos(p) ** 2
    aa = (lam - lon0) * math.cos(p)
    x = (
        k0
        * n
        * (aa + (1 - t + c) * aa**3 / 6 + (5 - 18 * t + t * t + 72 * c - 58 * ep2) * aa**5 / 120)
    )
    y = k0 * (
        meridian(p)
        - meridian(lat0)
        + n
        * math.tan(p)
        * (
            aa * aa / 2
            + (5 - t + 9 * c + 4 * c * c) * aa**4 / 24
            + (61 - 58 * t + t * t + 600 * c - 330 * ep2) * aa**6 / 720
        )
    )
    return 1_000_000 + x, 2_000_000 + y


def national_point_number(lat: float, lon: float) -> str:
    """The 국가지점번호 of a point, e.g. ``"다사 5390 5203"`` near Seoul City Hall."""
    e, n = utm_k(lat, lon)
    ie, in_ = int(e // 100_000) - 7, int(n // 100_000) - 13
    if not (0 <= ie < len(_LETTERS) and 0 <= in_ < len(_LETTERS)):
        raise ValueError(f"{lat}, {lon} is outside the national point number grid")
    east, north = int(e % 100_000) // 10, int(n % 100_000) // 10
    return f"{_LETTERS[ie]}{_LETTERS[in_]} {east:04d} {north:04d}"


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(h)))


def along(points: list[tuple[float, float]], spacing_m: float) -> list[tuple[float, float]]:
    """Points every ``spacing_m`` along a polyline (the first vertex included)."""
    out = [points[0]]
    carry = 0.0
    for (a_lat, a_lon), (b_lat, b_lon) in itertools.pairwise(points):
        seg = distance_m(a_lat, a_lon, b_lat, b_lon)
        pos = spacing_m - carry
        while pos <= seg:
            t = pos / seg
            out.append((a_lat + (b_lat - a_lat) * t, a_lon + (b_lon - a_lon) * t))
            pos += spacing_m
        carry = seg - (pos - spacing_m)
    return out


# -- Seongbuk-gu --------------------------------------------------------------------------

# Trails with bells: (code, name, kind of ground, waypoints lat/lon, bell spacing m).
TRAILS: list[tuple[str, str, list[tuple[float, float]], float]] = [
    (
        "01",
        "북악하늘길",  # along the Bugak Skyway, 성북동 side, towards 아리랑고개
        [
            (37.5962, 126.9858),
            (37.5981, 126.9893),
            (37.5999, 126.9931),
            (37.6012, 126.9978),
            (37.6006, 127.0026),
            (37.5990, 127.0072),
        ],
        260,
    ),
    (
        "02",
        "북한산 형제봉 능선길",  # 형제봉 입구 (정릉 side) up the ridge
        [(37.6046, 126.9920), (37.6079, 126.9931), (37.6112, 126.9917), (37.6139, 126.9890)],
        240,
    ),
    (
        "03",
        "정릉계곡길",  # 정릉탐방지원센터 up the valley towards 보국문
        [
            (37.6128, 127.0021),
            (37.6160, 126.9996),
            (37.6197, 126.9972),
            (37.6236, 126.9950),
            (37.6272, 126.9925),
            (37.6300, 126.9903),
        ],
        250,
    ),
    (
        "04",
        "북한산둘레길 솔샘길",
        [(37.6150, 127.0030), (37.6168, 127.0075), (37.6176, 127.0122), (37.6183, 127.0170)],
        280,
    ),
    (
        "05",
        "개운산 산책로",  # the loop over 개운산 (131 m) behind Korea University
        [
            (37.5903, 127.0212),
            (37.5921, 127.0236),
            (37.5942, 127.0258),
            (37.5937, 127.0291),
            (37.5914, 127.0296),
            (37.5897, 127.0268),
        ],
        220,
    ),
    (
        "06",
        "천장산 하늘길",  # 의릉 and the Korea National University of Arts, 석관동
        [(37.6012, 127.0502), (37.6031, 127.0527), (37.6052, 127.0553), (37.6069, 127.0584)],
        230,
    ),
    (
        "07",
        "오동근린공원 숲길",  # 월곡동/장위동
        [(37.6041, 127.0352), (37.6060, 127.0378), (37.6083, 127.0402), (37.6101, 127.0425)],
        240,
    ),
]

# Walking paths with security lights: (code, name, waypoints, light spacing m).
PATHS: list[tuple[str, str, list[tuple[float, float]], float]] = [
    (
        "11",
        "성북천 산책로",
        [
            (37.5922, 126.9995),
            (37.5899, 127.0046),
            (37.5881, 127.0099),
            (37.5857, 127.0158),
            (37.5832, 127.0214),
            (37.5795, 127.0262),
        ],
        180,
    ),
    (
        "12",
        "정릉천 산책로",
        [
            (37.6068, 127.0118),
            (37.6031, 127.0197),
            (37.6001, 127.0276),
            (37.5962, 127.0348),
            (37.5921, 127.0417),
        ],
        180,
    ),
    (
        "13",
        "한양도성 성북동 성곽길",  # 와룡공원 to 혜화문, outside the wall
        [(37.5931, 126.9889), (37.5906, 126.9939), (37.5882, 126.9985), (37.5874, 127.0021)],
        150,
    ),
]

# Community service centres (주민센터) that host a gateway, approximate positions.
GATEWAYS: list[dict[str, Any]] = [
    {"id": "seongbuk-jeongneung3", "label": "정릉3동 주민센터", "lat": 37.6094, "lon": 127.0058},
    {"id": "seongbuk-donam2", "label": "돈암2동 주민센터", "lat": 37.5953, "lon": 127.0196},
]


def _cameras() -> list[tuple[str, float, float]]:
    """CCTV poles along every trail and path, every ~150 m (ids CCTV-SB-1001 ...)."""
    out = []
    n = 1001
    for _code, _name, pts, _sp in [*TRAILS, *PATHS]:
        for lat, lon in along(pts, 150):
            out.append((f"CCTV-SB-{n}", lat + 0.0002, lon - 0.0002))  # beside the path
            n += 1
    return out


def _nearest(cams: list[tuple[str, float, float]], lat: float, lon: float, k: int = 2) -> list[str]:
    ranked = sorted(cams, key=lambda c: distance_m(lat, lon, c[1], c[2]))
    return [c[0] for c in ranked[:k] if distance_m(lat, lon, c[1], c[2]) <= 300]


def _rounded(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(round(lat, 5), round(lon, 5)) for lat, lon in points]  # ~1 m


def seongbuk() -> dict[str, Any]:
    """The Seongbuk-gu scenario as JSON-ready data (see tools/sim/scenario.py)."""
    cams = _cameras()
    devices: list[dict[str, Any]] = []
    bell_no = 0x0A000101
    for code, name, pts, spacing in TRAILS:
        for i, (lat, lon) in enumerate(_rounded(along(pts, spacing)), start=1):
            devices.append(
                {
                    "id": f"{bell_no:08x}",
                    "kind": "bell",
                    "lat": lat,
                    "lon": lon,
                    "label": f"{name} {i}번 비상벨",
                    "national_point_number": national_point_number(lat, lon),
                    "plate_id": f"성북-{code}-{i:03d}",
                    "trail": name,
                    "cameras": _nearest(cams, lat, lon),
                    "heartbeat_s": 3600,
                }
            )
            bell_no += 1
    light_no = 0x0B000101
    for code, name, pts, spacing in PATHS:
        for i, (lat, lon) in enumerate(_rounded(along(pts, spacing)), start=1):
            devices.append(
                {
                    "id": f"{light_no:08x}",
                    "kind": "light",
                    "lat": lat,
                    "lon": lon,
                    "label": f"{name} 보안등 {i}",
                    "national_point_number": national_point_number(lat, lon),
                    "plate_id": f"성북-{code}-{i:03d}",
                    "trail": name,
                    "cameras": _nearest(cams, lat, lon),
                    "heartbeat_s": 900,
                }
            )
            light_no += 1
    # A security light at each trail entrance, about 75 m from the trail's first bell on
    # the path home: a press there makes it strobe (the gateway's 150 m rule).
    entrance_no = 0x0B000201
    firsts: dict[str, dict[str, Any]] = {}
    for d in devices:
        if d["kind"] == "bell":
            firsts.setdefault(d["trail"], d)
    for n, (trail, bell) in enumerate(firsts.items(), start=1):
        lat, lon = round(bell["lat"] - 0.0006, 5), round(bell["lon"] + 0.0004, 5)
        devices.append(
            {
                "id": f"{entrance_no:08x}",
                "kind": "light",
                "lat": lat,
                "lon": lon,
                "label": f"{trail} 입구 보안등",
                "national_point_number": national_point_number(lat, lon),
                "plate_id": f"성북-90-{n:03d}",
                "trail": trail,
                "cameras": _nearest(cams, lat, lon),
                "heartbeat_s": 900,
            }
        )
        entrance_no += 1
    bells = [d["id"] for d in devices if d["kind"] == "bell"]
    return {
        "name": "seongbuk",
        "title": "성북구 (Seongbuk-gu, Seoul): trail bells and walking-path lights",
        "site": "seongbuk",
        "start": "2026-11-26T17:00:00+09:00",
        "radio": {
            "sf": 9,
            "freq_khz": 922100,
            # Wooded hills and dense low-rise housing: above the urban default.
            "path_loss": {"pl0_db": 127.0, "exponent": 3.5, "shadowing_db": 7.0},
        },
        "boot": "naive",
        "gateways": GATEWAYS,
        "devices": devices,
        # A demo afternoon: a few presses spread over the first hour after warm-up.
        "presses": [
            {"device": bells[3], "at_s": 120},
            {"device": bells[12], "at_s": 900},
            {"device": bells[20], "at_s": 1800},
            {"device": bells[30], "at_s": 2700},
        ],
        "cameras": [{"id": c[0], "lat": round(c[1], 5), "lon": round(c[2], 5)} for c in cams],
    }


if __name__ == "__main__":
    json.dump(seongbuk(), sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")
