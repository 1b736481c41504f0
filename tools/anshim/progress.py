"""A small progress bar on stderr for long crew commands (import, build, flash).

Redrawn in place on a terminal; when stderr is not a terminal (a log, a pipe, CI) it
writes one line when the work ends, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, label: str, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._done = 0
        self._total = 0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        self._done, self._total = done, total
        now = time.monotonic()
        if self.tty and (done >= total or now - self._last_draw >= 0.05):
            self._last_draw = now
            self._draw()

    def _draw(self) -> None:
        total = max(self._total, 1)
        filled = self.width * min(self._done, total) // total
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self._done}/{self._total}")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self.tty:
            if self._drawn:
                self.stream.write("\n")
        elif self._total:
            self.stream.write(f"{self.label}: {self._done}/{self._total}\n")
        self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
