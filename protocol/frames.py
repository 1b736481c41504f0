"""Anshim radio frames v1 (PROTOCOL.md sections 1-4): declarations, encode, decode.

The wire formats are construct declarations of the raw on-air fields; the typed payload
classes carry physical units (mV, dBm) and validate their ranges when constructed. The
decoder checks length, counter window and MIC *before* it trusts the compiled parse of a
payload (construct's compiled parsers skip checks, see its docs/compilation.rst).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import Any, ClassVar, NamedTuple, TypeAlias

from construct import (
    Bytes,
    Const,
    GreedyBytes,
    Int8sb,
    Int8ub,
    Int16ub,
    Int32ub,
    PascalString,
    Struct,
)

from protocol.errors import (
    BadField,
    BadLength,
    BadMic,
    BadVersion,
    CounterOutOfWindow,
    ProtocolError,
    TooLong,
    TooShort,
    UnknownDevice,
    UnknownType,
)

VERSION = 1
HEADER_LEN = 8
MIC_LEN = 8
OVERHEAD = HEADER_LEN + MIC_LEN
MAX_FRAME_LEN = 64
KEY_LEN = 16
MAX_FCNT_GAP = 16384
BATTERY_STEP_MV = 20
BLE_MAX_FRAME_LEN = (
    24  # 31 B of legacy advertising data - flags AD (3) - manufacturer AD header (4)
)

_B0 = struct.Struct(">6sBBII")
_B0_MAGIC = b"ANSHIM"


class Direction(IntEnum):
    UP = 0
    DOWN = 1


class FrameType(IntEnum):
    ALARM = 0x01
    ALARM_UPDATE = 0x02
    HEARTBEAT = 0x03
    FAULT = 0x04
    LIGHT_STATUS = 0x05
    SELFTEST = 0x06
    ACK = 0x11
    COMMAND = 0x12
    TIME = 0x13

    @property
    def direction(self) -> Direction:
        return Direction.DOWN if self & 0x10 else Direction.UP


class Flags(IntFlag):
    NONE = 0
    RX_OPEN = 0x01  # uplink: the device listens after this frame; downlink: MORE
    RETRY = 0x02
    TEST = 0x04

    MORE = RX_OPEN


class Opcode(IntEnum):
    SET_LEVEL = 0x01
    STROBE = 0x02
    SCHEDULE = 0x03
    REBOOT = 0x04
    CONFIG = 0x05
    SELFTEST = 0x06


class AlarmState(IntEnum):
    NONE = 0
    DELIVERED = 1
    ACKNOWLEDGED = 2
    RESOLVED = 3


class FaultCode(IntEnum):
    LAMP_FAILURE = 1
    TAMPER = 2
    STUCK_BUTTON = 3
    LOW_BATTERY = 4
    SELFTEST_FAILURE = 5
    RADIO_FAILURE = 6
    STORAGE_FAILURE = 7
    SENSOR_FAILURE = 8


# --- wire formats: raw on-air fields --------------------------------------------------

header_format = Struct(
    "hdr" / Int8ub,
    "flags" / Int8ub,
    "device_id" / Int32ub,
    "fcnt16" / Int16ub,
)

alarm_format = Struct(
    "button" / Int8ub,
    "press_count" / Int8ub,
    "battery" / Int8ub,
    "alarm_flags" / Int8ub,
)
alarm_update_format = Struct(
    "alarm_counter" / Int32ub,
    "press_count" / Int8ub,
    "battery" / Int8ub,
)
heartbeat_format = Struct(
    "battery" / Int8ub,
    "temperature" / Int8sb,
    "uptime_h" / Int16ub,
    "faults" / Int8ub,
    "fw_version" / Int8ub,
    "last_rssi" / Int8ub,  # -dBm
    "last_snr" / Int8sb,
)
fault_format = Struct(
    "code" / Int8ub,
    "active" / Int8ub,
    "detail" / Int16ub,
)
light_status_format = Struct(
    "level" / Int8ub,
    "lamp_ma" / Int16ub,
    "energy_wh" / Int32ub,
    "motion_events" / Int8ub,
)
selftest_format = Struct(
    "ran" / Int8ub,
    "passed" / Int8ub,
    "battery" / Int8ub,
)
ack_format = Struct(
    "acked_counter" / Int32ub,
    "alarm_state" / Int8ub,
)
time_format = Struct(
    "unix_time" / Int32ub,
    "utc_offset" / Int8sb,
)
set_level_format = Struct(
    "opcode" / Const(Opcode.SET_LEVEL.value, Int8ub),
    "level" / Int8ub,
    "minutes" / Int16ub,
)
strobe_format = Struct(
    "opcode" / Const(Opcode.STROBE.value, Int8ub),
    "seconds" / Int16ub,
)
schedule_format = Struct(
    "opcode" / Const(Opcode.SCHEDULE.value, Int8ub),
    "dusk_level" / Int8ub,
    "night_level" / Int8ub,
    "night_from" / Int16ub,
    "night_until" / Int16ub,
)
reboot_format = Struct("opcode" / Const(Opcode.REBOOT.value, Int8ub))
config_format = Struct(
    "opcode" / Const(Opcode.CONFIG.value, Int8ub),
    "key" / PascalString(Int8ub, "ascii"),
    "value" / GreedyBytes,
)
selftest_command_format = Struct("opcode" / Const(Opcode.SELFTEST.value, Int8ub))
mic_format = Bytes(MIC_LEN)


# --- typed payloads ---------------------------------------------------------------------

_U8 = (0, 0xFF)
_I8 = (-0x80, 0x7F)
_U16 = (0, 0xFFFF)
_U32 = (0, 0xFFFFFFFF)
_PERCENT = (0, 100)
_BATTERY = (0, 255 * BATTERY_STEP_MV)
_MINUTE_OF_DAY = (0, 1439)


class _Payload:
    """Base of the typed payloads: range checks at construction, raw <-> typed mapping."""

    FTYPE: ClassVar[FrameType]
    RANGES: ClassVar[Mapping[str, tuple[int, int]]] = {}
    # fields the wire carries in another unit: name -> (wire name, to_wire, from_wire)
    CONVERTED: ClassVar[Mapping[str, tuple[str, Callable[[int], int], Callable[[int], int]]]] = {}

    def __post_init__(self) -> None:
        for name, (lo, hi) in self.RANGES.items():
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                self._reject(name, value, lo, hi)

    def _reject(self, name: str, value: object, lo: int, hi: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadField(f"{self.FTYPE.name}.{name} must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise BadField(
                f"{self.FTYPE.name}.{name} = {value} is out of range", expected=f"{lo}..{hi}"
            )

    def to_wire(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            conv = self.CONVERTED.get(f.name)
            if conv is None:
                raw[f.name] = int(value) if isinstance(value, int) else value
            else:
                raw[conv[0]] = conv[1](value)
        return raw

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> _Payload:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            conv = cls.CONVERTED.get(f.name)
            kwargs[f.name] = raw[f.name] if conv is None else conv[2](raw[conv[0]])
        return cls(**kwargs)

    def to_fields(self) -> dict[str, Any]:
        """Plain JSON-ready fields with the names PROTOCOL.md and the vectors use."""
        out: dict[str, Any] = {}
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))  # type: ignore[arg-type]
        for name in names:
            value = getattr(self, name)
            if type(value) is not int and isinstance(value, IntEnum | IntFlag):
                value = int(value)
            out[name] = value
        return out


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # payload class -> its field names


def _battery_to_wire(mv: int) -> int:
    return min(255, max(0, mv // BATTERY_STEP_MV))


def _battery_from_wire(raw: int) -> int:
    return raw * BATTERY_STEP_MV


def _rssi_to_wire(dbm: int) -> int:
    return -dbm


def _rssi_from_wire(raw: int) -> int:
    return -raw


_BATTERY_CONV = {"battery_mv": ("battery", _battery_to_wire, _battery_from_wire)}


@dataclass(frozen=True, slots=True)
class Alarm(_Payload):
    """A resident pressed the bell (PROTOCOL.md 3.1)."""

    FTYPE = FrameType.ALARM
    RANGES = {
        "button": _U8,
        "press_count": _U8,
        "battery_mv": _BATTERY,
        "alarm_flags": _U8,
    }
    CONVERTED = _BATTERY_CONV

    button: int = 0
    press_count: int = 1
    battery_mv: int = 0
    alarm_flags: int = 0

    TAMPER: ClassVar[int] = 0x01
    LOW_BATTERY: ClassVar[int] = 0x02
    EXTERNAL_POWER: ClassVar[int] = 0x04


@dataclass(frozen=True, slots=True)
class AlarmUpdate(_Payload):
    """Keep-alive of an active alarm; opens the bell's receive window (PROTOCOL.md 3.2)."""

    FTYPE = FrameType.ALARM_UPDATE
    RANGES = {"alarm_counter": _U32, "press_count": _U8, "battery_mv": _BATTERY}
    CONVERTED = _BATTERY_CONV

    alarm_counter: int
    press_count: int = 1
    battery_mv: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat(_Payload):
    """Periodic health report (PROTOCOL.md 3.3)."""

    FTYPE = FrameType.HEARTBEAT
    RANGES = {
        "battery_mv": _BATTERY,
        "temperature": _I8,
        "uptime_h": _U16,
        "faults": _U8,
        "fw_version": _U8,
        "last_rssi": (-255, 0),
        "last_snr": _I8,
    }
    CONVERTED = {
        **_BATTERY_CONV,
        "last_rssi": ("last_rssi", _rssi_to_wire, _rssi_from_wire),
    }

    battery_mv: int = 0
    temperature: int = 0
    uptime_h: int = 0
    faults: int = 0
    fw_version: int = 0x10
    last_rssi: int = 0
    last_snr: int = 0


