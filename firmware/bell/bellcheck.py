"""The bell's self-test on its hardware, and its field test (provisioning mode's TEST).

`run_checks` is the one self-test: the app runs it for a SELFTEST action (after each
cold boot and every ``selftest_h``; main.py ``Glue.selftest``) and reports the bitmaps
in a SELFTEST frame (PROTOCOL.md 3.6); the field test runs the same checks and reports
them by name (`named`). Hardware, radio, store and sleep are passed in, so the checks
run on fakes in CPython and in MicroPython.

``hw`` is main.py's ``Hardware`` or anything with: ``pressed()``, ``tamper_open()``,
``tamper_pin`` (None: no tamper switch fitted), ``show(led_percent, buzz)``,
``battery_mv()`` (0: not measured), ``led_sense_mv()`` and ``buzzer_sense_mv()``
(None where the board has no sense ADC).
"""

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

# On the device this app's modules sit next to main.py ("import bell"); the type check
# sees firmware/bell/ as the package firmware.bell (see main.py).
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

    from fieldtest import FieldTest

    from firmware.bell.bell import (
        CHECK_BATTERY,
        CHECK_BUTTON,
        CHECK_BUZZER,
        CHECK_LED,
        CHECK_RADIO,
        CHECK_STORAGE,
        CHECK_TAMPER,
        parse_config,
    )
else:
    from bell import (
        CHECK_BATTERY,
        CHECK_BUTTON,
        CHECK_BUZZER,
        CHECK_LED,
        CHECK_RADIO,
        CHECK_STORAGE,
        CHECK_TAMPER,
        parse_config,
    )

_SENSE_MS = 200  # LED (and buzzer) on this long before the battery and sense readings
_SENSE_MIN_MV = 100  # a sense ADC above this: current flows through the LED / piezo

# SELFTEST check bits by name, for the field test's report.
NAMES = (
    (CHECK_RADIO, "radio"),
    (CHECK_STORAGE, "storage"),
    (CHECK_BUTTON, "button"),
    (CHECK_TAMPER, "tamper"),
    (CHECK_LED, "led"),
    (CHECK_BUZZER, "buzzer"),
    (CHECK_BATTERY, "battery"),
)


async def run_checks(
    hw: "Any",
    radio: "Any",
    store: "Any",
    low_battery_mv: int,
    sleep_ms: "Callable[[int], Awaitable[Any]]",
    buzz: bool = False,
    notes: "Optional[Dict[str, str]]" = None,
) -> "Tuple[int, int, int]":
    """The checks this board can make: ``(ran, passed, battery_mv)``, bitmaps as
    PROTOCOL.md 3.6. ``radio`` None: it could not be built (a failed radio check).

    ``buzz`` sounds the buzzer with the LED: the app does that only where the board
    can sense it (a daily beep at 3 a.m. would be a nuisance to the neighbours); the
    field test always does, for the crew to hear. ``notes`` gets why a check failed
    where there is more to say than "failed".
    """
    ran = CHECK_RADIO | CHECK_STORAGE | CHECK_BUTTON
    passed = 0
    if radio is not None:
        try:
            await radio.channel_clear()  # SPI, BUSY line and receiver respond
            radio.sleep()
            passed |= CHECK_RADIO
        except (RuntimeError, OSError) as exc:
            if notes is not None:
                from fieldtest import why

                notes["radio"] = why(exc)
    if store.load_config() is not None:
        passed |= CHECK_STORAGE
    elif notes is not None:
        notes["storage"] = "no readable config"
    if not hw.pressed():
        passed |= CHECK_BUTTON
    elif notes is not None:
        notes["button"] = "held down"
    if hw.tamper_pin is not None:
        ran |= CHECK_TAMPER
        if not hw.tamper_open():
            passed |= CHECK_TAMPER
        elif notes is not None:
            notes["tamper"] = "enclosure open"
    # Battery under load, with the LED on.
    hw.show(100, buzz)
    await sleep_ms(_SENSE_MS)
    mv = hw.battery_mv()
    led = hw.led_sense_mv()
    if led is not None:
        ran |= CHECK_LED
        if led > _SENSE_MIN_MV:
            passed |= CHECK_LED
    bz = hw.buzzer_sense_mv()
    if bz is not None:
        ran |= CHECK_BUZZER
        if bz > _SENSE_MIN_MV:
            passed |= CHECK_BUZZER
    hw.show(0, False)
    if mv > 0:
        ran |= CHECK_BATTERY
        if mv >= low_battery_mv:
            passed |= CHECK_BATTERY
        elif notes is not None:
            notes["battery"] = "%d mV, below %d mV" % (mv, low_battery_mv)
    return ran, passed, mv


def named(ran: int, passed: int) -> "Dict[str, bool]":
    """The checks that ran, by name: True when passed."""
    out = {}
    for bit, name in NAMES:
        if ran & bit:
            out[name] = bool(passed & bit)
    return out


def field_test(
    hw: "Any",
    store: "Any",
    make_radio: "Callable[[Dict[str, Any]], Any]",
    sleep_ms: "Callable[[int], Awaitable[Any]]",
) -> "FieldTest":
    """The bell's field-test service: `run_checks` by name, and the test ALARM (with
    the battery reading and the config's button number, as a press would send).
    `fieldtest` is imported here, not at the top: the app itself never loads it."""
    from fieldtest import FieldTest

    async def checks(radio: "Any", notes: "Dict[str, str]") -> "Dict[str, Any]":
        cfg = store.load_config() or {}
        try:
            low = parse_config(cfg)["low_battery_mv"]
        except ValueError:
            low = cfg.get("low_battery_mv", 0)
            low = low if isinstance(low, int) else 0
        ran, passed, mv = await run_checks(hw, radio, store, low, sleep_ms, True, notes)
        return {"checks": named(ran, passed), "battery_mv": mv}

    return FieldTest(store, make_radio, checks, hw.battery_mv)
