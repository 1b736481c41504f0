"""The bell's behaviour, scenario by scenario, in CPython and in real MicroPython.

Each ``test_*`` function here runs under pytest and, unchanged, inside the MicroPython
WebAssembly port (tests/micropython/test_bell_mp.py runs them all in one interpreter).
So only MicroPython-compatible code: plain asserts, no fixtures. What each bell put on
air is recorded in ``TRACES``; tests/unit/test_bell_gateway.py decodes those frames
with the gateway's codec.
"""

import sys

try:
    from tests.unit.test_bell_fakes import BOOT_COLD as FAKE_BOOT_COLD
    from tests.unit.test_bell_fakes import (
        CONFIG,
        DEVICE_ID,
        KEY,
        TRACES,
        PowerCut,
        Rig,
        lcg,
    )
except ImportError:  # MicroPython: the test modules are flat in /lib
    from test_bell_fakes import BOOT_COLD as FAKE_BOOT_COLD
    from test_bell_fakes import CONFIG, DEVICE_ID, KEY, TRACES, PowerCut, Rig, lcg

import codec
from bell import (
    ALARM_ACKNOWLEDGED,
    ALARM_DELIVERED,
    ALARM_NONE,
    ALARM_PENDING,
    BOOT_BUTTON,
    BOOT_COLD,
    BOOT_TIMER,
    BOOT_WARM,
    NOT_THROUGH_AFTER,
    parse_config,
)
from store import NvsBackend, Store

RETRY = codec.FLAG_RETRY
RX_OPEN = codec.FLAG_RX_OPEN

__all__ = ["TRACES"]  # read by the cross-interpreter tests


def _alarm_frames(rig, since=0):
    return [f for f in rig.frames if f[1] == "ALARM" and f[0] >= since]


def _boot_and_settle(rig, **kw):
    """Boot and let the start-up heartbeat and self-test go out."""
    rig.boot(**kw)
    rig.run(10000)
    return rig


def test_press_retries_until_ack_then_operator_then_resolved():
    rig = _boot_and_settle(Rig("press_to_resolved"))
    assert rig.types() == ["SELFTEST", "HEARTBEAT"], rig.types()  # heartbeat reflects it
    assert rig.pattern() == "IDLE"
    rig.link = False  # the gateway does not hear the bell for a while
    t0 = rig.now()
    rig.press()
    assert rig.bell.state == ALARM_PENDING
    # The alarm is on flash before its first transmission.
    rec = rig.store.load_alarm()
    assert rec is not None and rec["c"] == rig.bell.alarm_counter
    assert rig.patterns[-1][1] == "SENDING"
    rig.run_until(lambda: len(_alarm_frames(rig, t0)) >= 5, 120000)
    alarms = _alarm_frames(rig, t0)
    counter = alarms[0][2]
    assert [a[2] for a in alarms] == [counter] * 5, "retries keep the alarm's counter"
    assert alarms[0][3] == RX_OPEN
    assert all(a[3] == RX_OPEN | RETRY for a in alarms[1:])
    assert all(a[4] == alarms[0][4] for a in alarms), "retransmissions are identical"
    # Nothing else went out while it was unacknowledged.
    assert rig.types(t0) == ["ALARM"] * 5
    # Exponential back-off with jitter: each gap longer than the window, and growing.
    gaps = [alarms[i + 1][0] - alarms[i][0] for i in range(4)]
    assert gaps[0] >= 2500 + 1000 + 206 and gaps[0] < 2500 + 2000 + 206 + 50, gaps
    assert gaps[3] > gaps[0] * 3, gaps
    # "Not through yet" after N tries without an ACK, while it keeps trying.
    assert "NOT_THROUGH" in [p[1] for p in rig.patterns if p[0] >= t0]
    assert rig.pattern() == "NOT_THROUGH"
    assert NOT_THROUGH_AFTER == 3

    rig.link = True  # the gateway hears the next try and ACKs it: delivered
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 60000)
    assert rig.pattern() == "DELIVERED"
    assert len(rig.gw.events) == 1, rig.gw.events  # one event per press, never two
    assert rig.store.load_alarm()["st"] == ALARM_DELIVERED

    # Keep-alives open receive windows; the operator acknowledges: help is coming.
    t1 = rig.now()
    rig.gw.alarm_state = 2
    rig.run_until(lambda: rig.bell.state == ALARM_ACKNOWLEDGED, 60000)
    assert rig.pattern() == "ACKNOWLEDGED"
    updates = [f for f in rig.frames if f[1] == "ALARM_UPDATE" and f[0] >= t1]
    assert updates and all(u[3] == RX_OPEN for u in updates)
    assert all(u[4]["alarm_counter"] == counter and u[2] > counter for u in updates)
    # Keep-alives at a bounded rate: 20 s + up to 25 % jitter.
    rig.run(200000)
    ups = [f[0] for f in rig.frames if f[1] == "ALARM_UPDATE" and f[0] >= t1]
    assert all(ups[i + 1] - ups[i] >= 20000 for i in range(len(ups) - 1)), ups

    rig.gw.alarm_state = 3  # resolved
    rig.run_until(lambda: rig.bell.state == ALARM_NONE, 200000)
    assert rig.pattern() == "RESOLVED"
    assert rig.store.load_alarm() is None
    rig.run(3000)
    assert rig.pattern() == "IDLE"
    # Idle again: it may deep-sleep until the next heartbeat.
    assert rig.sleeps[-1][1] is True, rig.sleeps[-1]
    assert len(rig.gw.events) == 1


