"""The field test that provisioning mode's TEST runs (firmware/PROVISIONING.md section 6).

A crew runs `anshim field-test` beside an installed device in provisioning mode. The
device, through `FieldTest`:

* runs its role's self-test -- the bell's `bellcheck.run_checks`, which its app runs
  for its own SELFTEST frames; the light's `light.field_checks`, the lamp check of its
  COMMAND SELFTEST plus radio and storage -- and reports each check by name, with
  ``ok`` when every one passed (`selftest`);
* sends one real ALARM with the TEST flag and RX_OPEN (PROTOCOL.md 1.2, 3.1), encoded
  by the firmware codec under its own device id and key, with the next uplink counter
  from its store, through the real radio adapter (KR920 listen-before-talk); then
  listens in the receive window after it for the gateway's ACK and reports the ACK's
  RSSI and SNR, so the crew learns that the downlink works too (`send_test`).

The gateway journals a TEST alarm and acknowledges it like any other, but never
strobes lights or calls anyone for it; `anshim field-test` then finds it at the
gateway by its event id (device id and counter). A light sends the same ALARM: it is
the one frame whose TEST flag the gateway records, and the one it always acknowledges.

**The frame counter** comes from `store.Store.next_uplink`, which writes the counter
reservation to flash before handing the counter out (and keeps the exact counter in
RTC memory where the board has some): after the reset that ends provisioning mode the
app starts above it (ARCHITECTURE invariant 4). If the reservation cannot be written,
nothing is sent: unlike a resident's alarm, a test frame is not worth a counter that
could repeat after a power cut.

**A pending alarm** (a press the gateway has not acknowledged) must stay the highest
counter the gateway has seen, or its retransmissions would be refused as replays
(bell.py): while one is stored, the test frame is refused.

The methods are coroutines (the radio is ``async``): `provision.Provisioner.handle_async`
awaits them in provisioning mode's event loop. Errors raise (`TestFrameNotSent` says
what was not sent and why); the Provisioner answers FAILED with the text and carries on.
Nothing is built at construction: the radio is made at the first TEST (building the
modem talks to the chip) and again when a WRITE changed the radio settings.
"""

import binascii

from board import RADIO_DEFAULTS
from codec import FLAG_MORE, FLAG_RX_OPEN, FLAG_TEST, Codec
from errors import ProtocolError
from radio import ChannelBusy

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Dict, List, Optional

    Checks = Callable[[Any, Dict[str, str]], Awaitable[Dict[str, Any]]]


class TestFrameNotSent(Exception):
    """The test frame did not go out (or not surely); the message says why."""


def device_codec(cfg: "Any") -> Codec:
    """The codec for the stored config's ``device_id`` (hex or int) and ``key`` (hex).

    Raises ValueError (or KeyError) for a config without them.
    """
    dev = cfg["device_id"]
    if isinstance(dev, str):
        dev = int(dev, 16)
    return Codec(dev, binascii.unhexlify(cfg["key"]))


def why(exc: "Any") -> str:
    """An exception as a crew reads it: ``RuntimeError: BUSY timeout``."""
    text = str(exc)
    return type(exc).__name__ + (": " + text if text else "")


