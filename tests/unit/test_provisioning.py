"""Provisioning: the host (tools/crew/provisioning.py) against the device module
(firmware/lib/provision.py) in CPython: over a pty with pyserial, over BLE through bleak
with a test backend (bleak's own ``backend=``) that enforces ATT's 20-byte default, and
message by message for the security rules (challenge-response, wrapped keys, replay,
lock-out, factory reset only with the button held).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import tty
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError

from gateway import db
from gateway.config import load_settings
from gateway.registry import Place, Registry
from tools.crew import CrewError
from tools.crew import provisioning as host
from tools.crew.devconfig import device_config

ROOT = Path(__file__).resolve().parents[2]
for _d in ("firmware/lib", "firmware/bell", "firmware/light"):
    if str(ROOT / _d) not in sys.path:
        sys.path.insert(0, str(ROOT / _d))

import bell  # noqa: E402  (firmware/bell/bell.py)
import provision as dev  # noqa: E402  (firmware/lib/provision.py)
from store import FileBackend, Store  # noqa: E402


class Service:
    """The device's field-test hooks, as a role's main.py would supply them."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    def selftest(self) -> dict[str, Any]:
        return {"ok": True, "checks": {"radio": True, "battery_mv": 3612}}

    def send_test(self) -> dict[str, Any]:
        self.sent.append(100 + len(self.sent))
        return {"type": "alarm", "counter": self.sent[-1]}


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


class Device:
    """One device in provisioning mode: its store, its button, the Provisioner."""

    def __init__(self, root: Path, *, role: str = "bell") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.store = Store(FileBackend(str(root / "state")))
        self.button = False
        self.clock = Clock()
        self.service = Service()
        self.prov = dev.Provisioner(
            self.store,
            info={"role": role, "board": "heltec-v3", "version": "test"},
            physical=lambda: self.button,
            service=self.service,
            validate=bell.parse_config if role == "bell" else None,
            clock=self.clock,
        )
        self.traffic: list[bytes] = []  # every request as it crossed the link

    def handle(self, request: bytes) -> bytes:
        self.traffic.append(request)
        return self.prov.handle(request)


class MemoryLink:
    name = "memory"

    def __init__(self, device: Device) -> None:
        self.device = device

    async def open(self) -> None:
        pass

    async def exchange(self, request: bytes, *, timeout: float) -> bytes:
        return self.device.handle(request)

    async def close(self) -> None:
        pass


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(db.connect(tmp_path / "anshim.db"))
    reg.add(
        kind="bell",
        place=Place(lat=37.6035, lon=126.9817, label="형제봉 입구 비상벨", trail="북악하늘길"),
        heartbeat_s=1800,
    )
    reg.add(kind="light", place=Place(lat=37.6036, lon=126.982, label="정릉천 보안등"))
    return reg


@pytest.fixture
def device(tmp_path: Path) -> Device:
    return Device(tmp_path / "device")


BELL, LIGHT = 0x0A000001, 0x0B000001


def provision(link: Any, registry: Registry, device_id: int = BELL, **kw: Any) -> Any:
    return asyncio.run(host.provision(link, registry, device_id, **kw))


# --- the message layer -------------------------------------------------------------------


def test_first_provisioning_writes_a_config_the_bell_firmware_loads(
    device: Device, registry: Registry
) -> None:
    result = provision(MemoryLink(device), registry)
    assert result.device_id == "0a000001" and result.previously is None and result.ended
    stored = device.store.load_config()
    cfg = bell.parse_config(stored)  # the bell's own loader
    assert cfg["device_id"] == BELL and cfg["key"] == registry.require(BELL).key
    assert cfg["heartbeat_s"] == 1800
    assert stored["freq_khz"] == 922_100 and stored["sf"] == 9
    assert stored["name"] == "형제봉 입구 비상벨" and stored["lat"] == 37.6035
    assert device.prov.done and device.prov.reason == "end"


def test_radio_settings_come_from_the_gateway_config(
    tmp_path: Path, device: Device, registry: Registry
) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[transports.serial]\nport = "/dev/null"\nfreq_khz = 922300\nsf = 10\n')
    provision(MemoryLink(device), registry, settings=load_settings(cfg))
    stored = device.store.load_config()
    assert (stored["freq_khz"], stored["sf"]) == (922_300, 10)


