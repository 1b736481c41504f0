"""A device emulator on a pseudo-terminal: the real MicroPython behind a serial port.

`Emulator` starts ``tools/crew/emulator.mjs`` (the official MicroPython WebAssembly port
under Node.js) and puts a pty in front of it, so anything that opens serial ports —
pyserial, mpremote, ``anshim firmware flash --port``, ``anshim provision serial`` — finds
a board there: a REPL and raw REPL, a flash file system kept in a host folder, ESP32
NVS, ``machine.reset()``, and provisioning mode when its button is held at boot.

    with Emulator(tmp_path / "board") as board:
        anshim(["firmware", "flash", "--port", board.port, ...])
        board.power_cycle(button=True)          # provisioning mode
        anshim(["provision", "serial", "--port", board.port, ...])
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path

from tools.crew import CrewError

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).resolve().parent / "emulator.mjs"
PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


class Emulator:
    def __init__(
        self,
        state: Path,
        *,
        button: bool = False,
        heap: int = 2 << 20,
        idle_ms: int = 180_000,
        node: str | None = None,
    ) -> None:
        self.state = state
        self.button = button
        self.heap = heap
        self.idle_ms = idle_ms
        self.node = node or shutil.which("node")
        self.radio = state / "radio.txt"
        self.port = ""
        self.events: list[str] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = -1
        self._slave = -1
        self._control = -1
        self._threads: list[threading.Thread] = []

    # --- life cycle ---

    def start(self, timeout: float = 30.0) -> Emulator:
        if self.node is None:
            raise CrewError("the emulator needs Node.js (`node`) on PATH")
        if not (PACKAGE / "micropython.mjs").is_file():
            raise CrewError(f"{PACKAGE} is missing: run `npm ci` (make setup)")
        self.state.mkdir(parents=True, exist_ok=True)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes through untouched, no echo
        self.port = os.ttyname(self._slave)
        read_ctl, self._control = os.pipe()
        args = [
            self.node,
            str(SCRIPT),
            "--fs",
            str(self.state),
            "--heap",
            str(self.heap),
            "--control",
            str(read_ctl),
            "--radio",
            str(self.radio),
            "--idle-ms",
            str(self.idle_ms),
        ]
        if self.button:
            args.append("--button")
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(read_ctl,),
            cwd=ROOT,
        )
        os.close(read_ctl)
        for target in (self._to_board, self._from_board, self._events):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self._threads.append(t)
        self.wait_event(lambda e: e.startswith("boot "), timeout=timeout)
        return self

    def close(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        with contextlib.suppress(OSError):
            os.write(self._control, b"quit\n")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for fd in (self._control, self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the bytes: pty master <-> node ---

    def _to_board(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:
                return
            if not data:
                return
            try:
                proc.stdin.write(data)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return

    def _from_board(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        while True:
            data = proc.stdout.read1(4096)  # type: ignore[attr-defined]
            if not data:
                return
            try:
                os.write(self._master, data)
            except OSError:
                return

    def _events(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            with self._cond:
                self.events.append(line)
                self._cond.notify_all()

    # --- control ---

    def wait_event(
        self, match: Callable[[str], bool], *, timeout: float = 30.0, since: int = 0
    ) -> str:
        """Wait for an event line (from index ``since``) that ``match`` accepts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.events[since:]:
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc is not None and self._proc.poll() is not None):
                    raise CrewError(
                        f"emulator: no such event within {timeout:g} s; events: {self.events[-8:]}"
                    )
                self._cond.wait(min(left, 0.2))

    def _send(self, line: str) -> None:
        os.write(self._control, line.encode() + b"\n")

    def press(self, held: bool = True) -> None:
        """Hold the board's button down (or let it go)."""
        mark = len(self.events)
        self._send(f"button {1 if held else 0}")
        self.wait_event(lambda e: e.startswith("control ok button"), since=mark)

    def power_cycle(self, *, button: bool | None = None, timeout: float = 30.0) -> str:
        """Power off and on, optionally with the button held; returns the boot event."""
        if button is not None:
            self.press(button)
        mark = len(self.events)
        self._send("power-cycle")
        return self.wait_event(lambda e: e.startswith("boot "), since=mark, timeout=timeout)

    def transmitted(self) -> list[bytes]:
        """Frames the emulated radio sent (field tests)."""
        if not self.radio.exists():
            return []
        return [bytes.fromhex(h) for h in self.radio.read_text().split()]

    @property
    def flash(self) -> Path:
        """The host folder holding the board's file system (written at each reboot/exit)."""
        return self.state / "flash"
