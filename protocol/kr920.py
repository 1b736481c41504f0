"""The Korean KR920-923 channel plan, as data.

Sources (cited again next to each value):

* LoRaWAN Regional Parameters v1.0.3revA §2.9 "KR920-923 ISM Band" (RP 1.0.3), carried
  on unchanged in RP002-1.0.x.
* Semtech LoRaMac-node `src/mac/region/RegionKR920.h` and `RegionKR920.c`.
* The Things Stack `pkg/band/kr_920_923.go`; RadioLib `LoRaWANBands.cpp`.
* The Korean radio rules for listen-before-talk, from a TTA-based summary
  (slideplayer 15355462). Caveat: that summary describes the older 917–923.5 MHz
  RFID/USN rules; check it against the current MSIT notice and TTAK.KO-06.0246 before
  relying on it for certification (see /work/shared/notes/radio-and-performance.md §2).

Frequencies are whole kHz so they compare exactly. Anshim sends its own frames, not
LoRaWAN, but uses this plan so that it shares the band the way LoRaWAN devices do.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "KR920",
    "DataRate",
    "Kr920Plan",
    "channel_khz",
    "is_valid_frequency",
    "max_eirp_dbm",
]


@dataclass(frozen=True)
class DataRate:
    """One LoRaWAN data rate: modulation and the largest payloads it may carry.

    ``max_mac_payload`` is RP 1.0.3's M (MACPayload), ``max_app_payload`` its N (the
    application payload without FOpts, M − 8) — the figure LoRaMac-node's
    ``MaxPayloadOfDatarateKR920`` holds.
    """

    index: int
    sf: int
    bw_khz: int
    max_mac_payload: int
    max_app_payload: int


@dataclass(frozen=True)
class Kr920Plan:
    """KR920-923: channels, power limits and listen-before-talk rules."""

    # Channel raster: 920.9–923.3 MHz every 200 kHz. LoRaMac-node `VerifyRfFreq`
    # (RegionKR920.c) accepts exactly 920 900 000 ≤ f ≤ 923 300 000 Hz with
    # (f − 920 900 000) % 200 000 == 0.
    first_channel_khz: int = 920_900
    last_channel_khz: int = 923_300
    raster_khz: int = 200
    # The 13 channel centres, written out (index 0..12).
    channels_khz: tuple[int, ...] = (
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
    )
    # Default (join) channels 922.1/922.3/922.5 MHz: RP 1.0.3 §2.9.2;
    # LoRaMac-node KR920_LC1..3; TTS `defaultChannels`.
    default_channels_khz: tuple[int, ...] = (922_100, 922_300, 922_500)
    # A LoRaWAN device keeps at most 16 channels (KR920_MAX_NB_CHANNELS).
    max_channels: int = 16
    # RX2 921.9 MHz at DR0 (KR920_RX_WND_2_FREQ / _DR); beacon and ping slot 923.1 MHz
    # at DR3 (KR920_BEACON_CHANNEL_FREQ, KR920_PING_SLOT_CHANNEL_FREQ).
    rx2_khz: int = 921_900
    rx2_data_rate: int = 0
    beacon_khz: int = 923_100
    beacon_data_rate: int = 3

    # Max EIRP. RP 1.0.3 §2.9.3: "By default MaxEIRP is considered to be +14dBm", and
    # "When the device transmits in a channel whose frequency is <922MHz, the transmit
    # power SHALL be limited to +10dBm EIRP". LoRaMac-node: KR920_DEFAULT_MAX_EIRP_LOW
    # 10 (920.9–921.9 MHz), KR920_DEFAULT_MAX_EIRP_HIGH 14 (922.1–923.3 MHz), chosen in
    # `GetMaxEIRP` by freq >= 922 100 000. (Meshtastic PR #6307 claims 200 mW is legal
    # in 920–923 MHz; we keep the LoRaWAN limit.)
    max_eirp_high_dbm: int = 14
    max_eirp_low_dbm: int = 10
    eirp_high_from_khz: int = 922_100
    # KR920_DEFAULT_ANTENNA_GAIN: the gain LoRaMac-node assumes to turn EIRP into
    # conducted power.
    default_antenna_gain_dbi: float = 2.15

    # Listen before talk. LoRaMac-node KR920_RSSI_FREE_TH −65 dBm and
    # KR920_CARRIER_SENSE_TIME 6 ms; the TTA summary asks for carrier sense of 5 ms or
    # more at −65 dBm or less (see the module caveat). We sense for 6 ms by default.
    lbt_threshold_dbm: int = -65
    carrier_sense_ms: int = 6
    min_carrier_sense_ms: int = 5
    # TTA summary, "listen before transmission" case: sending duration 4 s or less,
    # pause 50 ms or more. Without LBT it allows < 2 % duty cycle per 20 s; LoRaWAN
    # KR920 has no duty cycle (KR920_DUTY_CYCLE_ENABLED 0) and relies on LBT only.
    max_tx_time_ms: int = 4_000
    min_pause_ms: int = 50

    # DR0..DR5 = SF12..SF7 at 125 kHz (LoRaMac-node DataratesKR920/BandwidthsKR920).
    # Payloads: N = MaxPayloadOfDatarateKR920 {51, 51, 51, 115, 242, 242}; M = N + 8.
    # TTS uses the repeater-compatible M = 230 for DR4/DR5 instead of 250.
    data_rates: tuple[DataRate, ...] = (
        DataRate(0, 12, 125, 59, 51),
        DataRate(1, 11, 125, 59, 51),
        DataRate(2, 10, 125, 59, 51),
        DataRate(3, 9, 125, 123, 115),
        DataRate(4, 8, 125, 250, 242),
        DataRate(5, 7, 125, 250, 242),
    )

    @property
    def max_tx_time_us(self) -> int:
        """The longest single transmission, in µs (compare with a time on air)."""
        return self.max_tx_time_ms * 1000

    def data_rate(self, index: int) -> DataRate:
        """The data rate DR``index``; `ValueError` if there is none."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"data rate must be 0..{len(self.data_rates) - 1}, got {index!r}")
        if not 0 <= index < len(self.data_rates):
            raise ValueError(f"data rate must be 0..{len(self.data_rates) - 1}, got {index}")
        return self.data_rates[index]

    def data_rate_for_sf(self, sf: int) -> DataRate:
        """The 125 kHz data rate using spreading factor ``sf``; `ValueError` if none."""
        for rate in self.data_rates:
            if rate.sf == sf:
                return rate
        raise ValueError(f"sf must be 7..12 for a KR920 data rate, got {sf!r}")


