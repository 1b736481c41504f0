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
import math
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from gateway import commands
from gateway import messages as msg
from gateway.core import Core
from gateway.journal import OutboxRow

log = logging.getLogger("anshim.gateway.mqtt")

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
STATUS_EVERY_S = 60.0


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
            max_inflight_messages=m.max_inflight,
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
        """Keep up to max_inflight publishes in flight, in outbox order; delete on PUBACK."""
        journal = self.core.journal
        ready = self.core.outbox_ready
        window = self.settings.mqtt.max_inflight
        in_flight: set[int] = set()
        acked: list[int] = []
        slots = asyncio.Semaphore(window)
        failed: list[BaseException] = []

        async def publish(row: OutboxRow) -> None:
            try:
                await self._publish(client, row)
            except BaseException as exc:
                failed.append(exc)
            else:
                acked.append(row.seq)
            finally:
                in_flight.discard(row.seq)
                slots.release()
                ready.set()

        async with asyncio.TaskGroup() as tg:
            while not failed:
                if acked:
                    done, acked[:] = list(acked), []
                    journal.delete_outbox(done)
                    self.published += len(done)
                rows = [
                    r for r in journal.outbox(window + len(in_flight)) if r.seq not in in_flight
                ]
                if not rows:
                    ready.clear()
                    await ready.wait()
                    continue
                for row in rows:
                    await slots.acquire()
                    if failed:
                        slots.release()
                        break
                    in_flight.add(row.seq)
                    tg.create_task(publish(row))
                ready.clear()
                if in_flight and len(in_flight) >= window:
                    await ready.wait()
        if acked:
            journal.delete_outbox(acked)
            self.published += len(acked)
        raise failed[0]

    async def _publish(self, client: aiomqtt.Client, row: OutboxRow) -> None:
        # No per-publish timer: a lost connection ends the whole session (the commands
        # task fails, the TaskGroup cancels every publish still waiting for its PUBACK, the
        # rows stay in the outbox for the next session).
        await client.publish(row.topic, row.payload, qos=1, retain=row.retain, timeout=math.inf)
        if self.on_puback is not None:
            self.on_puback(row)

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
