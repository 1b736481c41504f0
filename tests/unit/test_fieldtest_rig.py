"""Field-test sessions on fake hardware, runnable in CPython and in MicroPython.

No tests here: `run_all()` plays each case -- a crew's HELLO and signed TEST against
`provision.Provisioner` with the bell's or the light's real field-test service
(`bellcheck.field_test`, `light.field_test`, both over firmware/lib/fieldtest.py),
then the app's first frame after the reset that ends provisioning mode -- and returns
what crossed the wire and the air as hex. tests/unit/test_fieldtest.py checks it in
CPython with the host's reply decoder and the gateway's codec; the MicroPython test
(tests/micropython/test_fieldtest_mp.py) runs the same cases in the real interpreter
and checks the same way, and that both put the same bytes on air.

The radio is the real `radio.Radio` over `FakeModem` (test_radio_lbt.py: the slice of
micropython-lib's SX1262 driver radio.py touches, on a fake clock); the store is the
real `store.Store` over `FakeNvs` and `FakeRtc` (test_bell_fakes.py); the gateway is
test_bell_fakes' `Gateway`, which hears each frame and answers RX_OPEN with an ACK in
the receive window. Coroutines are driven by hand (`run`): the fakes never suspend.

MicroPython-compatible code only (see test_bell_fakes.py).
"""

import binascii
import json

try:
    from tests.unit.test_bell_fakes import (
        DEVICE_ID,
        KEY,
        KEY_HEX,
        Clock,
        FakeNvs,
        FakeRtc,
        FakeSensors,
        Gateway,
        lcg,
    )
    from tests.unit.test_radio_lbt import FakeModem, run
except ImportError:  # MicroPython: flat modules in /lib
    from test_bell_fakes import (
        DEVICE_ID,
        KEY,
        KEY_HEX,
        Clock,
        FakeNvs,
        FakeRtc,
        FakeSensors,
        Gateway,
        lcg,
    )
    from test_radio_lbt import FakeModem, run

import sys

if sys.implementation.name != "micropython":
    import os

    _ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _d in ("firmware/light",):
        _p = os.path.join(_ROOT, _d)
        if _p not in sys.path:
            sys.path.insert(0, _p)

import codec
import provision
from radio import RX_DELAY_MS, Radio
from store import NvsBackend, Store

BELL_CONFIG = {"device_id": f"{DEVICE_ID:08x}", "key": KEY_HEX, "button": 1}
LIGHT_CONFIG = {"device_id": f"{DEVICE_ID:08x}", "key": KEY_HEX, "lamp_ma": 350}
HISTORY = 40  # uplinks the app sent before the crew came
ACK_RSSI = -87
ACK_SNR_X4 = -37  # -9.25 dB


class AckingModem(FakeModem):
    """`FakeModem` with a gateway that hears every frame and ACKs those with RX_OPEN."""

    def __init__(self, clock, gateway=None, channel=None):
        super().__init__(clock, channel)
        self.gw = gateway

    async def send(self, packet, tx_at_ms=None):
        end = await super().send(packet, tx_at_ms)
        if self.gw is not None:
            _name, counter, flags, _fields = self.gw.uplink(bytes(packet))
            if flags & codec.FLAG_RX_OPEN:
                at = self.clock.elapsed + RX_DELAY_MS
                self.downlinks.append((at, self.gw.ack(counter), ACK_RSSI, ACK_SNR_X4, False))
        return end


class DeadModem(FakeModem):
    """A modem whose BUSY line never drops: every command times out, as the driver's."""

    def _cmd(self, fmt, *write_args, n_read=0, write_buf=None, read_buf=None):
        raise RuntimeError("BUSY timeout")

    async def send(self, packet, tx_at_ms=None):
        raise RuntimeError("BUSY timeout")


