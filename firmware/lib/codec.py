"""Radio frame codec (PROTOCOL.md sections 1-4), the device's twin of `protocol/`.

Layout: ``HDR FLAGS DEVID(u32) FCNT16(u16) PAYLOAD MIC(8)``, big-endian, 16..64 bytes.

Two ways in:

* ``Codec(device_id, key)`` owns one 64-byte buffer. Its ``encode_alarm()``,
  ``encode_heartbeat()``, ... write straight into that buffer with `struct.pack_into`
  and return a memoryview of the frame: no bytes objects, tuples or dicts are built on
  the hot path, only what `hashlib` allocates for the MIC. The view is valid until the
  next encode; hand it to the radio (or copy it) before encoding again.
* ``encode(name, device_id, counter, flags, fields, key)`` and
  ``decode(data, key, last_counter)`` take and return plain dicts keyed by the field
  names of the spec and `protocol/vectors/`. Tools and tests use them; a device uses
  ``Codec.decode()`` for its (rare) downlinks.

Decoders raise only `errors.ProtocolError` subclasses, whatever the bytes. They check
length, version, type and payload length, then the counter window, then the MIC, and
only then look at payload values. A COMMAND's opcode and argument lengths are checked
with its payload, after the MIC, exactly as the gateway codec (`protocol/frames.py`)
does, so both codecs name the same error for the same bytes.
"""

import struct

from compat import const
from errors import (
    BadField,
    BadLength,
    BadMic,
    BadVersion,
    CounterOutOfWindow,
    TooLong,
    TooShort,
    UnknownDevice,
    UnknownType,
)
from mic import DOWN, KEY_LEN, MIC_LEN, UP, Mic

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple, Union

    Buffer = Union[bytes, bytearray, memoryview]
    Fields = Dict[str, Any]
    Decoded = Tuple[str, int, int, int, Fields]

VERSION = const(1)
HEADER_LEN = const(8)  # HDR, FLAGS, DEVID u32, FCNT16 u16
OVERHEAD = const(16)  # header + MIC
MIN_FRAME = const(16)
MAX_FRAME = const(64)
MAX_FCNT_GAP = const(16384)  # section 1.3, as LoRaWAN's MAX_FCNT_GAP
_HEADER_FMT = ">BBIH"
_DIR_BIT = const(0x10)  # bit 4 of the type: 1 = downlink
_BATTERY_STEP = const(20)  # mV per battery unit on air (section 3)
_MINUTES_PER_DAY = const(1440)

# Frame types (section 1.1).
ALARM = const(0x01)
ALARM_UPDATE = const(0x02)
HEARTBEAT = const(0x03)
FAULT = const(0x04)
LIGHT_STATUS = const(0x05)
SELFTEST = const(0x06)
ACK = const(0x11)
COMMAND = const(0x12)
TIME = const(0x13)

# FLAGS bits (section 1.2).
FLAG_RX_OPEN = const(0x01)  # uplink: the device listens after this frame
FLAG_MORE = const(0x01)  # downlink: more downlinks queued
FLAG_RETRY = const(0x02)  # uplink: retransmission with the same counter
FLAG_TEST = const(0x04)  # a crew's test, never dispatched

# COMMAND opcodes (section 4.2).
SET_LEVEL = const(0x01)
STROBE = const(0x02)
SCHEDULE = const(0x03)
REBOOT = const(0x04)
CONFIG = const(0x05)
CMD_SELFTEST = const(0x06)
_CONFIG_KEY_MAX = const(16)  # bytes
_CONFIG_VALUE_MAX = const(30)  # bytes: 16 overhead + 2 + 16 + 30 = 64, the largest frame