class FieldTest:
    """The field-test service a role's ``main.py`` hands to `provision.enter_if_held`.

    ``store`` is the app's `store.Store` (config and frame counters); ``make_radio(cfg)``
    builds a `radio.Radio` for the config's radio settings; ``checks(radio, notes)`` is
    the role's self-test, a coroutine returning ``{"checks": {name: bool}, ...}``
    (``radio`` is None when it could not be built; ``notes`` takes a reason per failed
    check); ``battery_mv()`` reads the battery for the ALARM (None: mains powered).
    """

    def __init__(
        self,
        store: "Any",
        make_radio: "Callable[[Dict[str, Any]], Any]",
        checks: "Checks",
        battery_mv: "Optional[Callable[[], int]]" = None,
    ) -> None:
        self._store = store
        self._make_radio = make_radio
        self._checks = checks
        self._battery_mv = battery_mv
        self._radio: "Any" = None
        self._radio_cfg: "Optional[List[Any]]" = None
        self._opened = False

    def radio(self, cfg: "Dict[str, Any]") -> "Any":
        """The radio for ``cfg``'s settings: built once, again when they change."""
        settings = [cfg.get(k) for k in RADIO_DEFAULTS]
        if self._radio is None or settings != self._radio_cfg:
            self._radio = None
            self._radio = self._make_radio(cfg)
            self._radio_cfg = settings
        return self._radio

    async def selftest(self) -> "Dict[str, Any]":
        """``{"ok": bool, "checks": {name: bool}, "notes": {name: why}, ...}``."""
        cfg = self._store.load_config() or {}
        notes: "Dict[str, str]" = {}
        try:
            radio = self.radio(cfg)
        except Exception as exc:  # a mis-wired modem fails loudly: report it as a check
            radio = None
            notes["radio"] = why(exc)
        out = await self._checks(radio, notes)
        checks = out["checks"]
        ok = True
        for name in checks:
            if checks[name] is not True:
                ok = False
        out["ok"] = ok
        if notes:
            out["notes"] = notes
        return out

    async def send_test(self) -> "Dict[str, Any]":
        """Send the test ALARM and listen for its ACK; what was sent and what was heard.

        ``{"type": "alarm", "counter": n, "test": True, "downlink": None or {"rssi":
        dBm, "snr": dB, "alarm_state": n}}``, and ``rx_error`` if the receiver failed.
        """
        store = self._store
        cfg = store.load_config()
        codec = device_codec(cfg)
        pending = store.load_alarm()
        if pending is not None:
            raise TestFrameNotSent(
                "an alarm (counter %s) is not acknowledged yet: it must go out first; "
                "leave provisioning mode, let it through, then test" % (pending.get("c"),)
            )
        try:
            radio = self.radio(cfg)
        except Exception as exc:
            raise TestFrameNotSent("radio: %s" % why(exc)) from None
        if not self._opened:
            store.open()  # the counters as the app left them (RTC memory, flash)
            self._opened = True
        errors = store.write_errors
        counter = store.next_uplink()
        if store.write_errors != errors:
            raise TestFrameNotSent("frame counter %d could not be reserved in flash" % counter)
        button = cfg.get("button", 0)
        if not isinstance(button, int) or not 0 <= button <= 0xFF:
            button = 0
        battery = self._battery_mv() if self._battery_mv is not None else 0
        frame = codec.encode_alarm(counter, FLAG_TEST | FLAG_RX_OPEN, button, 1, battery, 0)
        try:
            end = await radio.transmit(frame)
        except ChannelBusy:
            raise TestFrameNotSent(
                "channel busy on every listen-before-talk try: frame %d not sent" % counter
            ) from None
        except (RuntimeError, OSError) as exc:  # driver: BUSY-line timeout, SPI error
            raise TestFrameNotSent(
                "radio failed sending frame %d: %s" % (counter, why(exc))
            ) from None
        out: "Dict[str, Any]" = {"type": "alarm", "counter": counter, "test": True}
        out["downlink"] = None
        try:
            out["downlink"] = await self._ack(radio, codec, counter, end)
            radio.sleep()
        except (RuntimeError, OSError) as exc:
            out["rx_error"] = why(exc)
        return out

    async def _ack(self, radio: "Any", codec: Codec, counter: int, end: "Any") -> "Any":
        """The gateway's ACK of ``counter`` in the receive window, recorded as the app
        would record it (downlink counter, last RSSI/SNR); None if none came."""
        store = self._store
        closes = radio.window(end)[1]
        p = await radio.receive_window(end)
        while p is not None:
            try:
                name, _dev, down, flags, fields = codec.decode(p, store.down_last)
            except ProtocolError:
                name = ""  # another device's frame, or noise: keep listening
            last = store.down_last
            if name == "ACK" and fields["acked_counter"] == counter:
                if last is not None and down <= last:
                    name = ""  # a replayed ACK
                else:
                    return self._heard(p, down, fields["alarm_state"])
            if name and flags & FLAG_MORE:
                p = await radio.receive_more()
            else:
                p = await radio.receive(closes)
        return None

    def _heard(self, p: "Any", down: int, alarm_state: int) -> "Dict[str, Any]":
        store = self._store
        try:
            store.accept_downlink(down)  # a replay of this ACK is refused from now on
        except OSError:
            store.down_last = down
        rssi = getattr(p, "rssi", None) or 0
        snr_x4 = getattr(p, "snr", None) or 0  # RxPacket.snr: dB x 4 (sx126x.py)
        store.last_rssi = rssi
        store.last_snr = snr_x4 // 4 if snr_x4 >= 0 else -((-snr_x4) // 4)
        store.save_warm()
        return {"rssi": rssi, "snr": snr_x4 / 4, "alarm_state": alarm_state}
