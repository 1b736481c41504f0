"""LED and buzzer patterns a resident can read, as pure functions of time.

Each state of a bell has its own pattern, chosen so no two look alike from a few
metres away, at night, to someone who has never read a manual:

=============  ============================================  ==========================
pattern        LED                                           buzzer
=============  ============================================  ==========================
IDLE           off (battery)                                 silent
PROVISIONING   double blink every 2 s                        silent
SENDING        fast blink, 5 Hz                              one short chirp
NOT_THROUGH    triple blink every 1.2 s ("not through yet")  one chirp
DELIVERED      steady on                                     one 300 ms beep
ACKNOWLEDGED   slow blink, 1 s on / 1 s off ("help is        two beeps
               coming")
RESOLVED       three slow flashes, then off                  one beep
=============  ============================================  ==========================

A pattern is a tuple of steps ``(duration_ms, led_percent, buzzer_on)``, repeated or
played once. The buzzer sounds only in the first `buzz_cycles` periods of a repeating
pattern: a beep marks the change of state; a buzzer that never stops would be
unbearable and drains the cell. ``level_at(ms)`` and ``buzzer_at(ms)`` take the time
since the pattern started; `Feedback` holds the current pattern and its start time
from an injected clock, and says when the output next changes so the glue (a Pin or
PWM per output, in ``main.py``) sleeps until exactly then.
"""

from compat import const, ticks_diff

try:
    from typing import TYPE_CHECKING
except ImportError:
    TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any, Callable, Tuple

    Step = Tuple[int, int, int]
    Ticks = Any  # a ticks_ms() value: only ticks_add/ticks_diff may do arithmetic

IDLE = const(0)
PROVISIONING = const(1)
SENDING = const(2)
NOT_THROUGH = const(3)
DELIVERED = const(4)
ACKNOWLEDGED = const(5)
RESOLVED = const(6)

NAMES = (
    "IDLE",
    "PROVISIONING",
    "SENDING",
    "NOT_THROUGH",
    "DELIVERED",
    "ACKNOWLEDGED",
    "RESOLVED",
)

NEVER = const(-1)  # `next_change`: the output stays as it is


class Pattern:
    """Steps ``(duration_ms, led_percent, buzzer_on)``; repeating or played once."""

    def __init__(self, steps: "Tuple[Step, ...]", repeat: bool = True, buzz_cycles: int = 1):
        self.steps = steps
        self.repeat = repeat
        self.buzz_cycles = buzz_cycles
        period = 0
        for s in steps:
            period += s[0]
        self.period = period  # ms of one cycle; a one-shot pattern's whole length

    def _find(self, ms: int) -> int:
        """Index of the step playing at ``ms``, or -1 once a one-shot pattern is over."""
        if ms < 0:
            ms = 0
        if ms >= self.period:
            if not self.repeat:
                return -1
            ms %= self.period
        for i in range(len(self.steps)):
            d = self.steps[i][0]
            if ms < d:
                return i
            ms -= d
        return -1

    def level_at(self, ms: int) -> int:
        """LED brightness, percent, ``ms`` after the pattern started."""
        i = self._find(ms)
        return 0 if i < 0 else self.steps[i][1]

    def buzzer_at(self, ms: int) -> bool:
        """Whether the buzzer sounds ``ms`` after the pattern started."""
        if ms >= self.period * self.buzz_cycles:
            return False
        i = self._find(ms)
        return i >= 0 and bool(self.steps[i][2])

    def _boundary(self, ms: int) -> int:
        """Milliseconds from ``ms`` (>= 0) to the next step boundary, or `NEVER`."""
        if ms >= self.period:
            if not self.repeat:
                return NEVER
            t = ms % self.period
        else:
            t = ms
        for s in self.steps:
            if t < s[0]:
                return s[0] - t
            t -= s[0]
        return NEVER

    def next_change(self, ms: int) -> int:
        """Milliseconds from ``ms`` until the LED or the buzzer changes, or `NEVER`.

        Step boundaries where neither output changes are skipped, so a steady pattern
        costs the glue no wake-ups. The buzzer stops at a cycle boundary, so looking
        one cycle past the buzz cycles is enough.
        """
        if ms < 0:
            ms = 0
        led = self.level_at(ms)
        buzz = self.buzzer_at(ms)
        limit = self.period * (self.buzz_cycles + 1)
        t = ms
        while True:
            b = self._boundary(t)
            if b == NEVER:
                return NEVER
            t += b
            if t - ms > limit:
                return NEVER
            if self.level_at(t) != led or self.buzzer_at(t) != buzz:
                return t - ms


PATTERNS = (
    # IDLE: dark and silent.
    Pattern(((1000, 0, 0),)),
    # PROVISIONING: double blink every 2 s.
    Pattern(((100, 100, 0), (100, 0, 0), (100, 100, 0), (1700, 0, 0))),
    # SENDING: fast blink, 100 ms on / 100 ms off; a chirp confirms the press.
    Pattern(((100, 100, 1), (100, 0, 0))),
    # NOT_THROUGH: triple blink, then a pause; a chirp when it starts.
    Pattern(((100, 100, 1), (100, 0, 0), (100, 100, 0), (100, 0, 0), (100, 100, 0), (700, 0, 0))),
    # DELIVERED: steady on, one beep.
    Pattern(((300, 100, 1), (700, 100, 0))),
    # ACKNOWLEDGED ("help is coming"): slow blink, two beeps.
    Pattern(((200, 100, 1), (100, 100, 0), (200, 100, 1), (500, 100, 0), (1000, 0, 0))),
    # RESOLVED: three slow flashes and a beep, then dark.
    Pattern(
        ((300, 100, 1), (300, 0, 0), (300, 100, 0), (300, 0, 0), (300, 100, 0), (300, 0, 0)),
        repeat=False,
    ),
)

RESOLVED_MS = const(1800)  # length of the RESOLVED pattern


class Feedback:
    """The pattern shown now and since when, on an injected ``ticks_ms``-style clock."""

    def __init__(self, clock: "Callable[[], Ticks]") -> None:
        self._clock = clock
        self.pattern = IDLE
        self._since = clock()

    def show(self, pattern: int, restart: bool = False) -> None:
        """Switch to ``pattern`` (restart it from the beginning if asked or new)."""
        if pattern != self.pattern or restart:
            self.pattern = pattern
            self._since = self._clock()

    def _elapsed(self) -> int:
        return ticks_diff(self._clock(), self._since)

    def led(self) -> int:
        """LED brightness now, percent."""
        return PATTERNS[self.pattern].level_at(self._elapsed())

    def buzzer(self) -> bool:
        return PATTERNS[self.pattern].buzzer_at(self._elapsed())

    def next_change(self) -> int:
        """Milliseconds until the LED or buzzer next changes, or `NEVER`."""
        return PATTERNS[self.pattern].next_change(self._elapsed())
