"""Bridge serial link (PROTOCOL.md section 5), the device's twin of `protocol/link.py`.

Each message is ``BODY || CRC32`` (IEEE CRC-32 of BODY, u32 big-endian), COBS-encoded
(Cheshire & Baker 1999) and ended by one 0x00. A body is ``kind u8, seq u8, fields``.

* ``encode(kind_name, seq, fields)`` gives the wire bytes (delimiter included) and
  ``decode(wire)`` the message ``(kind_name, seq, fields)``; ``frame`` fields are bytes,
  ``text`` is a str. Decoders raise only `errors.ProtocolError` subclasses.
* ``Writer`` does the same into preallocated buffers for the bridge's hot path (one RX
  message per received packet): it returns a memoryview valid until its next call.
* ``Framer`` is fed whatever the UART returned and yields whole messages. It keeps a
  bounded buffer, drops anything invalid, counts it, and resynchronises at the next
  0x00 whatever garbage came before.
"""

import struct

from compat import const
from errors import (
    BadCrc,
    BadField,
    BadFraming,
    BadLength,
    ProtocolError,
    TooLong,
    TooShort,
    UnknownType,
)

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple, Union

    Buffer = Union[bytes, bytearray, memoryview]
    Fields = Dict[str, Any]
    Message = Tuple[str, int, Fields]

try:
    from binascii import crc32 as _crc32
except ImportError:  # a port built without MICROPY_PY_BINASCII_CRC32
    _crc32 = None  # type: ignore[assignment]

CRC_LEN = const(4)
MIN_BODY = const(2)  # kind, seq
MIN_DECODED = const(6)  # MIN_BODY + CRC_LEN
MAX_DECODED = const(300)  # body + CRC, section 5.1
# Longest COBS encoding of MAX_DECODED bytes: one code byte per 254 data bytes, plus one.
MAX_ENCODED = const(303)  # MAX_DECODED + MAX_DECODED // 254 + 2, as protocol/link.py

# Kinds (section 5.2).
RX = const(0x01)
TX = const(0x02)
TX_DONE = const(0x03)
TX_FAILED = const(0x04)
STATUS = const(0x05)
LOG = const(0x06)
CONFIG = const(0x07)

# TX modes and TX_FAILED reasons.
TX_NOW = const(0)
TX_AT_TMST = const(1)
FAIL_CHANNEL_BUSY = const(1)  # LBT found the channel busy
FAIL_RADIO_TIMEOUT = const(2)
FAIL_TOO_LATE = const(3)  # tmst already passed
FAIL_INVALID = const(4)
FAIL_QUEUE_FULL = const(5)

# kind -> (name, fixed-field format, field names, name of the trailing field or None,
#          trailing field is text). Formats have one letter per field.
_KINDS = {
    RX: ("RX", ">IhbIBH", ("tmst", "rssi", "snr_x4", "freq_khz", "sf", "bw_khz"), "frame", False),
    TX: (
        "TX",
        ">BIIBHb",
        ("mode", "tmst", "freq_khz", "sf", "bw_khz", "power_dbm"),
        "frame",
        False,
    ),
    TX_DONE: ("TX_DONE", ">II", ("tmst", "airtime_us"), None, False),
    TX_FAILED: ("TX_FAILED", ">B", ("reason",), None, False),
    STATUS: (
        "STATUS",
        ">IIIIIhB",
        ("uptime_s", "rx_ok", "rx_bad", "tx_ok", "tx_failed", "noise_dbm", "fw_version"),
        None,
        False,
    ),
    LOG: ("LOG", ">B", ("level",), "text", True),
    CONFIG: (
        "CONFIG",
        ">IBHBHb",
        ("freq_khz", "sf", "bw_khz", "cr", "preamble", "power_dbm"),
        None,
        False,
    ),
}
KIND_CODES = {}
for _k in _KINDS:
    KIND_CODES[_KINDS[_k][0]] = _k

_LIMITS = {
    "B": (0, 0xFF),
    "b": (-0x80, 0x7F),
    "H": (0, 0xFFFF),
    "h": (-0x8000, 0x7FFF),
    "I": (0, 0xFFFFFFFF),
}

