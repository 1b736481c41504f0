"""Property tests of the gateway codec: round trips, arbitrary bytes, single bit flips."""

from __future__ import annotations

import contextlib
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import frames as fr
from protocol import link as ln
from protocol.errors import ProtocolError

KEY = bytes(range(16))
LOOKUP_KEY = fr.DeviceKey.of(KEY, None)


def _ints(lo: int, hi: int, step: int = 1) -> st.SearchStrategy[int]:
    return st.integers(lo // step, hi // step).map(lambda v: v * step)


def _payload_strategy(cls: type) -> st.SearchStrategy[fr.Payload]:
    kwargs: dict[str, st.SearchStrategy[object]] = {}
    for f in fields(cls):
        lo, hi = cls.RANGES[f.name]
        step = fr.BATTERY_STEP_MV if f.name == "battery_mv" else 1
        kwargs[f.name] = _ints(lo, hi, step)
    if cls is fr.SelfTest:
        return st.builds(
            lambda ran, passed, battery_mv: fr.SelfTest(ran, ran & passed, battery_mv), **kwargs
        )
    return st.builds(cls, **kwargs)


_config = st.builds(
    fr.ConfigSet,
    key=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=16),
    value=st.text(max_size=10).filter(lambda v: len(v.encode()) <= 32),
)
payloads = st.one_of(
    *[_payload_strategy(cls) for cls in fr.PAYLOAD_CLASSES.values()],
    *[_payload_strategy(cls) for op, cls in fr.COMMAND_CLASSES.items() if op != fr.Opcode.CONFIG],
    _config,
)
frames_st = st.builds(
    fr.Frame,
    device_id=st.integers(0, 0xFFFFFFFF),
    counter=st.integers(0, 0xFFFFFFFF),
    payload=payloads,
    flags=st.integers(0, 7).map(fr.Flags),
)


@given(frames_st)
def test_round_trip_every_type(frame: fr.Frame) -> None:
    wire = fr.encode(frame, KEY)
    last = max(frame.counter - 1, 0)
    for engine in fr.ENGINES:
        decoded = fr.decode(wire, lambda d, dr: fr.DeviceKey(LOOKUP_KEY.key, last), engine=engine)
        assert decoded == frame
    # The gateway peeks first (to find the key), then decodes with the header it has.
    lookup = lambda d, dr: fr.DeviceKey(LOOKUP_KEY.key, last)  # noqa: E731
    assert fr.decode(wire, lookup, header=fr.peek(wire)) == frame


@given(st.binary(max_size=80), st.none() | st.integers(0, 0xFFFFFFFF))
def test_random_bytes_raise_only_protocol_error(data: bytes, last: int | None) -> None:
    for engine in fr.ENGINES:
        with contextlib.suppress(ProtocolError):
            fr.decode(data, lambda d, dr: fr.DeviceKey(LOOKUP_KEY.key, last), engine=engine)
    with contextlib.suppress(ProtocolError):
        fr.decode_unverified(data)


@given(st.binary(min_size=16, max_size=64))
def test_random_frames_with_valid_header_raise_only_protocol_error(tail: bytes) -> None:
    for hdr in (0x21, 0x23, 0x32, 0x31):
        data = bytes([hdr]) + tail[1:]
        with contextlib.suppress(ProtocolError):
            fr.decode_unverified(data)


@settings(max_examples=200)
@given(frames_st, st.data())
def test_any_single_flipped_bit_is_rejected(frame: fr.Frame, data: st.DataObject) -> None:
    wire = bytearray(fr.encode(frame, KEY))
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 0x80 >> (bit % 8)
    last = max(frame.counter - 1, 0)
    try:
        decoded = fr.decode(bytes(wire), lambda d, dr: fr.DeviceKey(LOOKUP_KEY.key, last))
    except ProtocolError:
        return
    raise AssertionError(f"bit {bit} flipped and still accepted: {decoded}")


link_messages = st.one_of(
    st.builds(
        ln.Rx,
        seq=st.integers(0, 255),
        tmst=st.integers(0, 2**32 - 1),
        rssi=st.integers(-32768, 32767),
        snr_x4=st.integers(-128, 127),
        freq_khz=st.integers(0, 2**32 - 1),
        sf=st.integers(0, 255),
        bw_khz=st.integers(0, 65535),
        frame=st.binary(min_size=1, max_size=255),
    ),
    st.builds(
        ln.Tx,
        seq=st.integers(0, 255),
        mode=st.integers(0, 1),
        tmst=st.integers(0, 2**32 - 1),
        freq_khz=st.integers(0, 2**32 - 1),
        sf=st.integers(0, 255),
        bw_khz=st.integers(0, 65535),
        power_dbm=st.integers(-128, 127),
        frame=st.binary(min_size=1, max_size=255),
    ),
    st.builds(
        ln.TxDone,
        seq=st.integers(0, 255),
        tmst=st.integers(0, 2**32 - 1),
        airtime_us=st.integers(0, 2**32 - 1),
    ),
    st.builds(ln.TxFailed, seq=st.integers(0, 255), reason=st.integers(0, 255)),
    st.builds(ln.StatusRequest, seq=st.integers(0, 255)),
    st.builds(
        ln.Log, seq=st.integers(0, 255), level=st.integers(0, 255), text=st.text(max_size=60)
    ),
)


@given(st.lists(link_messages, max_size=5), st.lists(st.binary(max_size=30), max_size=5))
def test_link_framer_round_trip_and_resync(messages: list, garbage: list[bytes]) -> None:
    framer = ln.Framer()
    stream = b""
    for i, msg in enumerate(messages):
        junk = garbage[i] if i < len(garbage) else b""
        stream += junk + b"\x00" + ln.encode_message(msg)
    got = []
    # Deliver in awkward chunks, as a serial port does.
    for start in range(0, len(stream), 7):
        got += framer.feed(stream[start : start + 7])
    assert got == messages


@given(st.binary(max_size=400))
def test_link_random_bytes_never_crash(data: bytes) -> None:
    framer = ln.Framer()
    framer.feed(data)
    with contextlib.suppress(ProtocolError):
        ln.decode_message(data)
