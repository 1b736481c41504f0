"""Battery life of an Anshim device from its board file, and where the charge goes.

`budget()` takes a board (hardware/boards/<name>.json: sleep, MCU, radio and wake
currents), a role and a usage profile, and adds up one year of charge by what spends
it: sleep, boot/wake, the app's own run time, listen-before-talk, transmissions (time on
air from `protocol.airtime`), receive windows, the MCU kept awake through an alarm,
the resident's feedback (ring LED, siren, strobe), the daily self-test, and the cell's
self-discharge. `sensitivity()` varies one assumption at a time to show which decide the
result. Pure arithmetic: nothing here touches a device.

The model follows what `firmware/bell/` does (a wake per heartbeat, deep sleep between;
an alarm keeps the bell awake until it is resolved, with keep-alives and receive windows
every ``keepalive_s``); the figures come from the board file and are cited there.
Lights and bridges are mains powered: for them `budget()` gives the average draw.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from protocol.airtime import time_on_air

BOARDS_DIR = Path(__file__).resolve().parents[1] / "hardware" / "boards"
HOURS_PER_YEAR = 24 * 365.25
SECONDS_PER_YEAR = HOURS_PER_YEAR * 3600
ROLES = ("bell", "light", "bridge")
BOOT_PROFILES = ("naive", "frozen")

# Frame sizes on air (PROTOCOL.md: 16 bytes of header and MIC plus the payload).
HEARTBEAT_BYTES = 24
ALARM_BYTES = 20
ALARM_UPDATE_BYTES = 22
SELFTEST_BYTES = 19
# Receive window after an RX_OPEN uplink (PROTOCOL.md 1.4), ms.
RX_DELAY_MS = 1000
RX_WINDOW_MS = 1500
LBT_SENSE_MS = 7  # 1 ms settle + 6 ms carrier sense (firmware/lib/radio.py)


@dataclass(frozen=True)
class Battery:
    """A primary cell: what it holds, how much of it a device can use, how it leaks."""

    name: str
    title: str
    capacity_mah: float
    usable: float  # share of the capacity a device can draw (temperature, pulses, cut-off)
    self_discharge_per_year: float  # share of the nominal capacity lost per year
    source: str


BATTERIES = {
    "er14505": Battery(
        "er14505",
        "ER14505 (AA Li-SOCl2, 3.6 V)",
        2400,
        0.8,
        0.01,
        "2400-2600 mAh (Tadiran TL-5104 2.4 Ah, Saft LS14500 2.6 Ah at 2 mA to 2 V); "
        "self-discharge < 1 %/year at 20 C; 80 % usable for cold, pulses and the 3.0 V "
        "cut-off (notes/radio-and-performance.md section 6)",
    ),
    "er14505x2": Battery(
        "er14505x2",
        "2 x ER14505 in parallel",
        4800,
        0.8,
        0.01,
        "two ER14505 cells, as above",
    ),
    "er34615": Battery(
        "er34615",
        "ER34615 (D Li-SOCl2, 3.6 V)",
        19000,
        0.8,
        0.01,
        "19 Ah D cell (Saft LS33600 17 Ah, Tadiran TL-5930 19 Ah), as ER14505 otherwise",
    ),
}


@dataclass(frozen=True, kw_only=True)
class Profile:
    """How the device is used and configured. Defaults are the bell's firmware defaults."""

    heartbeat_s: int = 3600
    presses_per_week: float = 1.0
    boot: str = "frozen"  # "naive": .py/.mpy from the file system; "frozen": in firmware
    sf: int = 9
    bw_khz: int = 125
    cr: int = 5
    preamble: int = 8
    power_dbm: int = 14
    app_ms: dict[str, float] = field(default_factory=lambda: {"naive": 200.0, "frozen": 20.0})
    # An alarm (firmware/bell/bell.py defaults): keep-alives every keepalive_s until the
    # operator acknowledges, three times slower after, until resolved.
    incident_min: float = 10.0
    ack_after_s: float = 120.0
    keepalive_s: float = 20.0
    acked_slowdown: float = 3.0
    alarm_tries: int = 1  # ALARM transmissions until the ACK (1 = first time through)
    alarm_mcu: str = "awake"  # "awake" (the firmware today) or "lightsleep"
    # Feedback during an alarm (hardware/bell.md parts).
    led_ma: float = 5.0  # ring LED, average over its patterns
    siren_s: float = 30.0
    siren_ma: float = 20.0
    strobe_s: float = 30.0
    strobe_ma: float = 6.0  # 20 ms flashes of a 1 W LED, once a second
    # Daily self-test: a SELFTEST uplink and a short beep and blink.
    selftests_per_day: float = 1.0
    selftest_beep_s: float = 0.3
    wakes_per_day_extra: float = 0.0  # other timer wakes (none in the firmware)

    def __post_init__(self) -> None:
        if self.boot not in BOOT_PROFILES:
            raise ValueError(f"boot must be one of {', '.join(BOOT_PROFILES)}, got {self.boot!r}")
        if self.alarm_mcu not in ("awake", "lightsleep"):
            raise ValueError(f"alarm_mcu must be awake or lightsleep, got {self.alarm_mcu!r}")
        if not 60 <= self.heartbeat_s <= 7 * 86400:
            raise ValueError(f"heartbeat_s must be 60..604800, got {self.heartbeat_s!r}")
        if not 0 <= self.presses_per_week <= 1000:
            raise ValueError(f"presses_per_week must be 0..1000, got {self.presses_per_week!r}")


