"""firmware/bell/main.py, the glue, booted in CPython on fake hardware.

``machine``, ``esp32`` and ``lora`` are fakes with the signatures main.py uses
(MicroPython docs for machine/esp32; micropython-lib lora for the modem); CPython's
asyncio gets the three MicroPython names main.py needs (sleep_ms, wait_for_ms,
ThreadSafeFlag). Two boots: a cold boot that self-tests, sends its heartbeat and goes
to deep sleep with the button wake armed; then a wake by the button, whose first
action is the ALARM, persisted before it went out.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from protocol import frames
from protocol.frames import DeviceKey, FrameType
from tests.unit.fake_machine import make_pin, make_pwm, make_wdt, micropython_asyncio

from .test_bell_fakes import CONFIG, KEY, FakeNvs, FakeRtc

MAIN = Path(__file__).resolve().parents[2] / "firmware" / "bell" / "main.py"
BOARD = {
    "name": "heltec-v3",
    "storage": {"kind": "nvs"},
    "radio": {"spi_id": 1, "spi_baud": 2_000_000, "tcxo_mv": 1800},
    "pins": {
        "lora": {"sck": 9, "mosi": 10, "miso": 11, "cs": 8, "busy": 13, "dio1": 14, "reset": 12},
        "button": 0,
        "led": 35,
        "buzzer": 46,
        "tamper": 4,
        "battery_adc": 1,
        "battery_adc_enable": 37,
    },
    "battery": {"divider": 4.9},
}


class DeepSleep(Exception):
    pass


class Reset(Exception):
    pass


class World:
    """Fake hardware shared by both boots (NVS and RTC memory survive deep sleep)."""

    def __init__(self) -> None:
        self.nvs = FakeNvs()
        self.rtc = FakeRtc()
        self.levels: dict[int, int] = {0: 1, 4: 0}  # button released (pull-up), lid shut
        self.reset_cause = 1  # PWRON_RESET
        self.wake_reason = 0
        self.sent: list[bytes] = []
        self.ext0: Any = None
        self.ext1: Any = None
        self.slept_ms: int | None = None
        self.duty: dict[int, int] = {}
        self.stop_after_sends = 99


def fake_modules(w: World) -> dict[str, types.ModuleType]:
    machine = types.ModuleType("machine")

    Pin = make_pin(w.levels)
    PWM = make_pwm(w.duty)

    class ADC:
        ATTN_11DB = 3

        def __init__(self, pin: Pin, atten: int = 0) -> None:
            pass

        def read_uv(self) -> int:
            return 740_000  # x 4.9 = 3626 mV

    def deepsleep(ms: int = 0) -> None:
        w.slept_ms = ms
        raise DeepSleep()

    def reset() -> None:
        raise Reset()

    machine.Pin = Pin  # type: ignore[attr-defined]
    machine.PWM = PWM  # type: ignore[attr-defined]
    machine.ADC = ADC  # type: ignore[attr-defined]
    machine.WDT = make_wdt(min_timeout_ms=10_000)  # type: ignore[attr-defined]
    machine.SPI = lambda *a, **k: object()  # type: ignore[attr-defined]
    machine.RTC = lambda: w.rtc  # type: ignore[attr-defined]
    machine.reset_cause = lambda: w.reset_cause  # type: ignore[attr-defined]
    machine.wake_reason = lambda: w.wake_reason  # type: ignore[attr-defined]
    machine.deepsleep = deepsleep  # type: ignore[attr-defined]
    machine.reset = reset  # type: ignore[attr-defined]
    for name, value in {
        "PWRON_RESET": 1,
        "HARD_RESET": 2,
        "WDT_RESET": 3,
        "DEEPSLEEP_RESET": 4,
        "SOFT_RESET": 5,
        "EXT0_WAKE": 2,
        "EXT1_WAKE": 3,
        "TIMER_WAKE": 4,
    }.items():
        setattr(machine, name, value)

    esp32 = types.ModuleType("esp32")
    esp32.NVS = lambda ns: w.nvs  # type: ignore[attr-defined]
    esp32.WAKEUP_ALL_LOW = False  # type: ignore[attr-defined]
    esp32.WAKEUP_ANY_HIGH = True  # type: ignore[attr-defined]
    esp32.mcu_temperature = lambda: 23.4  # type: ignore[attr-defined]

    def ext0(pin: Any, level: bool) -> None:
        w.ext0 = (pin.n, level)

    def ext1(pins: Any, level: bool) -> None:
        w.ext1 = (tuple(p.n for p in pins), level)

    esp32.wake_on_ext0 = ext0  # type: ignore[attr-defined]
    esp32.wake_on_ext1 = ext1  # type: ignore[attr-defined]

    lora = types.ModuleType("lora")

    class RxPacket(bytearray):
        def __init__(self, payload: Any, ticks_ms: Any = None, snr: Any = None, rssi: Any = None):
            super().__init__(payload)
            self.ticks_ms, self.snr, self.rssi = ticks_ms, snr, rssi

    class AsyncSX1262:
        def __init__(self, spi: Any, cs: Any, busy: Any, dio1: Any = None, **kw: Any) -> None:
            assert kw["dio3_tcxo_millivolts"] == 1800
            assert kw["lora_cfg"]["freq_khz"] == 922_100 and kw["lora_cfg"]["bw"] == "125"
            self.rx = False

        def start_recv(self, timeout_ms: Any = None, continuous: bool = False, rx_length=0xFF):
            self.rx = True

        def standby(self) -> None:
            self.rx = False

        def sleep(self, warm_start: bool = True) -> None:
            self.rx = False

        def _cmd(self, fmt: str, *args: Any, n_read: int = 0, **kw: Any) -> memoryview:
            assert self.rx and args == (0x15,)
            return memoryview(bytearray((0x52, 220)))  # -110 dBm: a quiet channel

        async def send(self, packet: Any, tx_at_ms: Any = None) -> int:
            w.sent.append(bytes(packet))
            if len(w.sent) >= w.stop_after_sends:
                raise Reset()  # end of the test
            from compat import ticks_ms

            return ticks_ms()

        async def recv(self, timeout_ms: Any = None, rx_length=0xFF, rx_packet: Any = None):
            await asyncio.sleep(0)
            return None

    lora.AsyncSX1262 = AsyncSX1262  # type: ignore[attr-defined]
    lora.RxPacket = RxPacket  # type: ignore[attr-defined]
    return {"machine": machine, "esp32": esp32, "lora": lora}


def load_main(w: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """main.py's namespace on the fake hardware, without running start()."""
    for name, mod in fake_modules(w).items():
        monkeypatch.setitem(sys.modules, name, mod)
    micropython_asyncio(monkeypatch)
    monkeypatch.setattr(sys, "platform", "esp32")
    monkeypatch.setattr(time, "sleep_ms", lambda ms: None, raising=False)
    src = MAIN.read_text(encoding="utf-8").replace("\nstart()\n", "\n")
    ns: dict[str, Any] = {"__name__": "bell_main"}
    exec(compile(src, str(MAIN), "exec"), ns)
    ns["load_board"] = lambda path=None: BOARD
    return ns


