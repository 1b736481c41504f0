"""The device codec's hot paths allocate (almost) nothing, measured in real MicroPython.

Every heap block a bell allocates per frame is garbage the collector must later find,
and on a small heap it is what fragments memory until a long-running device fails an
allocation. So the uplink encoders write into one preallocated buffer, and the test
holds them to what cannot be avoided:

* the MIC: HMAC-SHA256 needs two `hashlib.sha256` objects and their two digests per
  frame, because MicroPython hashes can be neither copied nor reset. The script measures
  that floor on the interpreter at hand;
* two memoryview objects: the frame handed back and the body handed to the hash.

Everything else (the header, the fields, the MIC bytes) is written in place. The bridge's
RX writer has no MIC; it is held to a small constant that does not grow with the frame
length, which proves no copy of the frame (or its COBS encoding) is made per message.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from .conftest import MicroPython, firmware_lib

pytestmark = pytest.mark.micropython

CALLS = 1000

SCRIPT = """
import gc, hashlib, json
import codec, link

N = %(calls)d
c = codec.Codec(0x0A000001, bytes(range(16)))
w = link.Writer()
short = bytes(c.encode_alarm(1, 1, 0, 1, 3600, 0))
long = bytes(200)


def per_call(fn):
    fn(0)  # warm-up: first calls may intern or cache
    gc.collect()
    gc.disable()  # so a collection cannot hide what the loop allocated
    try:
        before = gc.mem_alloc()
        for i in range(N):
            fn(i)
        return (gc.mem_alloc() - before) / N
    finally:
        gc.enable()


ipad = bytearray(64)
b0 = bytearray(16)
body = bytearray(16)
view = memoryview(bytearray(64))


def hmac_floor(i):
    inner = hashlib.sha256(ipad)
    inner.update(b0)
    inner.update(body)
    outer = hashlib.sha256(ipad)
    outer.update(inner.digest())
    outer.digest()


print(json.dumps({
    "hmac_floor": per_call(hmac_floor),
    "memoryview": per_call(lambda i: view[0:i & 31]),
    "alarm": per_call(lambda i: c.encode_alarm(i, 1, 0, 1, 3600, 0)),
    "alarm_update": per_call(lambda i: c.encode_alarm_update(i, 1, 7, 2, 3580)),
    "heartbeat": per_call(lambda i: c.encode_heartbeat(i, 0, 3620, 21, 1234, 0, 16, -97, -7)),
    "fault": per_call(lambda i: c.encode_fault(i, 0, 2, 1, 0)),
    "light_status": per_call(lambda i: c.encode_light_status(i, 0, 50, 412, 123456, 17)),
    "selftest": per_call(lambda i: c.encode_selftest(i, 0, 7, 5, 3440)),
    "rx_short": per_call(lambda i: w.rx(i & 255, 123456, -97, -30, 922100, 9, 125, short)),
    "rx_long": per_call(lambda i: w.rx(i & 255, 123456, -97, -30, 922100, 9, 125, long)),
}))
"""


@pytest.fixture(scope="module")
def alloc(micropython: MicroPython) -> dict[str, Any]:
    out = micropython.run(SCRIPT % {"calls": CALLS}, firmware_lib())
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "encoder", ["alarm", "alarm_update", "heartbeat", "fault", "light_status", "selftest"]
)
def test_uplink_encoder_allocates_only_the_mic_hashes(alloc: dict[str, Any], encoder: str) -> None:
    floor = alloc["hmac_floor"]
    allowed = floor + 2 * alloc["memoryview"]
    assert alloc[encoder] <= allowed, (
        f"{encoder}: {alloc[encoder]:.0f} B per frame over {CALLS} frames; the MIC's hashes "
        f"need {floor:.0f} B and two views {2 * alloc['memoryview']:.0f} B"
    )


def test_hmac_floor_is_small(alloc: dict[str, Any]) -> None:
    # Two SHA-256 contexts and two 32-byte digests: a few hundred bytes, not kilobytes.
    # If this grows, the port's hashlib changed and the budget above should be re-read.
    assert alloc["hmac_floor"] <= 512


def test_rx_writer_allocation_is_constant_and_copies_no_frame(alloc: dict[str, Any]) -> None:
    assert alloc["rx_long"] == alloc["rx_short"]  # 20- and 200-byte frames cost the same
    # A few small objects (two views, the slice written, the CRC as a 32-bit heap int):
    # at most six memoryviews' worth, far below one copy of a 200-byte frame.
    assert alloc["rx_short"] <= 6 * alloc["memoryview"] < 200