@dataclass(frozen=True, slots=True)
class Fault(_Payload):
    """A fault appeared or cleared (PROTOCOL.md 3.4)."""

    FTYPE = FrameType.FAULT
    RANGES = {"code": (1, 255), "active": (0, 1), "detail": _U16}

    code: int
    active: int = 1
    detail: int = 0


@dataclass(frozen=True, slots=True)
class LightStatus(_Payload):
    """A light's lamp and energy report (PROTOCOL.md 3.5)."""

    FTYPE = FrameType.LIGHT_STATUS
    RANGES = {"level": _PERCENT, "lamp_ma": _U16, "energy_wh": _U32, "motion_events": _U8}

    level: int = 0
    lamp_ma: int = 0
    energy_wh: int = 0
    motion_events: int = 0


@dataclass(frozen=True, slots=True)
class SelfTest(_Payload):
    """Self-test result: which checks ran and which passed (PROTOCOL.md 3.6)."""

    FTYPE = FrameType.SELFTEST
    RANGES = {"ran": _U8, "passed": _U8, "battery_mv": _BATTERY}
    CONVERTED = _BATTERY_CONV

    ran: int = 0
    passed: int = 0
    battery_mv: int = 0

    LED: ClassVar[int] = 0x01
    BUZZER: ClassVar[int] = 0x02
    RADIO: ClassVar[int] = 0x04
    BATTERY: ClassVar[int] = 0x08
    BUTTON: ClassVar[int] = 0x10
    TAMPER: ClassVar[int] = 0x20
    LAMP: ClassVar[int] = 0x40
    STORAGE: ClassVar[int] = 0x80

    def __post_init__(self) -> None:
        _Payload.__post_init__(self)
        if self.passed & ~self.ran:
            raise BadField(
                f"SELFTEST.passed = {self.passed:#04x} names checks that did not run",
                expected=f"a subset of ran = {self.ran:#04x}",
            )