def boot(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run main.py's main() until it deep-sleeps or resets."""
    ns = load_main(w, monkeypatch)

    async def main() -> None:  # what start() does, with the real board file
        hw = ns["Hardware"](BOARD)
        await ns["main"](BOARD, ns["boot_cause"](), hw, hw.pressed())

    with pytest.raises((DeepSleep, Reset)):
        asyncio.run(asyncio.wait_for(main(), 20))


def decode_all(sent: list[bytes]) -> list[frames.Frame]:
    last: list[int | None] = [None]
    out = []
    for data in sent:
        f = frames.decode(data, lambda dev, d: DeviceKey.of(KEY, last[0]))
        last[0] = f.counter
        out.append(f)
    return out


def test_cold_boot_then_deep_sleep_then_button_wake(monkeypatch: pytest.MonkeyPatch) -> None:
    from store import NvsBackend, Store

    w = World()
    Store(NvsBackend(w.nvs)).save_config(CONFIG)
    boot(w, monkeypatch)
    got = decode_all(w.sent)
    assert [f.type for f in got] == [FrameType.SELFTEST, FrameType.HEARTBEAT]
    hb = got[1].payload
    assert 3600 <= hb.battery_mv <= 3640 and hb.temperature == 23  # the divider x 4.9
    # Idle: deep sleep until the next heartbeat, the button (GPIO0, active low) on
    # ext0 and the closed tamper switch (GPIO4, opens high) on ext1.
    assert w.slept_ms is not None and 3_590_000 < w.slept_ms <= 3_600_000
    assert w.ext0 == (0, False) and w.ext1 == ((4,), True)
    assert w.duty[35] == 0  # LED off while asleep

    # A resident presses; the board wakes by ext0. The press may be over by the time
    # MicroPython runs: the wake itself is the press.
    w.reset_cause, w.wake_reason = 4, 2  # DEEPSLEEP_RESET, EXT0_WAKE
    w.stop_after_sends = 3
    before = len(w.sent)
    boot(w, monkeypatch)
    got = decode_all(w.sent)
    alarm = got[before]
    assert alarm.type is FrameType.ALARM and alarm.flags & frames.Flags.RX_OPEN
    assert alarm.counter == got[before - 1].counter + 1  # warm boot: RTC kept the counter
    rec = Store(NvsBackend(w.nvs)).load_alarm()
    assert rec is not None and rec["c"] == alarm.counter  # persisted before it went out


class Entered(Exception):
    """Raised by the stand-in for provision.enter_if_held: start() stops there."""


def test_provisioning_mode_gets_the_field_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """A crew powers the bell up with the button held: start() hands provisioning mode
    the bell's field test, on the board's radio and the app's store. Its TEST runs the
    self-test and sends a test ALARM on air; the app, after the reset, goes on above
    the test frame's counter."""
    import provision
    from store import NvsBackend, Store

    w = World()
    Store(NvsBackend(w.nvs)).save_config({**CONFIG, "device_id": f"{CONFIG['device_id']:08x}"})
    w.levels[0] = 0  # the button held at power-up
    ns = load_main(w, monkeypatch)
    entered: dict[str, Any] = {}

    def enter_if_held(board: Any, **kw: Any) -> bool:
        entered.update(kw, board=board)
        raise Entered()

    ns["provision"] = types.SimpleNamespace(enter_if_held=enter_if_held)
    with pytest.raises(Entered):
        ns["start"]()
    assert entered["board"] is BOARD and entered["pin_name"] == "button"
    assert entered["validate"] is ns["parse_config"]

    w.levels[0] = 1  # released by the time the crew's laptop asks
    service = entered["service"]()  # built only once the mode is entered
    prov = provision.Provisioner(entered["store"], service=service)
    hello = prov.handle(bytes((1, provision.OP_HELLO, 1)))
    nonce = bytes.fromhex(json.loads(hello[4:])["nonce"])
    mac = provision.request_mac(KEY, provision.OP_TEST, nonce, b"")
    reply = asyncio.run(prov.handle_async(bytes((1, provision.OP_TEST, 2)) + nonce + mac))
    assert reply[3] == provision.OK, reply
    answer = json.loads(reply[4:])
    # The board has an LED and a buzzer but no sense ADC for them: five checks.
    assert answer["selftest"]["checks"] == {
        "radio": True,
        "storage": True,
        "button": True,
        "tamper": True,
        "battery": True,
    }
    assert answer["selftest"]["ok"] is True
    (test,) = decode_all(w.sent)
    assert test.type is FrameType.ALARM and test.counter == answer["frame"]["counter"]
    assert test.flags & frames.Flags.TEST and test.flags & frames.Flags.RX_OPEN
    assert answer["frame"]["downlink"] is None  # no gateway here

    w.sent.clear()
    w.reset_cause = 2  # HARD_RESET: machine.reset() ends provisioning mode; RTC memory kept
    boot(w, monkeypatch)
    app = [frames.decode(d, lambda dev, _d: DeviceKey.of(KEY, test.counter)) for d in w.sent]
    assert [f.type for f in app] == [FrameType.HEARTBEAT]
    assert app[0].counter == test.counter + 1  # the exact next counter, from RTC memory