@dataclass(frozen=True)
class Board:
    """The current figures of one board file (all in mA, ms and mC)."""

    name: str
    title: str
    sleep_ma: float
    mcu_awake_ma: float
    mcu_light_sleep_ma: float
    radio_rx_ma: float
    radio_standby_ma: float
    radio_tx_ma: dict[int, float]
    radio_wake_ms: float
    wake_ms: dict[str, float]
    wake_mc: dict[str, float]
    deep_sleep: bool

    def tx_ma(self, power_dbm: int) -> float:
        """Radio TX current at ``power_dbm``: the figure for that power or the next above."""
        for dbm in sorted(self.radio_tx_ma):
            if dbm >= power_dbm:
                return self.radio_tx_ma[dbm]
        raise ValueError(f"board {self.name} has no TX current for {power_dbm} dBm")


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.json"))


def load_board(name: str) -> Board:
    """A board's figures from hardware/boards/<name>.json (`ValueError` if unknown)."""
    path = BOARDS_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown board {name!r}; boards: {', '.join(board_names())}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    c = raw["currents"]
    return Board(
        name=raw["name"],
        title=raw["title"],
        sleep_ma=c["sleep_ua"] / 1000,
        mcu_awake_ma=c["mcu_awake_ma"],
        mcu_light_sleep_ma=c["mcu_light_sleep_ma"],
        radio_rx_ma=c["radio_rx_ma"],
        radio_standby_ma=c["radio_standby_ma"],
        radio_tx_ma={int(k): v for k, v in c["radio_tx_ma"].items()},
        radio_wake_ms=c["radio_wake_ms"],
        wake_ms={k: v["ms"] for k, v in c["wake"].items()},
        wake_mc={k: v["mc"] for k, v in c["wake"].items()},
        deep_sleep=raw["deep_sleep"],
    )


@dataclass(frozen=True)
class Share:
    """One consumer: what it is, its charge per year, and how that was computed."""

    name: str
    mah_per_year: float
    how: str


