"""Every board file in hardware/boards/ is complete, consistent and safe to wire.

The board file is what `main.py` builds the hardware from on the device and what
`anshim power` budgets with; a missing key is a crash at boot, a pin used twice a short
circuit or a silent input, a wake pin that is not RTC-capable a bell that never wakes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOARDS_DIR = ROOT / "hardware" / "boards"
BOARD_FILES = sorted(BOARDS_DIR.glob("*.json"))
BOARDS = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in BOARD_FILES}

TOP_KEYS = {
    "name",
    "title",
    "mcu",
    "micropython_board",
    "mpy_march",
    "roles",
    "radio",
    "pins",
    "role_pins",
    "active_low",
    "wake_pins",
    "rtc_gpio",
    "deep_sleep",
    "battery",
    "storage",
    "light",
    "currents",
    "sources",
}
RADIO_PINS = {
    "lora_sck",
    "lora_mosi",
    "lora_miso",
    "lora_cs",
    "lora_reset",
    "lora_busy",
    "lora_dio1",
}
ROLE_PINS = {
    "bell": {"button", "tamper", "led", "buzzer", "strobe"},
    "light": {"pir", "photocell_adc", "lamp_current_adc", "pwm_out"},
    "bridge": set(),
}
CURRENT_KEYS = {
    "sleep_ua",
    "mcu_awake_ma",
    "mcu_light_sleep_ma",
    "radio_rx_ma",
    "radio_standby_ma",
    "radio_tx_ma",
    "radio_wake_ms",
    "wake",
}
# Analogue inputs: ESP32-S3 ADC1 is GPIO1-10 and ADC2 GPIO11-20 (usable with Wi-Fi off);
# the RP2040's ADC is GP26-28.
ADC_PINS = {"xtensawin": set(range(1, 21)), "armv6m": {26, 27, 28}}
ESP32S3_GPIO = set(range(0, 22)) | set(range(26, 49))


def _pins(board: dict[str, Any], role: str) -> dict[str, Any]:
    pins = dict(board["pins"])
    pins.update(board["role_pins"][role])
    return pins


def test_there_are_the_three_boards() -> None:
    assert set(BOARDS) == {"heltec-v3", "lilygo-t3s3", "pico-w"}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_board_has_every_key(name: str) -> None:
    board = BOARDS[name]
    assert set(board) >= TOP_KEYS, TOP_KEYS - set(board)
    assert board["name"] == name
    assert set(board["pins"]) >= RADIO_PINS
    assert {"led", "battery_adc"} <= set(board["pins"])
    for role, needed in ROLE_PINS.items():
        assert needed <= set(board["role_pins"][role]), (
            role,
            needed - set(board["role_pins"][role]),
        )
    assert set(board["currents"]) >= CURRENT_KEYS
    for profile in ("naive", "frozen"):
        wake = board["currents"]["wake"][profile]
        assert wake["ms"] > 0 and wake["mc"] > 0
    assert "14" in board["currents"]["radio_tx_ma"]
    assert board["radio"]["tcxo_mv"] == 1800 and board["radio"]["chip"] == "SX1262"
    assert {"freq_hz", "inverted"} <= set(board["light"]["dimming"])


@pytest.mark.parametrize("name", sorted(BOARDS))
@pytest.mark.parametrize("role", sorted(ROLE_PINS))
def test_no_pin_used_twice(name: str, role: str) -> None:
    pins = _pins(BOARDS[name], role)
    seen: dict[Any, str] = {}
    for function, pin in pins.items():
        assert pin not in seen, f"{name} {role}: pin {pin} is both {seen[pin]} and {function}"
        seen[pin] = function


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_pins_exist_and_analogue_inputs_are_adc_pins(name: str) -> None:
    board = BOARDS[name]
    for role in ROLE_PINS:
        for function, pin in _pins(board, role).items():
            if isinstance(pin, str):
                assert pin == "LED"  # the Pico W's LED on the CYW43
                continue
            if board["mpy_march"] == "xtensawin":
                assert pin in ESP32S3_GPIO, (function, pin)
            else:
                assert 0 <= pin <= 29, (function, pin)
            if function.endswith("_adc"):
                assert pin in ADC_PINS[board["mpy_march"]], (function, pin)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_wake_pins_are_rtc_capable(name: str) -> None:
    board = BOARDS[name]
    rtc = set(board["rtc_gpio"])
    if board["mpy_march"] == "xtensawin":
        assert rtc == set(range(22))  # ESP32-S3: RTC GPIO 0-21
    for role, wakes in board["wake_pins"].items():
        pins = _pins(board, role)
        for function in wakes:
            assert pins[function] in rtc, f"{name}: {function} on {pins[function]} cannot wake"
    if board["deep_sleep"]:
        # A battery bell sleeps deeply and must wake on its button and its tamper switch.
        assert {"button", "tamper"} <= set(board["wake_pins"]["bell"])
    else:
        assert board["wake_pins"] == {} and rtc == set()


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_inputs_avoid_strapping_and_reserved_pins(name: str) -> None:
    board = BOARDS[name]
    strapping = set(board.get("strapping_pins", []))
    reserved = {board["pins"][k] for k in board.get("reserved", {})}
    for role in ROLE_PINS:
        for function, pin in board["role_pins"][role].items():
            if function == "led":
                continue  # an output: a strapping pin's pull is harmless
            assert pin not in strapping, f"{name} {role}: {function} on strapping pin {pin}"
            assert pin not in reserved, f"{name} {role}: {function} on reserved pin {pin}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_battery_and_storage_are_consistent(name: str) -> None:
    board = BOARDS[name]
    bat = board["battery"]
    r_top, r_bottom = bat["divider_ohm"]
    assert bat["divider"] == pytest.approx((r_top + r_bottom) / r_bottom, rel=0.01)
    assert bat["adc_pin"] in board["pins"]
    if bat["enable_pin"] is not None:
        assert bat["enable_pin"] in board["pins"]
    storage = board["storage"]
    assert storage["kind"] in ("nvs", "files")
    if storage["kind"] == "files":  # no NVS: LittleFS files, and no RAM through deep sleep
        assert storage["rtc_memory_bytes"] == 0 and not board["deep_sleep"]
    else:
        assert storage["rtc_memory_bytes"] == 2048


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_figure_has_a_source(name: str) -> None:
    sources = BOARDS[name]["sources"]
    for key in ("radio_pins", "board_pins", "free_pins", "rtc_gpio", "currents"):
        assert sources.get(key), key
    assert len(sources["radio_pins"]) >= 2  # checked against two independent files


def test_main_py_reads_only_keys_the_boards_have() -> None:
    """The keys firmware/*/main.py take from a board file exist in every board."""
    radio_pins = {f"lora_{p}" for p in ("sck", "mosi", "miso", "cs", "busy", "dio1", "reset")}
    lib = (ROOT / "firmware" / "lib" / "board.py").read_text(encoding="utf-8")
    assert all(f'"{p.removeprefix("lora_")}"' in lib for p in radio_pins)  # what make_modem reads
    for name, board in BOARDS.items():
        assert radio_pins <= set(board["pins"]), (name, radio_pins - set(board["pins"]))
        assert {"spi_id", "spi_baud", "tcxo_mv"} <= set(board["radio"]), name
        assert board["storage"]["kind"] in ("nvs", "files"), name
    for app in ("light", "bridge"):
        src = (ROOT / "firmware" / app / "main.py").read_text(encoding="utf-8")
        used = set(re.findall(r'\bp\["(\w+)"\]', src))
        sections = set(re.findall(r'board\["(\w+)"\]', src))
        for name, board in BOARDS.items():
            assert sections <= set(board), (app, name, sections - set(board))
            assert used <= set(_pins(board, app)), (app, name, used - set(_pins(board, app)))
