"""Upstream to the control center over MQTT (aiomqtt): the only module that knows aiomqtt.

QoS 1 from the durable outbox, drained by priority then age; a row leaves the outbox
only after the broker's PUBACK. On broker loss the gateway keeps taking radio frames;
this loop reconnects with back-off and drains what waited. The gateway's status is
retained, with a last will saying "offline".
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho

from gateway import commands
from gateway import messages as msg
from gateway.core import Core
from gateway.journal import OutboxRow

log = logging.getLogger("anshim.gateway.mqtt")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
STATUS_EVERY_S = 60.0
DELETE_AFTER_S = 0.1  # published rows leave the outbox table in batches


class _Pipeline:
    """Outbox rows published back to back on the session's MQTT client, QoS 1.

    aiomqtt's publish() waits for each PUBACK on its own (a task, an event and a scan of
    its pending calls per message); the outbox wants a window of publishes in flight and
    one callback per PUBACK. So the drain publishes through the paho-mqtt client that
    aiomqtt wraps (aiomqtt 2.x: ``Client._client``), on the same connection and event
    loop: PUBACKs for our message ids come here, every other one still goes to aiomqtt.
    """

    def __init__(
        self, client: aiomqtt.Client, window: int, acked: Callable[[OutboxRow], None]
    ) -> None:
        self._paho = client._client  # aiomqtt is pinned below 3 (pyproject.toml)
        self._window = window
        self._acked = acked
        self._in_flight: dict[int, OutboxRow] = {}
        self._room = asyncio.Event()
        self._aiomqtt_on_publish: Callable[..., None] | None = self._paho.on_publish
        self._paho.on_publish = self._on_publish

    def close(self) -> None:
        self._paho.on_publish = self._aiomqtt_on_publish

    async def room(self) -> None:
        while len(self._in_flight) >= self._window:
            self._room.clear()
            await self._room.wait()

    def publish(self, row: OutboxRow) -> None:
        info = self._paho.publish(row.topic, row.payload, 1, row.retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if info.is_published():
            self._acked(row)
        else:
            self._in_flight[info.mid] = row

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        row = self._in_flight.pop(mid, None)
        if row is None:
            if self._aiomqtt_on_publish is not None:
                self._aiomqtt_on_publish(client, userdata, mid, reason, props)
            return
        if reason.is_failure:  # MQTT 5 brokers may refuse (e.g. not authorised)
            log.warning("broker refused %s: %s; dropped from the outbox", row.topic, reason)
        self._acked(row)
        self._room.set()


class Upstream:
    def __init__(self, core: Core, *, version: str = "") -> None:
        self.core = core
        self.settings = core.settings
        self.version = version
        self.connected = False
        self.published = 0
        self.reconnects = 0
        self.started_at = time.time()
        # Called with each outbox row when the broker's PUBACK arrived (benchmarks, demo).
        self.on_puback: Callable[[OutboxRow], None] | None = None

    def _client(self) -> aiomqtt.Client:
        m = self.settings.mqtt
        tls = None
        if m.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(m.ca_file) if m.ca_file else None,
                certfile=str(m.cert_file) if m.cert_file else None,
                keyfile=str(m.key_file) if m.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        will = aiomqtt.Will(
            self.core.topics.status,
            msg.dumps({"gateway_id": self.settings.gateway_id, "state": "offline"}),
            qos=1,
            retain=True,
        )
        client = aiomqtt.Client(
            m.host,
            m.port,
            username=m.username,
            password=m.password(),
            identifier=m.client_id or f"anshim-{self.settings.gateway_id}",
            will=will,
            keepalive=m.keepalive,
            tls_params=tls,
            clean_session=False,
            # Our drain bounds what is in flight; paho unlimited (0) skips its per-PUBACK scan.
            max_inflight_messages=0,
            timeout=10,
            # Small QoS 1 messages: don't let Nagle hold a publish back waiting for an ACK.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # aiomqtt warns above 10 calls in flight; the drain keeps up to max_inflight on purpose.
        client.pending_calls_threshold = m.max_inflight + 10
        return client

    async def run(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            try:
                async with self._client() as client:
                    backoff = BACKOFF_MIN_S
                    self.connected = True
                    log.info("connected to %s", self.settings.mqtt.url)
                    await self._session(client)
            except* aiomqtt.MqttError as group:
                exc = group.exceptions[0]
                if self.connected:
                    log.warning("broker connection lost: %s; events wait in the outbox", exc)
                else:
                    log.warning("broker unreachable: %s; retrying in %.1f s", exc, backoff)
            self.connected = False
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _session(self, client: aiomqtt.Client) -> None:
        await self.publish_status(client)
        for topic in self.core.topics.command_filters:
            await client.subscribe(topic, qos=1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._drain(client))
            tg.create_task(self._commands(client))
            tg.create_task(self._status_loop(client))

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish the outbox in order, up to max_inflight in flight; delete on PUBACK."""
        journal = self.core.journal
        ready = self.core.outbox_ready

        loop = asyncio.get_running_loop()
        timers: list[asyncio.TimerHandle] = []

        def acked(row: OutboxRow) -> None:
            if journal.outbox_acked(row) == 1:  # deleted in a batch, soon
                timers[:] = [t for t in timers if not t.cancelled() and t.when() > loop.time()]
                timers.append(loop.call_later(DELETE_AFTER_S, journal.delete_acked))
            self.published += 1
            if self.on_puback is not None:
                self.on_puback(row)

        pipeline = _Pipeline(client, self.settings.mqtt.max_inflight, acked)
        try:
            while True:
                await pipeline.room()
                row = journal.outbox_next()
                if row is None:
                    ready.clear()
                    await ready.wait()
                    continue
                pipeline.publish(row)
        finally:
            # A lost connection ends the whole session (the commands task fails, the
            # TaskGroup cancels this one); what has no PUBACK goes out again next session.
            for timer in timers:
                timer.cancel()
            pipeline.close()
            journal.outbox_requeue()  # deletes what was acknowledged, too

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                result = commands.apply(self.core, topic, payload)
            except commands.CommandError as exc:
                self.core.metrics.reject("bad_command", topic, f"{topic}: {exc}")
                await client.publish(
                    self.core.topics.error,
                    msg.dumps(
                        {
                            "topic": topic,
                            "error": str(exc),
                            "at": msg.iso(time.time()),
                            "gateway_id": self.settings.gateway_id,
                        }
                    ),
                    qos=1,
                )
            else:
                log.info("command %s: %s", topic, json.dumps(result, ensure_ascii=False))

    async def _status_loop(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            await self.publish_status(client)

    async def publish_status(self, client: aiomqtt.Client) -> None:
        await client.publish(self.core.topics.status, msg.dumps(self.status()), qos=1, retain=True)

    def status(self) -> dict[str, Any]:
        return {
            "gateway_id": self.settings.gateway_id,
            "state": "online",
            "site": self.settings.site,
            "version": self.version,
            "started_at": msg.iso(self.started_at),
            "at": msg.iso(time.time()),
            **self.core.status(),
        }
