"""Small helpers shared by the CLI's noun modules."""

from __future__ import annotations

import json
import sys
from typing import Any


class CliError(Exception):
    """A failure to report as one line; ``exit_code`` 1 = failed, 2 = usage."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, sort_keys=False)
    sys.stdout.write("\n")


def parse_hex(text: str, *, what: str) -> bytes:
    """Bytes from hex, tolerating spaces, colons and a 0x prefix; a clear error otherwise."""
    cleaned = text.strip().lower().removeprefix("0x").replace(" ", "").replace(":", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise CliError(f"{what} is not valid hex: {text!r}", exit_code=2) from None
