"""`anshim gateway check-config` and `anshim gateway status`, as staff use them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.transports.sim import SimTransport
from protocol import frames as fr
from tests.conftest import ROOT
from tests.integration.helpers import register_fleet, running_gateway, settings

pytestmark = pytest.mark.integration


def anshim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.anshim.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_example_config_is_valid() -> None:
    r = anshim("gateway", "check-config", "--config", "gateway/gateway.example.toml", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["gateway_id"] == "seongbuk-jeongneung-1"
    assert out["topic_prefix"] == "anshim/seongbuk"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[mqtt]\nurl = "http://broker"\n', "mqtt.url: 'http://broker' must look like mqtt://"),
        ("[rules]\nstrobe_radius_m = -1\n", "rules.strobe_radius_m: -1 must be between"),
        (
            '[transports.serial]\nport = "/dev/ttyACM0"\nfreq_khz = 922150\n',
            "transports.serial.freq_khz: 922150 is not on the KR920 200 kHz raster",
        ),
        ('[gateway]\nsitee = "x"\n', "gateway.sitee: unknown key"),
        ("[gateway\n", "not valid TOML"),
        (
            '[supervision]\nheartbeat_grace = "long"\n',
            "supervision.heartbeat_grace: 'long' must be",
        ),
    ],
)
def test_bad_config_names_the_key_and_value(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(toml)
    r = anshim("gateway", "check-config", "--config", str(path))
    assert r.returncode == 2
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_no_config_runs_on_embedded_defaults(tmp_path: Path) -> None:
    r = anshim("gateway", "check-config", "--data-dir", str(tmp_path / "d"))
    assert r.returncode == 0
    assert "embedded defaults" in r.stdout
    assert "no upstream configured: events wait in the outbox" in r.stdout


async def test_status_shows_open_alarms_and_the_waiting_outbox(tmp_path: Path) -> None:
    s = settings(tmp_path)  # no upstream: everything waits in the outbox
    bell = register_fleet(s)["bell"]
    sim = SimTransport()
    async with running_gateway(s, [sim]):
        sim.inject(bell.frame(fr.Alarm(), flags=fr.Flags.RX_OPEN))
    r = anshim("gateway", "status", "--data-dir", str(s.data_dir), "--json")
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["devices"] == 3
    assert [a["event_id"] for a in status["open_alarms"]] == [fr.event_id(bell.device_id, 1)]
    assert status["outbox"] >= 1
    human = anshim("gateway", "status", "--data-dir", str(s.data_dir))
    assert "open alarms 1" in human.stdout
    missing = anshim("gateway", "status", "--data-dir", str(tmp_path / "nothing"))
    assert missing.returncode == 1 and "no gateway database" in missing.stderr
    db = s.data_dir / "anshim.db"
    assert db.stat().st_mode & 0o777 == 0o600