def test_reprovisioning_needs_the_current_key_and_never_sends_the_new_one_in_clear(
    device: Device, registry: Registry
) -> None:
    provision(MemoryLink(device), registry)
    old = registry.require(BELL).key
    new = registry.rekey(BELL).key
    device.prov.done = False
    device.traffic.clear()
    result = provision(MemoryLink(device), registry)
    assert result.previously == "0a000001"
    assert bytes.fromhex(device.store.load_config()["key"]) == new
    sent = b"".join(device.traffic)
    assert new.hex().encode() not in sent and new not in sent
    assert old.hex().encode() not in sent


def test_a_device_holding_an_unknown_key_is_refused(
    device: Device, registry: Registry, tmp_path: Path
) -> None:
    provision(MemoryLink(device), registry)
    other = Registry(db.connect(tmp_path / "other.db"))  # a registry that lost the key
    other.add(
        kind="bell", place=Place(lat=37.6, lon=126.98, label="x"), device_id=BELL,
        key=bytes(16),
    )  # fmt: skip
    device.prov.done = False
    with pytest.raises(host.ProvisioningError, match="does not know: factory-reset it"):
        provision(MemoryLink(device), other)
    # nothing changed on the device
    assert bytes.fromhex(device.store.load_config()["key"]) == registry.require(BELL).key


def _hello(device: Device) -> dict[str, Any]:
    reply = host.decode_reply(device.handle(host.encode_request(host.Op.HELLO, 1)))
    return reply.json()


def _write(device: Device, cfg: dict[str, Any], key: bytes | None, nonce: bytes) -> host.Reply:
    text = json.dumps(cfg).encode()
    mac = host.request_mac(key, host.Op.WRITE, nonce, text) if key else bytes(32)
    return host.decode_reply(
        device.handle(host.encode_request(host.Op.WRITE, 2, nonce + mac + text))
    )


def test_forged_and_replayed_writes_are_refused_then_the_device_locks(
    device: Device, registry: Registry
) -> None:
    provision(MemoryLink(device), registry)
    key = registry.require(BELL).key
    cfg = {k: v for k, v in device_config(registry.require(BELL)).items() if k != "key"}
    cfg["sf"] = 12
    # a correct signed write works, once
    nonce = bytes.fromhex(_hello(device)["nonce"])
    ok = _write(device, cfg, key, nonce)
    assert ok.status is host.Status.OK and device.store.load_config()["sf"] == 12
    # the same request again (a replay) is refused: the nonce was used up
    assert _write(device, cfg, key, nonce).status is host.Status.STALE_NONCE
    # a write signed with another key is refused, and five of them lock the session
    for _ in range(5):
        nonce = bytes.fromhex(_hello(device)["nonce"])
        assert _write(device, cfg, bytes(16), nonce).status is host.Status.AUTH_FAILED
    hello = _hello(device)
    assert hello["locked"] is True
    assert _write(device, cfg, key, bytes.fromhex(hello["nonce"])).status is host.Status.LOCKED
    # an unsigned write (as for a new device) is refused too
    nonce = bytes.fromhex(_hello(device)["nonce"])
    assert _write(device, cfg, None, nonce).status is host.Status.LOCKED


def test_a_provisioned_device_refuses_a_key_in_clear(device: Device, registry: Registry) -> None:
    provision(MemoryLink(device), registry)
    key = registry.require(BELL).key
    cfg = device_config(registry.require(BELL))
    cfg["key"] = os.urandom(16).hex()
    reply = _write(device, cfg, key, bytes.fromhex(_hello(device)["nonce"]))
    assert reply.status is host.Status.BAD_CONFIG and "key_wrapped" in reply.text


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"sf": 13}, "sf"),
        ({"freq_khz": 922_150}, "freq_khz"),
        ({"bw_khz": 200}, "bw_khz"),
        ({"device_id": "xyz"}, "device_id"),
        ({"lat": 123.0}, "lat"),
        ({"heartbeat_s": 30}, "heartbeat_s"),  # bell.parse_config: 60..86400
        ({"name": "x" * 200}, "name"),
        ({"cameras": ["C1"]}, "cameras"),
    ],
)
def test_bad_configs_are_refused_naming_the_key(
    device: Device, registry: Registry, change: dict[str, Any], named: str
) -> None:
    cfg = device_config(registry.require(BELL))
    cfg.update(change)
    reply = _write(device, cfg, None, bytes.fromhex(_hello(device)["nonce"]))
    assert reply.status is host.Status.BAD_CONFIG
    assert reply.text.startswith(named), reply.text
    assert device.store.load_config() is None  # nothing written


