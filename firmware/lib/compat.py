"""The few MicroPython built-ins the device modules use, on both interpreters.

On MicroPython this module re-exports the real `micropython.const` and `time.ticks_*`.
On CPython (host tests, the simulator, the CLI's firmware tools) it supplies equivalents
with the same wrap-around arithmetic, so a device module imports the same names
everywhere: ``from compat import const, ticks_ms, ticks_diff, ticks_add``.

MicroPython's parser folds ``_NAME = const(...)`` at compile time whatever module the
name ``const`` was imported from, so importing it from here costs nothing on the device.
"""

try:
    from time import ticks_add, ticks_diff, ticks_ms

    from micropython import const

    MICROPY = True
except ImportError:  # CPython
    import time as _time

    MICROPY = False

    # MicroPython's ticks wrap at 2**30 on every port with 31-bit small ints
    # (MICROPY_PY_TIME_TICKS_PERIOD = MP_SMALL_INT_POSITIVE_MASK + 1); wrapping the same
    # way here makes host tests exercise the wrap-around paths the device will meet.
    _TICKS_PERIOD = 1 << 30
    _TICKS_MAX = _TICKS_PERIOD - 1
    _TICKS_HALF = _TICKS_PERIOD // 2

    def _const(expr):
        return expr

    def _ticks_ms():
        return (_time.monotonic_ns() // 1_000_000) & _TICKS_MAX  # type: ignore[attr-defined]

    def _ticks_diff(ticks1, ticks2):
        # Signed difference ticks1 - ticks2, correct across one wrap (as MicroPython's).
        return ((ticks1 - ticks2 + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF

    def _ticks_add(ticks, delta):
        return (ticks + delta) & _TICKS_MAX

    # mypy checks firmware against the MicroPython stubs, where the names above are the
    # real built-ins; these stand-ins only ever run on CPython.
    const = _const
    ticks_ms = _ticks_ms
    ticks_diff = _ticks_diff
    ticks_add = _ticks_add
