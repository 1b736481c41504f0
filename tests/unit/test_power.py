"""`tools.power` and `anshim power`: the bell's battery budget from the board files.

The arithmetic is checked against hand calculations (a year of sleep, one heartbeat's
time on air from `protocol.airtime`), against the team's anchor model
(notes/radio-and-performance.md section 6), and for the behaviour a reader relies on:
each assumption moves the result the right way. The CLI is driven through argparse as
`anshim` does (its noun module's ``register``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from typing import Any

import pytest

from protocol.airtime import time_on_air
from tools import power
from tools.anshim import power as power_cli
from tools.anshim.common import CliError

HEARTBEATS_PER_YEAR = 365.25 * 24


def _shares(b: power.Budget) -> dict[str, float]:
    return {s.name: s.mah_per_year for s in b.shares}


def test_every_board_loads() -> None:
    for name in power.board_names():
        board = power.load_board(name)
        assert board.sleep_ma > 0 and board.tx_ma(14) > board.radio_rx_ma
    with pytest.raises(ValueError, match="unknown board"):
        power.load_board("esp8266")


def test_sleep_share_is_a_year_of_the_board_sleep_current() -> None:
    b = power.budget("heltec-v3")
    assert _shares(b)["sleep"] == pytest.approx(0.015 * HEARTBEATS_PER_YEAR)  # 131.5 mAh
    assert _shares(b)["self-discharge"] == pytest.approx(24.0)  # 1 % of 2400 mAh


def test_heartbeat_tx_uses_the_gateways_time_on_air() -> None:
    b = power.budget("heltec-v3", presses_per_week=0, selftests_per_day=0)
    toa_ms = time_on_air(payload_len=24, sf=9, bw_khz=125).time_on_air_us / 1000
    board = power.load_board("heltec-v3")
    per_heartbeat_mc = toa_ms * (board.tx_ma(14) + board.mcu_awake_ma) / 1000
    assert _shares(b)["TX"] == pytest.approx(per_heartbeat_mc * HEARTBEATS_PER_YEAR / 3600)


def test_matches_the_teams_anchor_model() -> None:
    """notes section 6: 10 uA sleep, 100 mA TX, SF9/20 B, hourly: naive boot 235 mAh/yr
    (sleep 88), optimised 137. Our model adds the MCU during TX and the app's run time,
    so it may only be a little higher."""
    board = replace(power.load_board("heltec-v3"), sleep_ma=0.010)
    for boot, anchor in (("naive", 235), ("frozen", 137)):
        b = power.budget(board, presses_per_week=0, selftests_per_day=0, boot=boot)
        device = b.total_mah_per_year - _shares(b)["self-discharge"]
        assert anchor <= device <= anchor * 1.35, (boot, device)
        assert _shares(b)["sleep"] == pytest.approx(87.7, abs=0.1)


def _years(board: str = "heltec-v3", **kw: Any) -> float:
    years = power.budget(board, **kw).years
    assert years is not None
    return years


def test_each_assumption_moves_the_result_the_right_way() -> None:
    base = _years()
    assert _years(boot="naive") < base
    assert _years(sf=12) < base < _years(sf=7)
    assert _years(presses_per_week=0) > base
    assert _years(alarm_mcu="lightsleep") > base
    assert _years(heartbeat_s=900) < base
    assert _years(battery="er34615") > 5 * base
    assert _years("lilygo-t3s3") < base


def test_where_the_charge_goes() -> None:
    shares = _shares(power.budget("heltec-v3"))
    assert set(shares) == {
        "sleep",
        "boot/wake",
        "app run",
        "LBT",
        "TX",
        "RX windows",
        "alarm awake",
        "feedback",
        "self-test",
        "self-discharge",
    }
    # With one 10-minute alarm a week and the MCU awake through it, the alarm is the
    # largest consumer; without presses, the board's sleep current is.
    assert max(shares, key=lambda k: shares[k]) == "alarm awake"
    quiet = _shares(power.budget("heltec-v3", presses_per_week=0))
    assert max(quiet, key=lambda k: quiet[k]) == "sleep"
    assert quiet["alarm awake"] == quiet["feedback"] == quiet["RX windows"] == 0


def test_the_ten_year_goal_and_what_decides_it() -> None:
    """A bell lasts 10 years on one ER14505 at hourly heartbeats only with a frozen boot,
    a system sleep current near 10 uA, and few presses; as shipped, it does not."""
    named = {r["scenario"]: r["years"] for r in power.scenarios("heltec-v3")}
    today, frozen, quiet, quiet10, target9, target7 = named.values()
    assert target9 < target7
    assert today < frozen < quiet < quiet10
    assert quiet < 10 <= quiet10  # the board's 15 uA alone keeps it under 10 years
    assert target7 >= 10
    assert today < 5
    naive = power.budget(
        replace(power.load_board("heltec-v3"), sleep_ma=0.010), presses_per_week=0, boot="naive"
    )
    assert naive.years is not None and naive.years < 8  # the naive boot alone breaks it


def test_sensitivity_rows() -> None:
    rows = power.sensitivity("heltec-v3")
    by = {(r["assumption"], r["value"]): r["years"] for r in rows}
    assert by[("sleep current", "5 uA")] > by[("sleep current", "40 uA")]
    assert by[("spreading factor", "SF7")] > by[("spreading factor", "SF12")]
    assert {r["assumption"] for r in rows} >= {"sleep current", "boot per wake"}


def test_mains_roles_have_no_battery_life() -> None:
    b = power.budget("pico-w", role="light")
    assert b.years is None and b.average_ua > 20_000


def test_bad_arguments_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="role"):
        power.budget("heltec-v3", role="kettle")
    with pytest.raises(ValueError, match="battery"):
        power.budget("heltec-v3", battery="cr2032")
    with pytest.raises(ValueError, match="boot"):
        power.budget("heltec-v3", boot="warm")
    with pytest.raises(ValueError, match="heartbeat_s"):
        power.budget("heltec-v3", heartbeat_s=5)
    with pytest.raises(ValueError, match="TX current"):
        power.budget("heltec-v3", power_dbm=30)


# -- the CLI ----------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="anshim")
    power_cli.register(parser.add_subparsers(dest="noun", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def test_cli_prints_the_breakdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["power", "--board", "heltec-v3", "--role", "bell"]) == 0
    out = capsys.readouterr().out
    for word in ("sleep", "boot/wake", "TX", "RX windows", "self-discharge", "battery life"):
        assert word in out
    assert "what decides it" in out and "design target" in out


def test_cli_json_and_goal(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["power", "--board", "heltec-v3", "--heartbeat", "3600", "--presses-per-week", "0"]
    assert _run([*argv, "--json", "--goal-years", "5"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert data["goal_met"] is True and data["years"] > 5
    assert {s["name"] for s in data["shares"]} >= {"sleep", "TX", "self-discharge"}
    assert sum(s["percent"] for s in data["shares"]) == pytest.approx(100, abs=0.5)
    assert data["sensitivity"] and data["scenarios"]
    assert _run([*argv, "--json", "--goal-years", "10"]) == 1  # a failed check
    assert json.loads(capsys.readouterr().out)["goal_met"] is False


def test_cli_usage_errors_exit_2() -> None:
    for argv in (
        ["power", "--board", "nope"],
        ["power", "--board", "heltec-v3", "--heartbeat", "hourly"],
        ["power", "--board", "heltec-v3", "--battery", "aa"],
    ):
        with pytest.raises(CliError) as info:
            _run(argv)
        assert info.value.exit_code == 2


def test_cli_light_is_mains_powered(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["power", "--board", "heltec-v3", "--role", "light"]) == 0
    assert "mains powered" in capsys.readouterr().out