def test_factory_reset_only_with_the_button_held(
    device: Device, registry: Registry, tmp_path: Path
) -> None:
    provision(MemoryLink(device), registry)
    device.prov.done = False
    with pytest.raises(host.ProvisioningError, match="hold the device's button down"):
        asyncio.run(host.factory_reset(MemoryLink(device)))
    assert device.store.load_config()["device_id"] == "0a000001"
    device.button = True
    hello = asyncio.run(host.factory_reset(MemoryLink(device)))
    assert not hello.provisioned and device.store.load_config() == {}
    # a reset device takes a new identity from a registry that never knew its old key
    other = Registry(db.connect(tmp_path / "other.db"))
    other.add(kind="bell", place=Place(lat=37.5, lon=127.0, label="new place"))
    provision(MemoryLink(device), other)
    assert bytes.fromhex(device.store.load_config()["key"]) == other.require(BELL).key


def test_role_mismatch_is_caught_before_writing(device: Device, registry: Registry) -> None:
    with pytest.raises(host.ProvisioningError, match="is a light, but this board runs the bell"):
        provision(MemoryLink(device), registry, LIGHT)
    assert device.store.load_config() is None


def test_provisioning_mode_ends_when_idle(device: Device) -> None:
    assert not device.prov.expired()
    device.clock.now = dev.IDLE_MS - 1
    assert not device.prov.expired()
    _hello(device)  # activity moves the idle deadline
    device.clock.now += dev.IDLE_MS - 1
    assert not device.prov.expired()
    device.clock.now += 1
    assert device.prov.expired() and device.prov.reason == "idle"


