"""The firmware codec in real MicroPython against every vector (invariant 6).

One interpreter run (`mp_vectors.py`) takes every vector of protocol/vectors/ through
firmware/lib/codec.py and link.py and reports what it got; the tests below compare that,
vector by vector, with what the vectors say. The same vectors run through the same
modules under CPython in tests/unit/test_firmware_codec.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import VECTORS, MicroPython, firmware_lib

pytestmark = pytest.mark.micropython

HERE = Path(__file__).resolve().parent
FRAMES = json.loads((VECTORS / "frames.json").read_text(encoding="utf-8"))["frames"]
INVALID = json.loads((VECTORS / "invalid.json").read_text(encoding="utf-8"))["invalid"]
LINK = json.loads((VECTORS / "link.json").read_text(encoding="utf-8"))
MESSAGES = {m["name"]: m for m in LINK["messages"]}
UPLINK_FAST = {"ALARM", "ALARM_UPDATE", "HEARTBEAT", "FAULT", "LIGHT_STATUS", "SELFTEST"}
MAX_FCNT_GAP = 16384


@pytest.fixture(scope="module")
def results(micropython: MicroPython) -> dict[str, Any]:
    out = micropython.run(
        (HERE / "mp_vectors.py").read_text(encoding="utf-8"),
        firmware_lib(),
        data={
            f"/vectors/{name}": VECTORS / name
            for name in ("frames.json", "invalid.json", "link.json")
        },
    )
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _decoded(vec: dict[str, Any]) -> dict[str, Any]:
    return {"ok": [vec["type"], vec["device_id"], vec["counter"], vec["flags"], vec["fields"]]}


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_frame_encodes_to_vector(results: dict[str, Any], vec: dict[str, Any]) -> None:
    got = results["frames"][vec["name"]]
    assert got["encode"] == vec["hex"]
    if vec["type"] in UPLINK_FAST:  # the device's allocation-free encoder, too
        assert got["fast"] == vec["hex"]


@pytest.mark.parametrize("vec", FRAMES, ids=lambda v: v["name"])
def test_frame_decodes_to_vector(results: dict[str, Any], vec: dict[str, Any]) -> None:
    got = results["frames"][vec["name"]]
    assert got["decode"] == _decoded(vec)
    assert got["codec_decode"] == _decoded(vec)
    # A receiver that never heard the device (last = 0) sees only the low 16 bits.
    if vec["counter"] <= MAX_FCNT_GAP:
        assert got["new_device"] == _decoded(vec)
    elif vec["counter"] & 0xFFFF > MAX_FCNT_GAP:
        assert got["new_device"] == {"error": "CounterOutOfWindow", "offset": 6}
    else:  # reconstructed inside the window, but not the counter the MIC was made with
        assert got["new_device"] == {"error": "BadMic", "offset": len(vec["hex"]) // 2 - 8}


@pytest.mark.parametrize("vec", INVALID, ids=lambda v: v["name"])
def test_invalid_frame_raises_vector_error(results: dict[str, Any], vec: dict[str, Any]) -> None:
    assert results["invalid"][vec["name"]] == {"error": vec["error"], "offset": vec["offset"]}


def _message(m: dict[str, Any]) -> list[Any]:
    return [m["kind"], m["seq"], m["fields"]]


@pytest.mark.parametrize("msg", LINK["messages"], ids=lambda m: m["name"])
def test_link_message_matches_vector(results: dict[str, Any], msg: dict[str, Any]) -> None:
    got = results["link"]["messages"][msg["name"]]
    assert got["encode"] == msg["hex"]
    assert got["decode"] == _message(msg)
    if msg["kind"] == "RX":
        assert got["writer_rx"] == msg["hex"]


def _expected_stream(stream: dict[str, Any]) -> list[list[Any]]:
    return [_message(MESSAGES[name]) for name in stream["messages"]]


@pytest.mark.parametrize("stream", LINK["streams"], ids=lambda s: s["name"])
def test_link_stream_matches_vector(results: dict[str, Any], stream: dict[str, Any]) -> None:
    got = results["link"]["streams"][stream["name"]]
    assert got["messages"] == _expected_stream(stream)
    assert got["errors"] == stream["errors"]
    # Fed in small pieces, as a UART read returns them: the same messages and errors.
    assert got["split_messages"] == _expected_stream(stream)
    assert got["split_errors"] == stream["errors"]


def test_decoders_raise_only_protocol_errors(results: dict[str, Any]) -> None:
    assert results["crashes"] == []


def test_crc32_fallback_matches_binascii(results: dict[str, Any]) -> None:
    assert results["crc_fallback_agrees"] is True