def test_reboot_mid_alarm_resumes_the_same_alarm():
    rig = _boot_and_settle(Rig("reboot_mid_alarm"))
    before = rig.frames[-1][2]
    rig.link = False
    rig.press()
    rig.run_until(lambda: len(_alarm_frames(rig)) >= 2, 60000)
    counter = rig.bell.alarm_counter
    assert counter > before
    # Brownout: RAM and RTC memory gone; only the flash survives.
    t0 = rig.now()
    rig.reboot(BOOT_COLD)
    assert rig.bell.state == ALARM_PENDING
    assert rig.bell.alarm_counter == counter
    rig.run(500)
    first = rig.frames[-1]
    assert first[0] >= t0 and first[1] == "ALARM", rig.types(t0)
    assert first[2] == counter and first[3] == RX_OPEN | RETRY
    # Still nothing else until it is acknowledged (the cold boot's heartbeat waits).
    rig.run(20000)
    assert set(rig.types(t0)) == {"ALARM"}
    rig.link = True
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 120000)
    rig.run(60000)
    after = [f for f in rig.frames if f[0] >= t0 and f[1] != "ALARM"]
    assert after, "heartbeat, self-test and keep-alives after the ACK"
    assert all(f[2] > counter for f in after), "later frames use higher counters"
    assert rig.gw.events == {f"{DEVICE_ID:08x}-{counter:08x}": 1}

    # A watchdog reset keeps RTC memory: again the same alarm, no counter skipped.
    up_next = rig.store.up_next
    rig.reboot(BOOT_WARM, power_loss=False)
    assert rig.store.warm and rig.store.up_next == up_next
    assert rig.bell.state == ALARM_DELIVERED and rig.bell.alarm_counter == counter
    rig.gw.alarm_state = 3
    rig.run_until(lambda: rig.bell.state == ALARM_NONE, 120000)
    assert len(rig.gw.events) == 1


def test_counters_never_repeat_across_many_reboots():
    rig = _boot_and_settle(Rig("counters_reboots", block=16))
    rand = lcg(7)
    cold = 0
    cuts = 0
    for _i in range(150):
        r = rand(10)
        if r < 3:
            rig.reboot(BOOT_COLD)  # power lost: skip to the next block
            cold += 1
        elif r < 6:
            rig.reboot(BOOT_TIMER, power_loss=False)  # deep-sleep wake: exact counter
        elif r < 7:
            rig.reboot(BOOT_WARM, power_loss=False)
        elif r < 8:
            # The battery is pulled in the middle of a flash write (a block
            # reservation, mostly): the write never lands.
            rig.nvs.cut_at_commit = rig.nvs.commits
            try:
                rig.run(64 * 3600000)
            except PowerCut:
                cuts += 1
            rig.nvs.cut_at_commit = -1
            rig.reboot(BOOT_COLD)
            cold += 1
        rig.run(1000 + rand(3) * 3600000)  # heartbeats
        if rand(20) == 0:
            rig.press()
            rig.run_until(lambda: rig.bell.state == ALARM_NONE or rig.bell.state > 1, 60000)
    counters = [f[2] for f in rig.frames]
    assert len(counters) > 300 and cuts > 5, (len(counters), cuts)
    # The gateway (Gateway.uplink) already asserted: each new counter above the last.
    for i in range(1, len(counters)):
        assert counters[i] > counters[i - 1] or (
            counters[i] == counters[i - 1] and rig.frames[i][1] == "ALARM"
        ), (i, counters[i - 1], counters[i])
    # Bounded waste and wear: each cold boot skips at most one block; the counter
    # record is written once per block plus once per cold boot that sends (and once
    # per accepted downlink), never once per uplink.
    assert counters[-1] - len(counters) <= (cold + 1) * 16, (counters[-1], cold)
    writes = rig.nvs.writes["fcnt"] - rig.gw.down
    assert writes <= len(counters) // 16 + cold + 1, (writes, len(counters), cold)


