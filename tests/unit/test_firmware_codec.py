"""The firmware codec (firmware/lib) under CPython: vectors, the spec, and the gateway.

The same modules run in real MicroPython in tests/micropython/; here they are imported
straight from firmware/lib (as the device's /lib) so failures are quick to read, and
compared byte for byte and error for error with the gateway's codec (`protocol/`) on
frames the vectors never thought of (invariant 6).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import frames as gw_frames
from protocol import link as gw_link

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_LIB = ROOT / "firmware" / "lib"
if str(FIRMWARE_LIB) not in sys.path:
    sys.path.insert(0, str(FIRMWARE_LIB))

import codec  # noqa: E402  (firmware/lib, as on the device)
import compat  # noqa: E402
import errors  # noqa: E402
import link  # noqa: E402
import mic  # noqa: E402

VECTORS = ROOT / "protocol" / "vectors"
FRAMES = json.loads((VECTORS / "frames.json").read_text(encoding="utf-8"))["frames"]
INVALID = json.loads((VECTORS / "invalid.json").read_text(encoding="utf-8"))["invalid"]
LINK = json.loads((VECTORS / "link.json").read_text(encoding="utf-8"))
MESSAGES = {m["name"]: m for m in LINK["messages"]}
KEY = bytes(range(16))

FAST = {
    "ALARM": "encode_alarm",
    "ALARM_UPDATE": "encode_alarm_update",
    "HEARTBEAT": "encode_heartbeat",
    "FAULT": "encode_fault",
    "LIGHT_STATUS": "encode_light_status",
    "SELFTEST": "encode_selftest",
}


def _message_fields(m: dict[str, Any]) -> dict[str, Any]:
    fields = dict(m["fields"])
    if "frame" in fields:
        fields["frame"] = bytes.fromhex(fields["frame"])
    return fields


# --- radio frames --------------------------------------------------------------------


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_encode_matches_vector(vec: dict[str, Any]) -> None:
    key = bytes.fromhex(vec["key"])
    got = codec.encode(
        vec["type"], vec["device_id"], vec["counter"], vec["flags"], vec["fields"], key
    )
    assert got.hex() == vec["hex"]


@pytest.mark.parametrize("vec", [v for v in FRAMES if v["type"] in FAST], ids=lambda v: v["name"])
def test_device_fast_encoder_matches_vector(vec: dict[str, Any]) -> None:
    c = codec.Codec(vec["device_id"], bytes.fromhex(vec["key"]))
    args = [vec["fields"][name] for name in codec.FIELD_NAMES[vec["type"]]]
    view = getattr(c, FAST[vec["type"]])(vec["counter"], vec["flags"], *args)
    assert isinstance(view, memoryview)  # a view of the codec's own buffer, not a copy
    assert bytes(view).hex() == vec["hex"]


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_decode_matches_vector(vec: dict[str, Any]) -> None:
    last = max(vec["counter"] - 100, 0)
    got = codec.decode(bytes.fromhex(vec["hex"]), bytes.fromhex(vec["key"]), last)
    assert got == (vec["type"], vec["device_id"], vec["counter"], vec["flags"], vec["fields"])


@pytest.mark.parametrize("vec", INVALID, ids=lambda v: v["name"])
def test_invalid_vector_raises_its_error(vec: dict[str, Any]) -> None:
    with pytest.raises(errors.ProtocolError) as info:
        codec.decode(bytes.fromhex(vec["hex"]), bytes.fromhex(vec["key"]), vec["last_counter"])
    assert (info.value.code, info.value.offset) == (vec["error"], vec["offset"])


def test_vectors_cover_every_type_and_opcode() -> None:
    assert {v["type"] for v in FRAMES} == set(codec.TYPE_CODES)
    assert {v["fields"]["opcode"] for v in FRAMES if v["type"] == "COMMAND"} == set(
        codec.OPCODE_CODES
    )


def test_error_tree_has_the_gateway_names() -> None:
    from protocol.errors import ERRORS

    for name in ERRORS:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.ProtocolError)
        assert cls("x", 3).code == name and cls("x", 3).offset == 3


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_mic_is_hmac_sha256_over_b0_and_body(vec: dict[str, Any]) -> None:
    frame = bytes.fromhex(vec["hex"])
    direction = 1 if vec["direction"] == "down" else 0
    b0 = b"ANSHIM" + bytes([1, direction]) + struct.pack(">II", vec["device_id"], vec["counter"])
    want = hmac.new(bytes.fromhex(vec["key"]), b0 + frame[:-8], hashlib.sha256).digest()[:8]
    assert frame[-8:] == want
    got = mic.frame_mic(
        bytes.fromhex(vec["key"]), direction, vec["device_id"], vec["counter"], frame[:-8]
    )
    assert got == want


@pytest.mark.parametrize("key", [b"", b"k", bytes(16), bytes(range(64)), bytes(range(100))])
def test_mic_hmac_matches_stdlib_for_any_key_length(key: bytes) -> None:
    for msg in (b"", b"abc", bytes(range(200))):
        assert mic.Mic(key).digest(msg) == hmac.new(key, msg, hashlib.sha256).digest()


def test_mic_equal() -> None:
    assert mic.mic_equal(b"12345678", bytearray(b"12345678"))
    assert not mic.mic_equal(b"12345678", b"12345679")
    assert not mic.mic_equal(b"1234567", b"12345678")


def test_codec_decode_refuses_another_devices_frame() -> None:
    vec = FRAMES[0]
    c = codec.Codec(vec["device_id"] + 1, bytes.fromhex(vec["key"]))
    with pytest.raises(errors.UnknownDevice):
        c.decode(bytes.fromhex(vec["hex"]), 0)


@pytest.mark.parametrize(
    ("fcnt16", "last", "want"),
    [
        (0, None, 0),  # a new device's first frame
        (16384, None, 16384),
        (5, 0xFFF0, 0x10005),  # the low half wrapped
        (0xFFFF, 0x1FFF0, 0x1FFFF),
        (7, 7, 7),  # a retransmission of the newest frame
    ],
)
def test_counter_reconstruction(fcnt16: int, last: int | None, want: int) -> None:
    assert codec.reconstruct_counter(fcnt16, last) == want


@pytest.mark.parametrize(
    ("fcnt16", "last"),
    [(16385, None), (6, 7), (0x0005, 0xFFFFFFF0)],  # too far; older; past 32 bits
)
def test_counter_out_of_window(fcnt16: int, last: int | None) -> None:
    with pytest.raises(errors.CounterOutOfWindow) as info:
        codec.reconstruct_counter(fcnt16, last)
    assert info.value.offset == 6


def test_battery_is_rounded_down_to_20_mv_and_clamped() -> None:
    c = codec.Codec(1, KEY)
    for mv, units in [(3619, 180), (3620, 181), (-5, 0), (9000, 255)]:
        assert bytes(c.encode_alarm(1, 0, 0, 1, mv, 0))[10] == units
        frame = codec.encode("SELFTEST", 1, 1, 0, {"ran": 1, "passed": 1, "battery_mv": mv}, KEY)
        assert codec.decode(frame, KEY, 0)[4]["battery_mv"] == units * 20


def test_saturating_counts_saturate() -> None:
    fields = {"button": 0, "press_count": 999, "battery_mv": 3600, "alarm_flags": 0}
    frame = codec.encode("ALARM", 1, 1, 0, fields, KEY)
    assert codec.decode(frame, KEY, 0)[4]["press_count"] == 255


@pytest.mark.parametrize(
    ("ftype", "fields"),
    [
        ("LIGHT_STATUS", {"level": 101, "lamp_ma": 0, "energy_wh": 0, "motion_events": 0}),
        ("FAULT", {"code": 0, "active": 1, "detail": 0}),
        ("FAULT", {"code": 1, "active": 2, "detail": 0}),
        ("SELFTEST", {"ran": 1, "passed": 3, "battery_mv": 0}),
        ("ACK", {"acked_counter": 1, "alarm_state": 4}),
        ("TIME", {"unix_time": -1, "utc_offset": 0}),
        ("TIME", {"unix_time": 0, "utc_offset": 57}),
        (
            "HEARTBEAT",
            {
                "battery_mv": 0,
                "temperature": 0,
                "uptime_h": 0,
                "faults": 0,
                "fw_version": 0,
                "last_rssi": 3,
                "last_snr": 0,
            },
        ),
        ("COMMAND", {"opcode": "SET_LEVEL", "level": 101, "minutes": 0}),
        (
            "COMMAND",
            {
                "opcode": "SCHEDULE",
                "dusk_level": 1,
                "night_level": 1,
                "night_from": 1440,
                "night_until": 0,
            },
        ),
        ("COMMAND", {"opcode": "STROBE", "seconds": 0}),
        ("COMMAND", {"opcode": "CONFIG", "key": "", "value": ""}),
        ("COMMAND", {"opcode": "CONFIG", "key": "k" * 17, "value": ""}),
        ("COMMAND", {"opcode": "CONFIG", "key": "장소", "value": ""}),
        ("COMMAND", {"opcode": "CONFIG", "key": "k", "value": "v" * 33}),
        ("ALARM", {"button": 0, "press_count": 1, "battery_mv": 0, "alarm_flags": 0, "x": 1}),
        ("ALARM", {"button": 0, "press_count": 1, "battery_mv": 0}),
        ("ALARM", {"button": 256, "press_count": 1, "battery_mv": 0, "alarm_flags": 0}),
    ],
)
def test_encoder_refuses_values_out_of_range(ftype: str, fields: dict[str, Any]) -> None:
    with pytest.raises(errors.BadField):
        codec.encode(ftype, 1, 1, 0, fields, KEY)


def test_encoder_refuses_unknown_type_and_opcode() -> None:
    with pytest.raises(errors.UnknownType):
        codec.encode("PANIC", 1, 1, 0, {}, KEY)
    with pytest.raises(errors.UnknownType):
        codec.encode("COMMAND", 1, 1, 0, {"opcode": "DANCE"}, KEY)


def test_config_longest_key_and_value_fill_exactly_one_frame() -> None:
    # A 16-byte key and a 30-byte value make a 64-byte frame, the largest there is.
    wire = codec.encode(
        "COMMAND", 1, 1, 0, {"opcode": "CONFIG", "key": "k" * 16, "value": "v" * 30}, KEY
    )
    assert len(wire) == 64
    with pytest.raises(errors.BadField):
        codec.encode(
            "COMMAND", 1, 1, 0, {"opcode": "CONFIG", "key": "k" * 16, "value": "v" * 31}, KEY
        )


def test_fast_encoder_returns_a_view_reused_by_the_next_encode() -> None:
    c = codec.Codec(1, KEY)
    first = c.encode_alarm(1, 1, 0, 1, 3600, 0)
    kept = bytes(first)
    c.encode_heartbeat(2, 0, 3600, 20, 1, 0, 16, -90, 5)
    assert bytes(first) != kept  # documented: copy the view before encoding again


# --- differential: firmware codec vs gateway codec -----------------------------------


def _gateway_decode(data: bytes, key: bytes, last: int | None) -> tuple[Any, ...]:
    dk = gw_frames.DeviceKey.of(key, last)
    try:
        f = gw_frames.decode(data, lambda device_id, direction: dk)
    except gw_frames.ProtocolError as exc:
        return ("error", exc.code, exc.offset)
    return ("ok", f.type.name, f.device_id, f.counter, int(f.flags), f.payload.to_fields())


def _firmware_decode(data: bytes, key: bytes, last: int | None) -> tuple[Any, ...]:
    try:
        return ("ok", *codec.decode(data, key, last))
    except errors.ProtocolError as exc:
        return ("error", exc.code, exc.offset)


def _resign(frame: bytearray, key: bytes, counter: int) -> bytes:
    """Give a mutated frame a valid MIC, so the payload checks behind the MIC are reached."""
    n = len(frame)
    if n < 16 or frame[0] & 0x1F not in codec.TYPE_CODES.values():
        return bytes(frame)
    direction = 1 if frame[0] & 0x10 else 0
    device_id = struct.unpack_from(">I", frame, 2)[0]
    frame[n - 8 :] = mic.frame_mic(key, direction, device_id, counter, bytes(frame[: n - 8]))
    return bytes(frame)


frame_vectors = st.sampled_from(FRAMES + [dict(v, counter=0) for v in INVALID])


@settings(max_examples=400, deadline=None)
@given(
    vec=frame_vectors,
    edits=st.lists(st.tuples(st.integers(0, 70), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 70),
    extra=st.binary(max_size=50),
    resign=st.booleans(),
    last=st.one_of(st.none(), st.integers(0, 0x20000)),
)
def test_firmware_and_gateway_agree_on_mutated_frames(
    vec: dict[str, Any],
    edits: list[tuple[int, int]],
    cut: int,
    extra: bytes,
    resign: bool,
    last: int | None,
) -> None:
    key = bytes.fromhex(vec["key"])
    b = bytearray(bytes.fromhex(vec["hex"])[: max(cut, 16)] + extra)
    for at, value in edits:
        if at < len(b):
            b[at] = value
    data = _resign(b, key, vec["counter"]) if resign else bytes(b)
    if resign:
        last = vec["counter"]
    assert _firmware_decode(data, key, last) == _gateway_decode(data, key, last)


# --- bridge serial link --------------------------------------------------------------


@pytest.mark.parametrize("msg", LINK["messages"], ids=lambda m: m["name"])
def test_link_message_matches_vector(msg: dict[str, Any]) -> None:
    fields = _message_fields(msg)
    assert link.encode(msg["kind"], msg["seq"], fields).hex() == msg["hex"]
    assert link.decode(bytes.fromhex(msg["hex"])) == (msg["kind"], msg["seq"], fields)


@pytest.mark.parametrize(
    "msg", [m for m in LINK["messages"] if m["kind"] == "RX"], ids=lambda m: m["name"]
)
def test_link_rx_writer_matches_vector(msg: dict[str, Any]) -> None:
    f = _message_fields(msg)
    view = link.Writer().rx(
        msg["seq"],
        f["tmst"],
        f["rssi"],
        f["snr_x4"],
        f["freq_khz"],
        f["sf"],
        f["bw_khz"],
        f["frame"],
    )
    assert bytes(view).hex() == msg["hex"]


@pytest.mark.parametrize("stream", LINK["streams"], ids=lambda s: s["name"])
@pytest.mark.parametrize("piece", [None, 1, 5])
def test_link_stream_matches_vector(stream: dict[str, Any], piece: int | None) -> None:
    data = bytes.fromhex(stream["hex"])
    framer = link.Framer()
    if piece is None:
        got = framer.feed(data)
    else:
        got = []
        for i in range(0, len(data), piece):
            got += framer.feed(memoryview(data)[i : i + piece])
    want = [
        (MESSAGES[n]["kind"], MESSAGES[n]["seq"], _message_fields(MESSAGES[n]))
        for n in stream["messages"]
    ]
    assert got == want
    assert framer.errors == stream["errors"]
    assert framer.messages == len(want)


def test_framer_counts_errors_by_cause() -> None:
    good = bytes.fromhex(MESSAGES["tx-done"]["hex"])
    bad_crc = bytearray(good)
    bad_crc[3] ^= 1
    framer = link.Framer()
    got = framer.feed(b"\x05\x01\x00" + bytes(bad_crc) + b"\x01" * 400 + b"\x00" + good)
    assert [m[0] for m in got] == ["TX_DONE"]
    assert (framer.bad_framing, framer.bad_crc, framer.overflow) == (1, 1, 1)
    assert framer.errors == 3
    assert isinstance(framer.last_error, errors.TooLong)


def test_framer_buffer_is_bounded() -> None:
    framer = link.Framer()
    for _ in range(100):
        framer.feed(b"\x01" * 1000)
    assert framer._n <= link.MAX_ENCODED
    assert framer.overflow == 1  # one overlong frame, however long it goes on


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01", bytes(254), b"\x01" * 254, b"\x01" * 253 + b"\x00", bytes(range(256)) * 2],
)
def test_cobs_round_trip_and_gateway_agreement(data: bytes) -> None:
    enc = link.cobs_encode(data)
    assert 0 not in enc
    assert enc == gw_link.cobs_encode(data)
    assert link.cobs_decode(enc) == data


def test_crc32_fallback_matches_zlib() -> None:
    for data in (b"", b"123456789", bytes(range(256)), bytes(300)):
        assert link.crc32_soft(data) == zlib.crc32(data) == link.crc32(data)


def _gateway_link(wire: bytes) -> tuple[Any, ...]:
    try:
        m = gw_link.decode_message(wire)
    except gw_link.ProtocolError as exc:
        return ("error", exc.code, exc.offset)
    fields = m.to_fields()
    if "frame" in fields:
        fields["frame"] = bytes.fromhex(fields["frame"])
    return ("ok", m.KIND.name, m.seq, fields)


def _firmware_link(wire: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", *link.decode(wire))
    except errors.ProtocolError as exc:
        return ("error", exc.code, exc.offset)


def _reseal(block: bytes) -> bytes:
    """COBS(block || CRC) + delimiter: a mutated body that passes the CRC."""
    return gw_link.cobs_encode(block + zlib.crc32(block).to_bytes(4, "big")) + b"\x00"


@settings(max_examples=300, deadline=None)
@given(
    msg=st.sampled_from(LINK["messages"]),
    edits=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=3),
    cut=st.integers(0, 300),
    reseal=st.booleans(),
)
def test_firmware_and_gateway_agree_on_mutated_link_messages(
    msg: dict[str, Any], edits: list[tuple[int, int]], cut: int, reseal: bool
) -> None:
    wire = bytes.fromhex(msg["hex"])
    if reseal:  # mutate the body, then frame it properly: reaches the body checks
        body = bytearray(gw_link.cobs_decode(wire[:-1])[:-4][: max(cut, 1)])
        for at, value in edits:
            if at < len(body):
                body[at] = value
        wire = _reseal(bytes(body))
    else:
        b = bytearray(wire[:cut] if cut else wire)
        for at, value in edits:
            if at < len(b):
                b[at] = value
        wire = bytes(b)
    assert _firmware_link(wire) == _gateway_link(wire)


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(
        st.binary(max_size=40)
        | st.sampled_from([bytes.fromhex(m["hex"]) for m in LINK["messages"]]),
        max_size=12,
    )
)
def test_firmware_and_gateway_framers_agree(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    mine, theirs = link.Framer(), gw_link.Framer()
    got = mine.feed(data)
    want = theirs.feed(data)
    assert [(k, s) for k, s, _ in got] == [(m.KIND.name, m.seq) for m in want]
    assert mine.errors == theirs.stats.errors


# --- compat on CPython ---------------------------------------------------------------


def test_compat_on_cpython_behaves_like_micropython() -> None:
    assert compat.MICROPY is False
    assert compat.const(5) == 5
    period = 1 << 30
    assert compat.ticks_add(period - 1, 2) == 1
    assert compat.ticks_diff(1, period - 1) == 2
    assert compat.ticks_diff(period - 1, 1) == -2
    t0 = compat.ticks_ms()
    assert 0 <= t0 < period and compat.ticks_diff(compat.ticks_ms(), t0) >= 0
