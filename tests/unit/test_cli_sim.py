"""`anshim sim`: the report as text, JSON and plots; the sweep; usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.anshim.cli import main


def test_seongbuk_report_text_json_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["sim", "--scenario", "seongbuk", "--hours", "0.25", "--out", str(out), "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    assert "Anshim fleet simulation" in text and "Goals:" in text
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["scenario"]["name"] == "seongbuk"
    from tools.sim.scenario import load_scenario

    shipped = load_scenario("seongbuk").devices
    assert report["scenario"]["devices"] == {
        "bell": sum(d.kind == "bell" for d in shipped),
        "light": sum(d.kind == "light" for d in shipped),
    }
    assert report["presses"]["counted"] == 1  # the scenario's first press, at 120 s
    assert report["consistency"] == []
    for name in ("latency_cdf.png", "channel.png", "delivery.png", "report.txt"):
        assert (out / name).stat().st_size > 0


def test_city_json_and_a_small_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["sim", "--devices", "40", "--gateways", "1", "--hours", "0.2", "--json", "--quiet"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"]["devices"] == {"bell": 28, "light": 12}
    assert "samples" not in report["presses"]
    assert report["run"]["device_hours"] == pytest.approx(8, abs=0.1)
    code = main(
        [
            "sim",
            "--sweep",
            "20,40",
            "--sweep-hours",
            "0.2",
            "--gateways",
            "1",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    sweep = json.loads((tmp_path / "sweep.json").read_text(encoding="utf-8"))
    assert [r["devices"] for r in sweep["rows"]] == [20, 40]
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert "Sweep:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--hours", "0"], "must be positive"),
        (["--mqtt", "localhost"], "mqtt://host:port"),
        (["--scenario", "gangnam"], "no scenario 'gangnam'"),
        (["--sweep", "10,x"], "give sizes like"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", *argv, "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_sim_speed_for_anshim_bench() -> None:
    from tools.sim.bench import sim_speed

    entry = sim_speed(devices=30, hours=0.1, runs=1)
    assert entry["name"] == "sim.speed" and entry["unit"].startswith("simulated device-hours")
    assert entry["median"] > 0 and len(entry["runs"]) == 1
