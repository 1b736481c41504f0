"""The LoRa channel: who hears which frame, at what RSSI/SNR, and what collides.

Everything here is a *model*; the constants are the ones below, each with its source.

**Path loss** (log-distance with log-normal shadowing)::

    PL(d) = PL0 + 10 n log10(d / d0) + X_link + Y_packet        d0 = 1 km

never below the free-space loss 20 log10(4 pi d f / c). ``X_link`` ~ N(0, σ_shadow) is
fixed per pair of nodes (the same every time, the same both ways: buildings and hills
do not move); ``Y_packet`` ~ N(0, σ_fading) is drawn per frame and receiver. Two link
classes: a device (1.5-3 m above ground) to a gateway antenna on a community-centre roof
(≈15 m), and device to device (both near the ground, much steeper). Defaults:

==================  ========  =======  ======================================================
link                PL0 (dB)  n        why
==================  ========  =======  ======================================================
device ↔ gateway    124       3.5      between Okumura-Hata urban (131 dB at 1 km, n 3.7)
                                       and suburban (121 dB) for 922 MHz, hb 15 m, hm 1.5 m
device ↔ device     134       4.0      both antennas low: two-ray ground reflection slope
==================  ========  =======  ======================================================

Scenarios set their own (forest trails: a higher PL0). σ_shadow 6 dB, σ_fading 2 dB.

**RSSI** = conducted power + antenna gains − PL. Devices send 11 dBm into a 2.15 dBi
antenna and the bridge 9 dBm into a 5 dBi one: both 13-14 dBm EIRP, the KR920 limit at
≥ 922.1 MHz (RP002, firmware and gateway defaults). **SNR** = RSSI − noise floor, noise floor =
−174 dBm/Hz + 10 log10(BW) + NF (6 dB) = −117 dBm at 125 kHz; reported SNR is capped
at +13 dB as the radios report it.

**Sensitivity** at 125 kHz (Semtech's LoRa figures, the SX1272/73 datasheet table
RFS_L125, which the SX1261/2 datasheet matches at SF12, −137 dBm): SF7 −124, SF8 −127,
SF9 −130, SF10 −133, SF11 −135, SF12 −137 dBm. A frame weaker than that at a receiver is
neither received nor detected there (it still interferes).

**Receiving** (one SX1262 = one demodulator, at a bridge as at a device): an idle receiver
locks on the first detectable frame whose preamble it catches; a frame that starts while
it is locked is lost there, unless it is ``capture_db`` stronger and starts before the
locked frame's preamble has ended, in which case the receiver re-locks on it (Bor et al.,
"Do LoRa low-power wide-area networks scale?", MSWiM 2016). A frame is received when, at
that receiver, it is at least ``capture_db`` (6 dB) stronger than *each* other frame that
overlaps it in time on the same channel and spreading factor (frames on another SF only
need to be no more than ``inter_sf_rejection_db`` stronger: quasi-orthogonal SFs, Croce
et al. 2018), and the receiver never transmitted meanwhile (half duplex).

**IQ polarity.** Anshim's downlinks use the same IQ polarity as its uplinks, so a gateway
can lock on another gateway's downlink and a bell in its receive window on another
device's uplink; ``downlink_iq_inverted`` models LoRaWAN's inverted downlinks instead.

**Listen before talk** is the firmware's own (`radio.Radio` with `radio.Lbt`): it reads
the instantaneous RSSI here, which is the power sum of every frame on the air at that
node's position, on its frequency, plus the noise floor; busy above −65 dBm.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol.airtime import time_on_air

SPEED_OF_LIGHT = 299_792_458.0
EARTH_RADIUS_M = 6_371_008.8

# Receiver sensitivity at 125 kHz, dBm (see the module docstring).
SENSITIVITY_125K = {7: -124.0, 8: -127.0, 9: -130.0, 10: -133.0, 11: -135.0, 12: -137.0}


def sensitivity_dbm(sf: int, bw_khz: float = 125) -> float:
    """Sensitivity at ``sf``; each doubling of the bandwidth costs 3 dB."""
    return SENSITIVITY_125K[sf] + 10 * math.log10(bw_khz / 125)


def noise_floor_dbm(bw_khz: float = 125, noise_figure_db: float = 6.0) -> float:
    return -174.0 + 10 * math.log10(bw_khz * 1000) + noise_figure_db


def free_space_loss_db(distance_m: float, freq_khz: float) -> float:
    d = max(distance_m, 1.0)
    return 20 * math.log10(4 * math.pi * d * freq_khz * 1000 / SPEED_OF_LIGHT)


@dataclass(frozen=True, kw_only=True)
class PathLoss:
    """Log-distance path loss parameters (see the module docstring)."""

    pl0_db: float = 124.0  # device ↔ gateway at d0
    exponent: float = 3.5
    ground_pl0_db: float = 134.0  # device ↔ device at d0
    ground_exponent: float = 4.0
    d0_m: float = 1000.0
    shadowing_db: float = 6.0
    fading_db: float = 2.0

    def median_db(self, distance_m: float, *, ground: bool, freq_khz: float) -> float:
        pl0, n = (
            (self.ground_pl0_db, self.ground_exponent)
            if ground
            else (
                self.pl0_db,
                self.exponent,
            )
        )
        d = max(distance_m, 1.0)
        loss = pl0 + 10 * n * math.log10(d / self.d0_m)
        return max(loss, free_space_loss_db(d, freq_khz))


@dataclass(frozen=True, kw_only=True)
class RadioSettings:
    """One channel plan and the radios' figures (defaults: KR920 at SF9, an SX1262)."""

    freq_khz: int = 922_100
    sf: int = 9
    bw_khz: int = 125
    cr: int = 5
    preamble: int = 8
    power_dbm: float = 11.0  # conducted, the firmware's default (EIRP 13.15 dBm)
    gateway_power_dbm: float = 9.0  # the bridge: EIRP 14 dBm with its 5 dBi antenna
    device_antenna_dbi: float = 2.15
    gateway_antenna_dbi: float = 5.0
    noise_figure_db: float = 6.0
    capture_db: float = 6.0
    inter_sf_rejection_db: float = 16.0
    # LoRaWAN sends downlinks with inverted IQ, so gateways never demodulate each other's
    # downlinks and devices never demodulate each other's uplinks; Anshim (PROTOCOL.md,
    # the bridge CONFIG) does not. True models the LoRaWAN way.
    downlink_iq_inverted: bool = False
    path_loss: PathLoss = field(default_factory=PathLoss)

    @property
    def noise_floor_dbm(self) -> float:
        return noise_floor_dbm(self.bw_khz, self.noise_figure_db)


