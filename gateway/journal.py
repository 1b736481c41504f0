"""The journal: events, alarms, device state and the MQTT outbox, committed together.

Writes are staged and committed in one transaction. An alarm commits at once (and takes
any staged heartbeats with it); other events are batched by `Journal.flush_soon`, so tens
of thousands of heartbeats per second cost a handful of fsyncs. The outbox is durable:
a row leaves it only after the broker's PUBACK (invariant 2).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    """Outbox drain order: alarm > fault > state > heartbeat, then age."""

    ALARM = 0
    FAULT = 1
    STATE = 2
    EVENT = 3


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    priority: int
    topic: str
    payload: str
    retain: bool


@dataclass
class AlarmRecord:
    event_id: str
    device_id: int
    counter: int
    state: str
    pressed_at: float
    received_at: float
    updated_at: float
    press_count: int
    battery_mv: int | None
    alarm_flags: int
    test: bool
    receptions: list[dict[str, Any]]
    operator: str | None = None
    message: str | None = None
    history: list[dict[str, Any]] | None = None


_ALARM_COLUMNS = (
    "event_id, device_id, counter, state, pressed_at, received_at, updated_at, press_count,"
    " battery_mv, alarm_flags, test, receptions, operator, message, history"
)


def _alarm(row: tuple[Any, ...]) -> AlarmRecord:
    return AlarmRecord(
        event_id=row[0],
        device_id=row[1],
        counter=row[2],
        state=row[3],
        pressed_at=row[4],
        received_at=row[5],
        updated_at=row[6],
        press_count=row[7],
        battery_mv=row[8],
        alarm_flags=row[9],
        test=bool(row[10]),
        receptions=json.loads(row[11]),
        operator=row[12],
        message=row[13],
        history=json.loads(row[14]),
    )


class Journal:
    """Staged writes over one SQLite connection (owned by the gateway's event loop)."""

    def __init__(self, conn: sqlite3.Connection, *, on_commit: Callable[[], None] | None = None):
        self.conn = conn
        self._staged: list[tuple[str, tuple[Any, ...]]] = []
        self.on_commit = on_commit
        self.commits = 0

    # --- staging ---

    def stage(self, sql: str, params: tuple[Any, ...]) -> None:
        self._staged.append((sql, params))

    def stage_event(
        self, event_id: str, device_id: int, etype: str, counter: int, at: float, body: str
    ) -> None:
        self.stage(
            "INSERT OR IGNORE INTO events (event_id, device_id, type, counter, received_at, body)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, device_id, etype, counter, at, body),
        )

    def stage_publish(
        self, priority: Priority, topic: str, payload: str, *, retain: bool = False
    ) -> None:
        self.stage(
            "INSERT INTO outbox (priority, topic, payload, retain, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (int(priority), topic, payload, int(retain), time.time()),
        )

    def stage_alarm(self, a: AlarmRecord) -> None:
        self.stage(
            f"INSERT OR REPLACE INTO alarms ({_ALARM_COLUMNS}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.event_id,
                a.device_id,
                a.counter,
                a.state,
                a.pressed_at,
                a.received_at,
                a.updated_at,
                a.press_count,
                a.battery_mv,
                a.alarm_flags,
                int(a.test),
                json.dumps(a.receptions),
                a.operator,
                a.message,
                json.dumps(a.history or []),
            ),
        )

    def stage_state(self, device_id: int, **values: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        self.stage(
            f"UPDATE device_state SET {cols} WHERE device_id = ?", (*values.values(), device_id)
        )

    @property
    def pending(self) -> int:
        return len(self._staged)

    def commit(self) -> None:
        """Commit everything staged in one transaction (synchronous=FULL: durable on return)."""
        if not self._staged:
            return
        staged, self._staged = self._staged, []
        # Same statements run together (executemany); statements never depend on each
        # other within a batch, and each statement's rows keep their order.
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for sql, params in staged:
            groups.setdefault(sql, []).append(params)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in groups.items():
                conn.executemany(sql, rows)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit()

    # --- reading ---

    def outbox(self, limit: int) -> list[OutboxRow]:
        rows = self.conn.execute(
            "SELECT seq, priority, topic, payload, retain FROM outbox"
            " ORDER BY priority, seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def outbox_size(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def delete_outbox(self, seqs: list[int]) -> None:
        if not seqs:
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
        self.conn.execute("COMMIT")

    def alarm(self, event_id: str) -> AlarmRecord | None:
        row = self.conn.execute(
            f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE event_id = ?", (event_id,)
        ).fetchone()
        return None if row is None else _alarm(row)

    def open_alarms(self) -> list[AlarmRecord]:
        rows = self.conn.execute(
            f"SELECT {_ALARM_COLUMNS} FROM alarms WHERE state != 'resolved' ORDER BY received_at"
        ).fetchall()
        return [_alarm(r) for r in rows]

    def device_states(self) -> dict[int, dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM device_state")
        names = [c[0] for c in cur.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur}

    def counts(self) -> dict[str, int]:
        out = {}
        for table in ("events", "alarms", "outbox"):
            out[table] = int(self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        return out
