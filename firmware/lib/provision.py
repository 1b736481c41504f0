"""Provisioning (service) mode: config in, over USB serial or BLE (firmware/PROVISIONING.md).

A device enters provisioning mode only by a physical action -- the button held down at
boot (`held_at_boot`) -- and leaves it on END, after `IDLE_MS` without a message, or
after `SESSION_MS` in any case. While in it, a crew's laptop sends requests and the
device answers, one reply per request:

* HELLO: who the device is, whether it is provisioned, and a fresh challenge nonce;
* READ: the stored config without the key (a key check value instead);
* WRITE: a new config. An already provisioned device accepts it only when it is signed
  with its current key (HMAC-SHA256 over the nonce and the config: challenge-response),
  and a new key travels wrapped under the current one. Written atomically by the store
  (temp file + rename, or one NVS blob) and read back before the reply;
* RESET: factory reset, only while the button is held down *now* (a second physical
  action, so a lost key never strands a device, and a remote attacker can never wipe it);
* TEST: the field test: the device's self-test and one test frame (signed request),
  run by the role's field-test service (`fieldtest.FieldTest` on the real firmware);
* END: leave provisioning mode (the caller reboots into the app).

`Provisioner` is pure (no I/O but the injected store): requests are bytes in, replies
bytes out, in CPython and MicroPython alike. `handle` answers at once; `handle_async`
is the same with TEST's service calls awaited when they are coroutines (the firmware's
self-test and test frame use the radio, which is ``async``): the glue uses it. Two
framings carry the same messages: `LineLink` (one base64 line per message over the USB
CDC console) and `Reassembler` / `chunks` (BLE GATT writes and notifications of at
most 20 bytes: ATT's default MTU). The glue at the bottom (`service_mode`,
`ble_serve`) wires them to the board.
"""

import binascii
import hashlib
import json

from compat import const, ticks_diff, ticks_ms
from mic import Mic, mic_equal
from store import FileBackend, NvsBackend, Store

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

VERSION = const(1)

OP_HELLO = const(0x01)
OP_READ = const(0x02)
OP_WRITE = const(0x03)
OP_RESET = const(0x04)
OP_TEST = const(0x05)
OP_END = const(0x06)
REPLY = const(0x80)  # set in the op byte of every reply

OK = const(0)
BAD_REQUEST = const(1)  # malformed message, or a BLE chunk lost
AUTH_FAILED = const(2)  # not signed with the device's current key
NEED_PHYSICAL = const(3)  # factory reset without the button held down
BAD_CONFIG = const(4)  # the config was refused; the body names the key
STORAGE_FAILED = const(5)  # flash write failed, or read back differs
UNSUPPORTED = const(6)  # unknown op, or no field-test service on this device
LOCKED = const(7)  # too many failed signatures: reboot (physical action) first
STALE_NONCE = const(8)  # no HELLO first, or the nonce was used already
NOT_PROVISIONED = const(9)  # TEST needs a provisioned device
FAILED = const(10)  # the self-test or the test frame raised
_RUN_TEST = const(-1)  # internal: TEST passed its checks, run the service (never on the wire)

NONCE_LEN = const(16)
MAC_LEN = const(32)  # full HMAC-SHA256
KEY_LEN = const(16)
MAX_MESSAGE = const(1536)  # bytes of one request or reply
MAX_FAILURES = const(5)  # bad signatures per session before LOCKED
IDLE_MS = const(180_000)  # leave provisioning mode after 3 min without a request
SESSION_MS = const(900_000)  # and after 15 min in any case
HOLD_MS = const(2000)  # the button must be held this long at boot
STR_MAX = const(120)  # longest string value in a config

# Labels that keep the three uses of the device key apart (cf. PROTOCOL.md section 2's B0).
_AUTH = b"ANSHIM-PROV\x01"
_WRAP = b"ANSHIM-WRAP\x01"
_KCV = b"ANSHIM-KCV\x01"

STATE_DIR = "/state"  # FileBackend root on file-system boards (main.py's make_store)
NVS_NAMESPACE = "anshim"  # NVS namespace on ESP32 boards
MANIFEST = "/manifest.json"  # written by `anshim firmware build`

