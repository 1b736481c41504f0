"""The bridge serial link (PROTOCOL.md section 5): gateway <-> its own LoRa radio on USB.

Each message is ``BODY || CRC32`` (zlib CRC-32, u32 big-endian), COBS-encoded and ended by
one 0x00. `Framer` turns an arbitrary byte stream into messages and resynchronises at the
next delimiter after garbage; `encode_message` does the reverse.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

from construct import (
    Bytes,
    Checksum,
    ChecksumError,
    GreedyBytes,
    GreedyString,
    Int8sb,
    Int8ub,
    Int16sb,
    Int16ub,
    Int32ub,
    RawCopy,
    Struct,
    this,
)

from protocol.errors import (
    BadCrc,
    BadField,
    BadFraming,
    BadLength,
    ProtocolError,
    TooLong,
    TooShort,
    UnknownType,
)

DELIMITER = b"\x00"
CRC_LEN = 4
MIN_BODY = 2
MAX_DECODED = 300  # body + CRC
MAX_ENCODED = MAX_DECODED + MAX_DECODED // 254 + 2


class Kind(IntEnum):
    RX = 0x01
    TX = 0x02
    TX_DONE = 0x03
    TX_FAILED = 0x04
    STATUS = 0x05
    LOG = 0x06
    CONFIG = 0x07


class TxMode(IntEnum):
    NOW = 0
    AT_TMST = 1


class TxFailure(IntEnum):
    CHANNEL_BUSY = 1
    RADIO_TIMEOUT = 2
    TOO_LATE = 3
    INVALID = 4
    QUEUE_FULL = 5


# --- COBS (Cheshire & Baker 1999) --------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """COBS-encode ``data``: the result has no 0x00 byte; the delimiter is not appended."""
    out = bytearray(b"\x01")
    code_at = 0
    last = len(data) - 1
    for i, byte in enumerate(data):
        if byte:
            out.append(byte)
            out[code_at] += 1
            if out[code_at] == 0xFF and i != last:  # a full group; no empty group at the end
                code_at = len(out)
                out.append(1)
        else:
            code_at = len(out)
            out.append(1)
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of `cobs_encode`; `BadFraming` on a zero byte or a group past the end."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise BadFraming("zero byte inside a COBS frame", offset=i)
        end = i + code
        if end > n:
            raise BadFraming("COBS group runs past the end", offset=i, expected=f"{code - 1} bytes")
        chunk = data[i + 1 : end]
        if 0 in chunk:
            raise BadFraming("zero byte inside a COBS frame", offset=i + 1 + chunk.index(0))
        out += chunk
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- message bodies ------------------------------------------------------------------------

rx_format = Struct(
    "tmst" / Int32ub,
    "rssi" / Int16sb,
    "snr_x4" / Int8sb,
    "freq_khz" / Int32ub,
    "sf" / Int8ub,
    "bw_khz" / Int16ub,
    "frame" / GreedyBytes,
)
tx_format = Struct(
    "mode" / Int8ub,
    "tmst" / Int32ub,
    "freq_khz" / Int32ub,
    "sf" / Int8ub,
    "bw_khz" / Int16ub,
    "power_dbm" / Int8sb,
    "frame" / GreedyBytes,
)
tx_done_format = Struct("tmst" / Int32ub, "airtime_us" / Int32ub)
tx_failed_format = Struct("reason" / Int8ub)
status_format = Struct(
    "uptime_s" / Int32ub,
    "rx_ok" / Int32ub,
    "rx_bad" / Int32ub,
    "tx_ok" / Int32ub,
    "tx_failed" / Int32ub,
    "noise_dbm" / Int16sb,
    "fw_version" / Int8ub,
)
log_format = Struct("level" / Int8ub, "text" / GreedyString("utf8"))
config_format = Struct(
    "freq_khz" / Int32ub,
    "sf" / Int8ub,
    "bw_khz" / Int16ub,
    "cr" / Int8ub,
    "preamble" / Int16ub,
    "power_dbm" / Int8sb,
)
empty_format = Struct()

# The whole decoded block; parse/build with ``fields_len=len(block) - 6``.
message_format = Struct(
    "body"
    / RawCopy(Struct("kind" / Int8ub, "seq" / Int8ub, "fields" / Bytes(this._._params.fields_len))),
    "crc" / Checksum(Int32ub, lambda data: zlib.crc32(data), this.body.data),
)


@dataclass(frozen=True, slots=True)
class _Message:
    KIND: ClassVar[Kind]
    FORMAT: ClassVar[Struct]
    FIXED: ClassVar[int | None]  # body field length, None = variable (ends in bytes/text)

    seq: int = field(default=0, kw_only=True)

    def fields_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "seq"}

    def to_fields(self) -> dict[str, Any]:
        """JSON-ready fields as in PROTOCOL.md and the vectors (bytes as hex)."""
        return {
            k: v.hex() if isinstance(v, bytes) else int(v) if isinstance(v, IntEnum) else v
            for k, v in self.fields_dict().items()
        }


@dataclass(frozen=True, slots=True)
class Rx(_Message):
    """The bridge received a LoRa frame."""

    KIND = Kind.RX
    FORMAT = rx_format
    FIXED = None
    tmst: int
    rssi: int
    snr_x4: int
    freq_khz: int
    sf: int
    bw_khz: int
    frame: bytes

    @property
    def snr(self) -> float:
        return self.snr_x4 / 4


@dataclass(frozen=True, slots=True)
class Tx(_Message):
    """Ask the bridge to transmit a frame now or at a bridge timestamp."""

    KIND = Kind.TX
    FORMAT = tx_format
    FIXED = None
    mode: int
    tmst: int
    freq_khz: int
    sf: int
    bw_khz: int
    power_dbm: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class TxDone(_Message):
    KIND = Kind.TX_DONE
    FORMAT = tx_done_format
    FIXED = 8
    tmst: int
    airtime_us: int


@dataclass(frozen=True, slots=True)
class TxFailed(_Message):
    KIND = Kind.TX_FAILED
    FORMAT = tx_failed_format
    FIXED = 1
    reason: int


@dataclass(frozen=True, slots=True)
class StatusRequest(_Message):
    """The gateway asks the bridge for its STATUS."""

    KIND = Kind.STATUS
    FORMAT = empty_format
    FIXED = 0


@dataclass(frozen=True, slots=True)
class Status(_Message):
    """The bridge's counters and health."""

    KIND = Kind.STATUS
    FORMAT = status_format
    FIXED = 23
    uptime_s: int
    rx_ok: int
    rx_bad: int
    tx_ok: int
    tx_failed: int
    noise_dbm: int
    fw_version: int