def test_a_session_has_a_hard_limit(device: Device) -> None:
    for _ in range(dev.SESSION_MS // 60_000):
        device.clock.now += 60_000
        _hello(device)
    assert device.prov.expired() and device.prov.reason == "timeout"


def test_field_test_is_signed(device: Device, registry: Registry) -> None:
    provision(MemoryLink(device), registry)
    device.prov.done = False
    run = asyncio.run(host.run_device_test(MemoryLink(device), registry))
    assert run.device_id == BELL
    assert run.selftest["ok"] is True and run.frame == {"type": "alarm", "counter": 100}
    # unsigned: refused, and no frame goes out
    nonce = bytes.fromhex(_hello(device)["nonce"])
    bad = device.handle(host.encode_request(host.Op.TEST, 9, nonce + bytes(32)))
    assert host.decode_reply(bad).status is host.Status.AUTH_FAILED
    assert device.service.sent == [100]


def test_garbage_requests_get_an_error_reply(device: Device) -> None:
    for junk in (b"", b"\x02\x01\x01", b"\x01", b"\x01\x63\x05", b"\x01\x03\x01short"):
        reply = host.decode_reply(device.prov.handle(junk))
        assert reply.status in (host.Status.BAD_REQUEST, host.Status.UNSUPPORTED)
    assert host.decode_reply(device.prov.handle(b"\x01\x03\x01" + bytes(60))).status in (
        host.Status.STALE_NONCE,
    )


# --- USB serial: the line framing over a real pty, host on pyserial -----------------------


class PtyDevice:
    """The device's LineLink behind a pty, as the USB CDC console would carry it."""

    def __init__(self, device: Device, noise: bytes = b"") -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.written: list[bytes] = []
        self.link = dev.LineLink(device.prov, self._write)
        self.device = device
        self._noise = noise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _write(self, data: bytes) -> None:
        self.written.append(data)
        os.write(self.master, self._noise + data)

    def _run(self) -> None:
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    return
                self.device.traffic.append(data)
                self.link.feed(data)

    def __enter__(self) -> PtyDevice:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        os.close(self.master)
        os.close(self._slave)


def test_provision_over_a_serial_port(device: Device, registry: Registry) -> None:
    noise = b"I (3021) boot: noise from the console\r\n>>> \r\n"
    with PtyDevice(device, noise=noise) as port:
        result = provision(host.SerialLink(port.path), registry)
    assert result.device_id == "0a000001"
    assert bell.parse_config(device.store.load_config())["key"] == registry.require(BELL).key
    assert all(line.startswith(dev.REPLY_PREFIX) for line in port.written)


def test_serial_timeout_names_the_port(registry: Registry, tmp_path: Path) -> None:
    master, slave = os.openpty()
    path = os.ttyname(slave)
    try:
        link = host.SerialLink(path)

        async def go() -> None:
            await link.open()
            try:
                await host.Session(link, timeout=0.3).hello()
            finally:
                await link.close()

        with pytest.raises(host.ProvisioningError, match=f"no answer from the device on {path}"):
            asyncio.run(go())
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(host.ProvisioningError, match="cannot open /dev/nonexistent"):
        provision(host.SerialLink("/dev/nonexistent"), registry)


def test_line_link_ignores_echo_noise_and_overlong_lines(device: Device) -> None:
    out: list[bytes] = []
    link = dev.LineLink(device.prov, out.append)
    request = host.REQUEST_PREFIX + __import__("base64").b64encode(
        host.encode_request(host.Op.HELLO, 7)
    )
    link.feed(b"garbage\r\n" + request[:10])
    link.feed(request[10:] + b"\r\n")
    link.feed(b"#AP<" + b"A" * 100 + b"\n")  # a reply-looking echo: ignored
    link.feed(b"#AP>" + b"A" * 5000 + b"\n")  # too long: dropped whole
    link.feed(b"#AP>!!notbase64!!\n")
    assert len(out) == 2
    assert host.decode_reply(__import__("base64").b64decode(out[0][4:])).seq == 7
    assert host.decode_reply(__import__("base64").b64decode(out[1][4:])).status is (
        host.Status.BAD_REQUEST
    )
    assert link.bad_lines == 2


# --- BLE: chunking, and a bleak test backend with a 20-byte ATT limit -------------------


@pytest.mark.parametrize("size", [20, 23, 244])
def test_chunks_cross_between_host_and_device(size: int) -> None:
    for n in (0, 1, 18, 19, 20, 38, 39, 300, 1536):
        msg = os.urandom(n)
        dev_asm, host_asm = dev.Reassembler(), host.Reassembler()
        parts = host.chunk(msg, size)
        assert all(len(p) <= size for p in parts)
        assert [dev_asm.feed(p) for p in parts][-1] == msg
        parts = dev.chunks(msg, size)
        assert parts == host.chunk(msg, size)
        assert [host_asm.feed(p) for p in parts][-1] == msg


def test_a_lost_chunk_drops_the_message() -> None:
    parts = host.chunk(os.urandom(100))
    asm = dev.Reassembler()
    assert [asm.feed(p) for p in parts[:2] + parts[3:]] == [None] * (len(parts) - 1)
    assert asm.errors == 1
    assert [asm.feed(p) for p in parts][-1] is not None  # the next copy gets through


class FakePeripheral:
    """A device's GATT server: the provisioning service over the device module."""

    ATT_MAX = 20  # bytes of an attribute value with ATT's default MTU of 23

    def __init__(self, device: Device, *, lose_chunk: int | None = None) -> None:
        self.device = device
        self.asm = dev.Reassembler()
        self.notify: NotifyCallback | None = None
        self.writes: list[bytes] = []
        self.notifications: list[bytes] = []
        self._lose = lose_chunk

    def write(self, data: bytes) -> None:
        if len(data) > self.ATT_MAX:
            raise BleakError(f"ATT error: attribute value length {len(data)} > {self.ATT_MAX}")
        self.writes.append(data)
        if self._lose is not None and len(self.writes) == self._lose:
            return  # lost in the air
        msg = self.asm.feed(data)
        if msg is None:
            if not self.asm.errors:
                return
            self.asm.errors = 0
            reply = dev._reply(0, 0, dev.BAD_REQUEST, b"BLE chunk lost")
        else:
            reply = self.device.handle(msg)
        assert self.notify is not None
        for part in dev.chunks(reply, self.ATT_MAX):
            self.notifications.append(part)
            self.notify(bytearray(part))


class FakeBleBackend(BaseBleakClient):
    """A bleak client backend (passed as BleakClient(backend=...)) for one fake peripheral."""

    peripherals: dict[str, FakePeripheral] = {}

    def __init__(self, address_or_ble_device: Any, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.get("disconnected_callback"),
            timeout=kwargs.get("timeout", 10.0),
        )
        self._connected = False
        self._peripheral: FakePeripheral | None = None

    @property
    def mtu_size(self) -> int:
        return 23

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        peripheral = self.peripherals.get(self.address)
        if peripheral is None:
            raise BleakError(f"Device with address {self.address} was not found.")
        self._peripheral = peripheral
        services = BleakGATTServiceCollection()
        svc = BleakGATTService(None, 1, dev.SERVICE_UUID)
        services.add_service(svc)
        for handle, (u, props) in enumerate(
            [(dev.RX_UUID, ["write", "write-without-response"]), (dev.TX_UUID, ["notify"])], 2
        ):
            char = BleakGATTCharacteristic(None, handle, u, props, lambda: 20, svc)  # type: ignore[arg-type]
            services.add_characteristic(char)
        self.services = services
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    async def unpair(self) -> None:
        raise NotImplementedError

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, **kwargs: Any
    ) -> bytearray:
        raise BleakError("not readable")

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, **kwargs: Any
    ) -> bytearray:
        raise BleakError("no descriptors")

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data: Any, response: bool
    ) -> None:
        assert self._peripheral is not None and self._connected
        if characteristic.uuid != dev.RX_UUID:
            raise BleakError(f"{characteristic.uuid} is not writable")
        await asyncio.sleep(0)  # a connection event
        self._peripheral.write(bytes(data))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
        raise BleakError("no descriptors")

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        assert self._peripheral is not None
        if characteristic.uuid != dev.TX_UUID:
            raise BleakError(f"{characteristic.uuid} does not notify")
        self._peripheral.notify = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        assert self._peripheral is not None
        self._peripheral.notify = None


