"""The host side of the provisioning protocol (firmware/PROVISIONING.md).

`Session` speaks the messages over a `Link`: `SerialLink` (base64 lines over the USB
serial console, pyserial) or `BleLink` (GATT writes and notifications in 20-byte
chunks, bleak; a test backend goes in through bleak's own ``backend=``). `provision`
writes a registered device's config; `field_test` runs the device's self-test and its
test frame. Written independently of the device's `firmware/lib/provision.py`; the
tests run the two against each other.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

from gateway.config import Settings
from gateway.registry import Registry
from tools.crew import CrewError
from tools.crew.devconfig import device_config, same_config, without_key

VERSION = 1
REPLY = 0x80
NONCE_LEN = 16
MAC_LEN = 32
KEY_LEN = 16
MAX_MESSAGE = 1536
REQUEST_PREFIX = b"#AP>"
REPLY_PREFIX = b"#AP<"
SERVICE_UUID = "a5a10001-8c3b-4f6e-9d2a-616e7368696d"
RX_UUID = "a5a10002-8c3b-4f6e-9d2a-616e7368696d"
TX_UUID = "a5a10003-8c3b-4f6e-9d2a-616e7368696d"
CHUNK_MIN = 20  # ATT_MTU 23 - 3
CHUNK_MAX = 244
FIRST, LAST, SEQ_MASK = 0x80, 0x40, 0x3F
_AUTH = b"ANSHIM-PROV\x01"
_WRAP = b"ANSHIM-WRAP\x01"
_KCV = b"ANSHIM-KCV\x01"


class Op(IntEnum):
    HELLO = 0x01
    READ = 0x02
    WRITE = 0x03
    RESET = 0x04
    TEST = 0x05
    END = 0x06


class Status(IntEnum):
    OK = 0
    BAD_REQUEST = 1
    AUTH_FAILED = 2
    NEED_PHYSICAL = 3
    BAD_CONFIG = 4
    STORAGE_FAILED = 5
    UNSUPPORTED = 6
    LOCKED = 7
    STALE_NONCE = 8
    NOT_PROVISIONED = 9
    FAILED = 10


class ProvisioningError(CrewError):
    """The device refused, or could not be reached; ``status`` when it answered."""

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        self.status = status


# --- message crypto (PROVISIONING.md "Proof of the current key") ---------------------


def key_check(key: bytes) -> str:
    return hashlib.sha256(_KCV + key).digest()[:4].hex()


def request_mac(key: bytes, op: int, nonce: bytes, body: bytes) -> bytes:
    return hmac.new(key, _AUTH + bytes([op]) + nonce + body, hashlib.sha256).digest()


def wrap_key(current: bytes, nonce: bytes, key: bytes) -> bytes:
    pad = hmac.new(current, _WRAP + nonce, hashlib.sha256).digest()
    return bytes(a ^ b for a, b in zip(key, pad[:KEY_LEN], strict=True))


# --- messages ----------------------------------------------------------------------------


def encode_request(op: int, seq: int, body: bytes = b"") -> bytes:
    return bytes([VERSION, op, seq & 0xFF]) + body


@dataclass(frozen=True)
class Reply:
    op: int
    seq: int
    status: Status
    body: bytes

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body)
        except ValueError:
            raise ProvisioningError(
                f"device sent a reply that is not JSON: {self.body!r}"
            ) from None
        if not isinstance(value, dict):
            raise ProvisioningError(f"device sent an unexpected reply: {value!r}")
        return value

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def decode_reply(data: bytes) -> Reply:
    if len(data) < 4 or data[0] != VERSION or not data[1] & REPLY:
        raise ProvisioningError(f"not a provisioning reply: {data[:8].hex()}")
    try:
        status = Status(data[3])
    except ValueError:
        raise ProvisioningError(f"device answered with unknown status {data[3]}") from None
    return Reply(data[1] & 0x7F, data[2], status, bytes(data[4:]))


def chunk(msg: bytes, size: int = CHUNK_MIN) -> list[bytes]:
    step = size - 1
    parts = [msg[i : i + step] for i in range(0, max(len(msg), 1), step)]
    out = []
    for seq, part in enumerate(parts):
        hdr = seq & SEQ_MASK
        if seq == 0:
            hdr |= FIRST
        if seq == len(parts) - 1:
            hdr |= LAST
        out.append(bytes([hdr]) + part)
    return out


class Reassembler:
    """BLE chunks back into messages; `lost` counts gaps (that message is dropped)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._next: int | None = None
        self.lost = 0

    def feed(self, data: bytes) -> bytes | None:
        if not data:
            return None
        hdr = data[0]
        if hdr & FIRST:
            self._buf = bytearray()
            self._next = 0
        elif self._next is None:
            return None  # the rest of a broken message
        if hdr & SEQ_MASK != self._next & SEQ_MASK or len(self._buf) + len(data) - 1 > MAX_MESSAGE:
            self.lost += 1
            self._next = None
            return None
        self._buf += data[1:]
        self._next += 1
        if hdr & LAST:
            self._next = None
            return bytes(self._buf)
        return None