@dataclass(frozen=True)
class Budget:
    board: str
    role: str
    battery: str
    profile: Profile
    shares: tuple[Share, ...]
    usable_mah: float
    average_ua: float  # device consumption only (self-discharge excluded)
    years: float | None  # None for mains-powered roles

    @property
    def total_mah_per_year(self) -> float:
        return sum(s.mah_per_year for s in self.shares)

    def as_dict(self) -> dict[str, Any]:
        total = self.total_mah_per_year
        return {
            "board": self.board,
            "role": self.role,
            "battery": self.battery,
            "years": None if self.years is None else round(self.years, 2),
            "average_ua": round(self.average_ua, 2),
            "total_mah_per_year": round(total, 1),
            "usable_mah": self.usable_mah,
            "shares": [
                {
                    "name": s.name,
                    "mah_per_year": round(s.mah_per_year, 2),
                    "percent": round(100 * s.mah_per_year / total, 1) if total else 0.0,
                    "how": s.how,
                }
                for s in self.shares
            ],
            "profile": asdict(self.profile),
        }


def _mah(mc_per_event: float, events_per_year: float) -> float:
    """mC per event times events per year, in mAh."""
    return mc_per_event * events_per_year / 3600


def airtime_ms(payload_len: int, p: Profile) -> float:
    return (
        time_on_air(
            payload_len=payload_len, sf=p.sf, bw_khz=p.bw_khz, cr=p.cr, preamble=p.preamble
        ).time_on_air_us
        / 1000
    )


@dataclass(frozen=True)
class Exchange:
    """The charge of one uplink, mC: carrier sense, transmission, receive window."""

    lbt: float
    tx: float
    rx: float


def exchange(b: Board, p: Profile, payload_len: int, rx_window: bool) -> Exchange:
    awake = b.mcu_awake_ma
    lbt = (b.radio_wake_ms + LBT_SENSE_MS) * (awake + b.radio_rx_ma) / 1000
    tx = airtime_ms(payload_len, p) * (awake + b.tx_ma(p.power_dbm)) / 1000
    rx = 0.0
    if rx_window:
        # The radio listens for the whole window when no downlink comes (the worst and
        # the common case for keep-alives); the MCU waits, awake, from TX end to close.
        rx = (RX_DELAY_MS * awake + RX_WINDOW_MS * (awake + b.radio_rx_ma)) / 1000
    return Exchange(lbt, tx, rx)