@dataclass(frozen=True, slots=True)
class Ack(_Payload):
    """Acknowledges an uplink and tells the bell its alarm's state (PROTOCOL.md 4.1)."""

    FTYPE = FrameType.ACK
    RANGES = {"acked_counter": _U32, "alarm_state": (0, 3)}

    acked_counter: int
    alarm_state: int = AlarmState.NONE


@dataclass(frozen=True, slots=True)
class Time(_Payload):
    """The gateway's clock, for light schedules (PROTOCOL.md 4.3)."""

    FTYPE = FrameType.TIME
    RANGES = {"unix_time": _U32, "utc_offset": (-48, 56)}

    unix_time: int
    utc_offset: int = 36


class _Command(_Payload):
    FTYPE = FrameType.COMMAND
    OPCODE: ClassVar[Opcode]

    def to_fields(self) -> dict[str, Any]:
        return {"opcode": self.OPCODE.name, **_Payload.to_fields(self)}


@dataclass(frozen=True, slots=True)
class SetLevel(_Command):
    """Set a light's level for a number of minutes (0 = until the next schedule change)."""

    OPCODE = Opcode.SET_LEVEL
    RANGES = {"level": _PERCENT, "minutes": _U16}

    level: int
    minutes: int = 0


@dataclass(frozen=True, slots=True)
class Strobe(_Command):
    """Strobe a light (or a bell's beacon) for a number of seconds."""

    OPCODE = Opcode.STROBE
    RANGES = {"seconds": (1, 0xFFFF)}

    seconds: int