# --- links -------------------------------------------------------------------------------


class Link(Protocol):
    """One request out, its reply bytes back."""

    name: str

    async def open(self) -> None: ...

    async def exchange(self, request: bytes, *, timeout: float) -> bytes: ...

    async def close(self) -> None: ...


class SerialLink:
    """The USB serial console: one base64 line each way per message (pyserial)."""

    def __init__(self, port: str, *, baudrate: int = 115200) -> None:
        self.port = port
        self.name = port
        self.baudrate = baudrate
        self._serial: Any = None
        self._pending = bytearray()

    async def open(self) -> None:
        import serial

        try:
            s = serial.serial_for_url(
                self.port, do_not_open=True, baudrate=self.baudrate, timeout=0.05
            )
            # DTR/RTS stay released: on ESP32 boards with an auto-reset circuit, asserting
            # them on open would reset the board out of provisioning mode.
            s.dtr = False
            s.rts = False
            s.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ProvisioningError(f"cannot open {self.port}: {exc}") from None
        self._serial = s
        await asyncio.to_thread(s.reset_input_buffer)

    async def exchange(self, request: bytes, *, timeout: float) -> bytes:
        return await asyncio.to_thread(self._exchange, request, timeout)

    def _exchange(self, request: bytes, timeout: float) -> bytes:
        s = self._serial
        s.write(REQUEST_PREFIX + base64.b64encode(request) + b"\n")
        s.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = s.read(s.in_waiting or 1)
            if data:
                self._pending += data
            while b"\n" in self._pending:
                line, _, rest = bytes(self._pending).partition(b"\n")
                self._pending = bytearray(rest)
                line = line.strip()
                if line.startswith(REPLY_PREFIX):
                    try:
                        return base64.b64decode(line[len(REPLY_PREFIX) :], validate=True)
                    except binascii.Error:
                        continue  # a garbled line: wait for the next
        raise ProvisioningError(
            f"no answer from the device on {self.port} within {timeout:g} s: is it in "
            "provisioning mode? (hold its button while powering it on)"
        )

    async def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None


class BleLink:
    """The provisioning GATT service: request chunks written to RX, replies notified on TX."""

    def __init__(self, address: str, *, backend: Any = None, connect_timeout: float = 20.0) -> None:
        self.address = address
        self.name = address
        self.backend = backend
        self.connect_timeout = connect_timeout
        self.chunk_size = CHUNK_MIN
        self._client: Any = None
        self._replies: asyncio.Queue[bytes] = asyncio.Queue()
        self._asm = Reassembler()

    async def open(self) -> None:
        from bleak import BleakClient
        from bleak.exc import BleakError

        kwargs: dict[str, Any] = {"timeout": self.connect_timeout}
        if self.backend is not None:
            kwargs["backend"] = self.backend
        client = BleakClient(self.address, **kwargs)
        try:
            await client.connect()
        except (BleakError, OSError, TimeoutError) as exc:
            raise ProvisioningError(f"cannot connect to {self.address} over BLE: {exc}") from None
        self._client = client
        if client.services.get_characteristic(RX_UUID) is None:
            await self.close()
            raise ProvisioningError(
                f"{self.address} has no Anshim provisioning service: is it in provisioning mode?"
            )
        # Chunks fit the negotiated ATT MTU; BlueZ always reports 23, so 20 bytes there.
        self.chunk_size = max(CHUNK_MIN, min(CHUNK_MAX, client.mtu_size - 3))
        try:
            await client.start_notify(TX_UUID, self._on_notify)
        except BleakError as exc:
            await self.close()
            raise ProvisioningError(f"{self.address}: cannot subscribe: {exc}") from None

    def _on_notify(self, _sender: object, data: bytearray) -> None:
        msg = self._asm.feed(bytes(data))
        if msg is not None:
            self._replies.put_nowait(msg)

    async def exchange(self, request: bytes, *, timeout: float) -> bytes:
        from bleak.exc import BleakError

        while not self._replies.empty():  # a late reply to an abandoned request
            self._replies.get_nowait()
        try:
            for part in chunk(request, self.chunk_size):
                await self._client.write_gatt_char(RX_UUID, part, response=True)
            return await asyncio.wait_for(self._replies.get(), timeout)
        except TimeoutError:
            raise ProvisioningError(
                f"no answer from {self.address} over BLE within {timeout:g} s"
            ) from None
        except BleakError as exc:
            raise ProvisioningError(f"BLE {self.address}: {exc}") from None

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):  # already gone: nothing more to do
                await client.disconnect()