# BLE GATT service (128-bit UUIDs ending in "anshim" in ASCII).
SERVICE_UUID = "a5a10001-8c3b-4f6e-9d2a-616e7368696d"
RX_UUID = "a5a10002-8c3b-4f6e-9d2a-616e7368696d"  # host -> device: request chunks (write)
TX_UUID = "a5a10003-8c3b-4f6e-9d2a-616e7368696d"  # device -> host: reply chunks (notify)
CHUNK_MIN = const(20)  # ATT_MTU 23 - 3: what every central can write and receive
CHUNK_MAX = const(244)  # the RX characteristic's buffer (after an MTU exchange)
FIRST = const(0x80)  # chunk header bits
LAST = const(0x40)
SEQ_MASK = const(0x3F)

# USB serial framing: one message per line, base64, with a direction prefix (so a
# terminal's echo of a request is never taken for a reply).
REQUEST_PREFIX = b"#AP>"
REPLY_PREFIX = b"#AP<"
_MAX_LINE = const(2200)  # prefix + base64 of MAX_MESSAGE, with room to spare

# Radio keys and their ranges (KR920: gateway/config.py checks the same on its side).
_RADIO = {
    "freq_khz": (920_900, 923_300),
    "sf": (7, 12),
    "bw_khz": (125, 500),
    "cr": (5, 8),
    "preamble": (6, 65535),
    "power_dbm": (-9, 22),
}


def _hex(data: "Any") -> str:
    return binascii.hexlify(data).decode()


def key_check(key: "Any") -> str:
    """A key check value: 4 bytes of SHA-256 over a label and the key, in hex.

    Lets the host see which key the device holds without the key ever leaving it.
    """
    h = hashlib.sha256(_KCV)
    h.update(key)
    return _hex(h.digest()[:4])


def request_mac(key: "Any", op: int, nonce: "Any", body: "Any") -> bytes:
    """HMAC-SHA256(key, "ANSHIM-PROV" 01 || op || nonce || body): a signed request."""
    return Mic(key).digest2(_AUTH + bytes((op,)) + bytes(nonce), body)


def wrap_key(current: "Any", nonce: "Any", key: "Any") -> bytes:
    """XOR ``key`` with HMAC(current, "ANSHIM-WRAP" 01 || nonce); its own inverse."""
    pad = Mic(current).digest2(_WRAP, nonce)
    out = bytearray(KEY_LEN)
    for i in range(KEY_LEN):
        out[i] = key[i] ^ pad[i]
    return bytes(out)


def random_bytes(n: int) -> bytes:
    """``n`` random bytes: the hardware RNG where there is one (ESP32, RP2040)."""
    try:
        import os

        return os.urandom(n)
    except (ImportError, AttributeError):  # the WebAssembly port (emulator) has none
        import random

        return bytes(random.getrandbits(8) for _ in range(n))


def _int(cfg: "Dict[str, Any]", name: str, lo: int, hi: int) -> None:
    if name not in cfg:
        return
    v = cfg[name]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise ValueError("%s: need an integer %d..%d, not %r" % (name, lo, hi, v))


def check_config(cfg: "Dict[str, Any]") -> None:
    """The checks every role shares; raises ValueError naming the key and value."""
    dev = cfg.get("device_id")
    if not isinstance(dev, str) or len(dev) != 8:
        raise ValueError("device_id: need 8 hex digits, not %r" % (dev,))
    try:
        value = int(dev, 16)
    except ValueError:
        raise ValueError("device_id: need 8 hex digits, not %r" % (dev,)) from None
    if value == 0:
        raise ValueError("device_id: must not be zero")
    for name in _RADIO:
        lo, hi = _RADIO[name]
        _int(cfg, name, lo, hi)
    if "freq_khz" in cfg and (cfg["freq_khz"] - 920_900) % 200:
        raise ValueError("freq_khz: %d is not on the KR920 200 kHz raster" % cfg["freq_khz"])
    if "bw_khz" in cfg and cfg["bw_khz"] not in (125, 250, 500):
        raise ValueError("bw_khz: need 125, 250 or 500, not %r" % (cfg["bw_khz"],))
    for name in ("lat", "lon"):
        if name in cfg and cfg[name] is not None:
            v = cfg[name]
            lim = 90 if name == "lat" else 180
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not -lim <= v <= lim:
                raise ValueError("%s: need degrees -%d..%d, not %r" % (name, lim, lim, v))
    for name in cfg:
        v = cfg[name]
        if v is None or isinstance(v, (bool, int, float)):
            continue
        if not isinstance(v, str):
            raise ValueError("%s: values must be numbers, strings, true/false or null" % name)
        if len(v) > STR_MAX:
            raise ValueError("%s: longer than %d characters" % (name, STR_MAX))
        if name.endswith("_s") or name.endswith("_h"):
            raise ValueError("%s: need a number, not %r" % (name, v))