class BellHw:
    """The bell's ``Hardware`` as bellcheck uses it; the sense ADCs read current only
    while the LED (or the piezo) is driven."""

    def __init__(self):
        self.button = False
        self.tamper = False
        self.tamper_pin = "GPIO4"
        self.battery = 3626
        self.shown = []

    def pressed(self):
        return self.button

    def tamper_open(self):
        return self.tamper

    def show(self, led_percent, buzz):
        self.shown.append((led_percent, buzz))

    def battery_mv(self):
        return self.battery

    def led_sense_mv(self):
        return 240 if self.shown and self.shown[-1][0] > 0 else 0

    def buzzer_sense_mv(self):
        return 180 if self.shown and self.shown[-1][1] else 0


class LightHw:
    """The light's ``Hardware``: a lamp drawing ``lamp_full_ma`` at 100 % (0: broken)."""

    def __init__(self, lamp_full_ma=350):
        self.lamp_full_ma = lamp_full_ma
        self.out = 0
        self.outputs = []

    def output(self, permille):
        self.out = permille
        self.outputs.append(permille)

    def lamp_ma(self):
        return self.lamp_full_ma * self.out // 1000

    def photo_mv(self):
        return 1200


class Settings:
    """The light's settings over a config dict (main.py's ``Settings`` without flash)."""

    def __init__(self, cfg):
        self.cfg = cfg

    def get(self, key, default):
        return self.cfg.get(key, default)

    def set(self, key, value):
        self.cfg[key] = value


def _hex(data):
    return binascii.hexlify(bytes(data)).decode()


def _request(op, seq, body=b""):
    return bytes((provision.VERSION, op, seq)) + body


def _clone(nvs, rtc):
    n = FakeNvs()
    for k in nvs.blobs:
        n.blobs[k] = nvs.blobs[k]
    r = FakeRtc()
    r.mem = rtc.mem
    return n, r


class Device:
    """A device the app has used (``HISTORY`` uplinks), powered up by a crew with the
    button held: its NVS, RTC memory (lost by the power-up), clock and radio."""

    def __init__(self, modem_class=AckingModem, busy=False, config=BELL_CONFIG):
        self.clock = Clock()
        self.nvs = FakeNvs()
        self.rtc = FakeRtc()
        app = Store(NvsBackend(self.nvs), self.rtc)
        app.save_config(config)
        app.open()
        for _ in range(HISTORY):
            app.next_uplink()
        self.rtc.power_loss()  # the crew powers the device up
        self.store = Store(NvsBackend(self.nvs), self.rtc)
        self.gateway = Gateway()
        channel = (lambda ms: -30) if busy else None
        if modem_class is AckingModem:
            self.modem = AckingModem(self.clock, self.gateway, channel)
        else:
            self.modem = modem_class(self.clock, channel)
        self.radio_configs = []
        self.radio_error = None  # make_radio raises this (a mis-wired modem)

    async def sleep_ms(self, ms):
        self.clock.advance(ms)

    def make_radio(self, cfg):
        self.radio_configs.append(cfg.get("sf"))
        if self.radio_error is not None:
            raise self.radio_error
        return Radio(self.modem, lcg(3), clock=self.clock, sleep_ms=self.sleep_ms)

    def session(self, service, validate=None):
        """HELLO, signed TEST, then HELLO again (the mode goes on); the replies."""
        nonces = [bytes([i]) * 16 for i in range(1, 4)]
        prov = provision.Provisioner(
            self.store,
            info={"role": "test"},
            service=service,
            validate=validate,
            rand=lambda n: nonces.pop(0),
            clock=self.clock,
        )
        hello = run(prov.handle_async(_request(provision.OP_HELLO, 1)))
        nonce = binascii.unhexlify(json.loads(hello[4:])["nonce"])
        mac = provision.request_mac(KEY, provision.OP_TEST, nonce, b"")
        test = run(prov.handle_async(_request(provision.OP_TEST, 2, nonce + mac)))
        again = run(prov.handle_async(_request(provision.OP_HELLO, 3)))
        return [_hex(hello), _hex(test), _hex(again)]

    def outcome(self, replies, app_frame):
        after = Store(NvsBackend(self.nvs))
        after.open()
        return {
            "replies": replies,
            "sent": [_hex(s[1]) for s in self.modem.sent],
            "app_warm": _hex(app_frame(*_clone(self.nvs, self.rtc))),
            "app_cold": _hex(app_frame(*_clone(self.nvs, FakeRtc()))),
            "down_last": after.down_last,
        }