def bell_budget(board: Board, battery: Battery, p: Profile) -> Budget:
    heartbeats = SECONDS_PER_YEAR / p.heartbeat_s
    presses = p.presses_per_week * 52.18
    selftests = p.selftests_per_day * 365.25  # each rides on a heartbeat wake
    wakes = heartbeats + presses + p.wakes_per_day_extra * 365.25
    awake = board.mcu_awake_ma
    incident_s = p.incident_min * 60
    ack_s = min(p.ack_after_s, incident_s)
    keepalives = ack_s / p.keepalive_s + (incident_s - ack_s) / (p.keepalive_s * p.acked_slowdown)
    windows = p.alarm_tries + keepalives  # per press
    hb = exchange(board, p, HEARTBEAT_BYTES, rx_window=False)
    st = exchange(board, p, SELFTEST_BYTES, rx_window=False)
    al = exchange(board, p, ALARM_BYTES, rx_window=True)
    up = exchange(board, p, ALARM_UPDATE_BYTES, rx_window=True)
    uplinks = heartbeats + selftests + windows * presses
    in_windows_s = windows * (RX_DELAY_MS + RX_WINDOW_MS) / 1000
    idle_s = max(incident_s - in_windows_s, 0.0)
    idle_ma = awake if p.alarm_mcu == "awake" else board.mcu_light_sleep_ma
    wake_mc = board.wake_mc[p.boot]
    app_ms = p.app_ms[p.boot]
    tx_ma = board.tx_ma(p.power_dbm)

    shares = [
        Share(
            "sleep",
            board.sleep_ma * HOURS_PER_YEAR,
            f"{board.sleep_ma * 1000:g} uA board deep sleep, all year",
        ),
        Share(
            "boot/wake",
            _mah(wake_mc, wakes),
            f"{wake_mc:g} mC per wake ({p.boot} boot, {board.wake_ms[p.boot]:g} ms), "
            f"{wakes:.0f} wakes/year",
        ),
        Share(
            "app run",
            _mah(app_ms * awake / 1000, wakes),
            f"{app_ms:g} ms of the bell's own code per wake at {awake:g} mA (estimate)",
        ),
        Share(
            "LBT",
            _mah(hb.lbt, uplinks),
            f"{board.radio_wake_ms + LBT_SENSE_MS:g} ms radio wake and carrier sense, "
            f"{uplinks:.0f} uplinks/year",
        ),
        Share(
            "TX",
            _mah(hb.tx, heartbeats)
            + _mah(st.tx, selftests)
            + _mah(al.tx * p.alarm_tries + up.tx * keepalives, presses),
            f"SF{p.sf}/{p.bw_khz} kHz at {p.power_dbm} dBm ({tx_ma:g} mA + MCU {awake:g} mA): "
            f"heartbeat {airtime_ms(HEARTBEAT_BYTES, p):.0f} ms on air x {heartbeats:.0f}/year; "
            f"alarm and {keepalives:.1f} keep-alives per press",
        ),
        Share(
            "RX windows",
            _mah(al.rx * p.alarm_tries + up.rx * keepalives, presses),
            f"{RX_DELAY_MS + RX_WINDOW_MS} ms awake per window, radio on for {RX_WINDOW_MS} ms; "
            f"{windows:.1f} windows per press",
        ),
        Share(
            "alarm awake",
            _mah(idle_s * idle_ma, presses),
            f"{idle_s:.0f} s per press with the MCU {p.alarm_mcu} ({idle_ma:g} mA), "
            f"{presses:.0f} presses/year",
        ),
        Share(
            "feedback",
            _mah(
                incident_s * p.led_ma + p.siren_s * p.siren_ma + p.strobe_s * p.strobe_ma, presses
            ),
            f"ring LED {p.led_ma:g} mA for {incident_s:.0f} s, siren {p.siren_ma:g} mA and "
            f"strobe {p.strobe_ma:g} mA for {p.siren_s:g} s, per press",
        ),
        Share(
            "self-test",
            _mah(p.selftest_beep_s * (p.siren_ma + p.led_ma + awake), selftests),
            f"{p.selftests_per_day:g}/day: a {p.selftest_beep_s:g} s beep and blink "
            "(its SELFTEST uplink is under TX)",
        ),
    ]
    device = sum(s.mah_per_year for s in shares)
    shares.append(
        Share(
            "self-discharge",
            battery.capacity_mah * battery.self_discharge_per_year,
            f"{battery.self_discharge_per_year * 100:g} % of {battery.capacity_mah:g} mAh a year",
        )
    )
    usable = battery.capacity_mah * battery.usable
    total = device + shares[-1].mah_per_year
    return Budget(
        board=board.name,
        role="bell",
        battery=battery.name,
        profile=p,
        shares=tuple(shares),
        usable_mah=usable,
        average_ua=device / HOURS_PER_YEAR * 1000,
        years=usable / total,
    )


def mains_budget(board: Board, role: str, p: Profile) -> Budget:
    """A light or bridge listens all the time: its average draw, no battery life."""
    rx_ma = board.mcu_awake_ma + board.radio_rx_ma
    shares = (
        Share(
            "receive",
            rx_ma * HOURS_PER_YEAR,
            f"MCU awake {board.mcu_awake_ma:g} mA + radio RX {board.radio_rx_ma:g} mA, always",
        ),
    )
    return Budget(
        board=board.name,
        role=role,
        battery="mains",
        profile=p,
        shares=shares,
        usable_mah=0.0,
        average_ua=rx_ma * 1000,
        years=None,
    )