@dataclass(frozen=True, slots=True)
class Log(_Message):
    """A log line from the bridge firmware."""

    KIND = Kind.LOG
    FORMAT = log_format
    FIXED = None
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Config(_Message):
    """Radio settings for the bridge's receiver and transmitter."""

    KIND = Kind.CONFIG
    FORMAT = config_format
    FIXED = 11
    freq_khz: int
    sf: int
    bw_khz: int
    cr: int
    preamble: int
    power_dbm: int


Message: TypeAlias = Rx | Tx | TxDone | TxFailed | StatusRequest | Status | Log | Config

_MIN_VARIABLE = {Kind.RX: 14 + 1, Kind.TX: 13 + 1, Kind.LOG: 1}
_BY_KIND: dict[Kind, tuple[type[_Message], ...]] = {
    Kind.RX: (Rx,),
    Kind.TX: (Tx,),
    Kind.TX_DONE: (TxDone,),
    Kind.TX_FAILED: (TxFailed,),
    Kind.STATUS: (StatusRequest, Status),
    Kind.LOG: (Log,),
    Kind.CONFIG: (Config,),
}
MESSAGE_CLASSES: dict[str, type[_Message]] = {
    cls.__name__: cls for group in _BY_KIND.values() for cls in group
}


def encode_body(message: Message) -> bytes:
    if not 0 <= message.seq <= 0xFF:
        raise BadField(f"seq {message.seq} is out of range", expected="0..255")
    try:
        fields_bytes = message.FORMAT.build(message.fields_dict())
    except Exception as exc:
        raise BadField(f"{message.KIND.name}: {exc}") from None
    return bytes((message.KIND, message.seq)) + fields_bytes


def encode_message(message: Message) -> bytes:
    """Wire bytes of one message: COBS(body || CRC32) followed by the 0x00 delimiter."""
    body = encode_body(message)
    if len(body) + CRC_LEN > MAX_DECODED:
        raise TooLong(f"message is {len(body) + CRC_LEN} bytes", expected=f"<= {MAX_DECODED}")
    block = message_format.build(
        {"body": {"value": {"kind": body[0], "seq": body[1], "fields": body[2:]}}},
        fields_len=len(body) - MIN_BODY,
    )
    return cobs_encode(block) + DELIMITER


