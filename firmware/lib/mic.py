"""Frame MIC: HMAC-SHA256 truncated to 8 bytes (PROTOCOL.md section 2).

HMAC is written here over `hashlib.sha256` rather than taken from micropython-lib's
`hmac`: that one defaults to MD5, has no `compare_digest`, and its objects cannot be
reused because a MicroPython hash's `digest()` finalises it and there is no `copy()`.

A `Mic` is built once per key. It keeps the key's two padded 64-byte blocks (RFC 2104
K xor ipad, K xor opad) and the B0 block, so computing a frame's MIC allocates only
what `hashlib` itself must: two SHA-256 contexts and their two digests.
"""

import hashlib
import struct

from compat import const

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Union

    Buffer = Union[bytes, bytearray, memoryview]

MIC_LEN = const(8)  # bytes of the HMAC kept on air
KEY_LEN = const(16)  # device keys are 128-bit (PROTOCOL.md section 2)
_BLOCK = const(64)  # SHA-256 block size, RFC 2104's B
_IPAD = const(0x36)
_OPAD = const(0x5C)
_B0_LEN = const(16)  # "ANSHIM" + version + DIR + DEVID u32 + FCNT32 u32
_B0_FMT = ">BII"  # DIR, DEVID, FCNT32, written at offset 7 after "ANSHIM" and the version

UP = const(0)  # B0 DIR byte for device -> gateway
DOWN = const(1)  # B0 DIR byte for gateway -> device


def mic_equal(a, b):
    """Compare two MICs (or any two buffers) in time independent of where they differ."""
    n = len(a)
    if n != len(b):
        return False
    diff = 0
    for i in range(n):
        diff |= a[i] ^ b[i]
    return diff == 0


class Mic:
    """HMAC-SHA256 under one key, with the Anshim B0 block for frame MICs."""

    def __init__(self, key: "Buffer") -> None:
        if len(key) > _BLOCK:  # RFC 2104: long keys are hashed first
            key = hashlib.sha256(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(len(key)):
            ipad[i] = key[i]
            opad[i] = key[i]
        for i in range(_BLOCK):
            ipad[i] ^= _IPAD
            opad[i] ^= _OPAD
        self._ipad = ipad
        self._opad = opad
        b0 = bytearray(_B0_LEN)
        b0[0:6] = b"ANSHIM"
        b0[6] = 1  # protocol version
        self._b0 = b0

    def digest2(self, a: "Buffer", b: "Buffer") -> bytes:
        """The full 32-byte HMAC of ``a || b`` (two parts, so callers never concatenate)."""
        inner = hashlib.sha256(self._ipad)
        inner.update(a)
        inner.update(b)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def digest(self, msg: "Buffer") -> bytes:
        """The full 32-byte HMAC-SHA256 of ``msg``."""
        return self.digest2(msg, b"")

    def frame_digest(self, direction: int, device_id: int, fcnt32: int, body: "Buffer") -> bytes:
        """HMAC(key, B0 || body) in full; the frame's MIC is its first `MIC_LEN` bytes.

        ``body`` is every on-air byte before the MIC (``frame[0:len-8]``).
        """
        struct.pack_into(_B0_FMT, self._b0, 7, direction, device_id, fcnt32)
        return self.digest2(self._b0, body)

    def sign(self, direction: int, device_id: int, fcnt32: int, buf: "Buffer", end: int) -> int:
        """Write the MIC of ``buf[0:end]`` at ``buf[end:end+8]``; return the frame length.

        ``buf`` is a writable memoryview (or bytearray) at least ``end + 8`` long; a
        memoryview is sliced without copying the body.
        """
        body = buf[0:end]
        d = self.frame_digest(direction, device_id, fcnt32, body)
        for i in range(MIC_LEN):  # copy without slicing: nothing to allocate
            buf[end + i] = d[i]  # type: ignore[index]
        return end + MIC_LEN

    def verify(self, direction: int, device_id: int, fcnt32: int, frame: "Buffer") -> bool:
        """True when the last 8 bytes of ``frame`` are the MIC of the rest (constant time)."""
        end = len(frame) - MIC_LEN
        d = self.frame_digest(direction, device_id, fcnt32, memoryview(frame)[0:end])
        diff = 0
        for i in range(MIC_LEN):
            diff |= d[i] ^ frame[end + i]
        return diff == 0


def frame_mic(key: "Buffer", direction: int, device_id: int, fcnt32: int, body: "Buffer") -> bytes:
    """The 8-byte MIC of one frame body (everything before the MIC). For tools and tests."""
    return Mic(key).frame_digest(direction, device_id, fcnt32, body)[:MIC_LEN]