# type -> (name, payload struct format, field names). Formats have one letter per field
# (no repeat counts): the encoder range-checks each value by its letter.
# COMMAND's payload depends on its opcode, in _OPCODES.
_TYPES = {
    ALARM: ("ALARM", ">BBBB", ("button", "press_count", "battery_mv", "alarm_flags")),
    ALARM_UPDATE: ("ALARM_UPDATE", ">IBB", ("alarm_counter", "press_count", "battery_mv")),
    HEARTBEAT: (
        "HEARTBEAT",
        ">BbHBBBb",
        (
            "battery_mv",
            "temperature",
            "uptime_h",
            "faults",
            "fw_version",
            "last_rssi",
            "last_snr",
        ),
    ),
    FAULT: ("FAULT", ">BBH", ("code", "active", "detail")),
    LIGHT_STATUS: ("LIGHT_STATUS", ">BHIB", ("level", "lamp_ma", "energy_wh", "motion_events")),
    SELFTEST: ("SELFTEST", ">BBB", ("ran", "passed", "battery_mv")),
    ACK: ("ACK", ">IB", ("acked_counter", "alarm_state")),
    COMMAND: ("COMMAND", None, None),
    TIME: ("TIME", ">Ib", ("unix_time", "utc_offset")),
}

# opcode -> (name, argument struct format, argument names); CONFIG's format is None
# because its key and value have variable lengths.
_OPCODES = {
    SET_LEVEL: ("SET_LEVEL", ">BH", ("level", "minutes")),
    STROBE: ("STROBE", ">H", ("seconds",)),
    SCHEDULE: ("SCHEDULE", ">BBHH", ("dusk_level", "night_level", "night_from", "night_until")),
    REBOOT: ("REBOOT", "", ()),
    CONFIG: ("CONFIG", None, ("key", "value")),
    CMD_SELFTEST: ("SELFTEST", "", ()),
}


def _by_name(table):
    out = {}
    for code in table:
        out[table[code][0]] = code
    return out


TYPE_CODES = _by_name(_TYPES)  # "ALARM" -> 0x01
OPCODE_CODES = _by_name(_OPCODES)  # "SET_LEVEL" -> 0x01
_PAYLOAD_LEN = {}
FIELD_NAMES = {}  # "ALARM" -> ("button", ...): the fixed-layout types' fields, in order
for _code in _TYPES:
    _fmt = _TYPES[_code][1]
    if _fmt is not None:
        _PAYLOAD_LEN[_code] = struct.calcsize(_fmt)
        FIELD_NAMES[_TYPES[_code][0]] = _TYPES[_code][2]

# Value limits of the on-air integer letters.
_LIMITS = {
    "B": (0, 0xFF),
    "b": (-0x80, 0x7F),
    "H": (0, 0xFFFF),
    "h": (-0x8000, 0x7FFF),
    "I": (0, 0xFFFFFFFF),
}

_SIZES = {"B": 1, "b": 1, "H": 2, "h": 2, "I": 4}

# Fields the spec says saturate: an encoder clamps them instead of refusing.
_SATURATING = ("press_count", "uptime_h", "motion_events")

# Fields whose meaning is narrower than their on-air integer (section 7's BadField),
# checked on encode and, once the MIC has passed, on decode. Field names are unique
# across types, so one table serves all. The gateway codec (`protocol/frames.py`)
# applies the same limits.
_RANGES = {
    "level": (0, 100),  # % (LIGHT_STATUS, SET_LEVEL)
    "dusk_level": (0, 100),  # %
    "night_level": (0, 100),  # %
    "night_from": (0, _MINUTES_PER_DAY - 1),  # minutes after local midnight
    "night_until": (0, _MINUTES_PER_DAY - 1),
    "code": (1, 0xFF),  # fault codes start at 1 (section 3.4)
    "active": (0, 1),
    "alarm_state": (0, 3),  # none, delivered, acknowledged, resolved (section 4.1)
    "utc_offset": (-48, 56),  # 15-minute steps: UTC-12:00 .. UTC+14:00
    "seconds": (1, 0xFFFF),  # a STROBE of 0 s is meaningless
}


def battery_units(mv):
    """Battery mV to its on-air byte: 20 mV steps, rounded down, clamped to 0..255."""
    u = mv // _BATTERY_STEP
    if u < 0:
        return 0
    if u > 0xFF:
        return 0xFF
    return u


def reconstruct_counter(fcnt16, last):
    """The full 32-bit counter for a received FCNT16, given the last accepted one.

    Section 1.3; ``last`` is None for a device never heard from (treated as 0, with 0
    itself acceptable). Raises CounterOutOfWindow when the result is more than
    MAX_FCNT_GAP past ``last``, or would not fit 32 bits.
    """
    if last is None:
        last = 0
    candidate = (last & 0xFFFF0000) | fcnt16
    if candidate < last:
        candidate += 0x10000  # the low half wrapped
    if candidate - last > MAX_FCNT_GAP or candidate > 0xFFFFFFFF:
        raise CounterOutOfWindow(
            "counter %d is %d past the last accepted %d" % (candidate, candidate - last, last), 6
        )
    return candidate