@dataclass(eq=False)
class Node:
    """Something with an antenna: a device or a gateway's radio."""

    name: str
    x: float  # metres east of the scenario's origin
    y: float  # metres north
    gateway: bool = False
    antenna_dbi: float = 2.15
    index: int = 0  # set by the channel


@dataclass(eq=False)
class Transmission:
    """One frame on the air."""

    id: int
    src: Node
    data: bytes
    start: float  # loop time, s
    end: float
    sync: float  # end of the preamble: a receiver must be listening by then
    freq_khz: int
    sf: int
    bw_khz: int
    power_dbm: float
    downlink: bool
    dest: int | None  # device id a downlink is for
    powers: dict[int, float] = field(default_factory=dict)  # node index -> dBm there
    heard_by: list[str] = field(default_factory=list)  # receivers that got it
    lost_at: dict[str, str] = field(default_factory=dict)  # receiver -> why it was lost
    overlapped: bool = False  # another frame was on the air during it, somewhere
    counted_at: set[int] = field(default_factory=set)  # receivers whose busy time it adds to

    @property
    def toa(self) -> float:
        return self.end - self.start


class Receiver:
    """A node's demodulator, for receivers that follow every frame as it happens
    (gateways always, devices while they listen in a receive window)."""

    def __init__(
        self,
        channel: Channel,
        node: Node,
        *,
        on_frame: Callable[[Transmission, float, float], None],
        on_corrupt: Callable[[Transmission], None] | None = None,
        freq_khz: int | None = None,
        sf: int | None = None,
    ) -> None:
        self.channel = channel
        self.node = node
        self.on_frame = on_frame
        self.on_corrupt = on_corrupt
        self.freq_khz = channel.settings.freq_khz if freq_khz is None else freq_khz
        self.sf = channel.settings.sf if sf is None else sf
        self.locked: Transmission | None = None
        self.listening_since: float | None = None  # None: deaf (transmitting or off)
        self.busy_count = 0  # detectable frames on the air here now
        self.busy_since = 0.0
        self.busy_s = 0.0  # time with at least one detectable frame on the air here

    # -- switching ------------------------------------------------------------------

    def listen(self) -> None:
        if self.listening_since is not None:
            return
        now = self.channel.now()
        self.listening_since = now
        self.channel._listening[self] = None
        # A frame whose preamble is still on the air can be caught.
        power = self.channel.power
        caught = [t for t in self.channel.on_air(now) if t.sync > now and self._detectable(t)]
        self.locked = max(caught, key=lambda t: power(t, self.node)) if caught else None

    def deafen(self, why: str = "half-duplex") -> None:
        """Stop receiving (the radio transmits, or sleeps); a frame in progress is lost."""
        if self.locked is not None:
            self.locked.lost_at.setdefault(self.node.name, why)
            self.locked = None
        self.listening_since = None
        self.channel._listening.pop(self, None)

    # -- frames ---------------------------------------------------------------------

    def _detectable(self, tx: Transmission) -> bool:
        if tx.src is self.node or tx.freq_khz != self.freq_khz or tx.sf != self.sf:
            return False
        if self.channel.settings.downlink_iq_inverted and tx.downlink != (not self.node.gateway):
            return False  # the other polarity: never demodulated (it still interferes)
        return self.channel.power(tx, self.node) >= sensitivity_dbm(tx.sf, tx.bw_khz)

    def _started(self, tx: Transmission) -> None:
        if self.listening_since is None or not self._detectable(tx):
            return
        ch = self.channel
        locked = self.locked
        if locked is None:
            self.locked = tx
            return
        if tx.start < locked.sync and (
            ch.power(tx, self.node) >= ch.power(locked, self.node) + ch.settings.capture_db
        ):
            locked.lost_at.setdefault(self.node.name, "captured by a stronger frame")
            self.locked = tx
            return
        tx.lost_at.setdefault(self.node.name, "receiver busy with another frame")

    def _ended(self, tx: Transmission) -> None:
        if self.locked is not tx:
            return
        self.locked = None
        ch = self.channel
        why = ch.interference(tx, self.node)
        if why is not None:
            tx.lost_at.setdefault(self.node.name, why)
            if self.on_corrupt is not None:
                self.on_corrupt(tx)
            return
        rssi = ch.power(tx, self.node)
        tx.heard_by.append(self.node.name)
        self.on_frame(tx, rssi, ch.snr(rssi))


