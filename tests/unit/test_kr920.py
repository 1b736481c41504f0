"""The KR920-923 channel plan (protocol/kr920.py) against its sources.

Values are checked against LoRaMac-node `RegionKR920.h/.c`, LoRaWAN Regional Parameters
v1.0.3revA §2.9 and the TTA-based LBT summary, as cited in the module.
"""

from __future__ import annotations

import dataclasses

import pytest

from protocol.airtime import time_on_air
from protocol.kr920 import KR920, Kr920Plan, channel_khz, is_valid_frequency, max_eirp_dbm

ALL_CHANNELS_KHZ = [
    920_900,
    921_100,
    921_300,
    921_500,
    921_700,
    921_900,
    922_100,
    922_300,
    922_500,
    922_700,
    922_900,
    923_100,
    923_300,
]


def test_thirteen_channels_on_the_200_khz_raster() -> None:
    assert list(KR920.channels_khz) == ALL_CHANNELS_KHZ
    # The written-out list agrees with LoRaMac-node's VerifyRfFreq rule.
    raster = range(KR920.first_channel_khz, KR920.last_channel_khz + 1, KR920.raster_khz)
    assert list(raster) == ALL_CHANNELS_KHZ
    assert [channel_khz(i) for i in range(13)] == ALL_CHANNELS_KHZ


def test_default_rx2_and_beacon_channels_are_on_the_plan() -> None:
    assert KR920.default_channels_khz == (922_100, 922_300, 922_500)
    assert KR920.rx2_khz == 921_900
    assert KR920.beacon_khz == 923_100
    for khz in (*KR920.default_channels_khz, KR920.rx2_khz, KR920.beacon_khz):
        assert is_valid_frequency(khz)


@pytest.mark.parametrize(
    "khz",
    [920_700, 920_800, 921_000, 922_000, 922_200, 923_500, 920.9, 922_100.0, True, "922100"],
)
def test_off_plan_frequencies_are_invalid(khz: object) -> None:
    assert is_valid_frequency(khz) is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("khz", "dbm"), [(920_900, 10), (921_900, 10), (922_100, 14), (923_300, 14)]
)
def test_max_eirp_drops_to_10_dbm_below_922_mhz(khz: int, dbm: int) -> None:
    assert max_eirp_dbm(khz) == dbm


def test_max_eirp_per_channel() -> None:
    # Six channels below 922 MHz at +10 dBm, seven from 922.1 MHz at +14 dBm.
    assert [max_eirp_dbm(f) for f in ALL_CHANNELS_KHZ] == [10] * 6 + [14] * 7


def test_max_eirp_rejects_off_plan_frequency() -> None:
    with pytest.raises(ValueError, match=r"^frequency must be a KR920 channel .*got 922000$"):
        max_eirp_dbm(922_000)


@pytest.mark.parametrize("index", [-1, 13, True, 1.0])
def test_channel_index_out_of_range(index: object) -> None:
    with pytest.raises(ValueError, match=r"^channel index must be 0\.\.12, got "):
        channel_khz(index)  # type: ignore[arg-type]


def test_lbt_and_transmission_limits() -> None:
    assert KR920.lbt_threshold_dbm == -65
    assert KR920.carrier_sense_ms == 6  # LoRaMac-node's choice, above the legal 5 ms
    assert KR920.carrier_sense_ms >= KR920.min_carrier_sense_ms == 5
    assert KR920.max_tx_time_ms == 4_000
    assert KR920.max_tx_time_us == 4_000_000
    assert KR920.min_pause_ms == 50


def test_data_rates_dr0_to_dr5() -> None:
    assert [(dr.index, dr.sf, dr.bw_khz) for dr in KR920.data_rates] == [
        (0, 12, 125),
        (1, 11, 125),
        (2, 10, 125),
        (3, 9, 125),
        (4, 8, 125),
        (5, 7, 125),
    ]
    # LoRaMac-node MaxPayloadOfDatarateKR920.
    assert [dr.max_app_payload for dr in KR920.data_rates] == [51, 51, 51, 115, 242, 242]
    assert [dr.max_mac_payload - dr.max_app_payload for dr in KR920.data_rates] == [8] * 6
    assert KR920.data_rate(3).sf == 9
    assert KR920.data_rate_for_sf(7).index == 5


@pytest.mark.parametrize("index", [-1, 6, True])
def test_unknown_data_rate(index: object) -> None:
    with pytest.raises(ValueError, match=r"^data rate must be 0\.\.5, got "):
        KR920.data_rate(index)  # type: ignore[arg-type]


def test_no_data_rate_for_sf5() -> None:
    with pytest.raises(ValueError, match=r"^sf must be 7\.\.12 for a KR920 data rate, got 5$"):
        KR920.data_rate_for_sf(5)


def test_largest_frame_at_each_data_rate_fits_the_4_s_limit() -> None:
    # A LoRaWAN PHYPayload is MHDR (1) + MACPayload (M) + MIC (4). Even the largest one at
    # DR0 (64 B at SF12: 2 793 472 µs) is inside the 4 s transmission limit.
    for dr in KR920.data_rates:
        airtime = time_on_air(payload_len=dr.max_mac_payload + 5, sf=dr.sf, bw_khz=dr.bw_khz)
        assert airtime.time_on_air_us <= KR920.max_tx_time_us
    assert time_on_air(payload_len=64, sf=12).time_on_air_us == 2_793_472


def test_plan_is_frozen() -> None:
    assert isinstance(KR920, Kr920Plan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        KR920.max_tx_time_ms = 10_000  # type: ignore[misc]