@dataclass(frozen=True, slots=True)
class Schedule(_Command):
    """A light's night schedule: level at dusk, a lower level between two local times."""

    OPCODE = Opcode.SCHEDULE
    RANGES = {
        "dusk_level": _PERCENT,
        "night_level": _PERCENT,
        "night_from": _MINUTE_OF_DAY,
        "night_until": _MINUTE_OF_DAY,
    }

    dusk_level: int = 100
    night_level: int = 50
    night_from: int = 0
    night_until: int = 300


@dataclass(frozen=True, slots=True)
class Reboot(_Command):
    """Restart the device."""

    OPCODE = Opcode.REBOOT


@dataclass(frozen=True, slots=True)
class ConfigSet(_Command):
    """Set one configuration key on the device."""

    OPCODE = Opcode.CONFIG
    MAX_KEY: ClassVar[int] = 16
    MAX_VALUE: ClassVar[int] = 30  # 16 overhead + opcode + key length + 16 + 30 = 64

    key: str
    value: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not 1 <= len(self.key) <= self.MAX_KEY:
            raise BadField(f"CONFIG key {self.key!r} must be 1..{self.MAX_KEY} characters")
        if not self.key.isascii() or not self.key.isprintable():
            raise BadField(f"CONFIG key {self.key!r} must be printable ASCII")
        if not isinstance(self.value, str) or len(self.value.encode()) > self.MAX_VALUE:
            raise BadField(f"CONFIG value for {self.key!r} must be at most {self.MAX_VALUE} bytes")

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value.encode()}

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ConfigSet:
        try:
            value = bytes(raw["value"]).decode()
        except UnicodeDecodeError:
            raise BadField("CONFIG value is not UTF-8") from None
        return cls(key=raw["key"], value=value)


@dataclass(frozen=True, slots=True)
class RunSelfTest(_Command):
    """Run the device's self-test now and report it."""

    OPCODE = Opcode.SELFTEST


Payload: TypeAlias = (
    Alarm
    | AlarmUpdate
    | Heartbeat
    | Fault
    | LightStatus
    | SelfTest
    | Ack
    | Time
    | SetLevel
    | Strobe
    | Schedule
    | Reboot
    | ConfigSet
    | RunSelfTest
)


class _Spec(NamedTuple):
    cls: type[_Payload]
    fmt: Struct
    length: int | None  # fixed payload length, None = variable (CONFIG)


