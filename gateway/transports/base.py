"""The one small interface every transport implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Reception:
    """How one copy of a frame was heard."""

    receiver: str  # the transport instance's name, e.g. "serial", "ble", "sim"
    at: float  # gateway wall clock, seconds
    rssi: int | None = None  # dBm
    snr: float | None = None  # dB
    tmst: int | None = None  # the bridge's µs clock at the end of reception (serial)
    freq_khz: int | None = None
    sf: int | None = None
    bw_khz: int | None = None
    context: Any = None  # transport-specific reply handle (the simulator's radio, …)

    def as_dict(self) -> dict[str, Any]:
        return {"receiver": self.receiver, "rssi": self.rssi, "snr": self.snr}


FrameSink = Callable[[bytes, Reception], None]


class Transport(Protocol):
    """Receives frames into a sink; sends downlinks if it can."""

    name: str
    can_send: bool

    async def run(self, sink: FrameSink) -> None:
        """Receive until cancelled; recover from its own failures (reconnect, rescan)."""

    async def send(self, data: bytes, *, reply_to: Reception | None) -> bool:
        """Transmit a downlink: in the receive window after ``reply_to``, or now (None).
        True when handed to the radio; False when this transport cannot."""

    def status(self) -> dict[str, Any]:
        """Counters and health for the gateway status."""
