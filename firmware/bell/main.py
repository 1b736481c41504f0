"""The bell on the board: button and tamper in, `Bell` in the middle, radio and LED out.

Thin glue, the only place that touches ``machine``. It reads the board file
(``/board.json``, one of hardware/boards/*.json copied by the deploy step), builds the
pins, PWM outputs, battery ADC, store and LoRa modem from it, maps the reset cause to
a `bell.BOOT_*`, and executes what `Bell.next_action()` asks for:

* TRANSMIT: `radio.Radio.transmit` (KR920 LBT), then, with RX_OPEN, the receive window
  (PROTOCOL.md 1.4); each packet heard goes to ``bell.received``; the modem sleeps after.
* FEEDBACK: `feedback.Feedback` plays the pattern; a task drives the LED (PWM) and the
  piezo from it and sleeps until the next change.
* SELFTEST: the checks this board can really make (radio, storage, battery, button,
  tamper; LED and buzzer only where the board file gives a sense ADC:
  `bellcheck.run_checks`, which the field test runs too), then ``bell.selftest_done``.
* SLEEP: deep sleep when the bell allows it (only the heartbeat is scheduled): the
  button (active low, an RTC GPIO) arms ext0 so a press wakes the board and *is* the
  press (BOOT_BUTTON); the tamper switch (high when open) arms ext1. Otherwise the loop
  waits, awake, for an input IRQ or the deadline: during an alarm RAM, ticks and the
  LED pattern must live on.

Pin IRQs on the ESP32 are soft (scheduled, no ``hard=``): the handler only sets a
ThreadSafeFlag; the loop reads the pin levels itself. The watchdog is fed by the main
loop only, so a wedged loop resets the board, and the pending alarm resumes from flash.
"""

import asyncio
import random
import sys
import time

import machine
import provision
from board import board_get, load_board, make_modem, make_store, pin_no
from compat import const, ticks_ms
from feedback import NEVER, Feedback
from machine import ADC, PWM, Pin
from radio import ChannelBusy, Radio
from store import Store

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

# On the device this app's modules sit next to main.py ("import bell"); the type check
# sees firmware/bell/ as the package firmware.bell, so no two apps' main.py clash.
if TYPE_CHECKING:
    from typing import Any, Optional

    from firmware.bell.bell import (
        BOOT_BUTTON,
        BOOT_COLD,
        BOOT_TIMER,
        BOOT_WARM,
        FEEDBACK,
        REBOOT,
        SELFTEST,
        TRANSMIT,
        TX_BUSY,
        TX_ERROR,
        TX_OK,
        Bell,
        parse_config,
    )
    from firmware.bell.bellcheck import field_test, run_checks
else:
    from bell import (
        BOOT_BUTTON,
        BOOT_COLD,
        BOOT_TIMER,
        BOOT_WARM,
        FEEDBACK,
        REBOOT,
        SELFTEST,
        TRANSMIT,
        TX_BUSY,
        TX_ERROR,
        TX_OK,
        Bell,
        parse_config,
    )
    from bellcheck import field_test, run_checks

_WDT_MS = const(30000)  # > LBT back-offs (~3.5 s) + TX (1.5 s at SF12) + RX window 2.5 s
_MAX_WAIT_MS = const(5000)  # the loop runs (and feeds the watchdog) at least this often
_LED_MAX_WAIT_MS = const(1000)
_PWM_FREQ_HZ = const(1000)  # LED PWM: flicker-free, inside every port's range
_BUZZER_HZ = const(2700)  # a typical piezo siren's resonance; board file may override
_ACK_LEN = const(21)  # ACK frame: 16 + 5 bytes, the usual downlink


def make_radio(board: "Any", cfg: "Any") -> Radio:
    from lora import RxPacket  # type: ignore[import-not-found]

    # A preallocated packet: the driver reuses it when the length matches (an ACK).
    return Radio(make_modem(board, cfg), random.randrange, rx_packet=RxPacket(bytes(_ACK_LEN)))