def _key_from_hex(value: "Any", name: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * KEY_LEN:
        raise ValueError("%s: need %d hex digits" % (name, 2 * KEY_LEN))
    try:
        return binascii.unhexlify(value)
    except ValueError:
        raise ValueError("%s: not hex" % name) from None


def _same(a: "Any", b: "Any") -> bool:
    """Config equality as read back: floats may be single precision on the device."""
    if not isinstance(a, dict) or not isinstance(b, dict) or len(a) != len(b):
        return False
    for k in a:
        if k not in b:
            return False
        x, y = a[k], b[k]
        if isinstance(x, float) or isinstance(y, float):
            if not isinstance(x, (int, float)) or not isinstance(y, (int, float)):
                return False
            if abs(x - y) > 1e-5 * (1 + abs(x)):
                return False
        elif x != y:
            return False
    return True


class Provisioner:
    """One provisioning session: requests in, replies out (see the module docstring).

    ``store`` is a `store.Store` (or anything with ``load_config``/``save_config``);
    ``info`` goes into HELLO (role, board, firmware); ``physical()`` says whether the
    button is held down right now (None: factory reset impossible); ``service`` has
    ``selftest()`` and ``send_test()`` for the field test (None: unsupported), plain
    methods or coroutines (`handle_async` awaits them; `handle` takes plain ones only);
    ``validate(cfg)`` is the role's own config check, raising ValueError (e.g.
    ``bell.parse_config``); ``rand(n)`` gives nonces; ``clock`` is ``ticks_ms``.
    """

    def __init__(
        self,
        store: "Any",
        info: "Optional[Dict[str, Any]]" = None,
        physical: "Optional[Callable[[], bool]]" = None,
        service: "Any" = None,
        validate: "Optional[Callable[[Dict[str, Any]], Any]]" = None,
        rand: "Callable[[int], bytes]" = random_bytes,
        clock: "Callable[[], Any]" = ticks_ms,
        idle_ms: int = IDLE_MS,
        session_ms: int = SESSION_MS,
    ) -> None:
        self._store = store
        self._info = info or {}
        self._physical = physical
        self._service = service
        self._validate = validate
        self._rand = rand
        self._clock = clock
        self._idle_ms = idle_ms
        self._session_ms = session_ms
        self._nonce: "Optional[bytes]" = None
        self._testing = False  # a field test is under way (BLE and USB may both ask)
        self.failures = 0
        self.done = False
        self.reason = ""  # why the session ended: "end", "idle", "timeout"
        now = clock()
        self._started = now
        self._last = now

    def expired(self) -> bool:
        """True once the session is over (END, idle, or too long); sets `reason`."""
        if self.done:
            return True
        now = self._clock()
        if ticks_diff(now, self._last) >= self._idle_ms:
            self.reason = "idle"
        elif ticks_diff(now, self._started) >= self._session_ms:
            self.reason = "timeout"
        else:
            return False
        self.done = True
        return True

    # -- the stored config -----------------------------------------------------------

    def _current(self) -> "Tuple[Dict[str, Any], Optional[bytes]]":
        """(config, key) as stored; key None when the device is not provisioned."""
        cfg = self._store.load_config()
        if not isinstance(cfg, dict):
            return {}, None
        if "device_id" not in cfg or "key" not in cfg:
            return cfg, None
        try:
            return cfg, _key_from_hex(cfg["key"], "key")
        except ValueError:
            return cfg, None

    # -- requests --------------------------------------------------------------------

    def handle(self, req: "Any") -> bytes:
        """One request (bytes) in, its reply (bytes) out. Never raises for bad input."""
        op, seq, status, out = self._answer(req)
        if status == _RUN_TEST:
            status, out = self._run_test_now()
        return _reply(op, seq, status, out)

    async def handle_async(self, req: "Any") -> bytes:
        """`handle`, with a TEST's service calls awaited when they are coroutines.

        The session's other requests are answered meanwhile (over the other transport);
        a second TEST while one runs is refused (FAILED), so two test frames never
        share the radio.
        """
        op, seq, status, out = self._answer(req)
        if status == _RUN_TEST:
            if self._testing:
                status, out = FAILED, b"a field test is already running"
            else:
                self._testing = True
                try:
                    status, out = await self._run_test()
                finally:
                    self._testing = False
                    self._last = self._clock()  # idle counts from the reply
        return _reply(op, seq, status, out)

    def _answer(self, req: "Any") -> "Tuple[int, int, int, bytes]":
        """(op, seq, status, body); status `_RUN_TEST` once a TEST passed its checks."""
        self._last = self._clock()
        n = len(req)
        op = req[1] if n > 1 else 0
        seq = req[2] if n > 2 else 0
        if n < 3 or req[0] != VERSION:
            return op, seq, BAD_REQUEST, b"need a version 1 message"
        if n > MAX_MESSAGE:
            return op, seq, BAD_REQUEST, b"message too long"
        body = bytes(req[3:])
        try:
            status, out = self._dispatch(op, body)
        except OSError as exc:  # the store failed while reading
            status, out = STORAGE_FAILED, ("storage: %s" % (exc,)).encode()
        return op, seq, status, out

    def _dispatch(self, op: int, body: bytes) -> "Tuple[int, bytes]":
        if op == OP_HELLO:
            return self._hello()
        if op == OP_READ:
            cfg, key = self._current()
            shown = {}
            for k in cfg:
                if k != "key":
                    shown[k] = cfg[k]
            return OK, _json({"config": shown, "key_check": key_check(key) if key else None})
        if op == OP_WRITE:
            return self._write(body)
        if op == OP_RESET:
            return self._reset(body)
        if op == OP_TEST:
            return self._test(body)
        if op == OP_END:
            self.done = True
            self.reason = "end"
            return OK, b""
        return UNSUPPORTED, b"unknown op"

    def _hello(self) -> "Tuple[int, bytes]":
        cfg, key = self._current()
        self._nonce = bytes(self._rand(NONCE_LEN))
        dev = cfg.get("device_id") if key is not None else None
        if isinstance(dev, int):
            dev = "%08x" % dev
        out = {
            "proto": VERSION,
            "provisioned": key is not None,
            "device_id": dev,
            "key_check": key_check(key) if key is not None else None,
            "nonce": _hex(self._nonce),
            "max_message": MAX_MESSAGE,
            "idle_s": self._idle_ms // 1000,
            "locked": self.failures >= MAX_FAILURES,
            "field_test": self._service is not None,
            "factory_reset": self._physical is not None,
        }
        for k in self._info:
            out[k] = self._info[k]
        return OK, _json(out)

    def _take_nonce(self, nonce: bytes) -> bool:
        """The nonce must be the one from the last HELLO; it is used up either way."""
        expected = self._nonce
        self._nonce = None
        return expected is not None and mic_equal(nonce, expected)

    def _signed(self, key: bytes, op: int, nonce: bytes, mac: bytes, body: bytes) -> bool:
        if mic_equal(mac, request_mac(key, op, nonce, body)):
            return True
        self.failures += 1
        return False

    def _write(self, body: bytes) -> "Tuple[int, bytes]":
        if len(body) < NONCE_LEN + MAC_LEN:
            return BAD_REQUEST, b"WRITE needs nonce, mac and config"
        nonce = body[:NONCE_LEN]
        mac = body[NONCE_LEN : NONCE_LEN + MAC_LEN]
        text = body[NONCE_LEN + MAC_LEN :]
        if not self._take_nonce(nonce):
            return STALE_NONCE, b"send HELLO for a fresh nonce"
        cfg, key = self._current()
        if key is not None:
            if self.failures >= MAX_FAILURES:
                return LOCKED, b"too many bad signatures: power-cycle with the button held"
            if not self._signed(key, OP_WRITE, nonce, mac, text):
                return AUTH_FAILED, b"not signed with the device's current key"
        try:
            new = json.loads(text)
        except ValueError:
            return BAD_CONFIG, b"config is not JSON"
        if not isinstance(new, dict):
            return BAD_CONFIG, b"config must be a JSON object"
        try:
            new = self._new_config(new, key, nonce)
            self._store.save_config(new)
        except ValueError as exc:  # a bad value, or a record too long for the store
            return BAD_CONFIG, str(exc).encode()
        except OSError as exc:
            return STORAGE_FAILED, ("write failed: %s" % (exc,)).encode()
        back, back_key = self._current()
        if back_key is None or not _same(back, new):
            return STORAGE_FAILED, b"config read back differs from what was written"
        return OK, _json({"device_id": back["device_id"], "key_check": key_check(back_key)})

    def _new_config(
        self, new: "Dict[str, Any]", key: "Optional[bytes]", nonce: bytes
    ) -> "Dict[str, Any]":
        out = {}
        for k in new:
            if k != "key" and k != "key_wrapped":
                out[k] = new[k]
        if key is None:
            if "key_wrapped" in new:
                raise ValueError("key_wrapped: this device has no key yet; send key")
            new_key = _key_from_hex(new.get("key"), "key")
        elif "key" in new:
            raise ValueError("key: a provisioned device takes a new key only as key_wrapped")
        elif "key_wrapped" in new:
            new_key = wrap_key(key, nonce, _key_from_hex(new["key_wrapped"], "key_wrapped"))
        else:
            new_key = key  # same key, new settings
        out["key"] = _hex(new_key)
        if isinstance(out.get("device_id"), str):
            out["device_id"] = out["device_id"].lower()
        check_config(out)
        if self._validate is not None:
            self._validate(out)
        return out

    def _reset(self, body: bytes) -> "Tuple[int, bytes]":
        if len(body) != NONCE_LEN:
            return BAD_REQUEST, b"RESET needs a nonce"
        if not self._take_nonce(body):
            return STALE_NONCE, b"send HELLO for a fresh nonce"
        if self._physical is None or not self._physical():
            return NEED_PHYSICAL, b"hold the button down and send RESET again"
        try:
            self._store.save_config({})  # an empty config: not provisioned
            clear = getattr(self._store, "clear_alarm", None)
            if clear is not None:
                clear()  # a pending alarm belonged to the old identity
        except OSError as exc:
            return STORAGE_FAILED, ("reset failed: %s" % (exc,)).encode()
        if self._current()[1] is not None:
            return STORAGE_FAILED, b"config still there after the reset"
        self.failures = 0
        return OK, b""

    def _test(self, body: bytes) -> "Tuple[int, bytes]":
        if len(body) != NONCE_LEN + MAC_LEN:
            return BAD_REQUEST, b"TEST needs nonce and mac"
        nonce = body[:NONCE_LEN]
        if not self._take_nonce(nonce):
            return STALE_NONCE, b"send HELLO for a fresh nonce"
        cfg, key = self._current()
        if key is None:
            return NOT_PROVISIONED, b"provision the device first"
        if self.failures >= MAX_FAILURES:
            return LOCKED, b"too many bad signatures: power-cycle with the button held"
        if not self._signed(key, OP_TEST, nonce, body[NONCE_LEN:], b""):
            return AUTH_FAILED, b"not signed with the device's current key"
        if self._service is None:
            return UNSUPPORTED, b"this firmware has no field-test service"
        return _RUN_TEST, b""

    def _run_test_now(self) -> "Tuple[int, bytes]":
        """The service's calls, synchronously (a service with plain methods)."""
        selftest = None
        try:
            selftest = self._service.selftest()
            if _awaitable(selftest):
                selftest.close()  # never started: close it quietly
                return FAILED, b"this field-test service needs handle_async"
            frame = self._service.send_test()
            if _awaitable(frame):
                frame.close()
                return FAILED, b"this field-test service needs handle_async"
        except Exception as exc:  # the app's hardware code: report, never crash the mode
            return FAILED, _failure(exc, selftest)
        return OK, _json({"selftest": selftest, "frame": frame})

    async def _run_test(self) -> "Tuple[int, bytes]":
        """The service's calls, each awaited if it is a coroutine."""
        selftest = None
        try:
            selftest = self._service.selftest()
            if _awaitable(selftest):
                selftest = await selftest
            frame = self._service.send_test()
            if _awaitable(frame):
                frame = await frame
        except Exception as exc:  # the app's hardware code: report, never crash the mode
            return FAILED, _failure(exc, selftest)
        return OK, _json({"selftest": selftest, "frame": frame})


def _awaitable(value: "Any") -> bool:
    # A coroutine, in CPython and MicroPython (where it is a generator): both have send.
    return hasattr(value, "send")


def _failure(exc: "Any", selftest: "Any") -> bytes:
    """FAILED's text: what raised, and the self-test's verdict if it had run."""
    text = "%s: %s" % (type(exc).__name__, exc)
    if isinstance(selftest, dict) and isinstance(selftest.get("checks"), dict):
        checks = selftest["checks"]
        bad = [k for k in checks if checks[k] is False]
        text += "; self-test " + ("FAILED: " + ", ".join(bad) if bad else "ok")
    return text.encode()


def _json(obj: "Any") -> bytes:
    return json.dumps(obj).encode()


def _reply(op: int, seq: int, status: int, body: bytes) -> bytes:
    return bytes((VERSION, (op | REPLY) & 0xFF, seq & 0xFF, status)) + body


# -- USB serial framing -------------------------------------------------------------


class LineLink:
    """Requests as ``#AP>`` + base64 lines; replies as ``#AP<`` + base64 lines.

    Fed with whatever bytes the port delivered; other lines (a terminal's noise, the
    REPL's echo) are ignored, and an over-long line is dropped whole.
    """

    def __init__(self, prov: "Provisioner", write: "Callable[[bytes], Any]") -> None:
        self._prov = prov
        self._write = write
        self._buf = bytearray()
        self._skip = False
        self.bad_lines = 0

    def feed(self, data: "Any") -> None:
        """Answer every request completed by ``data`` (`Provisioner.handle`)."""
        for line in self._lines(data):
            req, rsp = self._request(line)
            if req is not None:
                rsp = self._prov.handle(req)
            if rsp is not None:
                self._send(rsp)

    async def feed_async(self, data: "Any") -> None:
        """`feed`, answering through `Provisioner.handle_async` (what `serve` runs)."""
        for line in self._lines(data):
            req, rsp = self._request(line)
            if req is not None:
                rsp = await self._prov.handle_async(req)
            if rsp is not None:
                self._send(rsp)

    def _lines(self, data: "Any") -> "List[bytes]":
        """The lines ``data`` completes; the rest waits in the buffer."""
        out = []
        start = 0
        n = len(data)
        while start < n:
            nl = data.find(b"\n", start)
            end = n if nl < 0 else nl
            if not self._skip:
                self._buf.extend(data[start:end])
                if len(self._buf) > _MAX_LINE:
                    self._buf = bytearray()
                    self._skip = True
                    self.bad_lines += 1
            if nl < 0:
                break
            if self._skip:
                self._skip = False
            else:
                out.append(bytes(self._buf))
            self._buf = bytearray()
            start = nl + 1
        return out

    def _request(self, line: bytes) -> "Tuple[Optional[bytes], Optional[bytes]]":
        """(request, None) for a request line, (None, reply) for a bad one, else both None."""
        line = line.strip()
        if not line.startswith(REQUEST_PREFIX):
            return None, None
        try:
            return binascii.a2b_base64(line[len(REQUEST_PREFIX) :]), None
        except ValueError:
            self.bad_lines += 1
            return None, _reply(0, 0, BAD_REQUEST, b"line is not base64")

    def _send(self, rsp: bytes) -> None:
        self._write(REPLY_PREFIX + binascii.b2a_base64(rsp, newline=False) + b"\n")


# -- BLE framing ----------------------------------------------------------------------


def chunks(msg: "Any", size: int = CHUNK_MIN) -> "List[bytes]":
    """Split a message into BLE chunks of at most ``size`` bytes (1 header + data)."""
    step = size - 1
    out = []
    n = len(msg)
    i = 0
    seq = 0
    while True:
        part = msg[i : i + step]
        hdr = seq & SEQ_MASK
        if i == 0:
            hdr |= FIRST
        if i + step >= n:
            hdr |= LAST
        out.append(bytes((hdr,)) + bytes(part))
        i += step
        seq += 1
        if i >= n:
            return out


class Reassembler:
    """Chunks back into one message.

    A gap in the sequence drops what was gathered and counts one error (the BLE glue
    answers it with BAD_REQUEST, and the host sends the request again); the rest of
    the broken message is then dropped quietly until the next FIRST chunk. A FIRST
    chunk in the middle of a message starts over without an error (the host gave up
    on the old one).
    """

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._next = -1  # expected sequence number; -1: waiting for a FIRST chunk
        self._limit = limit
        self.errors = 0

    def feed(self, chunk: "Any") -> "Optional[bytes]":
        """Add one chunk; return the whole message when its LAST chunk arrives."""
        if len(chunk) < 1:
            return None
        hdr = chunk[0]
        if hdr & FIRST:
            self._buf = bytearray()
            self._next = 0
        elif self._next < 0:
            return None
        if hdr & SEQ_MASK != self._next & SEQ_MASK or len(self._buf) + len(chunk) - 1 > self._limit:
            self.errors += 1
            self._next = -1
            self._buf = bytearray()
            return None
        self._buf.extend(chunk[1:])
        self._next += 1
        if hdr & LAST:
            self._next = -1
            msg = bytes(self._buf)
            self._buf = bytearray()
            return msg
        return None


# -- on the board ---------------------------------------------------------------------


def held_at_boot(
    pin: "Any",
    active_low: bool = True,
    hold_ms: int = HOLD_MS,
    clock: "Callable[[], Any]" = ticks_ms,
    sleep_ms: "Optional[Callable[[int], Any]]" = None,
) -> bool:
    """True if the button is held from boot for ``hold_ms`` (blocks at most that long)."""
    if sleep_ms is None:
        import time

        # time.sleep_ms on MicroPython; the host simulator runs this on CPython.
        sleep_ms = getattr(time, "sleep_ms", None) or (lambda ms: time.sleep(ms / 1000))
    start = clock()
    while True:
        if (pin.value() == 0) != active_low:
            return False
        if ticks_diff(clock(), start) >= hold_ms:
            return True
        sleep_ms(20)


def open_store(board: "Optional[Dict[str, Any]]") -> "Any":
    """The store where the board keeps its config (as the role's ``main.py`` opens it)."""
    storage = (board or {}).get("storage") or {}
    if storage.get("kind") == "nvs":
        import esp32

        return Store(NvsBackend(esp32.NVS(NVS_NAMESPACE)))
    return Store(FileBackend(STATE_DIR))


def load_manifest(path: str = MANIFEST) -> "Dict[str, Any]":
    """Role, board and build of the firmware on the device (for HELLO)."""
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError):
        return {}
    out = {}
    for k in ("role", "board", "version"):
        if k in m:
            out[k] = m[k]
    return out


