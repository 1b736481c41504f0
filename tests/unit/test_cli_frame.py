"""`anshim frame` and `anshim bench` as a crew or developer runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, load_vectors

KEY = "000102030405060708090a0b0c0d0e0f"
ALARM = next(v for v in load_vectors("frames.json")["frames"] if v["name"] == "alarm-first-press")


def anshim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.anshim.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_decode_with_key_shows_fields_and_mic_ok() -> None:
    r = anshim("frame", "decode", ALARM["hex"], "--key", KEY)
    assert r.returncode == 0, r.stderr
    assert "ALARM uplink  device 0a000001  counter 7" in r.stdout
    assert "battery_mv   3600" in r.stdout
    assert "MIC ok" in r.stdout
    assert "event id 0a000001-00000007" in r.stdout


def test_decode_with_wrong_key_says_mic_mismatch_without_traceback() -> None:
    r = anshim("frame", "decode", ALARM["hex"], "--key", "ff" * 16)
    assert r.returncode == 1
    assert r.stderr.startswith("anshim: error: MIC mismatch")
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_decode_without_key_says_mic_not_checked() -> None:
    r = anshim("frame", "decode", ALARM["hex"], "--json")
    out = json.loads(r.stdout)
    assert out["mic"] == "not checked (no --key)"
    assert out["fields"] == ALARM["fields"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frame", "decode", "21010a"], "frame is 3 bytes"),
        (["frame", "decode", "xyz"], "frame is not valid hex"),
        (["frame", "decode", ALARM["hex"], "--key", "0011"], "--key must be 16 bytes"),
        (
            [
                "frame",
                "encode",
                "ALARM",
                "--device",
                "0a000001",
                "--counter",
                "1",
                "--key",
                KEY,
                "press_count=300",
            ],
            "ALARM.press_count = 300 is out of range",
        ),
        (
            ["frame", "encode", "ALARM", "--device", "zz", "--counter", "1", "--key", KEY],
            "device id must be hex",
        ),
        (
            ["frame", "encode", "PING", "--device", "1", "--counter", "1", "--key", KEY],
            "unknown frame type 'PING'",
        ),
        (
            [
                "frame",
                "encode",
                "ALARM",
                "--device",
                "1",
                "--counter",
                "1",
                "--key",
                KEY,
                "--flags",
                "urgent",
            ],
            "unknown flag 'urgent'",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    r = anshim(*args)
    assert r.returncode in (1, 2)
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_encode_matches_the_vector_and_round_trips() -> None:
    r = anshim(
        "frame",
        "encode",
        "ALARM",
        "--device",
        "0a000001",
        "--counter",
        "7",
        "--key",
        KEY,
        "--flags",
        "rx_open",
        "press_count=1",
        "battery_mv=3600",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ALARM["hex"]


def test_encode_command_config_utf8_json() -> None:
    r = anshim(
        "frame",
        "encode",
        "COMMAND",
        "opcode=CONFIG",
        "key=place",
        "value=성북 3",
        "--device",
        "0a000001",
        "--counter",
        "70000",
        "--key",
        KEY,
        "--json",
    )
    out = json.loads(r.stdout)
    assert out["direction"] == "downlink" and out["fields"]["value"] == "성북 3"
    back = anshim("frame", "decode", out["hex"], "--key", KEY, "--last-counter", "69999", "--json")
    assert json.loads(back.stdout)["counter"] == 70000


def test_bench_json_reports_every_engine() -> None:
    r = anshim("bench", "codec", "--runs", "1", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["machine"]["cores"] >= 1
    names = {x["name"] for x in report["results"]}
    assert names == {
        "codec.decode_verify.struct",
        "codec.decode_verify.compiled",
        "codec.decode_verify.construct",
    }
    assert all(x["median"] > 0 for x in report["results"])


def test_bench_unknown_entry() -> None:
    r = anshim("bench", "warp-drive")
    assert r.returncode == 2 and "unknown benchmark 'warp-drive'" in r.stderr
