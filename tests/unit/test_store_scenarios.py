"""firmware/lib/store.py: records that survive power cuts, counters that never repeat.

Runs under pytest and, unchanged, in the MicroPython WebAssembly port (its file system
stands in for LittleFS): tests/micropython/test_bell_mp.py. MicroPython-compatible
code only.
"""

import os
import sys

try:
    from tests.unit.test_bell_fakes import FakeNvs, FakeRtc, PowerCut
except ImportError:  # MicroPython
    from test_bell_fakes import FakeNvs, FakeRtc, PowerCut

from store import FileBackend, NvsBackend, Store

_runs = [0]


def _scratch():
    """A fresh empty directory path (not created: the backend creates it)."""
    _runs[0] += 1
    if sys.implementation.name == "micropython":
        return f"/scratch{_runs[0]}"
    import tempfile

    return os.path.join(tempfile.mkdtemp(prefix="anshim-store-"), "data")


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def test_file_backend_replaces_records_atomically():
    root = _scratch()
    s = Store(FileBackend(root))
    assert s.load_config() is None
    s.save_config({"device_id": 1, "place": "한강 공원"})
    s.save_config({"device_id": 2, "place": "남산"})
    assert s.load_config() == {"device_id": 2, "place": "남산"}
    assert not _exists(root + "/config.tmp"), "the temp file is renamed, not left"
    s.save_alarm({"c": 7, "p": 1})
    assert Store(FileBackend(root)).load_alarm() == {"c": 7, "p": 1}
    s.clear_alarm()
    assert s.load_alarm() is None


def test_torn_and_corrupt_writes_are_never_trusted():
    root = _scratch()
    s = Store(FileBackend(root))
    s.save_config({"device_id": 1})
    # Power cut while writing the next version: half a temp file. The old file stands.
    with open(root + "/config.tmp", "wb") as f:
        f.write(b"\xa5\x00\x40\x12\x34")
    assert s.load_config() == {"device_id": 1}
    # A corrupted record (a flipped bit on flash) is refused by its CRC.
    with open(root + "/config", "rb") as f:
        data = bytearray(f.read())
    data[-2] ^= 0x20
    with open(root + "/config", "wb") as f:
        f.write(data)
    assert s.load_config() is None
    # Garbage that is not even a record.
    with open(root + "/alarm", "wb") as f:
        f.write(b"hello")
    assert s.load_alarm() is None


def test_crash_between_remove_and_rename_recovers_the_complete_temp_file():
    # On a file system whose rename refuses an existing target, the backend removes
    # the old file first: a cut between the two steps leaves only the new .tmp.
    root = _scratch()
    s = Store(FileBackend(root))
    s.save_config({"device_id": 1})
    s.save_config({"device_id": 2})
    os.rename(root + "/config", root + "/config.tmp")
    assert Store(FileBackend(root)).load_config() == {"device_id": 2}


def test_nvs_backend_write_is_atomic():
    nvs = FakeNvs()
    s = Store(NvsBackend(nvs))
    s.save_config({"device_id": 1})
    nvs.cut_at_commit = nvs.commits
    try:
        s.save_config({"device_id": 2})
        raise AssertionError("the power cut did not happen")
    except PowerCut:
        pass
    nvs.cut_at_commit = -1
    assert Store(NvsBackend(nvs)).load_config() == {"device_id": 1}
    s.clear_alarm()  # nothing there: fine
    s.save_alarm({"c": 1})
    s.clear_alarm()
    assert s.load_alarm() is None


