"""firmware/light/main.py, the light's glue, booted in CPython on fake hardware.

``machine``, ``esp32`` and ``lora`` are fakes with the signatures main.py uses
(MicroPython's machine/esp32 docs, micropython-lib's lora modem API); CPython's asyncio
gets MicroPython's ``sleep_ms`` and ``ThreadSafeFlag``. The board is the real
hardware/boards/heltec-v3.json, so the glue is checked against the pins and sections
the board files actually have.
"""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from protocol import frames as fr
from tests.unit.fake_machine import make_pin, make_pwm, make_wdt, micropython_asyncio
from tools import firmware_bench as fb

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "firmware" / "light" / "main.py"
BOARD = json.loads((ROOT / "hardware" / "boards" / "heltec-v3.json").read_text(encoding="utf-8"))
PINS = {**BOARD["pins"], **BOARD["role_pins"]["light"]}
for _p in (ROOT / "firmware" / "lib", ROOT / "firmware" / "light"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

KEY = fb.KEY_LIGHT
DEVICE_ID = fb.DEVICE_ID_LIGHT
CONFIG = {"device_id": DEVICE_ID, "key": KEY.hex(), "photo_s": 0, "lamp_ma": 350}


class Reset(Exception):
    pass


class World:
    def __init__(self) -> None:
        self.nvs: dict[str, bytes] = {}
        self.duty: dict[Any, int] = {}
        self.levels: dict[Any, int] = {}
        self.uv = {PINS["lamp_current_adc"]: 700_000, PINS["photocell_adc"]: 100_000}
        self.irq: dict[Any, Any] = {}
        self.sent: list[bytes] = []
        self.downlinks: list[bytes] = []
        self.lora_cfg: dict[str, Any] = {}
        self.gateway = fb.Gateway()
        self.events: list[str] = []


def fake_modules(w: World) -> dict[str, types.ModuleType]:
    machine = types.ModuleType("machine")

    Pin = make_pin(w.levels, w.irq)
    PWM = make_pwm(w.duty, BOARD["light"]["dimming"]["freq_hz"])

    class ADC:
        ATTN_11DB = 3

        def __init__(self, pin: Pin, atten: int = 0) -> None:
            assert atten == 3
            self.n = pin.n

        def read_uv(self) -> int:
            return w.uv[self.n]

    class NVS:
        def __init__(self, ns: str) -> None:
            assert ns == "anshim"

        def set_blob(self, key: str, value: Any) -> None:
            w.nvs[key] = bytes(value)

        def get_blob(self, key: str, buf: bytearray) -> int:
            if key not in w.nvs:
                raise OSError(-0x1102)
            data = w.nvs[key]
            buf[0 : len(data)] = data
            return len(data)

        def erase_key(self, key: str) -> None:
            w.nvs.pop(key, None)

        def commit(self) -> None:
            pass

    def reset() -> None:
        w.events.append("reset")
        raise Reset()

    rtc_mem = [b""]

    class RTC:
        def memory(self, data: Any = None) -> Any:
            if data is None:
                return rtc_mem[0]
            rtc_mem[0] = bytes(data)
            return None

    for name, value in {
        "Pin": Pin,
        "PWM": PWM,
        "ADC": ADC,
        "WDT": make_wdt(),
        "RTC": RTC,
        "SPI": lambda *a, **k: object(),
        "reset": reset,
    }.items():
        setattr(machine, name, value)
    esp32 = types.ModuleType("esp32")
    esp32.NVS = NVS  # type: ignore[attr-defined]

    lora = types.ModuleType("lora")

    class RxPacket(bytearray):
        def __init__(self, data: bytes, rssi: int, snr: int) -> None:
            super().__init__(data)
            self.rssi, self.snr, self.crc_error = rssi, snr, False
            self.ticks_ms = 0

    class AsyncSX1262:
        def __init__(self, spi: Any, cs: Any, busy: Any, dio1: Any = None, **kw: Any) -> None:
            assert (cs.n, busy.n, dio1.n) == (PINS["lora_cs"], PINS["lora_busy"], PINS["lora_dio1"])
            assert kw["dio3_tcxo_millivolts"] == BOARD["radio"]["tcxo_mv"]
            w.lora_cfg = kw["lora_cfg"]
            self.rx = False

        def start_recv(self, timeout_ms: Any = None, continuous: bool = False, rx_length=0xFF):
            self.rx = True

        def standby(self) -> None:
            self.rx = False

        def sleep(self, warm_start: bool = True) -> None:  # the field test, after its frame
            self.rx = False

        def _cmd(self, fmt: str, *args: Any, n_read: int = 0) -> bytes:
            assert self.rx and args == (0x15,)
            return bytes((0x52, 220))  # -110 dBm: a quiet channel

        async def send(self, packet: Any, tx_at_ms: Any = None) -> int:
            w.sent.append(bytes(packet))
            from compat import ticks_ms

            return ticks_ms()

        async def recv(self, timeout_ms: Any = None, rx_length=0xFF, rx_packet: Any = None):
            await asyncio.sleep(0.01)
            if w.downlinks:
                return RxPacket(w.downlinks.pop(0), -71, 24)
            return None

    lora.AsyncSX1262 = AsyncSX1262  # type: ignore[attr-defined]
    return {"machine": machine, "esp32": esp32, "lora": lora}


def load_main(w: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, mod in fake_modules(w).items():
        monkeypatch.setitem(sys.modules, name, mod)
    micropython_asyncio(monkeypatch)
    src = MAIN.read_text(encoding="utf-8").replace("\nstart()\n", "\n")
    ns: dict[str, Any] = {"__name__": "light_main"}
    exec(compile(src, str(MAIN), "exec"), ns)
    ns["load_board"] = lambda path=None: BOARD
    ns["_PROVISION_POLL_MS"] = 20
    return ns


def _store() -> Any:
    from store import NvsBackend, Store

    class Nvs:
        def __init__(self, blobs: dict[str, bytes]) -> None:
            self.blobs = blobs

        def set_blob(self, key: str, value: Any) -> None:
            self.blobs[key] = bytes(value)

        def commit(self) -> None:
            pass

    return lambda w: Store(NvsBackend(Nvs(w.nvs)))


def test_light_boots_reports_obeys_and_reboots(monkeypatch: pytest.MonkeyPatch) -> None:
    w = World()
    ns = load_main(w, monkeypatch)

    async def gateway() -> None:
        # Unprovisioned: photocell-only light and a blinking LED, until a config appears.
        await asyncio.sleep(0.15)
        assert w.sent == []
        assert w.duty[PINS["pwm_out"]] == 0  # dark: full output (inverted PWM)
        _store()(w).save_config(CONFIG)
        await asyncio.sleep(0.3)
        w.irq[PINS["pir"]](None)  # the PIR fires (its IRQ only sets the flag)
        await asyncio.sleep(0.05)
        t = fb.NIGHT_START
        w.downlinks.append(bytes.fromhex(w.gateway.time(t)))
        await asyncio.sleep(0.5)  # heard: the light reports at once
        w.downlinks.append(bytes.fromhex(w.gateway.frame(fr.Reboot())))
        await asyncio.sleep(5)

    async def both() -> None:
        task = asyncio.ensure_future(gateway())
        try:
            await asyncio.wait_for(ns["main"](BOARD), 10)
        finally:
            task.cancel()

    with pytest.raises(Reset):
        asyncio.run(both())
    assert w.events == ["reset"]
    assert w.lora_cfg["freq_khz"] == 922_100 and w.lora_cfg["bw"] == "125"
    got = [
        fr.decode(data, lambda dev, d: fr.DeviceKey.of(KEY) if dev == DEVICE_ID else None)
        for data in w.sent
    ]
    status = [f.payload for f in got if isinstance(f.payload, fr.LightStatus)]
    assert status, got
    assert status[0].level > 0  # dark: ramping up to the dusk level (2 s ramp)
    assert status[0].lamp_ma == 350  # 700 mV x 0.5 mA/mV
    assert status[0].motion_events == 1
    assert w.levels[PINS["led"]] == 1  # online: the gateway was heard


class Entered(Exception):
    """Raised by the stand-in for provision.enter_if_held: start() stops there."""


def test_provisioning_mode_gets_the_field_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """start() hands provisioning mode the light's field test, on the board's radio,
    lamp and store: TEST drives the lamp to full, judges its current, and sends a test
    ALARM on air under a counter the app never uses again."""
    import provision
    from store import NvsBackend, Store

    w = World()
    _store()(w).save_config({**CONFIG, "device_id": f"{DEVICE_ID:08x}"})
    ns = load_main(w, monkeypatch)
    entered: dict[str, Any] = {}

    def enter_if_held(board: Any, **kw: Any) -> bool:
        entered.update(kw, board=board)
        raise Entered()

    async def quick_sleep_ms(ms: int) -> None:  # the lamp's 5 s hold, in 50 ms
        await asyncio.sleep(ms / 100_000)

    monkeypatch.setattr(asyncio, "sleep_ms", quick_sleep_ms, raising=False)
    ns["provision"] = types.SimpleNamespace(enter_if_held=enter_if_held)
    with pytest.raises(Entered):
        ns["start"]()
    assert entered["board"] is BOARD
    duties: list[int] = []
    pwm = PINS["pwm_out"]
    real_lamp_ma = ns["Hardware"].lamp_ma
    monkeypatch.setattr(
        ns["Hardware"], "lamp_ma", lambda hw: duties.append(w.duty[pwm]) or real_lamp_ma(hw)
    )
    service = entered["service"]()  # built only once the mode is entered
    prov = provision.Provisioner(entered["store"], service=service)
    hello = prov.handle(bytes((1, provision.OP_HELLO, 1)))
    nonce = bytes.fromhex(json.loads(hello[4:])["nonce"])
    mac = provision.request_mac(KEY, provision.OP_TEST, nonce, b"")
    reply = asyncio.run(prov.handle_async(bytes((1, provision.OP_TEST, 2)) + nonce + mac))
    assert reply[3] == provision.OK, reply
    answer = json.loads(reply[4:])
    assert answer["selftest"]["ok"] is True
    assert answer["selftest"]["checks"] == {"radio": True, "storage": True, "lamp": True}
    assert answer["selftest"]["lamp_ma"] == 350  # 700 mV x 0.5 mA/mV
    inverted = BOARD["light"]["dimming"]["inverted"]
    assert duties == [0 if inverted else 65535]  # measured at full output
    assert w.duty[pwm] == (65535 if inverted else 0)  # and off again
    (data,) = w.sent
    test = fr.decode(data, lambda dev, d: fr.DeviceKey.of(KEY) if dev == DEVICE_ID else None)
    assert isinstance(test.payload, fr.Alarm) and test.counter == answer["frame"]["counter"]
    assert test.flags & fr.Flags.TEST and test.flags & fr.Flags.RX_OPEN
    after = Store(NvsBackend(_NvsView(w.nvs)))
    after.open()
    assert after.next_uplink() > test.counter  # the app goes on above it


class _NvsView:
    """esp32.NVS over the World's blobs (reads and writes)."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs

    def get_blob(self, key: str, buf: bytearray) -> int:
        if key not in self.blobs:
            raise OSError(-0x1102)
        data = self.blobs[key]
        buf[0 : len(data)] = data
        return len(data)

    def set_blob(self, key: str, value: Any) -> None:
        self.blobs[key] = bytes(value)

    def commit(self) -> None:
        pass
