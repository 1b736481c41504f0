"""Benchmarks behind `anshim bench`: each entry measures one goal, median of several runs.

Speed goals are shown here, never asserted in the test suite (the machine is noisy).
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from protocol import frames as fr


@dataclass
class Result:
    name: str
    unit: str
    median: float
    runs: list[float]
    goal: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": round(self.median, 1),
            "runs": [round(r, 1) for r in self.runs],
            "goal": self.goal,
            **self.details,
        }


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": platform.platform(),
    }


def _fleet_frames(
    n_devices: int = 200, per_device: int = 10, seed: int = 1
) -> tuple[list[bytes], dict[int, fr.DeviceKey]]:
    """A realistic mix of uplinks (heartbeats, alarms, light reports) from a fleet."""
    rng = random.Random(seed)
    frames: list[bytes] = []
    keys: dict[int, fr.DeviceKey] = {}
    for i in range(n_devices):
        device_id = 0x0A000000 + i
        key = rng.randbytes(16)
        keys[device_id] = fr.DeviceKey.of(key, 1000)
        for c in range(per_device):
            kind = rng.random()
            payload: fr.Payload
            if kind < 0.6:
                payload = fr.Heartbeat(3600, 18, 100, 0, 0x10, -92, 5)
            elif kind < 0.8:
                payload = fr.LightStatus(50, 400, 12345, 3)
            else:
                payload = fr.Alarm(0, 1, 3600, 0)
            frames.append(fr.encode(fr.Frame(device_id, 1001 + c, payload), key))
    rng.shuffle(frames)
    return frames, keys


def bench_decode(engine: str, *, runs: int = 5, seconds: float = 0.4) -> Result:
    """Decode + MIC verify, frames/s on one core."""
    frames, keys = _fleet_frames()
    get = keys.get

    def lookup(device_id: int, direction: fr.Direction) -> fr.DeviceKey | None:
        return get(device_id)

    decode = fr.decode
    samples = []
    for _ in range(runs):
        count = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for data in frames:
                decode(data, lookup, engine=engine)
            count += len(frames)
            now = time.perf_counter()
            if now >= deadline:
                break
        samples.append(count / (now - start))
    label = {
        "struct": "struct layout derived from the construct declarations (default)",
        "compiled": "construct compiled",
        "construct": "construct interpreted",
    }[engine]
    return Result(
        f"codec.decode_verify.{engine}",
        "frames/s per core",
        statistics.median(samples),
        samples,
        goal=">= 100000" if engine == "struct" else "",
        details={"engine": label, "frames": len(frames)},
    )


def bench_gateway(runs: int) -> list[Result]:
    """End-to-end frames/s and alarm latency with a real mosquitto (tools.gateway_bench)."""
    from tools import gateway_bench

    tp = gateway_bench.bench_throughput(runs=min(runs, 3), profile=True)
    lat = gateway_bench.bench_latency(runs=min(runs, 3))
    return [
        Result(
            "gateway.end_to_end",
            "frames/s (sim → journal → QoS 1 PUBACK)",
            tp["median"],
            tp["runs"],
            goal=">= 10000",
            details={"frames": tp["frames"], "profile": tp["profile"]},
        ),
        Result(
            "gateway.alarm_latency_p50",
            "ms RX → PUBACK, 1,000 heartbeats/s background",
            lat["p50_ms"],
            lat["p50_runs"],
            details={"alarms": lat["alarms"]},
        ),
        Result(
            "gateway.alarm_latency_p99",
            "ms RX → PUBACK, 1,000 heartbeats/s background",
            lat["p99_ms"],
            lat["p99_runs"],
            goal="<= 10",
        ),
    ]


def bench_firmware(runs: int) -> list[Result]:
    """Per role: compiled .mpy size and peak heap in MicroPython (tools.firmware_bench)."""
    from tools.firmware_bench import firmware_footprint

    results = []
    for role, fp in firmware_footprint().items():
        size_kb = fp["mpy_bytes_used"] / 1024
        results.append(
            Result(
                f"firmware.{role}.mpy",
                "KB of .mpy (role + the lib it imports)",
                size_kb,
                [size_kb],
                goal="<= 48",
                details={"with_all_of_lib_kb": round(fp["mpy_bytes"] / 1024, 1)},
            )
        )
        if fp.get("heap_peak_bytes") is not None:
            data_kb = fp["heap_data_peak_bytes"] / 1024
            results.append(
                Result(
                    f"firmware.{role}.heap",
                    "KB peak heap, data (code frozen, as deployed)",
                    data_kb,
                    [data_kb],
                    goal="<= 32",
                    details={"with_code_in_ram_kb": round(fp["heap_peak_bytes"] / 1024, 1)},
                )
            )
    return results


def bench_sim(runs: int) -> list[Result]:
    """Simulator speed: simulated device-hours per wall second (tools.sim.bench)."""
    from tools.sim.bench import sim_speed

    r = sim_speed(runs=min(runs, 3))
    return [
        Result(
            r["name"],
            r["unit"],
            r["median"],
            r["runs"],
            goal=r["goal"],
            details={k: r[k] for k in ("devices", "hours", "scenario")},
        )
    ]


ENTRIES: dict[str, Callable[..., list[Result]]] = {
    "codec": lambda runs: [bench_decode(e, runs=runs) for e in fr.ENGINES],
    "gateway": bench_gateway,
    "firmware": bench_firmware,
    "sim": bench_sim,
}


def run(
    names: list[str] | None = None, *, runs: int = 5, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the chosen entries (all by default); the report as plain data."""
    chosen = names or list(ENTRIES)
    unknown = [n for n in chosen if n not in ENTRIES]
    if unknown:
        raise KeyError(f"unknown benchmark {unknown[0]!r} (known: {', '.join(ENTRIES)})")
    results: list[Result] = []
    for name in chosen:
        if progress:
            progress(name)
        results += ENTRIES[name](runs)
    return {"machine": machine_info(), "runs": runs, "results": [r.as_dict() for r in results]}