#: The plan itself. Frozen: tests and tools read it, nothing changes it.
KR920 = Kr920Plan()


def channel_khz(index: int) -> int:
    """Centre frequency of channel ``index`` (0 = 920.9 MHz … 12 = 923.3 MHz), in kHz.

    Raises `ValueError` for an index off the plan.
    """
    channels = KR920.channels_khz
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(channels):
        raise ValueError(f"channel index must be 0..{len(channels) - 1}, got {index!r}")
    return channels[index]


def is_valid_frequency(khz: int) -> bool:
    """True if ``khz`` is a KR920 channel centre (920.9–923.3 MHz on the 200 kHz raster)."""
    if isinstance(khz, bool) or not isinstance(khz, int):
        return False
    return (
        KR920.first_channel_khz <= khz <= KR920.last_channel_khz
        and (khz - KR920.first_channel_khz) % KR920.raster_khz == 0
    )


def max_eirp_dbm(khz: int) -> int:
    """Highest EIRP allowed on channel ``khz``: +14 dBm from 922.1 MHz up, +10 dBm below.

    Raises `ValueError` if ``khz`` is not a KR920 channel.
    """
    if not is_valid_frequency(khz):
        raise ValueError(
            f"frequency must be a KR920 channel (920900..923300 kHz, 200 kHz raster), got {khz!r}"
        )
    return KR920.max_eirp_high_dbm if khz >= KR920.eirp_high_from_khz else KR920.max_eirp_low_dbm