def _counters(backend_factory, rtc):
    """Cold and warm boots over one backend: counters jump only on cold boots."""
    s = Store(backend_factory(), rtc, block=8)
    assert s.open() is False
    assert [s.next_uplink() for _ in range(3)] == [0, 1, 2]
    # Warm boot (deep-sleep wake, watchdog): RTC memory has the exact counter.
    s = Store(backend_factory(), rtc, block=8)
    assert s.open() is True
    assert s.next_uplink() == 3
    # Cold boot: RTC memory lost; skip to the reservation (8), never back.
    rtc.power_loss()
    s = Store(backend_factory(), rtc, block=8)
    assert s.open() is False
    got = [s.next_uplink() for _ in range(10)]
    assert got == list(range(8, 18)), got
    # 18 handed out: reserved up to 24. A cold boot now starts at 24.
    rtc.power_loss()
    s = Store(backend_factory(), rtc, block=8)
    s.open()
    assert s.next_uplink() == 24
    return s


def test_counter_blocks_on_nvs():
    nvs = FakeNvs()
    _counters(lambda: NvsBackend(nvs), FakeRtc())
    # Writes: one per reservation (0, 8, 16, 24), none per counter.
    assert nvs.writes["fcnt"] == 4, nvs.writes


def test_counter_blocks_on_files():
    root = _scratch()
    _counters(lambda: FileBackend(root), FakeRtc())


def test_a_power_cut_while_reserving_never_repeats_a_counter():
    nvs = FakeNvs()
    s = Store(NvsBackend(nvs), None, block=4)
    s.open()
    used = [s.next_uplink() for _ in range(4)]  # 0..3, reserved 4
    nvs.cut_at_commit = nvs.commits  # the reservation of 4..7 never lands
    try:
        s.next_uplink()
        raise AssertionError("no power cut")
    except PowerCut:
        pass  # ... and counter 4 was never returned, so never sent
    nvs.cut_at_commit = -1
    s = Store(NvsBackend(nvs), None, block=4)
    s.open()
    nxt = s.next_uplink()
    assert nxt == 4 and nxt not in used


def test_rtc_state_is_checked_against_flash():
    nvs = FakeNvs()
    rtc = FakeRtc()
    s = Store(NvsBackend(nvs), rtc, block=8)
    s.open()
    for _ in range(5):
        s.next_uplink()
    good = rtc.mem
    # Garbage in RTC memory (e.g. after a firmware update): treated as a cold boot.
    rtc.mem = b"\x00" * len(good)
    s = Store(NvsBackend(nvs), rtc, block=8)
    assert s.open() is False and s.up_next == 8
    # A stale RTC state from below the flash reservation is ignored too.
    rtc.mem = good
    s = Store(NvsBackend(nvs), rtc, block=8)
    s.open()
    for _ in range(20):
        s.next_uplink()  # reserved now 32
    rtc.mem = good  # says 5
    s = Store(NvsBackend(nvs), rtc, block=8)
    assert s.open() is False and s.up_next == 32
    # The flash record lost, RTC intact: RTC is the truth (the higher, safe value).
    up = s.next_uplink()
    nvs.blobs.pop("fcnt")
    s = Store(NvsBackend(nvs), rtc, block=8)
    assert s.open() is True and s.next_uplink() == up + 1


def test_rtc_memory_is_not_written_before_open():
    rtc = FakeRtc()
    rtc.mem = b"keep"
    s = Store(NvsBackend(FakeNvs()), rtc)
    s.faults_reported = 3
    s.save_warm()
    assert rtc.mem == b"keep"


def test_failed_flash_still_hands_out_counters():
    nvs = FakeNvs()
    s = Store(NvsBackend(nvs), None, block=4)
    s.open()
    nvs.fail_writes = True
    assert [s.next_uplink() for _ in range(6)] == [0, 1, 2, 3, 4, 5]
    assert s.write_errors == 2
    try:
        s.save_alarm({"c": 1})
        raise AssertionError("save_alarm must raise when the flash fails")
    except OSError:
        pass


def test_downlink_counter_and_ensure_above():
    nvs = FakeNvs()
    s = Store(NvsBackend(nvs))
    s.open()
    assert s.down_last is None
    s.accept_downlink(41)
    s.ensure_above(99)
    assert s.next_uplink() == 100
    s = Store(NvsBackend(nvs))
    s.open()
    assert s.down_last == 41
    assert s.next_uplink() >= 101
