"""The bridge serial link against protocol/vectors/link.json."""

from __future__ import annotations

import pytest

from protocol import link as ln
from protocol.errors import ProtocolError
from tests.conftest import load_vectors

LINK = load_vectors("link.json")
MESSAGES = LINK["messages"]
STREAMS = LINK["streams"]


def _from_vector(vec: dict) -> ln.Message:
    cls = ln.MESSAGE_CLASSES[vec["class"]]
    values = dict(vec["fields"])
    if "frame" in values:
        values["frame"] = bytes.fromhex(values["frame"])
    return cls(seq=vec["seq"], **values)  # type: ignore[return-value]


def test_every_kind_has_a_vector() -> None:
    assert {v["kind"] for v in MESSAGES} == {k.name for k in ln.Kind}


@pytest.mark.parametrize("vec", MESSAGES, ids=lambda v: v["name"])
def test_encode(vec: dict) -> None:
    wire = ln.encode_message(_from_vector(vec))
    assert wire.hex() == vec["hex"]
    assert wire.count(0) == 1 and wire.endswith(b"\x00")


@pytest.mark.parametrize("vec", MESSAGES, ids=lambda v: v["name"])
def test_decode(vec: dict) -> None:
    msg = ln.decode_message(bytes.fromhex(vec["hex"]))
    assert type(msg).__name__ == vec["class"]
    assert msg.seq == vec["seq"]
    assert msg.to_fields() == vec["fields"]


@pytest.mark.parametrize("vec", MESSAGES, ids=lambda v: v["name"])
def test_crc_is_zlib_crc32_of_body(vec: dict) -> None:
    import zlib

    block = ln.cobs_decode(bytes.fromhex(vec["hex"])[:-1])
    assert int.from_bytes(block[-4:], "big") == zlib.crc32(block[:-4])
    parsed = ln.message_format.parse(block, fields_len=len(block) - 6)
    assert parsed.body.value.kind == block[0]


@pytest.mark.parametrize("vec", STREAMS, ids=lambda v: v["name"])
def test_streams_resynchronise(vec: dict) -> None:
    by_name = {m["name"]: m for m in MESSAGES}
    framer = ln.Framer()
    data = bytes.fromhex(vec["hex"])
    got = []
    for i in range(0, len(data), 5):  # as a serial port delivers it: in pieces
        got += framer.feed(data[i : i + 5])
    assert [m.to_fields() for m in got] == [by_name[n]["fields"] for n in vec["messages"]]
    assert framer.stats.errors == vec["errors"]
    assert framer.stats.messages == len(vec["messages"])


@pytest.mark.parametrize(
    ("wire", "error"),
    [
        (b"", "TooShort"),
        (b"\x03\x05\x00", "BadFraming"),
        (b"\x05\x01\x02", "BadFraming"),
        (ln.cobs_encode(b"\x03\x00\x00\x00\x00\x00"), "BadCrc"),
    ],
)
def test_decode_errors(wire: bytes, error: str) -> None:
    with pytest.raises(ProtocolError) as info:
        ln.decode_message(wire)
    assert info.value.code == error


def test_cobs_known_examples() -> None:
    # Examples from Cheshire & Baker, as listed in the COBS literature.
    assert ln.cobs_encode(b"\x00") == b"\x01\x01"
    assert ln.cobs_encode(b"\x00\x00") == b"\x01\x01\x01"
    assert ln.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert ln.cobs_encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    run = bytes(range(1, 255))
    assert ln.cobs_encode(run) == b"\xff" + run
    assert ln.cobs_encode(bytes(range(1, 256))) == b"\xff" + run + b"\x02\xff"
    assert ln.cobs_encode(bytes(range(256))) == b"\x01\xff" + run + b"\x02\xff"


def test_framer_counts_and_keeps_going_after_overflow() -> None:
    framer = ln.Framer()
    done = ln.encode_message(ln.TxDone(seq=1, tmst=5, airtime_us=6))
    assert framer.feed(b"\x55" * 5000) == []
    assert framer.feed(b"\x00" + done) == [ln.TxDone(seq=1, tmst=5, airtime_us=6)]
    assert framer.stats.overflow == 1