def _check_int(name, value, letter, offset):
    lo, hi = _LIMITS[letter]
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or value > hi:
        raise BadField("%s must be an integer %d..%d, not %r" % (name, lo, hi, value), offset)


def _check_range(name, value):
    r = _RANGES.get(name)
    if r is not None and (value < r[0] or value > r[1]):
        raise BadField("%s must be %d..%d, not %d" % (name, r[0], r[1], value))


def _check_selftest(ran, passed):
    if passed & ~ran:
        raise BadField(
            "SELFTEST passed 0x%02x names checks that did not run (0x%02x)" % (passed, ran)
        )


def _no_extra_fields(what, fields, names):
    for name in fields:
        if name not in names and name != "opcode":
            raise BadField("%s has no field %r" % (what, name))


def _to_air(name, value, letter, offset):
    """A field's value from the dict to its on-air integer, checking its range."""
    if name == "battery_mv":
        if not isinstance(value, int):
            raise BadField("battery_mv must be an integer, not %r" % (value,), offset)
        return battery_units(value)
    if name == "last_rssi":  # dBm <= 0 on the API, -dBm as u8 on air
        if not isinstance(value, int) or value > 0:
            raise BadField("last_rssi must be an integer dBm <= 0, not %r" % (value,), offset)
        return -value if value >= -0xFF else 0xFF
    if name in _SATURATING and isinstance(value, int) and value > _LIMITS[letter][1]:
        return _LIMITS[letter][1]
    _check_int(name, value, letter, offset)
    _check_range(name, value)
    return value


def _from_air(name, value):
    if name == "battery_mv":
        return value * _BATTERY_STEP
    if name == "last_rssi":
        return -value
    return value


def _pack_fields(buf, offset, fmt, names, fields):
    """Pack ``fields`` (a dict) by ``fmt``/``names`` at ``offset``; return the next offset."""
    letters = fmt[1:]
    off = offset
    values = []
    for i in range(len(names)):
        name = names[i]
        if name not in fields:
            raise BadField("missing field %s" % name, off)
        values.append(_to_air(name, fields[name], letters[i], off))
        off += _SIZES[letters[i]]
    struct.pack_into(fmt, buf, offset, *values)
    return off


def _unpack_fields(data, offset, fmt, names, fields):
    values = struct.unpack_from(fmt, data, offset)
    for i in range(len(names)):
        name = names[i]
        _check_range(name, values[i])
        fields[name] = _from_air(name, values[i])


def _printable_ascii(key):
    for c in key:
        if c < 0x20 or c > 0x7E:
            return False
    return True


def check_header(data):
    """The checks a frame passes before any key is involved (sections 1.1, 7).

    Length, version, type and the type's payload length (for COMMAND only that an
    opcode is present: its arguments are checked with the payload, after the MIC, as
    the gateway does). Returns ``(ftype, device_id, fcnt16, flags)``; a device uses it
    to drop frames for other devices before it spends a MIC on them.
    """
    n = len(data)
    if n < MIN_FRAME:
        raise TooShort("frame is %d bytes, at least %d" % (n, MIN_FRAME), n)
    if n > MAX_FRAME:
        raise TooLong("frame is %d bytes, at most %d" % (n, MAX_FRAME), MAX_FRAME)
    hdr, flags, device_id, fcnt16 = struct.unpack_from(_HEADER_FMT, data, 0)
    if hdr >> 5 != VERSION:
        raise BadVersion("version %d, expected %d" % (hdr >> 5, VERSION), 0)
    ftype = hdr & 0x1F
    if ftype not in _TYPES:
        raise UnknownType("unknown frame type 0x%02x" % ftype, 0)
    if ftype == COMMAND:
        if n == OVERHEAD:
            raise BadLength("COMMAND without opcode", HEADER_LEN)
    elif n - OVERHEAD != _PAYLOAD_LEN[ftype]:
        raise BadLength(
            "%s payload must be %d bytes, not %d"
            % (_TYPES[ftype][0], _PAYLOAD_LEN[ftype], n - OVERHEAD),
            HEADER_LEN,
        )
    return ftype, device_id, fcnt16, flags