class Channel:
    """All transmissions on the air, their powers at every receiver, and the rules."""

    def __init__(
        self,
        settings: RadioSettings,
        *,
        now: Callable[[], float],
        call_at: Callable[..., Any],
        seed: int = 1,
    ) -> None:
        self.settings = settings
        self.now = now
        self._call_at = call_at
        self.seed = seed
        self._rng = random.Random(seed ^ 0x5EED)
        self.nodes: list[Node] = []
        self._recent: list[Transmission] = []  # on the air, or ended within the longest ToA
        # Receivers listening now, in the order they started (a dict: a set's order would
        # change from run to run, and with it which fading draw each receiver gets).
        self._listening: dict[Receiver, None] = {}
        self._receivers: list[Receiver] = []  # gateways: busy-time bookkeeping
        self._links: dict[tuple[int, int], float] = {}
        self._toa: dict[tuple[int, int, int], tuple[float, float]] = {}
        self._next_id = 0
        self.transmissions = 0
        self.listeners: list[Callable[[str, Transmission], None]] = []

    # -- nodes and links ------------------------------------------------------------

    def add_node(self, node: Node) -> Node:
        node.index = len(self.nodes)
        self.nodes.append(node)
        return node

    def add_receiver(self, receiver: Receiver) -> Receiver:
        """A receiver whose channel occupancy is kept (a gateway's)."""
        self._receivers.append(receiver)
        return receiver

    def link_loss(self, a: Node, b: Node) -> float:
        """Median path loss plus the link's fixed shadowing, dB (symmetric)."""
        i, j = (a.index, b.index) if a.index < b.index else (b.index, a.index)
        cached = self._links.get((i, j))
        if cached is not None:
            return cached
        s = self.settings
        d = math.hypot(a.x - b.x, a.y - b.y)
        ground = not (a.gateway or b.gateway)
        loss = s.path_loss.median_db(d, ground=ground, freq_khz=s.freq_khz)
        if s.path_loss.shadowing_db:
            first, second = (a, b) if a.index < b.index else (b, a)
            key = f"{self.seed}:{first.name}:{second.name}".encode()
            loss += random.Random(zlib.crc32(key)).gauss(0.0, s.path_loss.shadowing_db)
        self._links[(i, j)] = loss
        return loss

    def mean_rssi(self, tx_node: Node, rx_node: Node, power_dbm: float | None = None) -> float:
        """RSSI without the per-frame fading."""
        p = self.settings.power_dbm if power_dbm is None else power_dbm
        return p + tx_node.antenna_dbi + rx_node.antenna_dbi - self.link_loss(tx_node, rx_node)

    def power(self, tx: Transmission, node: Node) -> float:
        """The frame's power at ``node``, dBm (fading drawn once per frame and node)."""
        p = tx.powers.get(node.index)
        if p is None:
            p = self.mean_rssi(tx.src, node, tx.power_dbm)
            fading = self.settings.path_loss.fading_db
            if fading:
                p += self._rng.gauss(0.0, fading)
            tx.powers[node.index] = p
        return p

    def snr(self, rssi: float) -> float:
        return min(rssi - self.settings.noise_floor_dbm, 13.0)

    def airtime(self, length: int, sf: int, bw_khz: int) -> tuple[float, float]:
        """(time on air, preamble time) in seconds."""
        key = (length, sf, bw_khz)
        hit = self._toa.get(key)
        if hit is None:
            s = self.settings
            a = time_on_air(payload_len=length, sf=sf, bw_khz=bw_khz, cr=s.cr, preamble=s.preamble)
            hit = (a.time_on_air_us / 1e6, a.preamble_us / 1e6)
            self._toa[key] = hit
        return hit

    # -- the air ----------------------------------------------------------------------

    def on_air(self, now: float) -> list[Transmission]:
        return [t for t in self._recent if t.start <= now < t.end]

    def transmit(
        self,
        src: Node,
        data: bytes,
        *,
        freq_khz: int | None = None,
        sf: int | None = None,
        power_dbm: float | None = None,
        done: Callable[[Transmission], None] | None = None,
    ) -> Transmission:
        """Put a frame on the air now; ``done(tx)`` is called when it has ended."""
        s = self.settings
        sf = s.sf if sf is None else sf
        now = self.now()
        toa, preamble = self.airtime(len(data), sf, s.bw_khz)
        # Bit 4 of the frame type is the direction (PROTOCOL.md 1.1).
        downlink = len(data) >= 6 and bool(data[0] & 0x10)
        dest = int.from_bytes(data[2:6], "big") if downlink else None
        self._next_id += 1
        tx = Transmission(
            id=self._next_id,
            src=src,
            data=bytes(data),
            start=now,
            end=now + toa,
            sync=now + preamble,
            freq_khz=s.freq_khz if freq_khz is None else freq_khz,
            sf=sf,
            bw_khz=s.bw_khz,
            power_dbm=(s.gateway_power_dbm if src.gateway else s.power_dbm)
            if power_dbm is None
            else power_dbm,
            downlink=downlink,
            dest=dest,
        )
        self.transmissions += 1
        horizon = now - 3.0  # longer than any frame (SF12, 64 bytes: 2.8 s)
        if self._recent and self._recent[0].end < horizon:
            self._recent = [t for t in self._recent if t.end >= horizon]
        for other in self._recent:
            if other.end > now and other.freq_khz == tx.freq_khz:
                other.overlapped = tx.overlapped = True
        self._recent.append(tx)
        for r in self._receivers:
            self._busy_start(r, tx)
        for r in list(self._listening):
            r._started(tx)
        for listener in self.listeners:
            listener("start", tx)
        self._call_at(tx.end, self._end, tx, done)
        return tx

    def _end(self, tx: Transmission, done: Callable[[Transmission], None] | None) -> None:
        for r in list(self._listening):
            r._ended(tx)
        for r in self._receivers:
            self._busy_end(r, tx)
        for listener in self.listeners:
            listener("end", tx)
        if done is not None:
            done(tx)

    def _busy_start(self, r: Receiver, tx: Transmission) -> None:
        if tx.src is not r.node and (
            tx.freq_khz != r.freq_khz or self.power(tx, r.node) < sensitivity_dbm(tx.sf, tx.bw_khz)
        ):
            return
        if r.busy_count == 0:
            r.busy_since = tx.start
        r.busy_count += 1
        tx.counted_at.add(r.node.index)

    def _busy_end(self, r: Receiver, tx: Transmission) -> None:
        if r.node.index not in tx.counted_at:
            return
        r.busy_count -= 1
        if r.busy_count == 0:
            r.busy_s += tx.end - r.busy_since

    def interference(self, tx: Transmission, node: Node) -> str | None:
        """Why ``tx`` does not survive the other frames at ``node``, or None if it does."""
        s = self.settings
        p = self.power(tx, node)
        for other in self._recent:
            if other is tx or other.freq_khz != tx.freq_khz:
                continue
            if other.start >= tx.end or other.end <= tx.start:
                continue
            if other.src is node:
                return "half-duplex"
            margin = p - self.power(other, node)
            need = s.capture_db if other.sf == tx.sf else -s.inter_sf_rejection_db
            if margin < need:
                return "collision"
        return None

    def rssi_at(self, node: Node, freq_khz: int | None = None) -> float:
        """Instantaneous RSSI at ``node``: every frame on the air there, plus noise (dBm)."""
        now = self.now()
        f = self.settings.freq_khz if freq_khz is None else freq_khz
        mw = 10 ** (self.settings.noise_floor_dbm / 10)
        for tx in self._recent:
            if tx.start <= now < tx.end and tx.freq_khz == f and tx.src is not node:
                mw += 10 ** (self.power(tx, node) / 10)
        return 10 * math.log10(mw)

    def receivable(
        self, tx: Transmission, node: Node, *, listening_since: float | None, deaf: Any = None
    ) -> str | None:
        """For a device that listens all the time (a light): why it would *not* get
        ``tx``, or None if it would. Evaluated when ``tx`` has ended.

        ``listening_since`` is when the receiver last came on (None: off now);
        ``deaf(start, end)`` says whether the node transmitted in that interval.
        """
        if listening_since is None or listening_since > tx.sync:
            return "not listening"
        if deaf is not None and deaf(tx.start, tx.end):
            return "half-duplex"
        p = self.power(tx, node)
        if p < sensitivity_dbm(tx.sf, tx.bw_khz):
            return "too weak"
        capture = self.settings.capture_db
        inverted = self.settings.downlink_iq_inverted
        for other in self._recent:
            if other is tx or other.freq_khz != tx.freq_khz or other.sf != tx.sf:
                continue
            if inverted and other.downlink != tx.downlink:
                continue  # not demodulated: it cannot hold the receiver
            if other.src is node or not (other.start < tx.start < other.end):
                continue
            po = self.power(other, node)
            if po < sensitivity_dbm(other.sf, other.bw_khz):
                continue
            if not (tx.start < other.sync and p >= po + capture):
                return "receiver busy with another frame"
        return self.interference(tx, node)


# -- geography ---------------------------------------------------------------------------


def project(lat: float, lon: float, lat0: float, lon0: float) -> tuple[float, float]:
    """Metres east and north of (lat0, lon0): equirectangular, fine over a district."""
    x = math.radians(lon - lon0) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    y = math.radians(lat - lat0) * EARTH_RADIUS_M
    return x, y