class StdinReader:
    """Non-blocking reads from the USB console (``sys.stdin``), polled."""

    def __init__(self) -> None:
        import select
        import sys

        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._stdin = getattr(sys.stdin, "buffer", sys.stdin)

    def read(self) -> "Optional[bytes]":
        out = bytearray()
        while len(out) < 256 and self._poll.poll(0):
            b: "Any" = self._stdin.read(1)
            if not b:
                break
            out.extend(b)
        return bytes(out) if out else None


def stdout_write(data: bytes) -> None:
    import sys

    sys.stdout.write(data.decode())


async def serve(
    prov: "Provisioner",
    read: "Optional[Callable[[], Any]]" = None,
    write: "Optional[Callable[[bytes], Any]]" = None,
    ble: "Any" = None,
    poll_ms: int = 20,
) -> str:
    """Run the session until END, idle or timeout; return the reason.

    ``read()`` gives the serial bytes received since the last call (None: nothing) and
    ``write(bytes)`` sends; ``ble`` is a coroutine serving BLE (`ble_serve`), cancelled
    when the session ends.
    """
    import asyncio

    link = LineLink(prov, write or stdout_write) if read is not None else None
    task = asyncio.create_task(ble) if ble is not None else None
    try:
        while not prov.expired():
            if link is not None and read is not None:
                data = read()
                if data:
                    await link.feed_async(data)
            await asyncio.sleep(poll_ms / 1000)
    finally:
        if task is not None:
            task.cancel()
    return prov.reason