def bell_app_frame(nvs, rtc):
    """The bell app after the reset: a resident's press wakes it; its ALARM frame."""
    from bell import BOOT_BUTTON, SELFTEST, TRANSMIT, Bell

    bell = Bell(Store(NvsBackend(nvs), rtc), Clock(), lcg(5), FakeSensors())
    bell.boot(BOOT_BUTTON)
    for _ in range(10):
        act = bell.next_action()
        if act.kind == TRANSMIT:
            return bytes(act.frame)
        if act.kind == SELFTEST:
            bell.selftest_done(0x07, 0x07)
    raise AssertionError("the bell sent nothing after the press")


def light_app_frame(nvs, rtc):
    """The light app after the reset: its first uplink (a LIGHT_STATUS)."""
    from fieldtest import device_codec
    from light import Light

    store = Store(NvsBackend(nvs), rtc)
    store.open()
    cfg = store.load_config()
    light = Light(device_codec(cfg), store, Settings(cfg), 0)
    t = 0
    while t < 200_000:
        t += 1000
        light.tick(t, None, 1200)  # no current sensor: estimated from the output
        frame = light.next_uplink()
        if frame is not None:
            return bytes(frame)
    raise AssertionError("the light sent nothing")


def bell_case(modem_class=AckingModem, busy=False, radio_error=None, pending=False, **hw):
    import bell
    import bellcheck

    dev = Device(modem_class, busy)
    dev.radio_error = radio_error
    if pending:
        dev.store.save_alarm({"c": 39, "p": 1, "b": 0, "s": 1, "v": 180, "f": 0, "st": 1})
    h = BellHw()
    for k in hw:
        setattr(h, k, hw[k])
    service = bellcheck.field_test(h, dev.store, dev.make_radio, dev.sleep_ms)
    out = dev.outcome(dev.session(service, bell.parse_config), bell_app_frame)
    out["shown"] = h.shown
    return out


def light_case(lamp_full_ma=350, modem_class=AckingModem):
    import light

    dev = Device(modem_class, config=LIGHT_CONFIG)
    h = LightHw(lamp_full_ma)
    service = light.field_test(h, dev.store, dev.make_radio, dev.sleep_ms)
    out = dev.outcome(dev.session(service), light_app_frame)
    out["outputs"] = h.outputs
    return out


def flash_dead_case():
    """The flash refuses writes: the counter cannot be reserved, so nothing is sent."""
    import bellcheck

    dev = Device()
    dev.nvs.fail_writes = True
    service = bellcheck.field_test(BellHw(), dev.store, dev.make_radio, dev.sleep_ms)
    replies = dev.session(service)
    dev.nvs.fail_writes = False
    return dev.outcome(replies, bell_app_frame)


def run_all():
    """Every case: name -> outcome (JSON-able)."""
    return {
        "bell": bell_case(),
        "bell_tamper_open": bell_case(tamper=True),
        "bell_dead_radio": bell_case(modem_class=DeadModem),
        "bell_no_radio": bell_case(radio_error=RuntimeError("Invalid initial status")),
        "bell_channel_busy": bell_case(busy=True),
        "bell_alarm_pending": bell_case(pending=True),
        "bell_flash_dead": flash_dead_case(),
        "light": light_case(),
        "light_lamp_broken": light_case(lamp_full_ma=0),
        "light_dead_radio": light_case(modem_class=DeadModem),
    }