def _decode_command(data, end, fields):
    """COMMAND arguments (section 4.2) from ``data[8:end]``, into ``fields``."""
    plen = end - HEADER_LEN
    op = _OPCODES.get(data[HEADER_LEN])
    if op is None:
        raise UnknownType("unknown COMMAND opcode 0x%02x" % data[HEADER_LEN], HEADER_LEN)
    opname, afmt, anames = op
    fields["opcode"] = opname
    if afmt is not None:
        if plen != 1 + struct.calcsize(afmt):
            raise BadLength(
                "%s command must be %d bytes, not %d" % (opname, 1 + struct.calcsize(afmt), plen),
                HEADER_LEN,
            )
        _unpack_fields(data, HEADER_LEN + 1, afmt, anames, fields)
        return
    # CONFIG: key length u8, key (ASCII), value (UTF-8, the rest).
    klen = data[HEADER_LEN + 1] if plen > 1 else 0
    if klen == 0 or plen < 2 + klen:
        raise BadLength("CONFIG key length %d does not fit the payload" % klen, HEADER_LEN + 1)
    kstart = HEADER_LEN + 2
    vstart = kstart + klen
    mv = memoryview(data)
    for i in range(kstart, vstart):
        if data[i] > 0x7F:
            raise BadField("CONFIG key is not ASCII", kstart)
    try:
        value = str(mv[vstart:end], "utf-8")
    except UnicodeError:
        raise BadField("CONFIG value is not UTF-8") from None
    key = str(mv[kstart:vstart], "utf-8")
    if klen > _CONFIG_KEY_MAX:
        raise BadField("CONFIG key %r is longer than %d characters" % (key, _CONFIG_KEY_MAX))
    if not _printable_ascii(mv[kstart:vstart]):
        raise BadField("CONFIG key %r must be printable ASCII" % key)
    if end - vstart > _CONFIG_VALUE_MAX:
        raise BadField("CONFIG value for %r is longer than %d bytes" % (key, _CONFIG_VALUE_MAX))
    fields["key"] = key
    fields["value"] = value


def _decode_payload(ftype, data, end):
    """``(type_name, fields)`` of a frame whose length and MIC have been checked."""
    fields: "Fields" = {}
    name, fmt, names = _TYPES[ftype]
    if fmt is None:
        _decode_command(data, end, fields)
    else:
        _unpack_fields(data, HEADER_LEN, fmt, names, fields)
        if ftype == SELFTEST:
            _check_selftest(fields["ran"], fields["passed"])
    return name, fields


def _decode(mic, data, last_counter, device_id=None):
    ftype, devid, fcnt16, flags = check_header(data)
    if device_id is not None and devid != device_id:
        raise UnknownDevice("frame for device %08x, not %08x" % (devid, device_id), 2)
    counter = reconstruct_counter(fcnt16, last_counter)
    direction = DOWN if ftype & _DIR_BIT else UP
    if not mic.verify(direction, devid, counter, data):
        raise BadMic("MIC does not match", len(data) - MIC_LEN)
    try:
        name, fields = _decode_payload(ftype, data, len(data) - MIC_LEN)
    except BadField as exc:
        if exc.offset is None:  # a value check over the whole payload: point at it
            exc.offset = HEADER_LEN
        raise
    return name, devid, counter, flags, fields


def _device_mic(key):
    if len(key) != KEY_LEN:
        raise ValueError("a device key is %d bytes, not %d" % (KEY_LEN, len(key)))
    return Mic(key)


