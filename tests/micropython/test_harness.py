"""The harness runs the real MicroPython, and reports a failing script readably."""

from __future__ import annotations

import pytest

from .conftest import MicroPython, MicroPythonError, firmware_lib

pytestmark = pytest.mark.micropython

# The modules this layer owns; each must import on the device (no typing, no CPython-only
# modules) and find the real MicroPython built-ins through compat.
MODULES = ["compat", "errors", "mic", "codec", "link"]


def test_firmware_imports_in_micropython_with_real_builtins(micropython: MicroPython) -> None:
    out = micropython.run(
        "import sys, time, micropython\n"
        f"for name in {MODULES!r}:\n"
        "    __import__(name)\n"
        "import compat\n"
        "print(sys.implementation.name, compat.MICROPY)\n"
        "print(compat.const is micropython.const, compat.ticks_ms is time.ticks_ms)\n"
        "print('typing' in sys.modules)\n",
        firmware_lib(),
    )
    assert out.split() == ["micropython", "True", "True", "True", "False"]


def test_script_exception_fails_with_micropython_traceback(micropython: MicroPython) -> None:
    script = "import codec\n\ndef f():\n    raise ValueError('boom')\n\nf()\n"
    with pytest.raises(MicroPythonError) as info:
        micropython.run(script, firmware_lib())
    text = str(info.value)
    assert "ValueError: boom" in text
    assert 'File "main.py", line 4, in f' in text


def test_printed_lines_come_back_in_order(micropython: MicroPython) -> None:
    assert micropython.run("for i in range(3):\n    print(i)\n").splitlines() == ["0", "1", "2"]