def test_second_press_during_an_alarm_is_the_same_incident():
    rig = _boot_and_settle(Rig("second_press"))
    rig.link = False
    t0 = rig.now()
    rig.press()
    rig.run_until(lambda: len(_alarm_frames(rig, t0)) >= 2, 60000)
    rig.press()
    rig.run(400)
    rig.press()
    assert rig.bell.press_count == 3
    assert rig.store.load_alarm()["p"] == 3  # persisted, survives a reboot
    rig.run_until(lambda: len(_alarm_frames(rig, t0)) >= 4, 60000)
    # Before the ACK, retransmissions stay the original ALARM (press_count 1).
    assert all(a[4]["press_count"] == 1 for a in _alarm_frames(rig, t0))
    counter = rig.bell.alarm_counter
    rig.link = True
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 120000)
    t1 = _alarm_frames(rig)[-1][0]  # the ALARM that was acknowledged
    rig.run(3000)
    # Right after the ACK, the extra presses travel in an ALARM_UPDATE.
    ups = [f for f in rig.frames if f[1] == "ALARM_UPDATE" and f[0] >= t1]
    assert ups and ups[0][4]["press_count"] == 3 and ups[0][4]["alarm_counter"] == counter
    assert ups[0][0] - t1 < 2500 + 500, ups[0][0] - t1  # after the receive window
    # A press after delivery: another update soon, but never two within 5 s.
    rig.press()
    rig.run(10000)
    ups = [f for f in rig.frames if f[1] == "ALARM_UPDATE" and f[0] >= t1]
    assert ups[1][4]["press_count"] == 4
    assert ups[1][0] - ups[0][0] >= 5000
    # One incident, one event id; no second ALARM.
    assert len(rig.gw.events) == 1
    assert len({a[2] for a in _alarm_frames(rig, t0)}) == 1
    assert rig.bell.state in (ALARM_DELIVERED, ALARM_ACKNOWLEDGED)


def test_stuck_button_is_reported_once_and_cleared_on_release():
    rig = _boot_and_settle(Rig("stuck_button"))
    t0 = rig.now()
    rig.bell.button(True)  # pressed ... and stays down (a wedged button)
    rig.run(40000)
    assert rig.bell.state != ALARM_PENDING  # the press itself was an alarm, delivered
    faults = [f for f in rig.frames if f[1] == "FAULT" and f[0] >= t0]
    assert len(faults) == 1 and faults[0][4]["code"] == 3 and faults[0][4]["active"] == 1
    assert faults[0][4]["detail"] >= 30
    assert len(_alarm_frames(rig, t0)) == 1 and rig.bell.press_count == 1
    # While stuck, a deep sleep must not arm the button wake (it would wake at once).
    rig.gw.alarm_state = 3
    rig.run_until(lambda: rig.bell.state == ALARM_NONE, 200000)
    rig.run(5000)
    assert rig.sleeps[-1][1] is True and rig.sleeps[-1][2] is False, rig.sleeps[-1]
    # A deep-sleep timer wake with the button still down: stuck, not a new alarm.
    t1 = rig.now()
    rig.reboot(BOOT_TIMER, power_loss=False, pressed=True)
    rig.run(10000)
    assert "ALARM" not in rig.types(t1) and "FAULT" not in rig.types(t1), rig.types(t1)
    # Released: the fault clears, once, and the heartbeat bitmap agrees.
    rig.bell.button(False)
    rig.run(3600000)
    faults = [f for f in rig.frames if f[1] == "FAULT" and f[0] >= t1]
    assert len(faults) == 1 and faults[0][4]["active"] == 0, faults
    hb = [f for f in rig.frames if f[1] == "HEARTBEAT"]
    assert hb[-1][4]["faults"] & 0x04 == 0


