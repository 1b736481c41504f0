"""The field test: the device's self-test and test frame, and what the gateway heard.

`run_device_test` (tools/crew/provisioning.py) gets the device's half over USB or BLE;
then `wait_heard` looks for the frame at the gateway until it shows up or the wait
ends: in the gateway's database (its data folder, on the same laptop or a share) or on
MQTT (the ``alarm/<event id>`` and ``device/<id>/event/+`` topics). After the first
sighting it waits a little more (``settle_s``) for copies from other receivers.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from gateway.config import MqttSettings, Settings
from protocol.frames import event_id as make_event_id
from tools.crew import CrewError


@dataclass(frozen=True)
class Heard:
    source: str  # "database <path>" or "mqtt <url>"
    event_id: str
    receptions: list[dict[str, Any]]  # receiver, rssi, snr (per receiver)
    state: str | None = None  # the alarm's state (delivered: the gateway acknowledged it)


def _from_database(settings: Settings, event_id: str) -> Heard | None:
    path = settings.database
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute(
            "SELECT receptions, state FROM alarms WHERE event_id = ?", (event_id,)
        ).fetchone()
        if row is not None:
            return Heard(f"database {path}", event_id, json.loads(row[0]), row[1])
        row = conn.execute("SELECT body FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if row is not None:
            return Heard(f"database {path}", event_id, json.loads(row[0]).get("receptions", []))
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None


async def _database(
    settings: Settings, event_id: str, wait_s: float, settle_s: float
) -> Heard | None:
    deadline = time.monotonic() + wait_s
    heard = None
    while time.monotonic() < deadline:
        heard = _from_database(settings, event_id)
        if heard is not None:
            await asyncio.sleep(settle_s)
            return _from_database(settings, event_id) or heard
        await asyncio.sleep(0.2)
    return None


async def _mqtt(
    mqtt: MqttSettings, prefix: str, device_id: int, event_id: str, wait_s: float, settle_s: float
) -> Heard | None:
    import aiomqtt

    topics = [f"{prefix}/alarm/{event_id}", f"{prefix}/device/{device_id:08x}/event/+"]
    heard: Heard | None = None
    try:
        async with aiomqtt.Client(
            mqtt.host, mqtt.port, username=mqtt.username, password=mqtt.password()
        ) as client:
            for t in topics:
                await client.subscribe(t, qos=1)
            deadline = time.monotonic() + wait_s
            messages = aiomqtt_messages(client)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    msg = await asyncio.wait_for(anext(messages), left)
                except TimeoutError:
                    break
                try:
                    body = json.loads(msg.payload)
                except (TypeError, ValueError):
                    continue
                if not isinstance(body, dict) or body.get("event_id") != event_id:
                    continue
                heard = Heard(
                    f"mqtt {mqtt.url}",
                    event_id,
                    list(body.get("receptions", [])),
                    body.get("state"),
                )
                deadline = min(deadline, time.monotonic() + settle_s)
    except aiomqtt.MqttError as exc:
        raise CrewError(f"MQTT {mqtt.url}: {exc}") from None
    return heard


def aiomqtt_messages(client: Any) -> Any:
    return aiter(client.messages)


async def wait_heard(
    settings: Settings,
    device_id: int,
    counter: int,
    *,
    wait_s: float = 30.0,
    settle_s: float = 1.5,
    mqtt_url: str | None = None,
) -> Heard | None:
    """What the gateway heard of the frame, or None if it did not within ``wait_s``."""
    event_id = make_event_id(device_id, counter)
    if mqtt_url is not None:
        mqtt = MqttSettings(url=mqtt_url)
        return await _mqtt(mqtt, settings.topic_prefix, device_id, event_id, wait_s, settle_s)
    if settings.database.exists():
        return await _database(settings, event_id, wait_s, settle_s)
    if settings.mqtt.url:
        return await _mqtt(
            settings.mqtt, settings.topic_prefix, device_id, event_id, wait_s, settle_s
        )
    raise CrewError(
        f"no gateway to ask: no database in {settings.data_dir} and no MQTT url "
        "(use --data-dir, --config or --mqtt)"
    )
