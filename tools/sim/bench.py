"""Simulator speed for ``anshim bench``: simulated device-hours per wall second.

`sim_speed` runs the city scenario (bells and lights reporting hourly, three gateways,
a few presses) for one simulated hour per run, in virtual time, and returns a benchmark
entry in the shape of `tools.benchmarks.Result.as_dict`.
"""

from __future__ import annotations

import logging
import statistics
import time
from typing import Any

from tools.sim.sweep import run_city


def sim_speed(*, devices: int = 2000, hours: float = 1.0, runs: int = 3) -> dict[str, Any]:
    samples = []
    logger = logging.getLogger("anshim")  # the gateways log every alarm: not news here
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        for i in range(runs):
            started = time.perf_counter()
            sim = run_city(devices, 3, hours, seed=1 + i, presses=10)
            wall = time.perf_counter() - started
            samples.append(devices * sim.ran_s / 3600 / wall)
    finally:
        logger.setLevel(level)
    return {
        "name": "sim.speed",
        "unit": "simulated device-hours per wall second",
        "median": round(statistics.median(samples), 1),
        "runs": [round(s, 1) for s in samples],
        "goal": ">= 300 (5,000 devices x 24 h in under 7 minutes)",
        "devices": devices,
        "hours": hours,
        "scenario": "city, 3 gateways, SF9, hourly reports",
    }
