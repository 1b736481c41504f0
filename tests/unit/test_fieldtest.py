"""The field test on the device (provisioning mode's TEST), in CPython.

The cases of test_fieldtest_rig.py -- the bell's and the light's real field-test
service on a fake modem, NVS and RTC memory -- are judged here as the crew and the
gateway would see them: the replies with the host's decoder (tools/crew/provisioning.py),
the bytes on air with the gateway's codec (protocol/frames.py). The same checks run on
the MicroPython run of the same cases (tests/micropython/test_fieldtest_mp.py).

Below them, `Provisioner`'s two ways to run a TEST: awaited (`handle_async`, what
`serve` and `ble_serve` use, for the firmware's coroutine service) and at once
(`handle`, for a service of plain methods, as the emulated board has).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from protocol import frames
from protocol.frames import DeviceKey, Flags, FrameType
from tools.crew import provisioning as host

from . import test_fieldtest_rig as rig
from .test_bell_fakes import DEVICE_ID, KEY

dev = rig.provision  # firmware/lib/provision.py, on sys.path through the rig's imports

Status = host.Status
BELL_CHECKS = {
    "radio": True,
    "storage": True,
    "button": True,
    "tamper": True,
    "led": True,
    "buzzer": True,
    "battery": True,
}
TEST_COUNTER = 64  # HISTORY uplinks used the first block of 32 and most of the next:
# the power-up (RTC memory lost) starts at the reservation, 64


def replies(out: dict[str, Any]) -> list[host.Reply]:
    return [host.decode_reply(bytes.fromhex(r)) for r in out["replies"]]


def on_air(hexed: str, last: int | None = None) -> frames.Frame:
    """A frame as the gateway decodes it, having accepted ``last`` from the device."""
    return frames.decode(
        bytes.fromhex(hexed), lambda d, _dir: DeviceKey.of(KEY, last) if d == DEVICE_ID else None
    )


def check_sent_test_alarm(out: dict[str, Any]) -> tuple[dict[str, Any], frames.Frame]:
    """OK, the frame reported is the one on air: an ALARM, TEST and RX_OPEN, under the
    device's key; the app's next frame after the reset is above its counter."""
    hello, test, again = replies(out)
    assert hello.status is Status.OK and again.status is Status.OK  # the mode goes on
    assert test.status is Status.OK, test.text
    answer = test.json()
    assert len(out["sent"]) == 1
    frame = on_air(out["sent"][0])
    assert frame.type is FrameType.ALARM and frame.device_id == DEVICE_ID
    assert frame.flags & Flags.TEST and frame.flags & Flags.RX_OPEN
    assert answer["frame"]["counter"] == frame.counter == TEST_COUNTER
    assert answer["frame"]["type"] == "alarm" and answer["frame"]["test"] is True
    check_app_goes_on_above(out, frame.counter)
    return answer, frame


def check_app_goes_on_above(out: dict[str, Any], counter: int) -> None:
    """After the reset (RTC memory kept) and after a power cut (lost), the app's first
    frame carries a higher counter: the gateway, which heard ``counter``, takes it."""
    for name in ("app_warm", "app_cold"):
        nxt = on_air(out[name], counter)
        assert nxt.counter > counter, (name, nxt.counter, counter)
    assert on_air(out["app_warm"], counter).counter == counter + 1  # exact, no gap


def check_failed(out: dict[str, Any], *words: str) -> str:
    """FAILED with a text naming the cause; the session goes on (HELLO after it)."""
    hello, test, again = replies(out)
    assert hello.status is Status.OK and again.status is Status.OK
    assert test.status is Status.FAILED, test
    for w in words:
        assert w in test.text, (w, test.text)
    return test.text


def check_bell(out: dict[str, Any]) -> None:
    answer, frame = check_sent_test_alarm(out)
    assert answer["selftest"]["ok"] is True
    assert answer["selftest"]["checks"] == BELL_CHECKS
    assert answer["selftest"]["battery_mv"] == 3626
    assert isinstance(frame.payload, frames.Alarm)
    assert frame.payload.button == 1 and frame.payload.press_count == 1  # config's button
    assert 3600 <= frame.payload.battery_mv <= 3640  # the battery as measured (20 mV steps)
    # The gateway's ACK came back in the receive window: the downlink works too.
    assert answer["frame"]["downlink"] == {"rssi": -87, "snr": -9.25, "alarm_state": 1}
    assert out["down_last"] == 1  # its counter kept: a replayed ACK is refused later
    # LED and piezo on for the readings (the crew hears it), then off.
    assert out["shown"] == [[100, True], [0, False]]


def check_bell_tamper_open(out: dict[str, Any]) -> None:
    answer, _frame = check_sent_test_alarm(out)
    st = answer["selftest"]
    assert st["ok"] is False and st["checks"] == {**BELL_CHECKS, "tamper": False}
    assert st["notes"] == {"tamper": "enclosure open"}


def check_bell_dead_radio(out: dict[str, Any]) -> None:
    text = check_failed(out, "radio failed sending frame 64", "BUSY timeout")
    assert text.endswith("self-test FAILED: radio")
    assert out["sent"] == []
    check_app_goes_on_above(out, TEST_COUNTER)  # the counter was taken: never reused


def check_bell_no_radio(out: dict[str, Any]) -> None:
    text = check_failed(out, "radio: RuntimeError: Invalid initial status")
    assert text.endswith("self-test FAILED: radio")
    assert out["sent"] == []


def check_bell_channel_busy(out: dict[str, Any]) -> None:
    check_failed(out, "channel busy", "frame 64 not sent")
    assert out["sent"] == []
    check_app_goes_on_above(out, TEST_COUNTER)


def check_bell_alarm_pending(out: dict[str, Any]) -> None:
    check_failed(out, "alarm (counter 39) is not acknowledged yet")
    assert out["sent"] == []
    # The app resumes the pending alarm with its own counter, the highest on air.
    for name in ("app_warm", "app_cold"):
        alarm = on_air(out[name], 38)
        assert alarm.type is FrameType.ALARM and alarm.counter == 39
        assert alarm.flags & Flags.RETRY and not alarm.flags & Flags.TEST


def check_bell_flash_dead(out: dict[str, Any]) -> None:
    check_failed(out, "frame counter 64 could not be reserved in flash")
    assert out["sent"] == []


def check_light(out: dict[str, Any]) -> None:
    answer, frame = check_sent_test_alarm(out)
    st = answer["selftest"]
    assert st["ok"] is True
    assert st["checks"] == {"radio": True, "storage": True, "lamp": True}
    assert st["lamp_ma"] == 350 and st["photocell_mv"] == 1200
    assert out["outputs"] == [1000, 0]  # full output for the lamp check, then off
    assert isinstance(frame.payload, frames.Alarm)
    assert frame.payload.battery_mv == 0 and frame.payload.button == 0  # mains powered
    assert answer["frame"]["downlink"]["rssi"] == -87
    assert isinstance(on_air(out["app_cold"], TEST_COUNTER).payload, frames.LightStatus)


def check_light_lamp_broken(out: dict[str, Any]) -> None:
    answer, _frame = check_sent_test_alarm(out)  # the radio works: the frame still goes out
    st = answer["selftest"]
    assert st["ok"] is False and st["checks"]["lamp"] is False and st["lamp_ma"] == 0
    assert st["notes"] == {"lamp": "0 mA at 100 %, expected about 350 mA"}


def check_light_dead_radio(out: dict[str, Any]) -> None:
    check_failed(out, "radio failed sending frame 64", "self-test FAILED: radio")
    assert out["sent"] == []


CHECKS = {
    "bell": check_bell,
    "bell_tamper_open": check_bell_tamper_open,
    "bell_dead_radio": check_bell_dead_radio,
    "bell_no_radio": check_bell_no_radio,
    "bell_channel_busy": check_bell_channel_busy,
    "bell_alarm_pending": check_bell_alarm_pending,
    "bell_flash_dead": check_bell_flash_dead,
    "light": check_light,
    "light_lamp_broken": check_light_lamp_broken,
    "light_dead_radio": check_light_dead_radio,
}


@pytest.fixture(scope="module")
def cpython_run() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(rig.run_all()))  # as MicroPython prints it
    return result


def test_every_case_is_checked(cpython_run: dict[str, Any]) -> None:
    assert set(cpython_run) == set(CHECKS)


@pytest.mark.parametrize("case", sorted(CHECKS))
def test_field_test_case(cpython_run: dict[str, Any], case: str) -> None:
    CHECKS[case](cpython_run[case])


# -- Provisioner: TEST awaited, or at once ----------------------------------------------


class SyncService:
    """Plain methods, as the emulated board's service (tools/crew/emulator.mjs)."""

    def selftest(self) -> dict[str, Any]:
        return {"ok": True, "checks": {"storage": True, "radio": "emulated"}}

    def send_test(self) -> dict[str, Any]:
        return {"type": "alarm", "counter": 7, "test": True}


