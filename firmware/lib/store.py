"""A device's persistent state: config, the pending alarm, frame counters.

What has to survive, and where it lives:

* **Flash** (a `FileBackend` on LittleFS/FAT, or an `NvsBackend` on ESP32's NVS):
  the config written by provisioning, the pending alarm record, and the counter
  record (uplink block reservation, last accepted downlink counter). Each record is
  framed ``magic u8, length u16, crc32 u32, data`` so a torn or corrupted record is
  recognised and never trusted.
* **RTC memory** (optional, ESP32 ``machine.RTC().memory()``, 2 KB, kept through deep
  sleep, soft and watchdog resets but not power loss): the exact next uplink counter
  and a few bytes of state that only need to outlive a deep sleep (heartbeats since
  the last self-test, faults already reported, last downlink RSSI/SNR, power-on time).

Frame counters (PROTOCOL.md 1.3) never repeat and never go down, across any reboot,
without a flash write per frame:

* The counter record holds ``reserved``: every counter below it may have been used.
  Before a counter ``>= reserved`` is handed out, ``reserved`` moves one block
  (`COUNTER_BLOCK`) ahead and is written to flash *first*.
* A cold boot (power-on, brownout; or any boot without RTC memory, e.g. the Pico W,
  whose deep sleep is a reset) starts at ``reserved``: it skips at most one block.
* A warm boot (ESP32 deep-sleep wake, soft or watchdog reset) continues from the exact
  counter kept in RTC memory, so an hourly wake costs no flash write and no gap.

Flash wear: one counter write per `COUNTER_BLOCK` frames plus one per cold boot that
sends; config and alarm records only on provisioning and alarms. The gateway accepts
a counter at most 16384 ahead of the last it heard (MAX_FCNT_GAP): that is 512 cold
boots that each send without being heard, far beyond a real outage.

Constructors do no I/O; `Store.open()` reads the records at boot.
"""

import json
import os
import struct
from binascii import crc32

from compat import const

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Union

    Buffer = Union[bytes, bytearray, memoryview]

COUNTER_BLOCK = const(32)  # uplink counters reserved per flash write
MAX_RECORD = const(1024)  # bytes of one record's data: config JSON is a few hundred
MAX_COUNTER = const(0xFFFFFFFF)

_MAGIC = const(0xA5)
_HDR_FMT = ">BHI"  # magic, data length, CRC-32 of the data
_HDR_LEN = const(7)
_COUNTERS_FMT = ">Ii"  # uplink reserved, last downlink accepted (-1: none yet)
_COUNTERS_LEN = const(8)

# RTC memory layout: magic, next uplink, heartbeats since self-test, faults active,
# faults reported, last downlink RSSI (-dBm), last downlink SNR (dB), power-on time
# (RTC seconds), then a CRC-32 of those bytes: 16 + 4 bytes of the ESP32's 2048.
_WARM_FMT = ">HIHBBBbI"
_WARM_LEN = const(16)
_WARM_TOTAL = const(20)  # with the CRC
_WARM_MAGIC = const(0xA55B)

CONFIG = "config"
ALARM = "alarm"
COUNTERS = "fcnt"


