"""The board file and the radio it describes: what every role's ``main.py`` shares.

``/board.json`` (hardware/boards/<board>.json, written by ``anshim firmware build``) names
the pins, the radio's SPI bus and TCXO, and the storage kind. Only a ``main.py`` calls
these: the device classes themselves get their hardware passed in.

``machine`` and ``esp32`` are imported inside the functions, at call time, so the host
tests can boot a ``main.py`` on fake hardware modules.
"""

import json
import sys

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Dict, Optional

BOARD_FILE = "/board.json"

# Radio settings when the config has none: KR920 default channel 922.1 MHz, SF9/125 kHz.
RADIO_DEFAULTS = {
    "freq_khz": 922_100,
    "sf": 9,
    "bw_khz": 125,
    "cr": 5,
    "preamble": 8,
    # Conducted power. KR920 allows +14 dBm EIRP at >= 922.1 MHz (RP002): with the usual
    # 2.15 dBi antenna that is 11 dBm at the chip (+13.15 dBm EIRP).
    "power_dbm": 11,
}


def load_board(path: str = BOARD_FILE) -> "Any":
    with open(path) as f:
        return json.load(f)


def board_get(board: "Any", *path: str) -> "Any":
    """``board[path...]``, or the flat ``pins`` spelling (``pins.lora.sck`` is also
    looked up as ``pins.lora_sck``), or None."""
    node = board
    for name in path:
        node = node.get(name) if isinstance(node, dict) else None
    if node is None and len(path) > 2:
        flat = board.get(path[0])
        if isinstance(flat, dict):
            node = flat.get("_".join(path[1:]))
    return node


def pin_no(board: "Any", *path: str) -> "Optional[int]":
    v = board_get(board, "pins", *path)
    return v if isinstance(v, int) else None


def make_store(board: "Any") -> "Any":
    """NVS (+ RTC memory for the exact counter, kept through deep sleep) on the ESP32;
    files written temp-then-rename elsewhere (the Pico W has neither NVS nor RTC RAM)."""
    import machine
    from store import FileBackend, NvsBackend, Store

    kind = board_get(board, "storage", "kind") or ("nvs" if sys.platform == "esp32" else "file")
    if kind == "nvs":
        import esp32

        return Store(NvsBackend(esp32.NVS("anshim")), machine.RTC())
    return Store(FileBackend("/state"))


def lora_cfg(cfg: "Dict[str, Any]") -> "Dict[str, Any]":
    """micropython-lib ``lora`` settings from our radio keys (defaults where missing)."""
    r = {}
    for key in RADIO_DEFAULTS:
        r[key] = cfg.get(key, RADIO_DEFAULTS[key])
    return {
        "freq_khz": r["freq_khz"],
        "sf": r["sf"],
        "bw": str(r["bw_khz"]),
        "coding_rate": r["cr"],
        "preamble_len": r["preamble"],
        "output_power": r["power_dbm"],
        "crc_en": True,
    }


def make_modem(board: "Any", cfg: "Dict[str, Any]") -> "Any":
    """The SX1262 on this board, as micropython-lib's ``AsyncSX1262``.

    The driver checks the chip's status at construction and raises if the SPI wiring or
    the TCXO voltage is wrong ("Invalid initial status", "BUSY timeout"): a mis-wired
    board fails loudly at boot.
    """
    import machine

    # micropython-lib lora-sx126x + lora-async, installed with mip (no stubs)
    from lora import AsyncSX1262  # type: ignore[import-not-found]

    Pin = machine.Pin
    spi = machine.SPI(
        board_get(board, "radio", "spi_id") or 1,
        baudrate=board_get(board, "radio", "spi_baud") or 2_000_000,
        sck=Pin(pin_no(board, "lora", "sck")),
        mosi=Pin(pin_no(board, "lora", "mosi")),
        miso=Pin(pin_no(board, "lora", "miso")),
    )
    tcxo = board_get(board, "radio", "tcxo_mv") or board_get(board, "tcxo_mv")
    return AsyncSX1262(
        spi,
        Pin(pin_no(board, "lora", "cs"), Pin.OUT, value=1),
        busy=Pin(pin_no(board, "lora", "busy"), Pin.IN),
        dio1=Pin(pin_no(board, "lora", "dio1"), Pin.IN),
        reset=Pin(pin_no(board, "lora", "reset"), Pin.OUT, value=1),
        dio3_tcxo_millivolts=tcxo,
        lora_cfg=lora_cfg(cfg),
    )