def budget(
    board: str | Board,
    role: str = "bell",
    battery: str = "er14505",
    profile: Profile | None = None,
    **overrides: Any,
) -> Budget:
    """One device's yearly charge by consumer and, for a bell, its life on ``battery``.

    ``overrides`` are `Profile` fields (``heartbeat_s=600``, ``boot="naive"`` ...);
    ``board`` may also be a `Board` with changed figures (see `sensitivity`). Raises
    ValueError naming the bad argument.
    """
    b = load_board(board) if isinstance(board, str) else board
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if battery not in BATTERIES:
        raise ValueError(f"battery must be one of {', '.join(BATTERIES)}, got {battery!r}")
    p = replace(profile or Profile(), **overrides)
    if role != "bell":
        return mains_budget(b, role, p)
    return bell_budget(b, BATTERIES[battery], p)


def sensitivity(
    board: str, battery: str = "er14505", profile: Profile | None = None
) -> list[dict[str, Any]]:
    """Years of a bell when one assumption changes at a time: which ones decide it."""
    base_board = load_board(board)
    p = profile or Profile()
    rows: list[dict[str, Any]] = []

    def row(assumption: str, value: str, years: float | None) -> None:
        rows.append({"assumption": assumption, "value": value, "years": round(years or 0, 1)})

    for ua in (5, 10, 15, 20, 40):
        b = replace(base_board, sleep_ma=ua / 1000)
        row("sleep current", f"{ua} uA", budget(b, "bell", battery, p).years)
    for boot in BOOT_PROFILES:
        row(
            "boot per wake",
            f"{boot} ({base_board.wake_mc[boot]:g} mC)",
            budget(base_board, "bell", battery, p, boot=boot).years,
        )
    for sf in (7, 9, 12):
        row("spreading factor", f"SF{sf}", budget(base_board, "bell", battery, p, sf=sf).years)
    for presses in (0, 1, 7):
        row(
            "presses per week",
            f"{presses}",
            budget(base_board, "bell", battery, p, presses_per_week=presses).years,
        )
    for mcu in ("awake", "lightsleep"):
        row(
            "MCU during an alarm",
            mcu,
            budget(base_board, "bell", battery, p, alarm_mcu=mcu).years,
        )
    for hb in (900, 3600, 21600):
        row(
            "heartbeat",
            f"{hb // 60} min",
            budget(base_board, "bell", battery, p, heartbeat_s=hb).years,
        )
    return rows


# Named combinations for the bell, from the firmware as it is today to the design target.
SCENARIOS: tuple[tuple[str, dict[str, Any], float | None], ...] = (
    # (description, Profile overrides, sleep current in uA or None for the board's own)
    ("firmware today: naive boot, 1 press/week, awake through alarms", {"boot": "naive"}, None),
    ("frozen boot, 1 press/week, awake through alarms", {}, None),
    ("frozen boot, heartbeats only (no presses)", {"presses_per_week": 0}, None),
    ("frozen boot, heartbeats only, 10 uA sleep", {"presses_per_week": 0}, 10.0),
    (
        "frozen, 1 press/month, light sleep in alarms, 10 uA sleep, SF9",
        {"presses_per_week": 12 / 52.18, "alarm_mcu": "lightsleep"},
        10.0,
    ),
    (
        "frozen, 1 press/month, light sleep in alarms, 10 uA sleep, SF7",
        {"presses_per_week": 12 / 52.18, "alarm_mcu": "lightsleep", "sf": 7},
        10.0,
    ),
)


def scenarios(board: str, battery: str = "er14505") -> list[dict[str, Any]]:
    """Years of a bell in each of `SCENARIOS` (hourly heartbeats)."""
    base = load_board(board)
    out = []
    for text, overrides, sleep_ua in SCENARIOS:
        b = base if sleep_ua is None else replace(base, sleep_ma=sleep_ua / 1000)
        result = budget(b, "bell", battery, **overrides)
        out.append(
            {
                "scenario": text,
                "years": round(result.years or 0, 1),
                "average_ua": round(result.average_ua, 1),
            }
        )
    return out