_FIXED: dict[FrameType, _Spec] = {
    FrameType.ALARM: _Spec(Alarm, alarm_format, 4),
    FrameType.ALARM_UPDATE: _Spec(AlarmUpdate, alarm_update_format, 6),
    FrameType.HEARTBEAT: _Spec(Heartbeat, heartbeat_format, 8),
    FrameType.FAULT: _Spec(Fault, fault_format, 4),
    FrameType.LIGHT_STATUS: _Spec(LightStatus, light_status_format, 8),
    FrameType.SELFTEST: _Spec(SelfTest, selftest_format, 3),
    FrameType.ACK: _Spec(Ack, ack_format, 5),
    FrameType.TIME: _Spec(Time, time_format, 5),
}
_COMMANDS: dict[Opcode, _Spec] = {
    Opcode.SET_LEVEL: _Spec(SetLevel, set_level_format, 4),
    Opcode.STROBE: _Spec(Strobe, strobe_format, 3),
    Opcode.SCHEDULE: _Spec(Schedule, schedule_format, 7),
    Opcode.REBOOT: _Spec(Reboot, reboot_format, 1),
    Opcode.CONFIG: _Spec(ConfigSet, config_format, None),
    Opcode.SELFTEST: _Spec(RunSelfTest, selftest_command_format, 1),
}

PAYLOAD_LENGTHS: dict[FrameType, int | None] = {
    **{ftype: spec.length for ftype, spec in _FIXED.items()},
    FrameType.COMMAND: None,
}
PAYLOAD_CLASSES: dict[FrameType, type[_Payload]] = {t: spec.cls for t, spec in _FIXED.items()}
PAYLOAD_FORMATS: dict[FrameType, Struct] = {t: spec.fmt for t, spec in _FIXED.items()}
COMMAND_CLASSES: dict[Opcode, type[_Payload]] = {op: spec.cls for op, spec in _COMMANDS.items()}


# --- payload parsers ---------------------------------------------------------------------
#
# Three engines parse the same declarations; all are given only payloads whose length
# (and, in `decode`, MIC) were already checked, so construct's unchecked compiled code is
# safe here. "struct" is the default: a `struct.Struct` derived field by field from the
# construct declaration, which `anshim bench` measures ~10x faster than construct's own
# compiled parser; "compiled" and "construct" stay available and are proven to agree.

PayloadParser: TypeAlias = Callable[[bytes], _Payload]
ENGINES = ("struct", "compiled", "construct")


def _struct_of(fmt: Struct) -> struct.Struct:
    """The `struct` layout of a construct Struct made only of fixed-size integer fields."""
    codes = []
    for sub in fmt.subcons:
        field: Any = getattr(sub, "subcon", sub)
        field = getattr(field, "subcon", field) if type(field).__name__ == "Const" else field
        fmtstr = getattr(field, "fmtstr", None)
        if not isinstance(fmtstr, str) or fmtstr[0] != ">":
            raise TypeError(f"{sub.name} is not a fixed big-endian integer field")
        codes.append(fmtstr[1:])
    return struct.Struct(">" + "".join(codes))


def _wire_names(fmt: Struct) -> list[str]:
    return [str(sub.name) for sub in fmt.subcons if sub.name != "opcode"]


def _from_wire_plan(cls: type[_Payload], fmt: Struct) -> tuple[Callable[[int], int] | None, ...]:
    """Per wire field, the conversion to the payload's unit (None = as is)."""
    by_wire = {conv[0]: conv[2] for conv in cls.CONVERTED.values()}
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    if [n if n not in cls.CONVERTED else cls.CONVERTED[n][0] for n in names] != _wire_names(fmt):
        raise TypeError(f"{cls.__name__} fields are not in wire order")
    return tuple(by_wire.get(name) for name in _wire_names(fmt))


def _struct_parser(cls: type[_Payload], fmt: Struct) -> PayloadParser:
    unpack = _struct_of(fmt).unpack
    plan = _from_wire_plan(cls, fmt)
    skip = 1 if "opcode" in [sub.name for sub in fmt.subcons] else 0
    if not any(plan):
        if skip:
            return lambda payload: cls(*unpack(payload)[1:])
        return lambda payload: cls(*unpack(payload))

    def parse(payload: bytes) -> _Payload:
        values = unpack(payload)[skip:]
        return cls(*[v if c is None else c(v) for c, v in zip(plan, values, strict=True)])

    return parse


