"""Gateway benchmarks: end-to-end frames/s and alarm latency, with a real mosquitto.

sim transport → decode + MIC → journal (SQLite WAL, synchronous=FULL) → outbox → aiomqtt
QoS 1 → PUBACK from mosquitto on loopback. The clock stops when the broker has
acknowledged the last message, so nothing is counted that is not durable upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import io
import logging
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway import db
from gateway.config import MqttSettings, RulesSettings, Settings, SupervisionSettings
from gateway.registry import Place, Registry
from gateway.service import Gateway
from gateway.transports.sim import SimTransport
from protocol import frames as fr
from tools.mosquitto import Broker


def _fleet(s: Settings, n: int) -> list[tuple[int, bytes]]:
    conn = db.connect(s.database)
    reg = Registry(conn)
    rows = [
        {
            "kind": "bell",
            "place": Place(
                lat=37.58 + (i % 100) * 1e-4, lon=127.0 + (i // 100) * 1e-4, label=f"bench {i}"
            ),
        }
        for i in range(n)
    ]
    reg.add_many(rows)
    out = [(d.device_id, d.key) for d in reg.devices()]
    conn.close()
    return out


def _settings(tmp: Path, url: str) -> Settings:
    return Settings(
        gateway_id="bench",
        site="bench",
        data_dir=tmp / "data",
        mqtt=MqttSettings(url=url, max_inflight=100),
        supervision=SupervisionSettings(check_every_s=3600),
        rules=RulesSettings(strobe_radius_m=0),
    )


@contextlib.asynccontextmanager
async def _running(s: Settings, sim: SimTransport) -> Any:
    # The benchmark's alarms are not news: keep their log lines out of the report.
    gateway_log = logging.getLogger("anshim.gateway")
    level = gateway_log.level
    gateway_log.setLevel(logging.ERROR)
    try:
        async with _gateway(s, sim) as gw:
            yield gw
    finally:
        gateway_log.setLevel(level)


@contextlib.asynccontextmanager
async def _gateway(s: Settings, sim: SimTransport) -> Any:
    async with Gateway(s, transports=[sim]).running() as gw:
        await sim.ready()
        while gw.upstream is None or not gw.upstream.connected:
            await asyncio.sleep(0.01)
        yield gw


def _heartbeats(devices: list[tuple[int, bytes]], rounds: int) -> list[bytes]:
    frames = []
    for r in range(rounds):
        for device_id, key in devices:
            hb = fr.Heartbeat(3600, 15, r, 0, 0x10, -90, 5)
            frames.append(fr.encode(fr.Frame(device_id, r + 1, hb), key))
    return frames


async def _throughput(s: Settings, frames: list[bytes], profile: bool) -> tuple[float, str]:
    sim = SimTransport()
    async with _running(s, sim) as gw:
        prof = cProfile.Profile() if profile else None
        start = time.perf_counter()
        if prof:
            prof.enable()
        for i in range(0, len(frames), 200):
            for data in frames[i : i + 200]:
                sim.inject(data)
            await asyncio.sleep(0)
        # Stop when everything is committed and the broker has acknowledged every message
        # (published rows leave the outbox table in a batch shortly after).
        while gw.core.journal.pending or not gw.core.journal.outbox_drained:
            await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - start
        if prof:
            prof.disable()
        accepted = gw.core.metrics.counts.get("accepted", 0)
        assert accepted == len(frames), (accepted, len(frames))
    text = ""
    if prof:
        buf = io.StringIO()
        stats = pstats.Stats(prof, stream=buf)
        buf.write(breakdown(stats))
        stats.sort_stats("tottime").print_stats(25)
        text = buf.getvalue()
    return len(frames) / elapsed, text


# Where a frame's time goes, by part of the path (self time of the functions in each).
_PARTS = (
    (
        "gateway pipeline (core, messages, transports)",
        ("gateway/core.py", "gateway/messages.py", "gateway/transports/"),
    ),
    ("codec + MIC (protocol/)", ("protocol/",)),
    ("journal + outbox (gateway/journal.py, SQLite)", ("gateway/journal.py", "sqlite3")),
    ("upstream drain (gateway/upstream.py)", ("gateway/upstream.py",)),
    ("MQTT client (paho-mqtt, aiomqtt)", ("paho/", "aiomqtt/")),
    ("socket I/O", ("_socket.socket",)),
    ("JSON encoding", ("json/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py", "select.epoll")),
)  # "other": builtins (isinstance, dict and list methods…) and the benchmark itself


def breakdown(stats: pstats.Stats) -> str:
    """Self time grouped by part of the path, as shares of the whole (under cProfile,
    which inflates code made of many small calls: read shares, not absolute times)."""
    totals = dict.fromkeys([name for name, _ in _PARTS] + ["other"], 0.0)
    for (path, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{path} {func}"
        part = next((n for n, keys in _PARTS if any(k in where for k in keys)), "other")
        totals[part] += row[2]
    whole = sum(totals.values()) or 1.0
    lines = ["where the time goes (self time under cProfile, by part of the path):"]
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100 * t / whole:5.1f} %  {name}")
    return "\n".join(lines) + "\n\n"


def bench_throughput(
    *, runs: int = 3, devices: int = 1000, rounds: int = 20, profile: bool = False
) -> dict[str, Any]:
    samples = []
    profile_text = ""
    with tempfile.TemporaryDirectory() as tmp_dir, Broker(Path(tmp_dir)) as broker:
        for run in range(runs + (1 if profile else 0)):
            s = _settings(Path(tmp_dir) / f"run{run}", broker.url)
            fleet = _fleet(s, devices)
            frames = _heartbeats(fleet, rounds)
            if run < runs:
                rate, _ = asyncio.run(_throughput(s, frames, False))
                samples.append(rate)
            else:  # one more run under the profiler, not counted in the figures
                _, profile_text = asyncio.run(_throughput(s, frames, True))
    return {
        "median": statistics.median(samples),
        "runs": samples,
        "frames": devices * rounds,
        "profile": profile_text,
    }


async def _latency(
    s: Settings, fleet: list[tuple[int, bytes]], seconds: float, background_fps: int
) -> list[float]:
    sim = SimTransport()
    latencies: list[float] = []
    async with _running(s, sim) as gw:
        sent_at: dict[str, float] = {}

        def on_puback(row: Any) -> None:
            if "/alarm/" in row.topic:
                for event_id, t0 in list(sent_at.items()):
                    if row.topic.endswith(event_id):
                        latencies.append(time.perf_counter() - t0)
                        del sent_at[event_id]

        assert gw.upstream is not None
        gw.upstream.on_puback = on_puback
        bells = fleet[:50]
        background = fleet[50:]
        counters = {d: 0 for d, _ in fleet}
        end = time.perf_counter() + seconds
        tick = 0.01
        per_tick = max(1, int(background_fps * tick))
        next_alarm = time.perf_counter() + 0.05
        b = 0
        a = 0
        while time.perf_counter() < end:
            t = time.perf_counter()
            for _ in range(per_tick):
                device_id, key = background[b % len(background)]
                b += 1
                counters[device_id] += 1
                sim.inject(
                    fr.encode(
                        fr.Frame(
                            device_id,
                            counters[device_id],
                            fr.Heartbeat(3600, 15, 1, 0, 0x10, -90, 5),
                        ),
                        key,
                    )
                )
            if t >= next_alarm:
                device_id, key = bells[a % len(bells)]
                a += 1
                counters[device_id] += 1
                data = fr.encode(fr.Frame(device_id, counters[device_id], fr.Alarm()), key)
                sent_at[fr.event_id(device_id, counters[device_id])] = time.perf_counter()
                sim.inject(data)
                next_alarm = t + 0.05
            await asyncio.sleep(max(0.0, tick - (time.perf_counter() - t)))
        while sent_at and time.perf_counter() < end + 5:
            await asyncio.sleep(0.01)
    return latencies


def bench_latency(
    *, runs: int = 3, seconds: float = 8.0, background_fps: int = 1000
) -> dict[str, Any]:
    p50s, p99s, counts = [], [], []
    with tempfile.TemporaryDirectory() as tmp_dir, Broker(Path(tmp_dir)) as broker:
        for run in range(runs):
            s = _settings(Path(tmp_dir) / f"lat{run}", broker.url)
            fleet = _fleet(s, 600)
            lat = sorted(asyncio.run(_latency(s, fleet, seconds, background_fps)))
            p50s.append(1000 * lat[len(lat) // 2])
            p99s.append(1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))])
            counts.append(len(lat))
    return {
        "p50_ms": statistics.median(p50s),
        "p99_ms": statistics.median(p99s),
        "p50_runs": p50s,
        "p99_runs": p99s,
        "alarms": counts,
    }