def _adc(pin: int) -> ADC:
    # ESP32: 11 dB attenuation reads up to ~2.5 V (eFuse-calibrated read_uv).
    if hasattr(ADC, "ATTN_11DB"):
        return ADC(Pin(pin), atten=ADC.ATTN_11DB)
    return ADC(Pin(pin))


def _mv(adc: ADC) -> int:
    if hasattr(adc, "read_uv"):
        return adc.read_uv() // 1000
    return adc.read_u16() * 3300 // 65535


class Hardware:
    """The bell's inputs and outputs, from the board file."""

    def __init__(self, board: "Any") -> None:
        b = pin_no(board, "button")
        if b is None:
            raise ValueError("board file: pins.button missing")
        self.button_pin = Pin(b, Pin.IN, Pin.PULL_UP)
        low = board_get(board, "button_active_low")
        self._button_low = True if low is None else bool(low)
        t = pin_no(board, "tamper")
        # Tamper contact: open while the lid is shut (1 MΩ external pull-down, so no
        # current in deep sleep), closing to 3V3 when the lid opens: high = open.
        # hardware/bell.md wires it; no internal pull (it would draw ~73 µA asleep).
        self.tamper_pin = Pin(t, Pin.IN) if t is not None else None
        led = pin_no(board, "led")
        self.led = PWM(Pin(led), freq=_PWM_FREQ_HZ, duty_u16=0) if led is not None else None
        bz = pin_no(board, "buzzer")
        hz = board_get(board, "buzzer_hz") or _BUZZER_HZ
        self.buzzer = PWM(Pin(bz), freq=hz, duty_u16=0) if bz is not None else None
        adc = pin_no(board, "battery_adc")
        if adc is None:
            adc = pin_no(board, "battery", "adc")
        self._battery = _adc(adc) if adc is not None else None
        # Divider ratio: board "battery": {"divider": 4.9} (Heltec V3) or "battery_divider".
        div = board_get(board, "battery", "divider") or board_get(board, "battery_divider")
        self._div_x100 = int((div or 2) * 100)
        en = pin_no(board, "battery_adc_enable")
        if en is None:
            en = pin_no(board, "battery", "adc_enable")
        self._battery_en = Pin(en, Pin.OUT, value=1) if en is not None else None
        led_sense = pin_no(board, "led_sense_adc")
        self.led_sense = _adc(led_sense) if led_sense is not None else None
        bz_sense = pin_no(board, "buzzer_sense_adc")
        self.buzzer_sense = _adc(bz_sense) if bz_sense is not None else None

    def pressed(self) -> bool:
        return self.button_pin.value() == (0 if self._button_low else 1)

    def tamper_open(self) -> bool:
        return self.tamper_pin is not None and self.tamper_pin.value() == 1

    def show(self, led_percent: int, buzz: bool) -> None:
        if self.led is not None:
            self.led.duty_u16(led_percent * 65535 // 100)
        if self.buzzer is not None:
            self.buzzer.duty_u16(32768 if buzz else 0)

    def led_sense_mv(self) -> "Optional[int]":
        return _mv(self.led_sense) if self.led_sense is not None else None

    def buzzer_sense_mv(self) -> "Optional[int]":
        return _mv(self.buzzer_sense) if self.buzzer_sense is not None else None

    def battery_mv(self) -> int:
        if self._battery is None:
            return 0  # on air: "mains powered or not measured"
        en = self._battery_en
        if en is not None:
            en(0)  # Heltec V3: ADC_CTRL low connects the divider (notes, board table)
            time.sleep_ms(1)
        mv = _mv(self._battery) * self._div_x100 // 100
        if en is not None:
            en(1)  # divider off again: it would drain the cell while asleep
        return mv


class Sensors:
    """What `Bell` reads: battery, MCU temperature, uptime across deep sleeps."""

    def __init__(self, hw: Hardware, store: Store) -> None:
        self._hw = hw
        self._store = store

    def battery_mv(self) -> int:
        return self._hw.battery_mv()

    def temperature_c(self) -> int:
        try:
            import esp32

            read = getattr(esp32, "mcu_temperature", None)  # ESP32-S2/S3/C3
            return int(read()) if read is not None else 0
        except ImportError:
            return 0

    def uptime_h(self) -> int:
        # The RTC clock runs through deep sleep; power_on_s is set at each cold boot.
        return (int(time.time()) - self._store.power_on_s) // 3600


def boot_cause() -> int:
    rc = machine.reset_cause()
    if rc == machine.DEEPSLEEP_RESET:
        wr = machine.wake_reason()
        if wr == machine.EXT0_WAKE:
            return BOOT_BUTTON
        if wr == machine.TIMER_WAKE:
            return BOOT_TIMER
        return BOOT_WARM  # ext1: the tamper switch opened; it is read at boot
    if rc == machine.SOFT_RESET or rc == machine.WDT_RESET:
        return BOOT_WARM
    return BOOT_COLD


class Glue:
    """Executes the bell's actions on the hardware."""

    def __init__(self, bell: Bell, hw: Hardware, radio: Radio, store: Store, wdt: "Any"):
        self.bell = bell
        self.hw = hw
        self.radio = radio
        self.store = store
        self.wdt = wdt
        self.fb = Feedback(ticks_ms)
        self.inputs = asyncio.ThreadSafeFlag()  # set by the pin IRQs
        self.fb_changed = asyncio.Event()

    def arm_irqs(self) -> None:
        # ESP32 pin IRQs are soft (scheduled): setting the flag is all the handler does.
        trig = Pin.IRQ_FALLING | Pin.IRQ_RISING
        self.hw.button_pin.irq(lambda _p: self.inputs.set(), trig)
        if self.hw.tamper_pin is not None:
            self.hw.tamper_pin.irq(lambda _p: self.inputs.set(), trig)

    async def led_task(self) -> None:
        fb = self.fb
        while True:
            self.hw.show(fb.led(), fb.buzzer())
            n = fb.next_change()
            wait = _LED_MAX_WAIT_MS if n == NEVER or n > _LED_MAX_WAIT_MS else n
            self.fb_changed.clear()
            try:
                await asyncio.wait_for_ms(self.fb_changed.wait(), wait)
            except asyncio.TimeoutError:
                pass

    async def transmit(self, frame: "Any", rx_open: bool) -> None:
        bell = self.bell
        radio = self.radio
        try:
            end = await radio.transmit(frame)
        except ChannelBusy:
            bell.transmitted(TX_BUSY)
            return
        except (RuntimeError, OSError):  # driver: BUSY-line timeout, SPI error
            bell.transmitted(TX_ERROR)
            return
        bell.transmitted(TX_OK, end)
        try:
            if rx_open:
                p = await radio.receive_window(end)
                while p is not None:
                    # RxPacket: snr in dB x 4, rssi in dBm (sx126x.py _read_packet)
                    if not bell.received(p, p.rssi, p.snr):
                        break
                    p = await radio.receive_more()
            radio.sleep()  # 0.6 uA instead of 1.6 mA standby until the next frame
        except (RuntimeError, OSError):
            pass  # a failed receive: the bell retries on its own schedule

    async def selftest(self) -> "tuple":
        """The checks this board can make; (ran, passed) bitmaps (PROTOCOL.md 3.6)."""
        hw = self.hw
        low = self.bell.cfg.get("low_battery_mv", 0)
        ran, passed, _battery = await run_checks(
            hw, self.radio, self.store, low, asyncio.sleep_ms, hw.buzzer_sense is not None
        )
        return ran, passed

    def deep_sleep(self, ms: int, wake_button: bool, wake_tamper: bool) -> None:
        """Deep sleep (ESP32): RAM is lost, the board reboots on wake. Never returns."""
        import esp32

        self.hw.show(0, False)
        try:
            self.radio.sleep()
        except (RuntimeError, OSError):
            pass
        if wake_button:
            esp32.wake_on_ext0(self.hw.button_pin, esp32.WAKEUP_ALL_LOW)
        if wake_tamper and self.hw.tamper_pin is not None:
            esp32.wake_on_ext1((self.hw.tamper_pin,), esp32.WAKEUP_ANY_HIGH)
        self.store.save_warm()
        machine.deepsleep(ms if ms > 0 else 1)

    async def run(self) -> None:
        bell = self.bell
        hw = self.hw
        can_deep_sleep = sys.platform == "esp32"  # rp2: deep sleep is a reset, RAM lost
        while True:
            self.wdt.feed()
            bell.button(hw.pressed())
            bell.tamper(hw.tamper_open())
            act = bell.next_action()
            k = act.kind
            if k == TRANSMIT:
                await self.transmit(act.frame, act.rx_open)
            elif k == FEEDBACK:
                self.fb.show(act.pattern, act.restart)
                self.fb_changed.set()
            elif k == SELFTEST:
                ran, passed = await self.selftest()
                bell.selftest_done(ran, passed)
            elif k == REBOOT:
                await asyncio.sleep_ms(100)
                machine.reset()
            elif act.deep and can_deep_sleep:
                self.deep_sleep(act.sleep_ms, act.wake_button, act.wake_tamper)
            else:
                wait = act.sleep_ms if act.sleep_ms < _MAX_WAIT_MS else _MAX_WAIT_MS
                if wait > 0:
                    try:
                        await asyncio.wait_for_ms(self.inputs.wait(), wait)
                    except asyncio.TimeoutError:
                        pass
                else:
                    await asyncio.sleep_ms(0)  # let the LED task run


async def main(board: "Any", cause: int, hw: Hardware, pressed_at_boot: bool) -> None:
    # Once started the watchdog cannot be stopped (esp32 docs): a wedged loop resets
    # the board, and the pending alarm resumes from flash.
    wdt = machine.WDT(timeout=_WDT_MS)
    store = make_store(board)
    sensors = Sensors(hw, store)
    bell = Bell(store, ticks_ms, random.randrange, sensors)
    # The press comes first: the bell decides, from the levels now, before anything slow.
    # A press held less than the provisioning hold is still a press: never forgotten.
    bell.boot(cause, pressed_at_boot or hw.pressed(), hw.tamper_open())
    if cause == BOOT_COLD and not bell.provisioning:
        store.power_on_s = int(time.time())
        store.save_warm()
    # Radio parameters are config keys the bell itself does not use (freq_khz, sf, ...).
    radio = make_radio(board, store.load_config() or {})
    glue = Glue(bell, hw, radio, store, wdt)
    glue.arm_irqs()
    asyncio.create_task(glue.led_task())
    await glue.run()


def start() -> None:
    board = load_board()
    cause = boot_cause()
    hw = Hardware(board)
    pressed_at_boot = hw.pressed()
    # Provisioning mode (firmware/PROVISIONING.md): only on a cold boot with the button
    # held 2 s — a crew powering the bell up. A deep-sleep wake by the button is always a
    # resident's press. It runs its own event loop, before the app's and before the
    # watchdog starts (the mode may last minutes), and resets the board when it ends.
    # TEST there runs the field test (bellcheck.field_test): the app's own self-test,
    # and a test ALARM on the app's radio settings and frame counters.
    if cause == BOOT_COLD and pressed_at_boot:
        store = make_store(board)
        provision.enter_if_held(
            board,
            service=lambda: field_test(hw, store, lambda c: make_radio(board, c), asyncio.sleep_ms),
            validate=parse_config,
            pin_name="button",
            store=store,
        )
    asyncio.run(main(board, cause, hw, pressed_at_boot))


start()