def _construct_parser(spec: _Spec, *, compiled: bool) -> PayloadParser:
    parse = spec.fmt.compile().parse if compiled else spec.fmt.parse
    from_wire = spec.cls.from_wire
    return lambda payload: from_wire(parse(payload))


def _parser_table(engine: str) -> dict[FrameType, PayloadParser]:
    table: dict[FrameType, PayloadParser] = {}
    for ftype, spec in _FIXED.items():
        if engine == "struct":
            table[ftype] = _struct_parser(spec.cls, spec.fmt)
        else:
            table[ftype] = _construct_parser(spec, compiled=engine == "compiled")
    return table


def _command_table(engine: str) -> dict[Opcode, PayloadParser]:
    table: dict[Opcode, PayloadParser] = {}
    for op, spec in _COMMANDS.items():
        if spec.length is None:  # variable length: always construct, interpreted
            table[op] = _construct_parser(spec, compiled=False)
        elif engine == "struct":
            table[op] = _struct_parser(spec.cls, spec.fmt)
        else:
            table[op] = _construct_parser(spec, compiled=engine == "compiled")
    return table


_PARSERS = {engine: _parser_table(engine) for engine in ENGINES}
_COMMAND_PARSERS = {engine: _command_table(engine) for engine in ENGINES}


# --- frames ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One radio frame with its full 32-bit counter."""

    device_id: int
    counter: int
    payload: Payload
    flags: Flags = Flags.NONE

    def __post_init__(self) -> None:
        if type(self.device_id) is not int or not 0 <= self.device_id <= 0xFFFFFFFF:
            raise BadField(f"device id {self.device_id!r} is out of range", expected="0..2^32-1")
        if type(self.counter) is not int or not 0 <= self.counter <= 0xFFFFFFFF:
            raise BadField(f"frame counter {self.counter!r} is out of range", expected="0..2^32-1")
        if not 0 <= self.flags <= 0xFF:
            raise BadField(f"flags {int(self.flags)} is out of range", expected="0..255")

    @property
    def type(self) -> FrameType:
        return self.payload.FTYPE

    @property
    def direction(self) -> Direction:
        return self.payload.FTYPE.direction

    @property
    def event_id(self) -> str:
        """Deterministic id of the event this frame reports: device id + counter."""
        return event_id(self.device_id, self.counter)


def event_id(device_id: int, counter: int) -> str:
    """The id every receiver derives for a device's frame: ``"%08x-%08x"``."""
    return f"{device_id:08x}-{counter:08x}"


class Header(NamedTuple):
    """The fixed on-air header, read without a key (enough to find the device's key)."""

    ftype: FrameType
    flags: Flags
    device_id: int
    fcnt16: int


class MicKey:
    """A device key with its HMAC pads hashed once, so each MIC costs two short hashes."""

    __slots__ = ("_inner", "_outer", "key")

    def __init__(self, key: bytes) -> None:
        key = bytes(key)
        if len(key) != KEY_LEN:
            raise ValueError(f"device key must be {KEY_LEN} bytes, got {len(key)}")
        self.key = key
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def mic(self, direction: int, device_id: int, counter: int, body: bytes) -> bytes:
        """HMAC-SHA256(key, B0 || body)[:8] (PROTOCOL.md 2)."""
        inner = self._inner.copy()
        inner.update(_B0.pack(_B0_MAGIC, VERSION, direction, device_id, counter))
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:MIC_LEN]

    def __repr__(self) -> str:
        return "MicKey(<hidden>)"


class DeviceKey(NamedTuple):
    """What the decoder needs to know about a device: its key and last accepted counter."""

    key: MicKey
    last_counter: int | None = None

    @classmethod
    def of(cls, key: bytes, last_counter: int | None = None) -> DeviceKey:
        return cls(MicKey(key), last_counter)


KeyLookup: TypeAlias = Callable[[int, Direction], DeviceKey | None]