async def ble_serve(prov: "Provisioner", name: str) -> None:
    """The provisioning GATT service (aioble): RX takes request chunks, TX notifies."""
    import aioble  # type: ignore[import-not-found]
    import bluetooth

    svc = aioble.Service(bluetooth.UUID(SERVICE_UUID))
    rx = aioble.BufferedCharacteristic(
        svc,
        bluetooth.UUID(RX_UUID),
        write=True,
        write_no_response=True,
        capture=True,
        max_len=CHUNK_MAX,
    )
    tx = aioble.Characteristic(svc, bluetooth.UUID(TX_UUID), notify=True)
    aioble.register_services(svc)
    while not prov.done:
        try:
            conn = await aioble.advertise(
                250_000, name=name, services=[bluetooth.UUID(SERVICE_UUID)], timeout_ms=5000
            )
        except Exception:  # advertising timed out: look at the session, advertise again
            continue
        asm = Reassembler()
        while conn.is_connected() and not prov.done:
            try:
                _, data = await rx.written(timeout_ms=1000)
            except Exception:  # timeout: loop to notice a disconnect or the session end
                continue
            msg = asm.feed(data)
            if msg is not None:
                rsp = await prov.handle_async(msg)
            elif asm.errors:
                asm.errors = 0
                rsp = _reply(0, 0, BAD_REQUEST, b"BLE chunk lost: send the request again")
            else:
                continue
            mtu = getattr(conn, "mtu", None) or 23
            size = mtu - 3
            if size < CHUNK_MIN:
                size = CHUNK_MIN
            if size > CHUNK_MAX:
                size = CHUNK_MAX
            for part in chunks(rsp, size):
                tx.notify(conn, part)


