"""Power cut: the gateway killed with SIGKILL mid-burst, restarted, and nothing ACKed is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import db
from gateway.registry import Place, Registry
from protocol import frames as fr
from protocol import link as ln
from tests.conftest import ROOT
from tests.integration.conftest import Broker
from tests.integration.helpers import ControlCenter, PtyBridge, SimDevice

pytestmark = pytest.mark.integration


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.anshim.cli", "gateway", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("ab"),
    )


async def test_every_acked_alarm_is_published_after_sigkill_and_restart(
    tmp_path: Path, broker: Broker
) -> None:
    broker.stop()  # the uplink is down while the alarms come in: they can only be in the journal
    data = tmp_path / "data"
    conn = db.connect(data / "anshim.db")
    reg = Registry(conn)
    bells = [
        SimDevice(
            reg.add(kind="bell", place=Place(lat=37.59 + i * 1e-3, lon=127.0, label=f"bell {i}"))
        )
        for i in range(40)
    ]
    conn.close()
    bridge = PtyBridge(tmp_path / "ttyBridge")
    bridge.attach()
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[gateway]\nid = "gw-kill"\nsite = "seongbuk"\ndata_dir = "{data}"\n'
        f'[transports.serial]\nport = "{bridge.path}"\n'
        f'[mqtt]\nurl = "{broker.url}"\n'
    )
    log = tmp_path / "gateway.log"
    proc = _start(config, log)
    try:
        await bridge.wait_for(lambda b: any(isinstance(m, ln.Config) for m in b.received), 20)
        by_id = {b.device_id: b for b in bells}
        for bell in bells:
            bridge.rx(bell.frame(fr.Alarm(0, 1, 3600, 0), flags=fr.Flags.RX_OPEN))
            await asyncio.sleep(0.005)
            if len(bridge.tx()) >= 15:
                break
        await bridge.wait_for(lambda b: len(b.tx()) >= 15, 20)
        os.kill(proc.pid, signal.SIGKILL)  # mid-burst, no chance to clean up
        proc.wait(10)
        acked = set()
        for tx in bridge.tx():
            device_id = int.from_bytes(tx.frame[2:6], "big")
            ack = by_id[device_id].decode_downlink(tx.frame)
            assert isinstance(ack.payload, fr.Ack)
            acked.add(fr.event_id(device_id, ack.payload.acked_counter))
        assert len(acked) >= 15
        broker.start()
        async with ControlCenter(broker.url).running() as cc:
            proc = _start(config, log)
            await cc.wait_for(
                lambda t, b: t.endswith("/gateway/gw-kill/status") and b["state"] == "online", 30
            )
            for event_id in acked:
                await cc.wait_for(lambda t, b, e=event_id: t.endswith(f"/alarm/{e}"), 30)
            published = {b["event_id"] for t, b in cc.topics("/alarm/")}
            sent = {fr.event_id(b.device_id, b.up) for b in bells if b.up}
            assert acked <= published <= sent  # nothing under another id
            # A gateway that dies is reported by the broker: its last will says "offline".
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            await cc.wait_for(
                lambda t, b: (
                    t.endswith("/gateway/gw-kill/status")
                    and b == {"gateway_id": "gw-kill", "state": "offline"}
                ),
                90,
            )
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        bridge.close()
    # The restart found a consistent journal: SQLite's WAL recovered cleanly.
    assert "Traceback" not in log.read_text(errors="replace")