_SIZES = {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4}

_RX_FMT = ">BBIhbIBH"  # kind, seq and RX's fixed fields: the Writer packs them in one go
_RX_HEAD = const(16)  # bytes before the frame in an RX body


# -- CRC-32 ---------------------------------------------------------------------------

_crc_table = None


def crc32_soft(data, crc=0):
    """Table-driven IEEE CRC-32, for ports whose `binascii` lacks `crc32`."""
    global _crc_table
    table = _crc_table
    if table is None:
        import array

        table = array.array("I", [0] * 256)
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
            table[i] = c
        _crc_table = table
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32(data):
    """CRC-32 of ``data`` as an unsigned int (zlib's, MicroPython's binascii.crc32)."""
    if _crc32 is None:
        return crc32_soft(data)
    return _crc32(data)  # unsigned on both CPython 3 and MicroPython


# -- COBS -----------------------------------------------------------------------------


def cobs_encode_into(src, n, dst):
    """COBS-encode ``src[0:n]`` into ``dst``; return the encoded length (no delimiter).

    A full 254-byte group at the very end gets no empty group after it (the canonical
    encoding, as `protocol/link.py`): both sides must agree byte for byte.
    """
    code_at = 0
    out = 1
    code = 1
    for i in range(n):
        b = src[i]
        if b:
            dst[out] = b
            out += 1
            code += 1
            if code == 0xFF and i != n - 1:
                dst[code_at] = code
                code_at = out
                out += 1
                code = 1
        else:
            dst[code_at] = code
            code_at = out
            out += 1
            code = 1
    dst[code_at] = code
    return out


def cobs_decode_into(src, n, dst):
    """Decode ``src[0:n]`` (without the delimiter) into ``dst``; return the length.

    Raises BadFraming on a zero byte or a group that runs past the end, and TooLong when
    the result would not fit ``dst``.
    """
    cap = len(dst)
    i = 0
    out = 0
    while i < n:
        code = src[i]
        if code == 0:
            raise BadFraming("zero byte inside a COBS frame", i)
        end = i + code
        if end > n:
            raise BadFraming("COBS group runs past the end", i)
        if out + code > cap:
            raise TooLong("message longer than %d bytes" % cap, cap)
        i += 1
        while i < end:
            b = src[i]
            if b == 0:
                raise BadFraming("zero byte inside a COBS frame", i)
            dst[out] = b
            out += 1
            i += 1
        if code < 0xFF and i < n:
            dst[out] = 0
            out += 1
    return out