class AsyncService:
    """Coroutines that really suspend (as the radio's waits do), gated by an event."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.sent = 0

    async def selftest(self) -> dict[str, Any]:
        await self.go.wait()
        return {"ok": True, "checks": {"radio": True}}

    async def send_test(self) -> dict[str, Any]:
        await asyncio.sleep(0.01)
        self.sent += 1
        return {"type": "alarm", "counter": 100 + self.sent, "test": True}


def _provisioned(tmp_path: Any, service: Any) -> Any:
    from store import FileBackend, Store

    store = Store(FileBackend(str(tmp_path / "state")))
    store.save_config({"device_id": f"{DEVICE_ID:08x}", "key": KEY.hex()})
    return dev.Provisioner(store, service=service)


def _test_request(prov: Any, seq: int) -> bytes:
    hello = host.decode_reply(prov.handle(host.encode_request(host.Op.HELLO, seq)))
    nonce = bytes.fromhex(hello.json()["nonce"])
    mac = host.request_mac(KEY, host.Op.TEST, nonce, b"")
    return host.encode_request(host.Op.TEST, seq + 1, nonce + mac)


def test_plain_service_answers_through_both_paths(tmp_path: Any) -> None:
    prov = _provisioned(tmp_path, SyncService())
    at_once = host.decode_reply(prov.handle(_test_request(prov, 1)))
    awaited = host.decode_reply(asyncio.run(prov.handle_async(_test_request(prov, 3))))
    for r in (at_once, awaited):
        assert r.status is Status.OK
        assert r.json()["frame"] == {"type": "alarm", "counter": 7, "test": True}


def test_coroutine_service_needs_the_awaiting_path(tmp_path: Any) -> None:
    service = AsyncService()
    prov = _provisioned(tmp_path, service)
    r = host.decode_reply(prov.handle(_test_request(prov, 1)))
    assert r.status is Status.FAILED and "handle_async" in r.text
    assert service.sent == 0  # nothing half-run


def test_usb_session_awaits_the_field_test_and_refuses_a_second_one(tmp_path: Any) -> None:
    """`serve` over the USB line: the TEST is awaited in the mode's own loop; a TEST
    that arrives (over BLE) while it runs is refused, and other requests are answered."""
    service = AsyncService()
    prov = _provisioned(tmp_path, service)
    incoming: list[bytes] = []
    written: list[bytes] = []

    def line(request: bytes) -> bytes:
        return b"#AP>" + base64.b64encode(request) + b"\n"

    async def scenario() -> None:
        server = asyncio.ensure_future(
            dev.serve(prov, lambda: incoming.pop(0) if incoming else None, written.append)
        )
        incoming.append(line(_test_request(prov, 1)))
        await asyncio.sleep(0.1)
        assert written == []  # the self-test is still running
        # Meanwhile, over BLE: a second TEST is refused; a READ is answered.
        busy = host.decode_reply(await prov.handle_async(_test_request(prov, 3)))
        assert busy.status is Status.FAILED and "already running" in busy.text
        read = host.decode_reply(await prov.handle_async(host.encode_request(host.Op.READ, 5)))
        assert read.status is Status.OK
        service.go.set()
        for _ in range(200):
            if written:
                break
            await asyncio.sleep(0.01)
        incoming.append(line(host.encode_request(host.Op.END, 6)))
        assert await asyncio.wait_for(server, 5) == "end"

    asyncio.run(scenario())
    got = host.decode_reply(base64.b64decode(written[0][len(b"#AP<") :].strip()))
    assert got.seq == 2 and got.status is Status.OK
    assert got.json()["frame"]["counter"] == 101 and service.sent == 1
