"""The gateway codec against every vector in protocol/vectors/ (invariant 6)."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from protocol import frames as fr
from protocol.errors import ProtocolError
from tests.conftest import load_vectors

FRAMES = load_vectors("frames.json")["frames"]
INVALID = load_vectors("invalid.json")["invalid"]


def _lookup(key_hex: str, last: int | None = None) -> fr.KeyLookup:
    key = fr.DeviceKey.of(bytes.fromhex(key_hex), last)
    return lambda device_id, direction: key


def test_vectors_cover_every_frame_type_and_opcode() -> None:
    assert {v["type"] for v in FRAMES} == {t.name for t in fr.FrameType}
    opcodes = {v["fields"]["opcode"] for v in FRAMES if v["type"] == "COMMAND"}
    assert opcodes == {o.name for o in fr.Opcode}


@pytest.mark.parametrize("engine", fr.ENGINES)
@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_decode_vector(vec: dict, engine: str) -> None:
    last = max(vec["counter"] - 100, 0)  # a receiver that heard this device recently
    frame = fr.decode(bytes.fromhex(vec["hex"]), _lookup(vec["key"], last), engine=engine)
    assert frame.type.name == vec["type"]
    assert frame.device_id == vec["device_id"]
    assert frame.counter == vec["counter"]
    assert int(frame.flags) == vec["flags"]
    assert frame.payload.to_fields() == vec["fields"]


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_new_device_decodes_low_counters(vec: dict) -> None:
    # A receiver that never heard the device (last = None) accepts counters 0..16384.
    if vec["counter"] > fr.MAX_FCNT_GAP:
        with pytest.raises(fr.ProtocolError):
            fr.decode(bytes.fromhex(vec["hex"]), _lookup(vec["key"]))
    else:
        assert fr.decode(bytes.fromhex(vec["hex"]), _lookup(vec["key"])).counter == vec["counter"]


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_encode_vector(vec: dict) -> None:
    payload = fr.payload_from_fields(vec["type"], vec["fields"])
    frame = fr.Frame(vec["device_id"], vec["counter"], payload, fr.Flags(vec["flags"]))
    assert fr.encode(frame, bytes.fromhex(vec["key"])).hex() == vec["hex"]


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_mic_is_hmac_sha256_as_specified(vec: dict) -> None:
    """Recompute each MIC straight from PROTOCOL.md section 2 with the standard library."""
    wire = bytes.fromhex(vec["hex"])
    direction = 0 if vec["direction"] == "up" else 1
    b0 = b"ANSHIM" + struct.pack(">BBII", 1, direction, vec["device_id"], vec["counter"])
    mac = hmac.new(bytes.fromhex(vec["key"]), b0 + wire[:-8], hashlib.sha256).digest()
    assert wire[-8:] == mac[:8]


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_construct_formats_parse_build_sizeof(vec: dict) -> None:
    wire = bytes.fromhex(vec["hex"])
    header = fr.header_format.parse(wire[:8])
    assert header.hdr == wire[0] and header.device_id == vec["device_id"]
    assert fr.header_format.build(header) == wire[:8]
    assert fr.header_format.sizeof() == fr.HEADER_LEN
    ftype = fr.FrameType[vec["type"]]
    if ftype is not fr.FrameType.COMMAND:
        fmt = fr.PAYLOAD_FORMATS[ftype]
        payload = wire[fr.HEADER_LEN : -fr.MIC_LEN]
        assert fmt.sizeof() == len(payload) == fr.PAYLOAD_LENGTHS[ftype]
        assert fmt.build(fmt.parse(payload)) == payload


def test_uplinks_fit_one_ble_advertisement_and_alarm_is_small() -> None:
    for vec in FRAMES:
        if vec["direction"] == "up":
            assert len(vec["hex"]) // 2 <= fr.BLE_MAX_FRAME_LEN, vec["name"]
    alarm = next(v for v in FRAMES if v["type"] == "ALARM")
    assert len(alarm["hex"]) // 2 <= 24


@pytest.mark.parametrize("engine", fr.ENGINES)
@pytest.mark.parametrize("vec", INVALID, ids=lambda v: v["name"])
def test_invalid_vector(vec: dict, engine: str) -> None:
    with pytest.raises(ProtocolError) as info:
        fr.decode(
            bytes.fromhex(vec["hex"]), _lookup(vec["key"], vec["last_counter"]), engine=engine
        )
    assert info.value.code == vec["error"]
    if vec["offset"] is not None:
        assert info.value.offset == vec["offset"]
    assert str(info.value)  # a message a crew can read


def test_unknown_device() -> None:
    wire = bytes.fromhex(FRAMES[0]["hex"])
    with pytest.raises(fr.UnknownDevice, match="0a000001"):
        fr.decode(wire, lambda device_id, direction: None)


def test_event_id_is_device_and_counter() -> None:
    vec = FRAMES[1]
    frame = fr.decode(bytes.fromhex(vec["hex"]), _lookup(vec["key"], vec["counter"] - 3))
    assert frame.event_id == "0a000001-00012345"


@pytest.mark.parametrize(
    ("fcnt16", "last", "expected"),
    [
        (0, None, 0),
        (5, None, 5),
        (7, 7, 7),  # a retransmission
        (0x0000, 0xFFFF, 0x10000),  # the low half wrapped
        (0x2345, 0x12340, 0x12345),
        (0x0010, 0x1FFF0, 0x20010),
        (16384, 0, 16384),  # the edge of the window
    ],
)
def test_counter_reconstruction(fcnt16: int, last: int | None, expected: int) -> None:
    assert fr.reconstruct_counter(fcnt16, last) == expected


def test_counter_window_edge() -> None:
    with pytest.raises(fr.CounterOutOfWindow):
        fr.reconstruct_counter(16385, 0)
    with pytest.raises(fr.CounterOutOfWindow):
        fr.reconstruct_counter(6, 7)  # one older than the last: 65535 ahead
    with pytest.raises(fr.CounterOutOfWindow):
        fr.reconstruct_counter(0, 0xFFFFFFFF)  # a 32-bit counter never wraps


def test_decode_unverified_reads_captures_without_key() -> None:
    vec = next(v for v in FRAMES if v["name"] == "heartbeat")
    frame = fr.decode_unverified(bytes.fromhex(vec["hex"]))
    assert frame.payload.to_fields() == vec["fields"]


@pytest.mark.parametrize(
    ("ftype", "values", "message"),
    [
        ("ALARM", {"press_count": 256}, "press_count = 256"),
        ("HEARTBEAT", {"temperature": 200}, "temperature = 200"),
        ("HEARTBEAT", {"last_rssi": 10}, "last_rssi = 10"),
        ("ALARM", {"presses": 1}, "no field 'presses'"),
        ("ALARM", {"button": "one"}, "must be an integer"),
        ("COMMAND", {"opcode": "DANCE"}, "unknown command opcode"),
        ("COMMAND", {"opcode": "SET_LEVEL", "level": 101}, "level = 101"),
        ("COMMAND", {"opcode": "CONFIG", "key": "", "value": "x"}, "1..16 characters"),
        ("COMMAND", {"opcode": "CONFIG", "key": "k", "value": "x" * 31}, "at most 30 bytes"),
        ("BEEP", {}, "unknown frame type"),
    ],
)
def test_bad_fields_name_what_is_wrong(ftype: str, values: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        fr.payload_from_fields(ftype, values)
