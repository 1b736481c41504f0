"""`anshim radio airtime`: what a user sees, in text and JSON, and the one-line errors.

Each test runs twice: through the real console entry (``python -m tools.anshim.cli`` in
a subprocess) and in-process through a parser holding only the ``radio`` noun, built the
way `tools.anshim.cli.build_parser` builds it. The subprocess run is skipped while the
CLI's other nouns cannot be imported.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tools.anshim import radio
from tools.anshim.common import CliError

REPO = Path(__file__).resolve().parents[2]

try:
    import tools.anshim.cli  # noqa: F401  (imports every noun module)

    CLI_IMPORTS = True
except ImportError:
    CLI_IMPORTS = False

Run = Callable[..., tuple[int, str, str]]


def _run_in_process(*argv: str) -> tuple[int, str, str]:
    """Parse and dispatch as `tools.anshim.cli.main` does, with only the radio noun."""
    parser = argparse.ArgumentParser(prog="anshim")
    sub = parser.add_subparsers(dest="noun", metavar="<noun>", required=True)
    radio.register(sub)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        args = parser.parse_args(argv)
        try:
            code: int = args.handler(args)
        except CliError as exc:
            print(f"anshim: error: {exc}", file=sys.stderr)
            code = exc.exit_code
    return code, out.getvalue(), err.getvalue()


def _run_subprocess(*argv: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.anshim.cli", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(params=["in-process", "subprocess"])
def run(request: pytest.FixtureRequest) -> Run:
    if request.param == "subprocess":
        if not CLI_IMPORTS:
            pytest.skip("tools.anshim.cli does not import yet (frame/bench nouns missing)")
        return _run_subprocess
    return _run_in_process


def test_single_sf_human_output(run: Run) -> None:
    code, out, err = run("radio", "airtime", "--sf", "9", "--payload", "20")
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == (
        "SF9, 20 B payload, BW 125 kHz, CR 4/5, preamble 8, explicit header, CRC on"
    )
    # 45.25 symbols × 4.096 ms (see tests/unit/test_airtime.py for the arithmetic).
    assert "time on air: 185.344 ms" in lines
    assert "symbol time: 4.096 ms" in lines
    assert "LDRO:        off" in lines
    assert "fits KR920 4 s limit: yes" in lines


def test_sf12_turns_ldro_on(run: Run) -> None:
    code, out, _ = run("radio", "airtime", "--sf", "12", "--payload", "24")
    assert code == 0
    assert "time on air: 1482.752 ms" in out  # micropython-lib's figure
    assert "symbol time: 32.768 ms" in out
    assert "LDRO:        on" in out


def test_options_change_the_result(run: Run) -> None:
    code, out, _ = run(
        "radio",
        "airtime",
        "--sf",
        "7",
        "--payload",
        "20",
        "--cr",
        "4/8",
        "--preamble",
        "12",
        "--implicit-header",
        "--no-crc",
        "--ldro",
        "on",
    )
    assert code == 0
    # SF7 forced LDRO: 20 bits/block; 8·20 − 28 + 8 = 140 bits → 7 blocks · 8 = 56 + 8.
    # (12 + 4.25 + 64) · 1.024 ms = 82.176 ms.
    assert "implicit header, CRC off" in out
    assert "CR 4/8, preamble 12" in out
    assert "time on air: 82.176 ms" in out
    assert "LDRO:        on" in out


def test_table_over_sf7_to_sf12(run: Run) -> None:
    code, out, err = run("radio", "airtime", "--payload", "20")
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "20 B payload, BW 125 kHz, CR 4/5, preamble 8, explicit header, CRC on"
    header = ["SF", "time", "on", "air", "(ms)", "symbol", "(ms)", "LDRO", "fits", "4", "s"]
    assert lines[1].split() == header
    rows = [line.split() for line in lines[2:]]
    assert rows == [
        ["7", "56.576", "1.024", "off", "yes"],
        ["8", "102.912", "2.048", "off", "yes"],
        ["9", "185.344", "4.096", "off", "yes"],
        ["10", "370.688", "8.192", "off", "yes"],
        ["11", "741.376", "16.384", "on", "yes"],
        ["12", "1318.912", "32.768", "on", "yes"],
    ]


def test_table_flags_frames_over_the_4_s_limit(run: Run) -> None:
    # 255 B at SF12: 8 + ceil((2040+16−48+28)/40)·5 = 8 + 51·5 = 263 symbols;
    # (12.25 + 263) · 32.768 ms = 9019.392 ms, far over KR920's 4 s.
    code, out, _ = run("radio", "airtime", "--payload", "255")
    assert code == 0
    sf12 = out.splitlines()[-1].split()
    assert sf12 == ["12", "9019.392", "32.768", "on", "NO"]


def test_json_single(run: Run) -> None:
    code, out, _ = run("radio", "airtime", "--sf", "9", "--payload", "20", "--json")
    assert code == 0
    assert json.loads(out) == {
        "sf": 9,
        "bw_khz": 125,
        "cr": "4/5",
        "preamble": 8,
        "payload_len": 20,
        "implicit_header": False,
        "crc": True,
        "ldro": False,
        "symbol_time_us": 4096,
        "time_on_air_us": 185_344,
        "fits_kr920_max_tx": True,
    }


def test_json_table(run: Run) -> None:
    code, out, _ = run("radio", "airtime", "--payload", "24", "--bw", "250", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [row["sf"] for row in rows] == [7, 8, 9, 10, 11, 12]
    assert all(row["bw_khz"] == 250 for row in rows)
    # At 250 kHz only SF12 reaches the 16 ms symbol time.
    assert [row["ldro"] for row in rows] == [False] * 5 + [True]
    # 24 B at SF7/250 kHz: 60.25 symbols × 512 µs.
    assert rows[0]["time_on_air_us"] == 30_848
    assert all(isinstance(row["time_on_air_us"], int) for row in rows)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sf", "13", "--payload", "20"], "--sf must be 5..12, got 13"),
        (["--sf", "nine", "--payload", "20"], "--sf must be an integer, got 'nine'"),
        (["--sf", "9", "--payload", "-1"], "--payload must be 0..255, got -1"),
        (["--payload", "256"], "--payload must be 0..255, got 256"),
        (["--sf", "9", "--payload", "20", "--cr", "4/9"], "--cr must be one of 4/5, 4/6, 4/7, 4/8"),
        (["--sf", "9", "--payload", "20", "--bw", "100"], "--bw must be one of 7.8, 10.4,"),
        (["--sf", "9", "--payload", "20", "--bw", "wide"], "--bw must be a number of kHz"),
        (["--sf", "9", "--payload", "20", "--preamble", "4"], "--preamble must be 6..65535, got 4"),
        (
            ["--sf", "9", "--payload", "20", "--ldro", "maybe"],
            "--ldro must be one of auto, on, off",
        ),
    ],
)
def test_bad_input_is_one_clean_line(run: Run, argv: list[str], message: str) -> None:
    code, out, err = run("radio", "airtime", *argv)
    assert code == 2
    assert out == ""
    assert err.startswith(f"anshim: error: {message}")
    assert err.count("\n") == 1
    assert "Traceback" not in err