@pytest.fixture
def peripheral(device: Device) -> Iterator[Callable[..., tuple[str, FakePeripheral]]]:
    made: list[str] = []

    def make(**kw: Any) -> tuple[str, FakePeripheral]:
        address = ":".join(f"{b:02X}" for b in uuid.uuid4().bytes[:6])
        FakeBleBackend.peripherals[address] = FakePeripheral(device, **kw)
        made.append(address)
        return address, FakeBleBackend.peripherals[address]

    yield make
    for a in made:
        FakeBleBackend.peripherals.pop(a, None)


def test_provision_over_ble_in_20_byte_chunks(
    device: Device, registry: Registry, peripheral: Callable[..., tuple[str, FakePeripheral]]
) -> None:
    address, p = peripheral()
    result = provision(host.BleLink(address, backend=FakeBleBackend), registry)
    assert result.device_id == "0a000001"
    assert bell.parse_config(device.store.load_config())["key"] == registry.require(BELL).key
    assert max(len(w) for w in p.writes) == 20 and len(p.writes) > 10  # the config is long
    assert max(len(n) for n in p.notifications) <= 20
    # and again over BLE, now signed with the current key after a rekey
    registry.rekey(BELL)
    device.prov.done = False
    provision(host.BleLink(address, backend=FakeBleBackend), registry)
    assert bytes.fromhex(device.store.load_config()["key"]) == registry.require(BELL).key


def test_ble_lost_chunk_is_sent_again(
    device: Device, registry: Registry, peripheral: Callable[..., tuple[str, FakePeripheral]]
) -> None:
    address, _ = peripheral(lose_chunk=5)  # inside the WRITE request
    result = provision(host.BleLink(address, backend=FakeBleBackend), registry)
    assert result.device_id == "0a000001"


def test_the_test_backend_enforces_the_attribute_limit(
    device: Device, peripheral: Callable[..., tuple[str, FakePeripheral]]
) -> None:
    address, _ = peripheral()

    async def go() -> None:
        async with BleakClient(address, backend=FakeBleBackend) as client:
            await client.write_gatt_char(dev.RX_UUID, bytes(21), response=True)

    with pytest.raises(BleakError, match="length 21 > 20"):
        asyncio.run(go())


def test_ble_errors_are_one_line(registry: Registry) -> None:
    with pytest.raises(host.ProvisioningError, match="cannot connect to 00:11:22:33:44:55"):
        provision(host.BleLink("00:11:22:33:44:55", backend=FakeBleBackend), registry)


def test_retired_devices_and_bad_intervals_are_caught_on_the_host(
    device: Device, registry: Registry
) -> None:
    dev_id = registry.add(
        kind="bell", place=Place(lat=37.6, lon=127.0, label="fast"), heartbeat_s=20
    ).device_id
    with pytest.raises(CrewError, match=r"heartbeat 20 s is outside 60\.\.86400"):
        provision(MemoryLink(device), registry, dev_id)
    registry.retire(BELL)
    with pytest.raises(CrewError, match="retired"):
        provision(MemoryLink(device), registry, BELL)


def test_field_test_over_ble(
    device: Device, registry: Registry, peripheral: Callable[..., tuple[str, FakePeripheral]]
) -> None:
    provision(MemoryLink(device), registry)
    device.prov.done = False
    address, p = peripheral()
    run = asyncio.run(host.run_device_test(host.BleLink(address, backend=FakeBleBackend), registry))
    assert run.device_id == BELL and run.frame["counter"] == 100
    assert device.prov.done  # ENDed: the device goes back to its app
    assert max(len(w) for w in p.writes) <= 20