def test_tamper_reported_once_per_change():
    rig = _boot_and_settle(Rig("tamper"))
    t0 = rig.now()
    # The enclosure is pried open: the switch bounces, then stays open.
    for level in (True, False, True, False, True):
        rig.bell.tamper(level)
        rig.run(40)
    rig.run(5000)
    faults = [f for f in rig.frames if f[1] == "FAULT" and f[0] >= t0]
    assert [(f[4]["code"], f[4]["active"]) for f in faults] == [(2, 1)], faults
    # Deep sleep while open must not arm the tamper wake.
    rig.run(60000)
    assert rig.sleeps[-1][3] is False
    # A press while open: the ALARM says so (alarm_flags bit 0).
    rig.press()
    rig.run(4000)
    assert _alarm_frames(rig, t0)[0][4]["alarm_flags"] & 0x01
    rig.gw.alarm_state = 3
    rig.run_until(lambda: rig.bell.state == ALARM_NONE, 200000)
    # After a deep sleep (timer wake, still open): no second report.
    t1 = rig.now()
    rig.reboot(BOOT_TIMER, power_loss=False, tamper=True)
    rig.run(10000)
    assert "FAULT" not in rig.types(t1)
    hb = [f for f in rig.frames if f[1] == "HEARTBEAT" and f[0] >= t1]
    assert hb and hb[0][4]["faults"] & 0x02
    rig.bell.tamper(False)  # closed again
    rig.run(5000)
    faults = [f for f in rig.frames if f[1] == "FAULT" and f[0] >= t1]
    assert [(f[4]["code"], f[4]["active"]) for f in faults] == [(2, 0)]


def test_low_battery_with_hysteresis():
    rig = _boot_and_settle(Rig("low_battery"))
    t0 = rig.now()
    rig.sensors.battery = 3240
    rig.run(3600000 + 5000)  # the next heartbeat measures it
    faults = [f for f in rig.frames if f[1] == "FAULT" and f[0] >= t0]
    assert [(f[4]["code"], f[4]["active"], f[4]["detail"]) for f in faults] == [(4, 1, 3240)]
    hb = [f for f in rig.frames if f[1] == "HEARTBEAT" and f[0] >= t0]
    assert hb[-1][4]["faults"] & 0x08 and hb[-1][4]["battery_mv"] == 3240
    rig.sensors.battery = 3350  # above the threshold, inside the hysteresis: still low
    rig.run(3600000)
    assert len([f for f in rig.frames if f[1] == "FAULT" and f[0] >= t0]) == 1
    # A press now says "low battery" in the ALARM itself.
    rig.press()
    rig.run(4000)
    assert _alarm_frames(rig, t0)[0][4]["alarm_flags"] & 0x02
    rig.gw.alarm_state = 3
    rig.run_until(lambda: rig.bell.state == ALARM_NONE, 200000)
    rig.sensors.battery = 3420  # a fresh cell
    rig.run(3600000)
    faults = [f for f in rig.frames if f[1] == "FAULT" and f[0] >= t0]
    assert [(f[4]["code"], f[4]["active"]) for f in faults] == [(4, 1), (4, 0)]


def test_heartbeat_contents_and_schedule():
    rig = _boot_and_settle(Rig("heartbeat"))
    hb = [f for f in rig.frames if f[1] == "HEARTBEAT"]
    assert len(hb) == 1 and hb[0][3] == 0  # no RX_OPEN: a heartbeat costs no RX window
    f = hb[0][4]
    assert f["battery_mv"] == 3600 and f["temperature"] == 21 and f["uptime_h"] == 5
    assert f["fw_version"] == 0x10 and f["faults"] == 0 and f["last_rssi"] == 0
    # Idle: deep sleep until the next heartbeat, with the button wake armed.
    sleep_ms, deep, wake_button, wake_tamper = rig.sleeps[-1]
    assert deep and wake_button and wake_tamper
    assert 3600000 - 20000 < sleep_ms <= 3600000, sleep_ms
    # An alarm brings a downlink: the next heartbeat reports its RSSI/SNR.
    rig.press()
    rig.gw.alarm_state = 3
    rig.run_until(lambda: rig.bell.state == ALARM_NONE, 60000)
    rig.reboot(BOOT_TIMER, power_loss=False)  # the deep-sleep timer: heartbeat now
    rig.run(3000)
    f = [x for x in rig.frames if x[1] == "HEARTBEAT"][-1][4]
    assert f["last_rssi"] == -87 and f["last_snr"] == -2, f
    # The interval is configurable.
    cfg = dict(CONFIG)
    cfg["heartbeat_s"] = 600
    Store(NvsBackend(rig.nvs)).save_config(cfg)
    t0 = rig.now()
    rig.reboot(BOOT_COLD)
    rig.run(3600000 + 5000)
    n = len([x for x in rig.frames if x[1] == "HEARTBEAT" and x[0] >= t0])
    assert n == 7, n  # at boot, then every 10 min


