"""firmware/lib/feedback.py: patterns a resident can tell apart, driven by a clock.

Runs under pytest and in MicroPython (tests/micropython/test_bell_mp.py).
"""

try:
    from tests.unit.test_bell_fakes import Clock
except ImportError:  # MicroPython
    from test_bell_fakes import Clock

import feedback
from feedback import (
    ACKNOWLEDGED,
    DELIVERED,
    IDLE,
    NAMES,
    NEVER,
    NOT_THROUGH,
    PATTERNS,
    PROVISIONING,
    RESOLVED,
    RESOLVED_MS,
    SENDING,
    Feedback,
)


def _led_trace(p, ms=4000, step=50):
    return tuple(p.level_at(t) for t in range(0, ms, step))


def test_every_state_looks_different():
    traces = [_led_trace(p) for p in PATTERNS]
    for i in range(len(traces)):
        for j in range(i + 1, len(traces)):
            assert traces[i] != traces[j], (NAMES[i], NAMES[j])
    assert len(NAMES) == len(PATTERNS) == 7


def test_pattern_shapes():
    idle = PATTERNS[IDLE]
    assert all(idle.level_at(t) == 0 and not idle.buzzer_at(t) for t in range(0, 10000, 7))
    sending = PATTERNS[SENDING]
    flips = sum(1 for t in range(0, 1000, 10) if sending.level_at(t) != sending.level_at(t + 10))
    assert flips >= 8, flips  # a fast blink: >= 4 Hz
    delivered = PATTERNS[DELIVERED]
    assert all(delivered.level_at(t) == 100 for t in range(0, 10000, 13))  # steady
    ack = PATTERNS[ACKNOWLEDGED]
    assert ack.level_at(500) == 100 and ack.level_at(1500) == 0  # slow: 1 s on, 1 s off
    resolved = PATTERNS[RESOLVED]
    assert resolved.period == RESOLVED_MS and not resolved.repeat
    assert resolved.level_at(RESOLVED_MS) == 0 and resolved.level_at(RESOLVED_MS + 5000) == 0
    # The buzzer marks the change of state, then stops.
    for p in (SENDING, NOT_THROUGH, DELIVERED, ACKNOWLEDGED, RESOLVED):
        pat = PATTERNS[p]
        assert pat.buzzer_at(0), NAMES[p]
        assert not any(pat.buzzer_at(t) for t in range(pat.period, pat.period + 5000, 10))
    assert not any(PATTERNS[PROVISIONING].buzzer_at(t) for t in range(0, 5000, 10))


def test_next_change_lands_exactly_on_each_change():
    for idx in range(len(PATTERNS)):
        p = PATTERNS[idx]
        t = 0
        changes = []
        while t < 6000:
            n = p.next_change(t)
            if n == NEVER:
                break
            assert n > 0
            t += n
            changes.append(t)
        # Brute force: every ms where the LED or buzzer differs from the ms before.
        expected = [
            ms
            for ms in range(1, 6000)
            if p.level_at(ms) != p.level_at(ms - 1) or p.buzzer_at(ms) != p.buzzer_at(ms - 1)
        ]
        assert [c for c in changes if c < 6000] == expected, NAMES[idx]


def test_feedback_follows_the_clock():
    clock = Clock()
    fb = Feedback(clock)
    assert fb.pattern == IDLE and fb.led() == 0 and fb.next_change() == NEVER
    fb.show(SENDING)
    assert fb.led() == 100 and fb.buzzer() and fb.next_change() == 100
    clock.advance(150)
    assert fb.led() == 0 and not fb.buzzer() and fb.next_change() == 50
    fb.show(SENDING)  # same pattern: keeps its phase
    assert fb.led() == 0
    fb.show(SENDING, restart=True)  # a new press: from the top, with a chirp
    assert fb.led() == 100 and fb.buzzer()
    fb.show(DELIVERED)
    clock.advance(400)
    assert fb.led() == 100 and not fb.buzzer() and fb.next_change() == NEVER
    fb.show(RESOLVED)
    clock.advance(feedback.RESOLVED_MS)
    assert fb.led() == 0 and fb.next_change() == NEVER