def decode_block(block: bytes) -> Message:
    """One message from the COBS-decoded bytes between two delimiters."""
    n = len(block)
    if n < MIN_BODY + CRC_LEN:
        raise TooShort(f"message is {n} bytes", offset=n, expected=f"at least {MIN_BODY + CRC_LEN}")
    if n > MAX_DECODED:
        raise TooLong(f"message is {n} bytes", offset=MAX_DECODED, expected=f"<= {MAX_DECODED}")
    try:
        parsed = message_format.parse(block, fields_len=n - MIN_BODY - CRC_LEN)
    except ChecksumError:
        crc = int.from_bytes(block[-CRC_LEN:], "big")
        raise BadCrc(f"CRC {crc:08x} does not match the message", offset=n - CRC_LEN) from None
    body = parsed.body.value
    try:
        kind = Kind(body.kind)
    except ValueError:
        raise UnknownType(f"bridge message kind {body.kind:#04x}", offset=0) from None
    payload = body.fields
    cls = _pick_class(kind, payload)
    if kind is Kind.LOG:
        try:
            payload[1:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadField(f"LOG text is not UTF-8 ({exc.reason})", offset=3) from None
    try:
        raw = cls.FORMAT.parse(payload)
    except Exception as exc:
        raise BadLength(f"{kind.name}: {exc}", offset=2) from None
    values = {k: v for k, v in raw.items() if not k.startswith("_")}
    return cls(seq=body.seq, **values)  # type: ignore[return-value]


def _pick_class(kind: Kind, payload: bytes) -> type[_Message]:
    n = len(payload)
    for cls in _BY_KIND[kind]:
        if cls.FIXED is not None and n == cls.FIXED:
            return cls
    variable = [cls for cls in _BY_KIND[kind] if cls.FIXED is None]
    if variable and n >= _MIN_VARIABLE[kind]:
        return variable[0]
    expected = " or ".join(
        f"{c.FIXED} bytes" if c.FIXED is not None else f"{_MIN_VARIABLE[kind]}+ bytes"
        for c in _BY_KIND[kind]
    )
    raise BadLength(f"{kind.name} body is {n} bytes", offset=2, expected=expected)


def decode_message(wire: bytes) -> Message:
    """One message from its wire bytes (with or without the trailing delimiter)."""
    wire = bytes(wire)
    if wire.endswith(DELIMITER):
        wire = wire[:-1]
    if len(wire) > MAX_ENCODED:
        raise TooLong(
            f"frame is {len(wire)} bytes", offset=MAX_ENCODED, expected=f"<= {MAX_ENCODED}"
        )
    return decode_block(cobs_decode(wire))


@dataclass(slots=True)
class FramerStats:
    messages: int = 0
    errors: int = 0
    bad_crc: int = 0
    bad_framing: int = 0
    bad_message: int = 0
    overflow: int = 0
    last_error: ProtocolError | None = None


class Framer:
    """Stream of bytes in, messages out; resynchronises after garbage at the next 0x00.

    Feed it whatever the serial port returned; it keeps a bounded buffer between calls.
    Invalid frames are counted in `stats` (and the last one kept) and skipped.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.stats = FramerStats()

    def feed(self, data: bytes) -> list[Message]:
        return list(self.iter_feed(data))

    def iter_feed(self, data: bytes) -> Iterator[Message]:
        start = 0
        n = len(data)
        while start < n:
            end = data.find(0, start)
            if end < 0:
                self._append(data[start:])
                return
            self._append(data[start:end])
            start = end + 1
            if self._discarding:
                self._discarding = False
                self._buf.clear()
                continue
            if not self._buf:
                continue  # empty frame: a flush, or two delimiters in a row
            frame = bytes(self._buf)
            self._buf.clear()
            try:
                message = decode_block(cobs_decode(frame))
            except ProtocolError as exc:
                self._count(exc)
                continue
            self.stats.messages += 1
            yield message

    def _append(self, chunk: bytes) -> None:
        if self._discarding:
            return
        self._buf += chunk
        if len(self._buf) > MAX_ENCODED:
            self._buf.clear()
            self._discarding = True
            self._count(TooLong("frame without delimiter", expected=f"<= {MAX_ENCODED} bytes"))
            self.stats.overflow += 1

    def _count(self, exc: ProtocolError) -> None:
        stats = self.stats
        stats.errors += 1
        stats.last_error = exc
        if isinstance(exc, BadCrc):
            stats.bad_crc += 1
        elif isinstance(exc, BadFraming):
            stats.bad_framing += 1
        elif not isinstance(exc, TooLong):
            stats.bad_message += 1