def test_selftest_failure_is_reported():
    rig = Rig("selftest")
    rig.selftest = (0x07, 0x05)  # LED, buzzer, radio ran; the buzzer failed
    rig.boot()
    rig.run(10000)
    st = [f for f in rig.frames if f[1] == "SELFTEST"]
    assert st and st[0][4]["ran"] == 7 and st[0][4]["passed"] == 5
    faults = [f for f in rig.frames if f[1] == "FAULT"]
    assert [(f[4]["code"], f[4]["active"], f[4]["detail"]) for f in faults] == [(5, 1, 2)]
    # The next day's self-test passes: the fault clears.
    rig.selftest = (0x07, 0x07)
    rig.run(24 * 3600000 + 60000)
    faults = [f for f in rig.frames if f[1] == "FAULT"]
    assert [(f[4]["code"], f[4]["active"]) for f in faults] == [(5, 1), (5, 0)]
    assert len([f for f in rig.frames if f[1] == "SELFTEST"]) == 2


def test_replayed_and_foreign_downlinks_are_rejected():
    rig = _boot_and_settle(Rig("replay"))
    rig.press()
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 60000)
    old_ack = rig.acks[-1]
    # A recorded "resolved" for this very alarm, replayed under an old counter.
    resolved = codec.encode(
        "ACK",
        DEVICE_ID,
        rig.gw.down - 1,
        0,
        {"acked_counter": rig.bell.alarm_counter, "alarm_state": 3},
        KEY,
    )
    for data in (old_ack, resolved):
        assert rig.bell.received(data) is False
    # The same counter again is a replay; an older one reconstructs 0x10000 higher
    # and falls outside the counter window (PROTOCOL.md 1.3): both dropped.
    assert rig.bell.rx_replayed == 1 and rig.bell.rx_rejected == 1
    assert rig.bell.state == ALARM_DELIVERED
    # Another bell's ACK, a forged MIC, garbage: dropped, counted.
    other = codec.encode("ACK", DEVICE_ID + 1, 999, 0, {"acked_counter": 1, "alarm_state": 3}, KEY)
    forged = bytearray(rig.acks[-1])
    forged[-1] ^= 1
    for data in (other, bytes(forged), b"\x00" * 21, b"hello"):
        assert rig.bell.received(data) is False
    assert rig.bell.rx_rejected == 5 and rig.bell.state == ALARM_DELIVERED
    # The replay protection survives a reboot (the downlink counter is on flash).
    rig.reboot(BOOT_COLD)
    assert rig.bell.received(old_ack) is False and rig.bell.rx_replayed == 1


def test_provisioning_mode_until_a_config_arrives():
    rig = Rig("provisioning", config=None)
    rig.boot()
    rig.run(12000)
    assert rig.bell.provisioning and rig.pattern() == "PROVISIONING"
    rig.press()
    rig.run(6000)
    assert rig.frames == [], "no key: nothing can be sent"
    for bad in ({"device_id": 5}, {"device_id": 5, "key": "zz" * 16}):
        try:
            parse_config(bad)
            raise AssertionError(f"accepted {bad!r}")
        except ValueError:
            pass
    Store(NvsBackend(rig.nvs)).save_config(CONFIG)  # provisioning writes the config
    rig.run(12000)
    assert not rig.bell.provisioning and rig.pattern() == "IDLE"
    assert rig.types() == ["SELFTEST", "HEARTBEAT"], rig.types()


