"""BLE adverts through bleak: an uplink frame is the manufacturer data of company 0xFFFF.

No adapter (or no BlueZ) gives one clear warning and the other transports carry on;
the scanner is retried in the background. Advertising is one-way: BLE devices get no
downlink (PROTOCOL.md section 6).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from gateway.config import BleSettings
from gateway.transports.base import FrameSink, Reception

log = logging.getLogger("anshim.gateway.ble")

COMPANY_ID = 0xFFFF  # Bluetooth SIG test id, until Anshim has its own
RETRY_S = 30.0


class BleTransport:
    can_send = False

    def __init__(
        self,
        settings: BleSettings,
        *,
        backend: type[BaseBleakScanner] | None = None,
        clock: Callable[[], float] = time.time,
        retry_s: float = RETRY_S,
    ) -> None:
        self.settings = settings
        self.name = settings.receiver
        self.backend = backend
        self.clock = clock
        self.retry_s = retry_s
        self.scanning = False
        self.adverts = 0
        self.frames = 0
        self.last_error: str | None = None

    def _scanner(self, sink: FrameSink) -> BleakScanner:
        def detected(device: BLEDevice, adv: AdvertisementData) -> None:
            self.adverts += 1
            data = adv.manufacturer_data.get(COMPANY_ID)
            if data:
                self.frames += 1
                sink(
                    bytes(data),
                    Reception(self.name, self.clock(), adv.rssi, None, context=device.address),
                )

        kwargs: dict[str, Any] = {}
        if self.settings.adapter:
            kwargs["bluez"] = {"adapter": self.settings.adapter}
        if self.settings.scanning_mode == "passive":
            # BlueZ's passive scanning needs an advertisement-monitor pattern: 0xFF + FF FF.
            kwargs.setdefault("bluez", {})["or_patterns"] = [(0, 0xFF, b"\xff\xff")]
        return BleakScanner(
            detected,
            scanning_mode=self.settings.scanning_mode,  # type: ignore[arg-type]
            backend=self.backend,
            **kwargs,
        )

    async def run(self, sink: FrameSink) -> None:
        warned = False
        while True:
            try:
                async with self._scanner(sink):
                    self.scanning = True
                    warned = False
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # bleak raises several kinds when there is no adapter
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not warned:
                    log.warning(
                        "BLE scanning unavailable (%s); other transports carry on", self.last_error
                    )
                    warned = True
            finally:
                self.scanning = False
            await asyncio.sleep(self.retry_s)

    async def send(self, data: bytes, *, reply_to: Reception | None) -> bool:
        return False

    def status(self) -> dict[str, Any]:
        return {
            "kind": "ble",
            "scanning": self.scanning,
            "adverts": self.adverts,
            "frames": self.frames,
            "error": self.last_error,
        }