def reconstruct_counter(fcnt16: int, last: int | None) -> int:
    """Full 32-bit counter from its on-air low 16 bits (PROTOCOL.md 1.3)."""
    base = 0 if last is None else last
    candidate = (base & 0xFFFF0000) | fcnt16
    if candidate < base:
        candidate += 0x10000
    if candidate - base > MAX_FCNT_GAP or candidate > 0xFFFFFFFF:
        raise CounterOutOfWindow(
            f"counter {candidate} is {candidate - base} past the last accepted {base}",
            offset=6,
            expected=f"at most {MAX_FCNT_GAP} ahead",
        )
    return candidate


def compute_mic(key: bytes, direction: int, device_id: int, counter: int, body: bytes) -> bytes:
    """HMAC-SHA256 over B0 and the frame body, truncated to 8 bytes (PROTOCOL.md 2)."""
    return MicKey(key).mic(direction, device_id, counter, body)


_HEADER = struct.Struct(">BBIH")
_FLAGS = tuple(Flags(i) for i in range(256))
# HDR byte -> (type, fixed payload length or None); anything absent is rejected.
_HDR_TABLE = {(VERSION << 5) | t: (t, PAYLOAD_LENGTHS[t]) for t in FrameType}


def peek(data: bytes) -> Header:
    """Read and check the fixed header and the frame length; no key needed."""
    n = len(data)
    if n < OVERHEAD:
        raise TooShort(f"frame is {n} bytes", offset=n, expected=f"at least {OVERHEAD}")
    if n > MAX_FRAME_LEN:
        raise TooLong(
            f"frame is {n} bytes", offset=MAX_FRAME_LEN, expected=f"at most {MAX_FRAME_LEN}"
        )
    hdr, flags, device_id, fcnt16 = _HEADER.unpack_from(data)
    known = _HDR_TABLE.get(hdr)
    if known is None:
        if hdr >> 5 != VERSION:
            raise BadVersion(f"version {hdr >> 5}", offset=0, expected=f"version {VERSION}")
        raise UnknownType(f"frame type {hdr & 0x1F:#04x}", offset=0)
    ftype, length = known
    if length is None:
        if n == OVERHEAD:
            raise BadLength("COMMAND without opcode", offset=HEADER_LEN, expected="1+ bytes")
    elif n - OVERHEAD != length:
        raise BadLength(
            f"{ftype.name} payload is {n - OVERHEAD} bytes",
            offset=HEADER_LEN,
            expected=f"{length} bytes",
        )
    return Header(ftype, _FLAGS[flags], device_id, fcnt16)


def _parse_payload(ftype: FrameType, payload: bytes, engine: str) -> Payload:
    try:
        if ftype is FrameType.COMMAND:
            return _parse_command(payload, engine)
        return _PARSERS[engine][ftype](payload)  # type: ignore[return-value]
    except BadField as exc:
        if exc.offset is None:  # a value check over the whole payload: point at it
            exc.offset = HEADER_LEN
        raise
    except ProtocolError:
        raise
    except Exception as exc:  # construct's or struct's own errors: never let them escape
        raise BadLength(f"{ftype.name} payload: {exc}", offset=HEADER_LEN) from None


def _parse_command(payload: bytes, engine: str) -> Payload:
    try:
        opcode = Opcode(payload[0])
    except ValueError:
        raise UnknownType(f"command opcode {payload[0]:#04x}", offset=HEADER_LEN) from None
    spec = _COMMANDS[opcode]
    if spec.length is not None and len(payload) != spec.length:
        raise BadLength(
            f"{opcode.name} command is {len(payload)} bytes",
            offset=HEADER_LEN,
            expected=f"{spec.length} bytes",
        )
    if opcode is Opcode.CONFIG:
        klen = payload[1] if len(payload) > 1 else 0
        if klen == 0 or len(payload) < 2 + klen:
            raise BadLength("CONFIG key length", offset=HEADER_LEN + 1, expected="1..16 key bytes")
        if not payload[2 : 2 + klen].isascii():
            raise BadField("CONFIG key is not ASCII", offset=HEADER_LEN + 2)
    return _COMMAND_PARSERS[engine][opcode](payload)  # type: ignore[return-value]