def test_button_wake_from_deep_sleep_is_a_press():
    rig = _boot_and_settle(Rig("button_wake"))
    t0 = rig.now()
    # The press was over before MicroPython booted: the ext0 wake alone is the press.
    rig.reboot(BOOT_BUTTON, power_loss=False, pressed=False)
    rig.run(300)
    assert rig.types(t0) == ["ALARM"], rig.types(t0)
    assert [p[1] for p in rig.patterns if p[0] >= t0][:1] == ["SENDING"]
    # Debounce: contact bounce after a press is not a second press.
    rig.run(10000)
    for level in (True, False, True, False, True, False):
        rig.bell.button(level)
        rig.run(5)
    rig.run(1000)
    assert rig.bell.press_count == 2, rig.bell.press_count


def test_channel_busy_and_radio_failure():
    rig = _boot_and_settle(Rig("busy"))
    t0 = rig.now()
    rig.busy = True
    rig.press()
    rig.run(20000)
    assert rig.bell.state == ALARM_PENDING and rig.pattern() == "NOT_THROUGH"
    rig.busy = False
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 120000)
    a = _alarm_frames(rig, t0)
    # The transmissions that found the channel busy never went out; the first one
    # that did is marked RETRY only if an earlier one had gone out (none had).
    assert a[0][3] == RX_OPEN, a[0]


def test_keepalives_stop_after_the_alarm_timeout():
    rig = _boot_and_settle(Rig("alarm_timeout"))
    t0 = rig.now()
    rig.press()
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 60000)
    delivered = _alarm_frames(rig)[-1][0]  # its ACK came in the window after this
    rig.run_until(lambda: rig.bell.state == ALARM_NONE, 1900000)
    assert 1800000 <= rig.now() - delivered < 1800000 + 5000
    ups = [f for f in rig.frames if f[1] == "ALARM_UPDATE" and f[0] >= t0]
    assert 60 <= len(ups) <= 90, len(ups)  # every 20-25 s for 30 min
    rig.run(600000)
    assert "ALARM_UPDATE" not in rig.types(delivered + 1800000 + 5000)
    assert rig.pattern() == "IDLE" and rig.store.load_alarm() is None


def test_commands_selftest_reboot_and_config():
    rig = _boot_and_settle(Rig("commands"))
    rig.press()
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 60000)

    def command(fields, flags=0):
        rig.gw.down += 1
        return codec.encode("COMMAND", DEVICE_ID, rig.gw.down, flags, fields, KEY)

    t0 = rig.now()
    # MORE: another downlink follows, the glue keeps listening.
    assert rig.bell.received(command({"opcode": "SELFTEST"}, codec.FLAG_MORE)) is True
    rig.bell.received(command({"opcode": "CONFIG", "key": "heartbeat_s", "value": "900"}))
    assert rig.bell.cfg["heartbeat_s"] == 900
    assert rig.store.load_config()["heartbeat_s"] == 900  # kept for the next boot
    rig.bell.received(command({"opcode": "CONFIG", "key": "heartbeat_s", "value": "5"}))
    assert rig.bell.cfg["heartbeat_s"] == 900  # out of range: ignored
    rig.run(5000)
    assert "SELFTEST" in rig.types(t0)
    rig.bell.received(command({"opcode": "REBOOT"}))
    rig.run(100)
    assert rig.commands_reboot == 1


def test_crew_test_mode_marks_alarms():
    cfg = dict(CONFIG)
    cfg["test"] = True
    rig = _boot_and_settle(Rig("test_mode", config=cfg))
    rig.press()
    rig.run_until(lambda: rig.bell.state == ALARM_DELIVERED, 60000)
    rig.run(30000)
    marked = [f for f in rig.frames if f[1] in ("ALARM", "ALARM_UPDATE")]
    assert marked and all(f[3] & codec.FLAG_TEST for f in marked)
    assert not any(f[3] & codec.FLAG_TEST for f in rig.frames if f[1] == "HEARTBEAT")


def test_rig_constants_match_the_bell():
    assert FAKE_BOOT_COLD == BOOT_COLD


if __name__ == "__main__":  # python tests/unit/test_bell_scenarios.py
    for _name in sorted(dir(sys.modules[__name__])):
        if _name.startswith("test_"):
            getattr(sys.modules[__name__], _name)()
            print("ok", _name)