class Codec:
    """One device's frames: its id, its key and one preallocated frame buffer."""

    def __init__(self, device_id: int, key: "Buffer") -> None:
        if not 0 <= device_id <= 0xFFFFFFFF:
            raise ValueError("device id must fit 32 bits")
        self.device_id = device_id
        self._mic = _device_mic(key)
        self._buf = bytearray(MAX_FRAME)
        self._mv = memoryview(self._buf)

    # -- hot path: one method per uplink, arguments in on-air order -------------------

    def _finish(self, ftype: int, counter: int, flags: int, end: int) -> memoryview:
        if not 0 <= counter <= 0xFFFFFFFF:
            raise BadField("counter must fit 32 bits", 6)
        if not 0 <= flags <= 0xFF:
            raise BadField("flags must fit 8 bits", 1)
        struct.pack_into(
            _HEADER_FMT,
            self._buf,
            0,
            (VERSION << 5) | ftype,
            flags,
            self.device_id,
            counter & 0xFFFF,
        )
        direction = DOWN if ftype & _DIR_BIT else UP
        n = self._mic.sign(direction, self.device_id, counter, self._mv, end)
        return self._mv[0:n]

    def encode_alarm(
        self,
        counter: int,
        flags: int,
        button: int,
        press_count: int,
        battery_mv: int,
        alarm_flags: int,
    ) -> memoryview:
        _check_int("button", button, "B", 8)
        _check_int("alarm_flags", alarm_flags, "B", 11)
        if press_count > 0xFF:
            press_count = 0xFF
        _check_int("press_count", press_count, "B", 9)
        struct.pack_into(
            ">BBBB", self._buf, 8, button, press_count, battery_units(battery_mv), alarm_flags
        )
        return self._finish(ALARM, counter, flags, 12)

    def encode_alarm_update(
        self, counter: int, flags: int, alarm_counter: int, press_count: int, battery_mv: int
    ) -> memoryview:
        _check_int("alarm_counter", alarm_counter, "I", 8)
        if press_count > 0xFF:
            press_count = 0xFF
        _check_int("press_count", press_count, "B", 12)
        struct.pack_into(
            ">IBB", self._buf, 8, alarm_counter, press_count, battery_units(battery_mv)
        )
        return self._finish(ALARM_UPDATE, counter, flags, 14)

    def encode_heartbeat(
        self,
        counter: int,
        flags: int,
        battery_mv: int,
        temperature: int,
        uptime_h: int,
        faults: int,
        fw_version: int,
        last_rssi: int,
        last_snr: int,
    ) -> memoryview:
        # Values from sensors are clamped, not refused: a heartbeat must always go out.
        if temperature < -0x80:
            temperature = -0x80
        elif temperature > 0x7F:
            temperature = 0x7F
        if uptime_h > 0xFFFF:
            uptime_h = 0xFFFF
        rssi = -last_rssi
        if rssi < 0:
            rssi = 0
        elif rssi > 0xFF:
            rssi = 0xFF
        if last_snr < -0x80:
            last_snr = -0x80
        elif last_snr > 0x7F:
            last_snr = 0x7F
        _check_int("uptime_h", uptime_h, "H", 10)
        _check_int("faults", faults, "B", 12)
        _check_int("fw_version", fw_version, "B", 13)
        struct.pack_into(
            ">BbHBBBb",
            self._buf,
            8,
            battery_units(battery_mv),
            temperature,
            uptime_h,
            faults,
            fw_version,
            rssi,
            last_snr,
        )
        return self._finish(HEARTBEAT, counter, flags, 16)

    def encode_fault(
        self, counter: int, flags: int, code: int, active: int, detail: int
    ) -> memoryview:
        _check_int("code", code, "B", 8)
        _check_range("code", code)
        _check_int("active", active, "B", 9)
        _check_range("active", active)
        if detail > 0xFFFF:  # e.g. a battery or current reading: saturate
            detail = 0xFFFF
        _check_int("detail", detail, "H", 10)
        struct.pack_into(">BBH", self._buf, 8, code, active, detail)
        return self._finish(FAULT, counter, flags, 12)

    def encode_light_status(
        self,
        counter: int,
        flags: int,
        level: int,
        lamp_ma: int,
        energy_wh: int,
        motion_events: int,
    ) -> memoryview:
        _check_int("level", level, "B", 8)
        _check_range("level", level)
        if lamp_ma > 0xFFFF:
            lamp_ma = 0xFFFF
        _check_int("lamp_ma", lamp_ma, "H", 9)
        _check_int("energy_wh", energy_wh, "I", 11)
        if motion_events > 0xFF:
            motion_events = 0xFF
        _check_int("motion_events", motion_events, "B", 15)
        struct.pack_into(">BHIB", self._buf, 8, level, lamp_ma, energy_wh, motion_events)
        return self._finish(LIGHT_STATUS, counter, flags, 16)

    def encode_selftest(
        self, counter: int, flags: int, ran: int, passed: int, battery_mv: int
    ) -> memoryview:
        _check_int("ran", ran, "B", 8)
        _check_int("passed", passed, "B", 9)
        _check_selftest(ran, passed)
        struct.pack_into(">BBB", self._buf, 8, ran, passed, battery_units(battery_mv))
        return self._finish(SELFTEST, counter, flags, 11)

    # -- any type from a dict (tools, tests, the simulator) ---------------------------

    def encode(self, ftype_name: str, counter: int, flags: int, fields: "Fields") -> memoryview:
        """Encode any frame type from a dict of its fields; returns a view of the buffer."""
        ftype = TYPE_CODES.get(ftype_name)
        if ftype is None:
            raise UnknownType("unknown frame type %r" % (ftype_name,), 0)
        fmt = _TYPES[ftype][1]
        if fmt is not None:
            names = _TYPES[ftype][2]
            _no_extra_fields(ftype_name, fields, names)
            end = _pack_fields(self._buf, HEADER_LEN, fmt, names, fields)
            if ftype == SELFTEST:
                _check_selftest(fields["ran"], fields["passed"])
            return self._finish(ftype, counter, flags, end)
        opname = fields.get("opcode")
        opcode = OPCODE_CODES.get(opname)
        if opcode is None:
            raise UnknownType("unknown COMMAND opcode %r" % (opname,), HEADER_LEN)
        self._buf[HEADER_LEN] = opcode
        afmt, anames = _OPCODES[opcode][1], _OPCODES[opcode][2]
        _no_extra_fields(opname, fields, anames)
        if afmt is not None:
            end = _pack_fields(self._buf, HEADER_LEN + 1, afmt, anames, fields)
            return self._finish(ftype, counter, flags, end)
        return self._finish(ftype, counter, flags, self._pack_config(fields))

    def _pack_config(self, fields: "Fields") -> int:
        key, value = fields.get("key"), fields.get("value")
        if not isinstance(key, str) or not isinstance(value, str):
            raise BadField("CONFIG needs a str key and a str value", HEADER_LEN + 1)
        kb = key.encode("utf-8")
        vb = value.encode("utf-8")
        if not 1 <= len(kb) <= _CONFIG_KEY_MAX or not _printable_ascii(kb):
            raise BadField("CONFIG key must be 1..16 printable ASCII characters: %r" % key)
        if len(vb) > _CONFIG_VALUE_MAX:
            raise BadField("CONFIG value longer than %d bytes: %r" % (_CONFIG_VALUE_MAX, value))
        kstart = HEADER_LEN + 2
        end = kstart + len(kb) + len(vb)
        if end + MIC_LEN > MAX_FRAME:
            raise TooLong("CONFIG key and value need a %d-byte frame" % (end + MIC_LEN), end)
        self._buf[HEADER_LEN + 1] = len(kb)
        self._buf[kstart : kstart + len(kb)] = kb
        self._buf[kstart + len(kb) : end] = vb
        return end

    def decode(self, data: "Buffer", last_counter: "Optional[int]") -> "Decoded":
        """Decode a frame addressed to this device (UnknownDevice otherwise).

        Returns ``(type_name, device_id, counter32, flags, fields)``; classifying the
        counter (new, retransmission) against ``last_counter`` is the caller's job.
        """
        return _decode(self._mic, data, last_counter, self.device_id)


def encode(
    ftype_name: str, device_id: int, counter: int, flags: int, fields: "Fields", key: "Buffer"
) -> bytes:
    """One frame as bytes, from a dict of its fields (see `Codec.encode`)."""
    return bytes(Codec(device_id, key).encode(ftype_name, counter, flags, fields))


def decode(data: "Buffer", key: "Buffer", last_counter: "Optional[int]" = None) -> "Decoded":
    """Check and decode one frame: ``(type_name, device_id, counter32, flags, fields)``.

    ``last_counter`` is the highest counter accepted from that device in that
    direction, None for a device never heard from (section 1.3).
    """
    return _decode(_device_mic(key), data, last_counter)