async def service_mode(
    board: "Optional[Dict[str, Any]]",
    physical: "Optional[Callable[[], bool]]",
    service: "Any" = None,
    validate: "Optional[Callable[[Dict[str, Any]], Any]]" = None,
    read: "Optional[Callable[[], Any]]" = None,
    write: "Optional[Callable[[bytes], Any]]" = None,
    ble: bool = True,
    store: "Any" = None,
    idle_ms: int = IDLE_MS,
) -> str:
    """Provisioning mode as a role's ``main.py`` runs it after `held_at_boot`.

    USB serial (the console: ``read``/``write`` default to stdin/stdout) and, where the
    firmware has ``bluetooth``, the GATT service, until the session ends. The caller
    then reboots (``machine.reset()``) so the app starts on the new config.
    """
    if store is None:
        store = open_store(board)
    prov = Provisioner(
        store,
        info=load_manifest(),
        physical=physical,
        service=service,
        validate=validate,
        idle_ms=idle_ms,
    )
    if read is None:
        read = StdinReader().read
    ble_task = None
    if ble:
        try:
            import bluetooth  # noqa: F401
        except ImportError:
            pass
        else:
            cfg = store.load_config() or {}
            ble_task = ble_serve(prov, "anshim-" + str(cfg.get("device_id", "new")))
    return await serve(prov, read, write, ble_task)