# --- the session -----------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    provisioned: bool
    device_id: str | None
    key_check: str | None
    nonce: bytes
    role: str | None
    board: str | None
    version: str | None
    locked: bool
    field_test: bool
    raw: dict[str, Any] = field(default_factory=dict)


class Session:
    def __init__(self, link: Link, *, timeout: float = 10.0) -> None:
        self.link = link
        self.timeout = timeout
        self._seq = 0

    async def request(self, op: Op, body: bytes = b"", *, ok: bool = True) -> Reply:
        self._seq = (self._seq + 1) & 0xFF
        seq = self._seq
        for _ in range(3):
            data = await self.link.exchange(encode_request(op, seq, body), timeout=self.timeout)
            reply = decode_reply(data)
            if reply.op == op and reply.seq == seq:
                break
            if reply.status is Status.BAD_REQUEST and reply.op == 0:
                # A BLE chunk or a serial line was lost on the way: send it again.
                continue
            raise ProvisioningError(
                f"device answered op {reply.op} seq {reply.seq} to op {int(op)} seq {seq}"
            )
        else:
            raise ProvisioningError(f"{self.link.name}: the request did not get through")
        if ok and reply.status is not Status.OK:
            raise ProvisioningError(
                f"device refused {op.name}: {reply.status.name.lower()}: {reply.text}",
                reply.status,
            )
        return reply

    async def hello(self) -> Hello:
        info = (await self.request(Op.HELLO)).json()
        try:
            nonce = bytes.fromhex(info["nonce"])
        except (KeyError, TypeError, ValueError):
            raise ProvisioningError("device sent no usable nonce") from None
        if info.get("proto") != VERSION or len(nonce) != NONCE_LEN:
            raise ProvisioningError(f"device speaks provisioning version {info.get('proto')}")
        return Hello(
            provisioned=bool(info.get("provisioned")),
            device_id=info.get("device_id"),
            key_check=info.get("key_check"),
            nonce=nonce,
            role=info.get("role"),
            board=info.get("board"),
            version=info.get("version"),
            locked=bool(info.get("locked")),
            field_test=bool(info.get("field_test")),
            raw=info,
        )

    async def read_config(self) -> tuple[dict[str, Any], str | None]:
        out = (await self.request(Op.READ)).json()
        config = out.get("config")
        if not isinstance(config, dict):
            raise ProvisioningError("device sent no config")
        return config, out.get("key_check")

    async def write_config(
        self, config: dict[str, Any], *, key: bytes, current_key: bytes | None, nonce: bytes
    ) -> dict[str, Any]:
        wire = without_key(config)
        if current_key is None:
            wire["key"] = key.hex()
        elif key != current_key:
            wire["key_wrapped"] = wrap_key(current_key, nonce, key).hex()
        text = json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode()
        mac = request_mac(current_key, Op.WRITE, nonce, text) if current_key else bytes(MAC_LEN)
        return (await self.request(Op.WRITE, nonce + mac + text)).json()

    async def factory_reset(self, nonce: bytes) -> None:
        await self.request(Op.RESET, nonce)

    async def field_test(self, key: bytes, nonce: bytes) -> dict[str, Any]:
        return (await self.request(Op.TEST, nonce + request_mac(key, Op.TEST, nonce, b""))).json()

    async def end(self) -> None:
        await self.request(Op.END)


def find_key(registry: Registry, hello: Hello) -> tuple[int, bytes]:
    """The registry key the device holds now: its current key or one `rekey` replaced."""
    try:
        device_id = int(hello.device_id or "", 16)
    except ValueError:
        raise ProvisioningError(f"device reports a bad id {hello.device_id!r}") from None
    device = registry.get(device_id)
    if device is None:
        raise ProvisioningError(
            f"the device is provisioned as {device_id:08x}, which is not in this registry: "
            "use the right --data-dir, or factory-reset it (--factory-reset, button held)"
        )
    for key in (device.key, *registry.previous_keys(device_id)):
        if key_check(key) == hello.key_check:
            return device_id, key
    raise ProvisioningError(
        f"the device holds a key for {device_id:08x} that this registry does not know: "
        "factory-reset it (--factory-reset, button held)"
    )


