"""The security light on the board: hardware in, `Light` in the middle, radio out.

Thin glue, the only place that touches ``machine``: it reads the board file
(``/board.json``, one of hardware/boards/*.json, copied by the deploy step), builds the
pins, PWM, ADCs, the store and the LoRa modem from it, and runs three tasks:

* control, every 100 ms: read the lamp current and the photocell, ``light.tick()``,
  write the PWM duty, feed the watchdog, reboot when a REBOOT command asks;
* motion: the PIR's IRQ only sets a ThreadSafeFlag; this task calls ``light.motion()``;
* radio: the one owner of the modem. Sends what the light queued (KR920 LBT in
  `radio.Radio`), otherwise listens in 1 s slices, so the receiver is on all the time
  except while transmitting. A light is mains powered: it never sleeps.

Until provisioning has written a config (device id and key) the light runs on its
photocell alone, blinks the status LED twice every 2 s, and looks for a config every 5 s.
"""

import asyncio
import random

import machine
import provision
from board import load_board, make_modem, make_store
from codec import Codec
from compat import ticks_add, ticks_diff, ticks_ms
from machine import ADC, PWM, Pin
from radio import ChannelBusy, Radio

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

# On the device this app's modules sit next to main.py ("import light"); the type check
# sees firmware/light/ as the package firmware.light, so that no two apps' main.py clash.
if TYPE_CHECKING:
    from firmware.light.light import Light, field_test
else:
    from light import Light, field_test

_TICK_MS = 100
_RX_SLICE_MS = 1000
_WDT_MS = 10_000
_PROVISION_POLL_MS = 5000


class Settings:
    """The store's config record as the light's ``get``/``set`` settings."""

    def __init__(self, store, config):
        self._store = store
        self._config = config

    def get(self, key, default):
        return self._config.get(key, default)

    def set(self, key, value):
        self._config[key] = value
        self._store.save_config(self._config)  # OSError: the light reports it


class Hardware:
    """The light's outputs and sensors, from the board file."""

    def __init__(self, board):
        # The deploy step may already have merged the light's role pins into "pins".
        p = dict(board["pins"])
        p.update(board.get("role_pins", {}).get("light", {}))
        dim = board["light"]["dimming"]
        self._invert = dim["inverted"]
        self.pwm = PWM(Pin(p["pwm_out"]), freq=dim["freq_hz"], duty_u16=self._duty(0))
        self.lamp_adc = _adc(p["lamp_current_adc"])
        self.photo_adc = _adc(p["photocell_adc"])
        self.ma_per_mv = board["light"]["lamp_current_ma_per_mv"]
        self.pir = Pin(p["pir"], Pin.IN)
        led = p["led"]
        self.led = Pin(led, Pin.OUT, value=0)

    def _duty(self, permille):
        d = permille * 65535 // 1000
        return 65535 - d if self._invert else d

    def output(self, permille):
        self.pwm.duty_u16(self._duty(permille))

    def lamp_ma(self):
        return int(_mv(self.lamp_adc) * self.ma_per_mv)

    def photo_mv(self):
        return _mv(self.photo_adc)


def _adc(pin):
    # ESP32: 11 dB attenuation reads up to ~2.5 V (eFuse-calibrated read_uv); the
    # RP2040's ADC has no attenuator and reads 0..3.3 V.
    if hasattr(ADC, "ATTN_11DB"):
        return ADC(Pin(pin), atten=ADC.ATTN_11DB)
    return ADC(Pin(pin))


def _mv(adc):
    if hasattr(adc, "read_uv"):
        return adc.read_uv() // 1000
    return adc.read_u16() * 3300 // 65535


async def control(light, hw, wdt):
    while True:
        now = ticks_ms()
        hw.output(light.tick(now, hw.lamp_ma(), hw.photo_mv()))
        hw.led.value(1 if light.online else 0)
        wdt.feed()
        if light.reboot_requested and not light.pending:
            await asyncio.sleep_ms(200)  # let the last frame leave the antenna
            machine.reset()
        await asyncio.sleep_ms(_TICK_MS)


async def motion(light, hw):
    flag = asyncio.ThreadSafeFlag()
    # ESP32 pin IRQs run scheduled (soft): setting the flag is all they do.
    hw.pir.irq(lambda _pin: flag.set(), Pin.IRQ_RISING)
    while True:
        await flag.wait()
        light.motion(ticks_ms())


async def radio_loop(light, radio):
    while True:
        frame = light.next_uplink()
        if frame is not None:
            try:
                await radio.transmit(frame)
            except ChannelBusy:
                light.uplink_failed()
            continue
        p = await radio.receive(ticks_add(ticks_ms(), _RX_SLICE_MS))
        if p is not None:
            light.downlink(ticks_ms(), p, p.rssi, p.snr // 4)


async def provisioning(store, hw, wdt):
    """No config yet: photocell-only lighting and a double blink, until there is one."""
    since = ticks_ms()
    polled = since
    dark = False
    while True:
        now = ticks_ms()
        mv = hw.photo_mv()
        dark = mv <= 300 or (dark and mv < 600)  # the defaults of photo_dark/photo_light
        hw.output(1000 if dark else 0)
        phase = ticks_diff(now, since) % 2000
        hw.led.value(1 if phase < 150 or 300 <= phase < 450 else 0)
        wdt.feed()
        if ticks_diff(now, polled) >= _PROVISION_POLL_MS:
            polled = now
            cfg = store.load_config()
            if cfg is not None and "device_id" in cfg and "key" in cfg:
                return cfg
        await asyncio.sleep_ms(_TICK_MS)


def device_codec(cfg):
    dev = cfg["device_id"]
    if isinstance(dev, str):
        dev = int(dev, 16)
    return Codec(dev, bytes.fromhex(cfg["key"]))


def make_radio(board, cfg):
    return Radio(make_modem(board, cfg), random.randrange)


async def main(board, hw=None):
    wdt = machine.WDT(timeout=_WDT_MS)
    if hw is None:
        hw = Hardware(board)
    store = make_store(board)
    store.open()
    cfg = store.load_config()
    while cfg is None or "device_id" not in cfg or "key" not in cfg:
        cfg = await provisioning(store, hw, wdt)
    light = Light(device_codec(cfg), store, Settings(store, cfg), ticks_ms())
    radio = make_radio(board, cfg)
    await asyncio.gather(control(light, hw, wdt), motion(light, hw), radio_loop(light, radio))


def start():
    board = load_board()
    hw = Hardware(board)  # the lamp off until the app decides
    # Provisioning mode (firmware/PROVISIONING.md) with the service button held 2 s at
    # power-up. It runs its own event loop, before the app's and before the watchdog
    # starts (the mode may last minutes), and resets the board when it ends. TEST there
    # runs the field test (light.field_test): radio, storage and lamp checks, and a
    # test ALARM on the app's radio settings and frame counters.
    store = make_store(board)
    provision.enter_if_held(
        board,
        service=lambda: field_test(hw, store, lambda c: make_radio(board, c), asyncio.sleep_ms),
        store=store,
    )
    asyncio.run(main(board, hw))


start()
