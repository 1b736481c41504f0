"""LoRa time on air, per the Semtech SX1261/2 datasheet §6.1.4 "LoRa Time-on-Air".

Pure arithmetic: no radio, no I/O. The same formula is in Semtech AN1200.13 (LoRa Modem
Designer's Guide) and the SX1276 datasheet §4.1.1; the SX126x differs from the SX127x
only at SF5/SF6, and this module follows the SX126x (our radios are SX1262)::

    Tsym      = 2^SF / BW
    Nbits     = 8·PL + 16·CRC − 4·SF + 8 + 20·(1 − IH)          (SF7..SF12)
    Nbits     = 8·PL + 16·CRC − 4·SF     + 20·(1 − IH)          (SF5, SF6: the +8 is dropped)
    Npayload  = 8 + ceil(max(Nbits, 0) / (4·(SF − 2·LDRO))) · (CR + 4)
    Nsymbol   = Npreamble + 4.25 + Npayload                      (SF7..SF12)
    Nsymbol   = Npreamble + 6.25 + Npayload                      (SF5, SF6)
    ToA       = Nsymbol · Tsym

CR is 1..4 for 4/5..4/8 in the datasheet; here `cr` is the denominator 5..8, i.e. CR + 4.
IH = 1 for an implicit header. LDRO (low-data-rate optimisation) is switched on
automatically when Tsym ≥ 16 ms, the rule used by micropython-lib (`lora/modem.py`,
`_get_ldr_en`: ``t_sym_us >= 16000``) and RadioLib (`SX126x::getTimeOnAir`,
``symbolLength_us >= 16000``); at 125 kHz that is SF11 and SF12, at 250 kHz SF12 only.

The SF5/SF6 rule is the datasheet's and is what micropython-lib (`SX126x._symbol_offsets`
returns +2 preamble symbols and −8 bits) and RadioLib (``sfCoeff1_x4 = 25``,
``sfCoeff2 = 0``) implement; the eight fixed symbols of ``Npayload`` stay. Semtech's
SX1261 LoRa Calculator agrees (see tests/unit/test_airtime.py).

Arithmetic is exact (integers and `fractions.Fraction`). Every supported bandwidth is
125 kHz·2^k or 125 kHz/n (n = 2, 3, 4, 6, 8, 12, 16), so the symbol time is a whole
number of microseconds (a multiple of 64 µs) and, because Nsymbol is a multiple of 1/4,
so is the time on air. The results are therefore exact; the final conversion to int
rounds half up to the nearest microsecond only as a guard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["BANDWIDTHS_KHZ", "LDRO_SYMBOL_TIME_US", "Airtime", "time_on_air"]

# LoRa bandwidths: the accepted labels (kHz) and the exact value in Hz. The SX126x
# derives them from its 32 MHz crystal (SX1261/2 datasheet, SetModulationParams, LoRa BW
# table: 7.81, 10.42, 15.63, 20.83, 31.25, 41.67, 62.5, 125, 250, 500 kHz); the SX1276
# datasheet writes 7.8, 10.4, 15.6, 20.8, 31.25, 41.7, 62.5. Both spellings are accepted
# and mean the exact value, e.g. 7.8 and 7.81 both mean 7812.5 Hz.
_BW_HZ: dict[float, Fraction] = {
    7.8: Fraction(125_000, 16),
    7.81: Fraction(125_000, 16),
    10.4: Fraction(125_000, 12),
    10.42: Fraction(125_000, 12),
    15.6: Fraction(125_000, 8),
    15.63: Fraction(125_000, 8),
    20.8: Fraction(125_000, 6),
    20.83: Fraction(125_000, 6),
    31.25: Fraction(125_000, 4),
    41.7: Fraction(125_000, 3),
    41.67: Fraction(125_000, 3),
    62.5: Fraction(125_000, 2),
    125: Fraction(125_000),
    250: Fraction(250_000),
    500: Fraction(500_000),
}

#: Bandwidths (kHz) in the spelling used in error messages and by the CLI.
BANDWIDTHS_KHZ: tuple[float, ...] = (7.8, 10.4, 15.6, 20.8, 31.25, 41.7, 62.5, 125, 250, 500)

#: LDRO is switched on automatically at or above this symbol time (16 ms).
LDRO_SYMBOL_TIME_US = 16_000

_SF_MIN, _SF_MAX = 5, 12
_CR_MIN, _CR_MAX = 5, 8  # coding rate 4/5..4/8
_PREAMBLE_MIN, _PREAMBLE_MAX = 6, 65_535  # symbols; the SX126x register is 16 bits
_PAYLOAD_MAX = 255  # bytes; the LoRa payload length field is one byte


@dataclass(frozen=True)
class Airtime:
    """How long one LoRa frame occupies the channel, and the parameters that gave it.

    All times are exact whole microseconds (see the module docstring). ``payload_symbols``
    is the datasheet's ``Npayload``: the 8 fixed symbols plus the coded header, payload
    and CRC. ``preamble_us`` covers the programmed preamble plus the 4.25 (6.25 at
    SF5/SF6) sync-word and start-of-frame symbols.
    """

    payload_len: int
    sf: int
    bw_khz: float
    cr: int
    preamble: int
    implicit_header: bool
    crc: bool
    ldro: bool
    symbol_time_us: int
    symbols: Fraction
    payload_symbols: int
    preamble_us: int
    payload_us: int
    time_on_air_us: int

    @property
    def time_on_air_ms(self) -> float:
        """Time on air in milliseconds (for display; use `time_on_air_us` for arithmetic)."""
        return self.time_on_air_us / 1000

    @property
    def symbol_time_ms(self) -> float:
        """Symbol time in milliseconds (for display)."""
        return self.symbol_time_us / 1000


def _round_us(value: Fraction) -> int:
    """Nearest whole microsecond, halves rounded up (exact values pass through)."""
    return math.floor(value + Fraction(1, 2))


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be {low}..{high}, got {value!r}")
    return value


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _bandwidth_hz(bw_khz: object) -> Fraction:
    bw_hz = None
    if isinstance(bw_khz, int | float) and not isinstance(bw_khz, bool):
        bw_hz = _BW_HZ.get(bw_khz)
    if bw_hz is None:
        allowed = ", ".join(f"{bw:g}" for bw in BANDWIDTHS_KHZ)
        raise ValueError(f"bw_khz must be one of {allowed}, got {bw_khz!r}")
    return bw_hz


def time_on_air(
    *,
    payload_len: int,
    sf: int,
    bw_khz: float = 125,
    cr: int = 5,
    preamble: int = 8,
    implicit_header: bool = False,
    crc: bool = True,
    ldro: bool | None = None,
) -> Airtime:
    """Time on air of one LoRa frame (SX1261/2 datasheet §6.1.4).

    ``payload_len`` is the LoRa payload in bytes (0..255), ``sf`` the spreading factor
    (5..12), ``bw_khz`` one of `BANDWIDTHS_KHZ`, ``cr`` the coding-rate denominator
    (5..8 for 4/5..4/8), ``preamble`` the programmed preamble length in symbols
    (6..65535). ``ldro=None`` chooses low-data-rate optimisation as the radio drivers
    do (on when the symbol time is at least 16 ms); True or False forces it.

    Raises `ValueError` naming the parameter and the bad value.
    """
    _check_int("payload_len", payload_len, 0, _PAYLOAD_MAX)
    _check_int("sf", sf, _SF_MIN, _SF_MAX)
    bw_hz = _bandwidth_hz(bw_khz)
    _check_int("cr", cr, _CR_MIN, _CR_MAX)
    _check_int("preamble", preamble, _PREAMBLE_MIN, _PREAMBLE_MAX)
    _check_bool("implicit_header", implicit_header)
    _check_bool("crc", crc)
    if ldro is not None:
        _check_bool("ldro", ldro)

    symbol_time = Fraction(1_000_000 << sf) / bw_hz  # µs, exact
    ldro_on = symbol_time >= LDRO_SYMBOL_TIME_US if ldro is None else ldro

    # §6.1.4: SF5/SF6 on the SX126x use 6.25 fixed preamble symbols and drop the +8
    # from the bit count; SF7..SF12 use 4.25 and keep it.
    low_sf = sf <= 6
    fixed_preamble = Fraction(25, 4) if low_sf else Fraction(17, 4)
    bits = 8 * payload_len + (16 if crc else 0) - 4 * sf + (0 if low_sf else 8)
    bits += 0 if implicit_header else 20
    bits_per_block = 4 * (sf - 2 if ldro_on else sf)
    blocks = -(-max(bits, 0) // bits_per_block)  # ceil for non-negative ints
    payload_symbols = 8 + blocks * cr

    preamble_symbols = preamble + fixed_preamble
    symbols = preamble_symbols + payload_symbols
    return Airtime(
        payload_len=payload_len,
        sf=sf,
        bw_khz=bw_khz,
        cr=cr,
        preamble=preamble,
        implicit_header=implicit_header,
        crc=crc,
        ldro=ldro_on,
        symbol_time_us=_round_us(symbol_time),
        symbols=symbols,
        payload_symbols=payload_symbols,
        preamble_us=_round_us(preamble_symbols * symbol_time),
        payload_us=_round_us(payload_symbols * symbol_time),
        time_on_air_us=_round_us(symbols * symbol_time),
    )
