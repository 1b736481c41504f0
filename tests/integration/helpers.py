"""Test helpers: a registered fleet, a control-center subscriber, a running gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiomqtt

from gateway import db
from gateway.config import MqttSettings, RulesSettings, Settings, SupervisionSettings
from gateway.registry import Device, Place, Registry
from gateway.service import Gateway
from gateway.transports.base import Transport
from protocol import frames as fr

# A bell on Bukhansan's Hyeongjebong trail in Seongbuk-gu and lights around it.
BELL_PLACE = Place(
    lat=37.6046,
    lon=126.9920,
    label="형제봉 입구 비상벨",
    national_point_number="다사 5640 5320",
    plate_id="성북-01-023",
    trail="북악하늘길 2구간",
)
NEAR_LIGHT = Place(lat=37.6050, lon=126.9925, label="형제봉 보안등 1")  # ~60 m
FAR_LIGHT = Place(lat=37.6100, lon=126.9990, label="정릉 보안등 9")  # ~850 m


def settings(tmp: Path, *, mqtt_url: str | None = None, **changes: Any) -> Settings:
    base = Settings(
        gateway_id="gw-test",
        site="seongbuk",
        data_dir=tmp / "data",
        mqtt=MqttSettings(url=mqtt_url),
        supervision=SupervisionSettings(check_every_s=3600),
        rules=RulesSettings(strobe_radius_m=150, strobe_duration_s=120),
    )
    return replace(base, **changes)


@dataclass
class SimDevice:
    """A device as the gateway sees it over the air: its id, key and counters."""

    device: Device
    up: int = 0
    down_last: int | None = None

    @property
    def device_id(self) -> int:
        return self.device.device_id

    def frame(
        self, payload: fr.Payload, *, flags: fr.Flags = fr.Flags.NONE, counter: int | None = None
    ) -> bytes:
        if counter is None:
            self.up += 1
            counter = self.up
        return fr.encode(fr.Frame(self.device_id, counter, payload, flags), self.device.key)

    def decode_downlink(self, data: bytes) -> fr.Frame:
        known = fr.DeviceKey.of(self.device.key, self.down_last)
        frame = fr.decode(data, lambda d, direction: known)
        self.down_last = frame.counter
        return frame


def register_fleet(s: Settings) -> dict[str, SimDevice]:
    conn = db.connect(s.database)
    reg = Registry(conn)
    out = {
        "bell": SimDevice(
            reg.add(
                kind="bell",
                place=BELL_PLACE,
                cameras=["CCTV-SB-1021", "CCTV-SB-1022"],
                heartbeat_s=3600,
            )
        ),
        "near": SimDevice(reg.add(kind="light", place=NEAR_LIGHT, heartbeat_s=600)),
        "far": SimDevice(reg.add(kind="light", place=FAR_LIGHT, heartbeat_s=600)),
    }
    conn.close()
    return out


@dataclass
class ControlCenter:
    """Subscribes to everything under the prefix, like the district's control center."""

    url: str
    prefix: str = "anshim/seongbuk"
    messages: list[tuple[str, Any, bool]] = field(default_factory=list)
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ControlCenter]:
        """Subscribed (persistent session, QoS 1) and reconnecting, like a real consumer."""
        self.connected = asyncio.Event()
        task = asyncio.create_task(self._session_loop())
        try:
            await asyncio.wait_for(self.connected.wait(), 10)
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _session_loop(self) -> None:
        host, port = self.url.removeprefix("mqtt://").split(":")
        while True:
            try:
                async with aiomqtt.Client(
                    host, int(port), identifier="control-center", clean_session=False
                ) as client:
                    self.client = client
                    await client.subscribe(f"{self.prefix}/#", qos=1)
                    self.connected.set()
                    await self._collect(client)
            except aiomqtt.MqttError:
                self.connected.clear()
                await asyncio.sleep(0.1)

    async def _collect(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            raw = m.payload if isinstance(m.payload, bytes) else b""
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            self.messages.append((str(m.topic), body, m.retain))
            self._new.set()

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> tuple[str, Any, bool]:
        async def scan() -> tuple[str, Any, bool]:
            seen = 0
            while True:
                for item in self.messages[seen:]:
                    if predicate(item[0], item[1]):
                        return item
                seen = len(self.messages)
                self._new.clear()
                await self._new.wait()

        return await asyncio.wait_for(scan(), timeout)

    async def publish(self, topic: str, payload: Any) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        await self.client.publish(f"{self.prefix}/{topic}", data, qos=1)

    def topics(self, pattern: str) -> list[tuple[str, Any]]:
        return [(t, b) for t, b, _ in self.messages if pattern in t]


@contextlib.asynccontextmanager
async def running_gateway(s: Settings, transports: list[Transport]) -> AsyncIterator[Gateway]:
    async with Gateway(s, transports=transports).running() as gw:
        for t in transports:
            ready = getattr(t, "ready", None)
            if ready is not None:
                await ready()
        yield gw


class PtyBridge:
    """The radio bridge's side of a pseudo-terminal pair: the gateway opens ``path``."""

    def __init__(self, path: Path) -> None:
        import os
        import tty

        from protocol import link as ln

        self._ln = ln
        self.path = path
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(os.ttyname(self.slave))
        self.framer = ln.Framer()
        self.received: list[Any] = []
        self._new = asyncio.Event()
        self.auto_done = True
        self.tmst = 10_000_000

    def attach(self) -> None:
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        import os

        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        for m in self.framer.feed(data):
            self.received.append(m)
            if self.auto_done and isinstance(m, self._ln.Tx):
                self.write(self._ln.TxDone(seq=m.seq, tmst=m.tmst, airtime_us=50_000))
        self._new.set()

    def write(self, message: Any) -> None:
        import os

        os.write(self.master, self._ln.encode_message(message))

    def write_raw(self, data: bytes) -> None:
        import os

        os.write(self.master, data)

    def rx(self, frame: bytes, *, rssi: int = -98, snr_x4: int = 22) -> int:
        """Deliver a frame as received over the air; returns its tmst."""
        self.tmst += 3_000_000
        self.write(
            self._ln.Rx(
                seq=0,
                tmst=self.tmst,
                rssi=rssi,
                snr_x4=snr_x4,
                freq_khz=922_100,
                sf=9,
                bw_khz=125,
                frame=frame,
            )
        )
        return self.tmst

    def tx(self) -> list[Any]:
        return [m for m in self.received if isinstance(m, self._ln.Tx)]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        async def scan() -> None:
            while not predicate(self):
                self._new.clear()
                await self._new.wait()

        await asyncio.wait_for(scan(), timeout)

    def close(self) -> None:
        import contextlib
        import os

        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.master)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            self.path.unlink()