def decode(
    data: bytes, lookup: KeyLookup, *, engine: str = "struct", header: Header | None = None
) -> Frame:
    """Authenticate and decode one frame.

    ``lookup(device_id, direction)`` gives the device's key and the last counter accepted
    in that direction, or None for an unknown device. Raises only `ProtocolError`.
    Replay classification (new / retransmission) is the caller's: compare the returned
    counter with the last accepted one (PROTOCOL.md 1.3). ``header``: what `peek`
    returned for these bytes, if the caller already has it.
    """
    data = bytes(data)
    ftype, flags, device_id, fcnt16 = peek(data) if header is None else header
    direction = ftype.direction
    known = lookup(device_id, direction)
    if known is None:
        raise UnknownDevice(f"no key for device {device_id:08x}", offset=2)
    counter = reconstruct_counter(fcnt16, known.last_counter)
    mic = known.key.mic(direction, device_id, counter, data[:-MIC_LEN])
    if not hmac.compare_digest(mic, data[-MIC_LEN:]):
        raise BadMic(
            f"MIC mismatch for device {device_id:08x} counter {counter}",
            offset=len(data) - MIC_LEN,
        )
    payload = _parse_payload(ftype, data[HEADER_LEN:-MIC_LEN], engine)
    return Frame(device_id, counter, payload, flags)


def decode_unverified(data: bytes) -> Frame:
    """Decode without a key, for reading captures: MIC unchecked, counter only 16 bits."""
    data = bytes(data)
    ftype, flags, device_id, fcnt16 = peek(data)
    payload = _parse_payload(ftype, data[HEADER_LEN:-MIC_LEN], "struct")
    return Frame(device_id, fcnt16, payload, flags)


def encode(frame: Frame, key: bytes | MicKey) -> bytes:
    """The on-air bytes of ``frame``, MIC included."""
    payload = frame.payload
    spec = _COMMANDS[payload.OPCODE] if isinstance(payload, _Command) else _FIXED[payload.FTYPE]
    body = header_format.build(
        {
            "hdr": (VERSION << 5) | payload.FTYPE,
            "flags": int(frame.flags),
            "device_id": frame.device_id,
            "fcnt16": frame.counter & 0xFFFF,
        }
    ) + spec.fmt.build(payload.to_wire())
    if len(body) + MIC_LEN > MAX_FRAME_LEN:
        raise TooLong(f"frame would be {len(body) + MIC_LEN} bytes", expected=f"<= {MAX_FRAME_LEN}")
    mic_key = key if isinstance(key, MicKey) else MicKey(key)
    return body + mic_key.mic(payload.FTYPE.direction, frame.device_id, frame.counter, body)


# --- generic field access (vectors, CLI) -----------------------------------------------


def payload_from_fields(ftype: FrameType | str, values: Mapping[str, Any]) -> Payload:
    """Build a typed payload from plain fields (names as in PROTOCOL.md); BadField if wrong."""
    try:
        ftype = FrameType[ftype.upper()] if isinstance(ftype, str) else FrameType(ftype)
    except (KeyError, ValueError):
        names = ", ".join(t.name for t in FrameType)
        raise UnknownType(f"unknown frame type {ftype!r}", expected=names) from None
    values = dict(values)
    cls: type[_Payload]
    if ftype is FrameType.COMMAND:
        op = values.pop("opcode", None)
        try:
            opcode = Opcode(op) if isinstance(op, int) else Opcode[str(op).upper()]
        except (KeyError, ValueError):
            names = ", ".join(o.name for o in Opcode)
            raise UnknownType(f"unknown command opcode {op!r}", expected=names) from None
        cls = COMMAND_CLASSES[opcode]
    else:
        cls = PAYLOAD_CLASSES[ftype]
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise BadField(
            f"{ftype.name} has no field {unknown[0]!r}", expected=", ".join(known) or "no fields"
        )
    try:
        return cls(**values)  # type: ignore[return-value]
    except TypeError as exc:
        raise BadField(f"{ftype.name}: {exc}") from None
