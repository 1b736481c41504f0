"""Real parts for integration tests: a mosquitto broker on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.mosquitto import Broker, BrokerMissing, find_mosquitto

__all__ = ["Broker"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    try:
        find_mosquitto()
    except BrokerMissing as exc:
        pytest.fail(str(exc))
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()