@dataclass(frozen=True)
class ProvisionResult:
    device_id: str
    previously: str | None  # the id the device had before, None if unprovisioned
    key_check: str
    config: dict[str, Any]
    ended: bool
    role: str | None
    board: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "previously": self.previously,
            "key_check": self.key_check,
            "config": self.config,
            "ended": self.ended,
            "role": self.role,
            "board": self.board,
        }


Step = Callable[[str], None]


def _step(say: Step | None, text: str) -> None:
    if say is not None:
        say(text)


async def provision(
    link: Link,
    registry: Registry,
    device_id: int,
    settings: Settings | None = None,
    *,
    end: bool = True,
    factory_reset: bool = False,
    timeout: float = 10.0,
    say: Step | None = None,
) -> ProvisionResult:
    """Write ``device_id``'s config to the device on ``link``, read it back, and END."""
    device = registry.get(device_id)
    if device is None:
        raise ProvisioningError(f"no device {device_id:08x} in the registry")
    config = device_config(device, settings)
    await link.open()
    try:
        s = Session(link, timeout=timeout)
        hello = await s.hello()
        _step(say, f"device on {link.name}: {_describe(hello)}")
        if hello.role and hello.role != device.kind:
            raise ProvisioningError(
                f"{device.hex_id} is a {device.kind}, but this board runs the {hello.role} "
                f"firmware: flash it with `anshim firmware flash --role {device.kind}`"
            )
        if factory_reset:
            await s.factory_reset(hello.nonce)
            _step(say, "factory reset done")
            hello = await s.hello()
        current: bytes | None = None
        if hello.provisioned:
            if hello.locked:
                raise ProvisioningError(
                    "the device locked itself after bad signatures: power-cycle it with "
                    "the button held and try again"
                )
            _, current = find_key(registry, hello)
        reply = await s.write_config(config, key=device.key, current_key=current, nonce=hello.nonce)
        expected = key_check(device.key)
        if reply.get("key_check") != expected or reply.get("device_id") != device.hex_id:
            raise ProvisioningError(
                f"device confirmed {reply}, expected {device.hex_id}/{expected}"
            )
        back, kcv = await s.read_config()
        if kcv != expected or not same_config(back, without_key(config)):
            raise ProvisioningError(
                "the config read back from the device differs from the one sent"
            )
        _step(say, f"config written and read back: {device.hex_id}, key check {expected}")
        if end:
            await s.end()
        return ProvisionResult(
            device_id=device.hex_id,
            previously=hello.device_id if hello.provisioned else None,
            key_check=expected,
            config=back,
            ended=end,
            role=hello.role,
            board=hello.board,
        )
    finally:
        await link.close()


async def factory_reset(link: Link, *, timeout: float = 10.0) -> Hello:
    """Wipe the device's config (its button must be held down); returns the new HELLO."""
    await link.open()
    try:
        s = Session(link, timeout=timeout)
        hello = await s.hello()
        try:
            await s.factory_reset(hello.nonce)
        except ProvisioningError as exc:
            if exc.status is Status.NEED_PHYSICAL:
                raise ProvisioningError(
                    "factory reset needs the physical action: hold the device's button down "
                    "while you run this"
                ) from None
            raise
        return await s.hello()
    finally:
        await link.close()


@dataclass(frozen=True)
class TestRun:
    device_id: int
    hello: Hello
    selftest: dict[str, Any]
    frame: dict[str, Any]


async def run_device_test(
    link: Link, registry: Registry, *, end: bool = True, timeout: float = 30.0
) -> TestRun:
    """The device's half of the field test: its self-test and one test frame."""
    await link.open()
    try:
        s = Session(link, timeout=timeout)
        hello = await s.hello()
        if not hello.provisioned:
            raise ProvisioningError("the device is not provisioned: run `anshim provision` first")
        if not hello.field_test:
            raise ProvisioningError("this firmware has no field-test service")
        device_id, key = find_key(registry, hello)
        out = await s.field_test(key, hello.nonce)
        if end:
            await s.end()
    finally:
        await link.close()
    selftest = out.get("selftest")
    frame = out.get("frame")
    if not isinstance(selftest, dict) or not isinstance(frame, dict):
        raise ProvisioningError(f"device sent an unexpected field-test result: {out}")
    return TestRun(device_id, hello, selftest, frame)


def _describe(h: Hello) -> str:
    what = " ".join(x for x in (h.role, h.board, h.version) if x) or "unknown firmware"
    state = f"provisioned as {h.device_id}" if h.provisioned else "not provisioned"
    return f"{what}, {state}"