def cobs_encode(data):
    """COBS encoding of ``data`` as bytes (no delimiter)."""
    dst = bytearray(len(data) + len(data) // 254 + 1)
    return bytes(memoryview(dst)[0 : cobs_encode_into(data, len(data), dst)])


def cobs_decode(data):
    """Inverse of `cobs_encode` (BadFraming when malformed)."""
    dst = bytearray(len(data))
    return bytes(memoryview(dst)[0 : cobs_decode_into(data, len(data), dst)])


# -- bodies ---------------------------------------------------------------------------


def _check_int(name, value, letter, offset):
    lo, hi = _LIMITS[letter]
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or value > hi:
        raise BadField("%s must be an integer %d..%d, not %r" % (name, lo, hi, value), offset)


def pack_body(buf, kind_name, seq, fields):
    """Write the body of one message into ``buf``; return its length."""
    kind = KIND_CODES.get(kind_name)
    if kind is None:
        raise UnknownType("unknown bridge message kind %r" % (kind_name,), 0)
    _check_int("seq", seq, "B", 1)
    buf[0] = kind
    buf[1] = seq
    name, fmt, names, tail, is_text = _KINDS[kind]
    if kind == STATUS and not fields:
        return MIN_BODY  # the gateway's request: an empty STATUS
    for key in fields:
        if key not in names and key != tail:
            raise BadField("%s has no field %r" % (name, key))
    letters = fmt[1:]
    values = []
    off = MIN_BODY
    for i in range(len(names)):
        if names[i] not in fields:
            raise BadField("%s needs field %s" % (name, names[i]), off)
        v = fields[names[i]]
        _check_int(names[i], v, letters[i], off)
        values.append(v)
        off += _SIZES[letters[i]]
    struct.pack_into(fmt, buf, MIN_BODY, *values)
    end = MIN_BODY + struct.calcsize(fmt)
    if tail is None:
        return end
    data = fields.get(tail, "" if is_text else b"")
    if is_text:
        if not isinstance(data, str):
            raise BadField("%s.%s must be a str" % (name, tail), end)
        data = data.encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise BadField("%s.%s must be bytes" % (name, tail), end)
    elif len(data) == 0:
        raise BadField("%s.%s must not be empty" % (name, tail), end)
    if end + len(data) + CRC_LEN > len(buf) or end + len(data) + CRC_LEN > MAX_DECODED:
        raise TooLong("%s message would be longer than %d bytes" % (name, MAX_DECODED), end)
    buf[end : end + len(data)] = data
    return end + len(data)


def decode_body(body, n):
    """The message ``(kind_name, seq, fields)`` in ``body[0:n]`` (CRC already checked)."""
    if n < MIN_BODY:
        raise TooShort("body is %d bytes, at least %d" % (n, MIN_BODY), n)
    spec = _KINDS.get(body[0])
    if spec is None:
        raise UnknownType("unknown bridge message kind 0x%02x" % body[0], 0)
    name, fmt, names, tail, is_text = spec
    seq = body[1]
    flen = n - MIN_BODY
    fixed = struct.calcsize(fmt)
    fields: "Fields" = {}
    if body[0] == STATUS and flen == 0:
        return name, seq, fields  # a request
    if tail is None:
        if flen != fixed:
            raise BadLength("%s fields must be %d bytes, not %d" % (name, fixed, flen), MIN_BODY)
    elif flen < fixed + (0 if is_text else 1):
        raise BadLength("%s fields are %d bytes, too short" % (name, flen), MIN_BODY)
    values = struct.unpack_from(fmt, body, MIN_BODY)
    for i in range(len(names)):
        fields[names[i]] = values[i]
    if tail is not None:
        rest = memoryview(body)[MIN_BODY + fixed : n]
        if is_text:
            try:
                fields[tail] = str(rest, "utf-8")
            except UnicodeError:
                raise BadField("%s text is not UTF-8" % name, MIN_BODY + fixed) from None
        else:
            fields[tail] = bytes(rest)
    return name, seq, fields


def decode_block(block, n):
    """One message from ``block[0:n]``, the COBS-decoded bytes between two delimiters."""
    if n < MIN_DECODED:
        raise TooShort("message is %d bytes, at least %d" % (n, MIN_DECODED), n)
    if n > MAX_DECODED:
        raise TooLong("message is %d bytes, at most %d" % (n, MAX_DECODED), MAX_DECODED)
    body = memoryview(block)[0 : n - CRC_LEN]
    got = struct.unpack_from(">I", block, n - CRC_LEN)[0]
    want = crc32(body)
    if got != want:
        raise BadCrc("CRC %08x does not match %08x" % (got, want), n - CRC_LEN)
    return decode_body(block, n - CRC_LEN)


def encode(kind_name, seq, fields):
    """Wire bytes of one message: COBS(body || CRC32) and the 0x00 delimiter."""
    return bytes(Writer().message(kind_name, seq, fields))


def decode(wire):
    """One message from its wire bytes, with or without the trailing delimiter."""
    n = len(wire)
    if n and wire[n - 1] == 0:
        n -= 1
    if n > MAX_ENCODED:
        raise TooLong("frame is %d bytes, at most %d" % (n, MAX_ENCODED), MAX_ENCODED)
    block = bytearray(MAX_ENCODED)
    return decode_block(block, cobs_decode_into(wire, n, block))


class Writer:
    """Encodes messages into two preallocated buffers (body and wire)."""

    def __init__(self) -> None:
        self._body = bytearray(MAX_DECODED)
        self._wire = bytearray(MAX_ENCODED + 1)
        self._wire_mv = memoryview(self._wire)

    def _seal(self, n: int) -> memoryview:
        struct.pack_into(">I", self._body, n, crc32(memoryview(self._body)[0:n]))
        m = cobs_encode_into(self._body, n + CRC_LEN, self._wire)
        self._wire[m] = 0
        return self._wire_mv[0 : m + 1]

    def message(self, kind_name: str, seq: int, fields: "Fields") -> memoryview:
        """Any message from a dict of its fields; a view of the wire bytes."""
        return self._seal(pack_body(self._body, kind_name, seq, fields))

    def rx(
        self,
        seq: int,
        tmst: int,
        rssi: int,
        snr_x4: int,
        freq_khz: int,
        sf: int,
        bw_khz: int,
        frame: "Buffer",
    ) -> memoryview:
        """An RX message for one received packet, without building a dict.

        The values come from the radio driver and are trusted: only the frame length
        is checked here.
        """
        n = len(frame)
        if n == 0 or _RX_HEAD + n + CRC_LEN > MAX_DECODED:
            raise BadField("RX frame of %d bytes" % n, _RX_HEAD)
        struct.pack_into(
            _RX_FMT, self._body, 0, RX, seq & 0xFF, tmst, rssi, snr_x4, freq_khz, sf, bw_khz
        )
        self._body[_RX_HEAD : _RX_HEAD + n] = frame
        return self._seal(_RX_HEAD + n)


class Framer:
    """Byte stream in, messages out; resynchronises after garbage at the next 0x00.

    Invalid frames are dropped and counted: ``errors`` in total, of which
    ``bad_crc``, ``bad_framing`` (COBS), ``overflow`` (no delimiter within
    MAX_ENCODED bytes) and ``bad_message`` (short, unknown kind, bad length or text);
    ``last_error`` keeps the last one for a log line. Empty frames (a flushing 0x00,
    two delimiters in a row) are not errors.
    """

    def __init__(self) -> None:
        self._raw = bytearray(MAX_ENCODED)  # encoded bytes of the frame being collected
        self._n = 0
        self._discarding = False
        self._block = bytearray(MAX_ENCODED)
        self.messages = 0
        self.errors = 0
        self.bad_crc = 0
        self.bad_framing = 0
        self.bad_message = 0
        self.overflow = 0
        self.last_error: "Optional[ProtocolError]" = None

    def feed(self, data: "Buffer") -> "List[Message]":
        """Every whole message completed by ``data``; partial ones wait for more."""
        if isinstance(data, memoryview):
            data = bytes(data)  # bytes and bytearray have find(); memoryview has not
        out: "List[Message]" = []
        start = 0
        n = len(data)
        while start < n:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data, start, n)
                break
            self._append(data, start, end)
            start = end + 1
            if self._discarding:  # the end of an overlong frame: start afresh
                self._discarding = False
                continue
            k = self._n
            if k == 0:
                continue  # a flushing 0x00, or two delimiters in a row
            self._n = 0
            try:
                msg = decode_block(self._block, cobs_decode_into(self._raw, k, self._block))
            except ProtocolError as exc:
                self._count(exc)
                continue
            self.messages += 1
            out.append(msg)
        return out

    def _append(self, data: "Buffer", start: int, end: int) -> None:
        if self._discarding or start == end:
            return
        k = end - start
        if self._n + k > MAX_ENCODED:  # no delimiter in time: drop up to the next one
            self._n = 0
            self._discarding = True
            self.overflow += 1
            self.errors += 1
            self.last_error = TooLong("frame without delimiter", MAX_ENCODED)
            return
        self._raw[self._n : self._n + k] = data[start:end]
        self._n += k

    def _count(self, exc: ProtocolError) -> None:
        self.errors += 1
        self.last_error = exc
        if isinstance(exc, BadCrc):
            self.bad_crc += 1
        elif isinstance(exc, BadFraming):
            self.bad_framing += 1
        else:
            self.bad_message += 1