class FileBackend:
    """Records as files in one directory, each replaced atomically.

    A write goes to ``<name>.tmp``, is flushed, then renamed over ``<name>``: LittleFS
    renames atomically (a power cut leaves the old or the new file, never half of
    one), and so does POSIX (the WebAssembly port's file system, CPython). On a file
    system whose rename refuses an existing target, the target is removed first; a
    cut between the two steps leaves a complete ``.tmp``, which `read` falls back to.
    """

    def __init__(self, root: str) -> None:
        self._root = root.rstrip("/")
        self._made = False

    def _path(self, name: str) -> str:
        return self._root + "/" + name

    def read(self, name: str, buf: bytearray) -> int:
        """Read the record into ``buf``; return its length, or -1 if there is none."""
        path = self._path(name)
        for p in (path, path + ".tmp"):
            try:
                with open(p, "rb") as f:
                    n = f.readinto(buf)
                    return 0 if n is None else n
            except OSError:
                pass
        return -1

    def write(self, name: str, data: "Buffer") -> None:
        if not self._made:
            try:
                os.mkdir(self._root)
            except OSError:  # already there
                pass
            self._made = True
        path = self._path(name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            _fsync(f)
        try:
            os.rename(tmp, path)
        except OSError:  # FAT and Windows refuse an existing target
            os.remove(path)
            os.rename(tmp, path)

    def delete(self, name: str) -> None:
        path = self._path(name)
        for p in (path, path + ".tmp"):
            try:
                os.remove(p)
            except OSError:
                pass


def _fsync(f: "Any") -> None:
    # CPython: push the data to the disk before the rename makes it visible.
    # MicroPython's VFS commits on close and has no fsync; nothing to do there.
    fsync = getattr(os, "fsync", None)
    if fsync is not None:
        try:
            fsync(f.fileno())
        except (AttributeError, OSError):
            pass


class NvsBackend:
    """Records as blobs in one ESP32 NVS namespace (duck-typed on ``esp32.NVS``).

    ESP-IDF's NVS keeps the old value of a key until the new one is fully written, so
    a blob write is atomic by itself; ``commit()`` makes it durable. Keys are at most
    15 characters (NVS_KEY_NAME_MAX_SIZE - 1).
    """

    def __init__(self, nvs: "Any") -> None:
        self._nvs = nvs

    def read(self, name: str, buf: bytearray) -> int:
        try:
            return self._nvs.get_blob(name, buf)
        except OSError:  # missing key, or a blob longer than buf (never written by us)
            return -1

    def write(self, name: str, data: "Buffer") -> None:
        self._nvs.set_blob(name, data)
        self._nvs.commit()

    def delete(self, name: str) -> None:
        try:
            self._nvs.erase_key(name)
            self._nvs.commit()
        except OSError:
            pass


class Store:
    """Config, pending alarm and counters over one backend (and RTC memory if any).

    ``backend`` is a `FileBackend` or `NvsBackend`; ``rtc`` is an object with
    ``memory()`` / ``memory(data)`` like ``machine.RTC()``, or None where RAM does not
    survive a deep sleep. Write methods raise OSError when the flash fails; callers
    decide what a failure means (the bell reports a storage fault and carries on),
    except `next_uplink`, which must always hand out a counter (see there).
    """

    def __init__(self, backend: "Any", rtc: "Any" = None, block: int = COUNTER_BLOCK) -> None:
        if block < 1:
            raise ValueError("counter block must be at least 1")
        self._backend = backend
        self._rtc = rtc
        self._block = block
        self._buf = bytearray(_HDR_LEN + MAX_RECORD)
        self._warm = bytearray(_WARM_TOTAL)
        self.up_next = 0  # the next uplink counter `next_uplink` hands out
        self._reserved = 0  # persisted: counters below this may have been used
        self.down_last: "Optional[int]" = None  # last downlink counter accepted
        self.warm = False  # True when `open` found valid RTC state
        self.counter_writes = 0  # flash writes of the counter record (wear, tests)
        self.write_errors = 0  # counter-record writes that failed
        self._opened = False  # RTC memory is written only after `open` read it
        # Kept in RTC memory only: lost on a cold boot, which is harmless for each.
        self.heartbeats = 0  # heartbeats since the last self-test
        self.faults_active = 0  # fault bitmap: faults present now
        self.faults_reported = 0  # fault bitmap last reported on air
        self.last_rssi = 0  # last downlink RSSI, dBm (0: none)
        self.last_snr = 0  # last downlink SNR, dB
        self.power_on_s = 0  # RTC seconds at the last cold boot (uptime), set by main

    # -- framed records --------------------------------------------------------------

    def _load(self, name: str) -> "Optional[memoryview]":
        buf = self._buf
        n = self._backend.read(name, buf)
        if n < _HDR_LEN:
            return None
        magic, length, crc = struct.unpack_from(_HDR_FMT, buf, 0)
        if magic != _MAGIC or _HDR_LEN + length > n:
            return None
        data = memoryview(buf)[_HDR_LEN : _HDR_LEN + length]
        if crc32(data) & 0xFFFFFFFF != crc:
            return None
        return data

    def _save(self, name: str, data: "Buffer") -> None:
        n = len(data)
        if n > MAX_RECORD:
            raise ValueError("record %s is %d bytes, at most %d" % (name, n, MAX_RECORD))
        rec = bytearray(_HDR_LEN + n)
        struct.pack_into(_HDR_FMT, rec, 0, _MAGIC, n, crc32(data) & 0xFFFFFFFF)
        rec[_HDR_LEN:] = data
        self._backend.write(name, rec)

    def _load_json(self, name: str) -> "Optional[Dict[str, Any]]":
        data = self._load(name)
        if data is None:
            return None
        try:
            value = json.loads(bytes(data))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    # -- config and the pending alarm ------------------------------------------------

    def load_config(self) -> "Optional[Dict[str, Any]]":
        """The config dict written by provisioning, or None (missing or corrupt)."""
        return self._load_json(CONFIG)

    def save_config(self, config: "Dict[str, Any]") -> None:
        self._save(CONFIG, json.dumps(config).encode())

    def load_alarm(self) -> "Optional[Dict[str, Any]]":
        return self._load_json(ALARM)

    def save_alarm(self, record: "Dict[str, Any]") -> None:
        self._save(ALARM, json.dumps(record).encode())

    def clear_alarm(self) -> None:
        self._backend.delete(ALARM)

    # -- counters --------------------------------------------------------------------

    def open(self) -> bool:
        """Read the counters at boot; return True on a warm boot (RTC state valid).

        Never writes: the jump to a new block is written when the first counter of
        this boot is handed out, so a boot that sends nothing costs no flash write.
        """
        reserved = 0
        down = -1
        data = self._load(COUNTERS)
        if data is not None and len(data) == _COUNTERS_LEN:
            reserved, down = struct.unpack_from(_COUNTERS_FMT, data, 0)
        self._reserved = reserved
        self.down_last = None if down < 0 else down
        self.warm = False
        self.up_next = reserved  # cold: anything below `reserved` may have been sent
        w = self._read_warm()
        # The exact counter in RTC memory normally lies within the current reservation.
        # Below it, the RTC state is stale (the flash is newer): ignore it. Above it,
        # the counter record was lost or rolled back: the RTC counter is the truth, and
        # the higher value is the safe one (it can never repeat a counter).
        if w is not None and w[1] >= reserved - self._block:
            self.up_next = w[1]
            self.heartbeats = w[2]
            self.faults_active = w[3]
            self.faults_reported = w[4]
            self.last_rssi = -w[5]
            self.last_snr = w[6]
            self.power_on_s = w[7]
            self.warm = True
        else:
            self.heartbeats = 0
            self.faults_active = 0
            self.faults_reported = 0
            self.last_rssi = 0
            self.last_snr = 0
        self._opened = True
        return self.warm

    def next_uplink(self) -> int:
        """Hand out the next uplink counter, reserving a new block in flash if needed.

        The reservation is written before the counter is returned, so after a power
        cut the next boot starts above it. If that write fails the counter is handed
        out anyway and `write_errors` counts it: an alarm must go out even when the
        flash has died (the risk, a repeated counter after a later power cut, is the
        lesser one).
        """
        c = self.up_next
        if c > MAX_COUNTER:
            raise ValueError("uplink counter exhausted")
        if c >= self._reserved:
            self._reserved = c + self._block
            try:
                self._save_counters()
            except OSError:
                self.write_errors += 1
        self.up_next = c + 1
        self.save_warm()
        return c

    def ensure_above(self, counter: int) -> None:
        """Make sure no counter ``<= counter`` is handed out (e.g. a pending alarm's)."""
        if self.up_next <= counter:
            self.up_next = counter + 1

    def accept_downlink(self, counter: int) -> None:
        """Record an authenticated downlink's counter; older ones are replays from now."""
        self.down_last = counter
        self._save_counters()

    def _save_counters(self) -> None:
        rec = bytearray(_COUNTERS_LEN)
        down = -1 if self.down_last is None else self.down_last
        struct.pack_into(_COUNTERS_FMT, rec, 0, self._reserved, down)
        self.counter_writes += 1
        self._save(COUNTERS, rec)

    # -- RTC memory ------------------------------------------------------------------

    def _read_warm(self) -> "Optional[tuple]":
        if self._rtc is None:
            return None
        try:
            raw = self._rtc.memory()
        except OSError:
            return None
        if len(raw) < _WARM_TOTAL:
            return None
        crc = struct.unpack_from(">I", raw, _WARM_LEN)[0]
        if crc32(memoryview(raw)[0:_WARM_LEN]) & 0xFFFFFFFF != crc:
            return None
        w = struct.unpack_from(_WARM_FMT, raw, 0)
        return w if w[0] == _WARM_MAGIC else None

    def save_warm(self) -> None:
        """Write the RTC-memory state (a RAM write: cheap, no flash wear)."""
        if self._rtc is None or not self._opened:
            return
        w = self._warm
        rssi = -self.last_rssi
        rssi = 0 if rssi < 0 else (0xFF if rssi > 0xFF else rssi)
        snr = self.last_snr
        snr = -0x80 if snr < -0x80 else (0x7F if snr > 0x7F else snr)
        struct.pack_into(
            _WARM_FMT,
            w,
            0,
            _WARM_MAGIC,
            self.up_next,
            self.heartbeats if self.heartbeats < 0xFFFF else 0xFFFF,
            self.faults_active & 0xFF,
            self.faults_reported & 0xFF,
            rssi,
            snr,
            self.power_on_s & 0xFFFFFFFF,
        )
        struct.pack_into(">I", w, _WARM_LEN, crc32(memoryview(w)[0:_WARM_LEN]) & 0xFFFFFFFF)
        self._rtc.memory(w)