def enter_if_held(
    board: "Dict[str, Any]",
    service: "Any" = None,
    validate: "Optional[Callable[[Dict[str, Any]], Any]]" = None,
    pin_name: str = "boot_button",
    store: "Any" = None,
) -> bool:
    """The one call a role's ``main.py`` makes at boot, before it starts the app.

    If the board's button (``pins[pin_name]`` in the board file, or a role's pin of that
    name; active low when listed in ``active_low``) is held for `HOLD_MS`, run
    provisioning mode until it ends and reset the board, so the app starts on the new
    config. Otherwise return False at once (within `HOLD_MS` while the button is held).
    ``service`` is the field test (`fieldtest.FieldTest`), or a function that makes it,
    called only once the mode is entered (so the app never loads the field test's
    modules); ``store`` the app's own store (default `open_store`), which the service
    shares for its frame counters.
    """
    import asyncio

    import machine
    from machine import Pin

    n = (board.get("pins") or {}).get(pin_name)
    if not isinstance(n, int):  # a role's own pin (the bell's button on a Pico W)
        roles = board.get("role_pins") or {}
        for role in roles:
            n = (roles[role] or {}).get(pin_name)
            if isinstance(n, int):
                break
    if not isinstance(n, int):
        return False
    active_low = pin_name in (board.get("active_low") or [pin_name])
    pin = Pin(n, Pin.IN, Pin.PULL_UP if active_low else Pin.PULL_DOWN)
    if not held_at_boot(pin, active_low):
        return False
    level = 0 if active_low else 1
    if callable(service):
        service = service()
    asyncio.run(
        service_mode(
            board,
            lambda: pin.value() == level,
            service=service,
            validate=validate,
            store=store,
        )
    )
    machine.reset()
    return True
