"""The journal: events, alarms, device state and the MQTT outbox, committed together.

Writes are staged and committed in one transaction. An alarm commits at once (and takes
any staged heartbeats with it); other events are batched by `Journal.flush_soon`, so tens
of thousands of heartbeats per second cost a handful of fsyncs. The outbox is durable:
a row leaves it only after the broker's PUBACK (invariant 2).

The upstream drains the outbox from memory: committed rows are queued per priority as
they commit (no query per publish), acknowledged rows are deleted in batches. The
memory holds at most `OUTBOX_MEMORY` rows per priority; beyond that (a long broker
outage) rows wait only in SQLite and are read back in order once memory has drained.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple


class Priority(IntEnum):
    """Outbox drain order: alarm > fault > state > heartbeat, then age."""

    ALARM = 0
    FAULT = 1
    STATE = 2
    EVENT = 3


OUTBOX_MEMORY = 20_000  # outbox rows per priority held in memory
DELETE_BATCH = 1024  # acknowledged rows deleted per transaction under load


class OutboxRow(NamedTuple):
    """One message waiting for the broker (a tuple: made once per event, cheaply)."""

    seq: int
    priority: int
    topic: str
    payload: str
    retain: bool


_OUTBOX_INSERT = (
    "INSERT INTO outbox (seq, priority, topic, payload, retain, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


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

    def __init__(self, conn: sqlite3.Connection, *, on_outbox: Callable[[], None] | None = None):
        self.conn = conn
        self._staged: list[tuple[str, tuple[Any, ...]]] = []
        self._state_sql: dict[tuple[str, ...], str] = {}
        self.on_outbox = on_outbox  # called when rows wait to be published
        self.commits = 0
        # The outbox in memory. Per priority, the queue holds a contiguous run of the
        # outbox's rows in seq order, up to `_loaded[p]`; `_spilled[p]` says rows past it
        # wait in SQLite only (nothing is known before the first read, hence True).
        # A row is queued when it is staged: if its PUBACK comes before the commit (the
        # usual case with the broker up), it is never written to the outbox table at all.
        self._next_seq: int | None = None
        self._unsaved: dict[int, tuple[Any, ...]] = {}  # staged outbox rows, by seq
        self._sql_only = [0] * len(Priority)  # of them, rows not queued (spilled)
        self._queues: list[deque[OutboxRow]] = [deque() for _ in Priority]
        self._loaded = [0] * len(Priority)
        self._spilled = [True] * len(Priority)
        self._in_flight: dict[int, OutboxRow] = {}
        self._acked: list[int] = []

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
        if self._next_seq is None:
            # Past every row the table ever held (AUTOINCREMENT's record), never reused.
            last = self.conn.execute(
                "SELECT MAX(n) FROM (SELECT MAX(seq) AS n FROM outbox"
                " UNION ALL SELECT seq FROM sqlite_sequence WHERE name = 'outbox')"
            ).fetchone()[0]
            self._next_seq = (last or 0) + 1
        seq = self._next_seq
        self._next_seq = seq + 1
        p = int(priority)
        self._unsaved[seq] = (seq, p, topic, payload, int(retain), time.time())
        queue = self._queues[p]
        if self._spilled[p] or len(queue) >= OUTBOX_MEMORY:
            self._spilled[p] = True  # read back from SQLite once memory has drained
            self._sql_only[p] += 1
        else:
            queue.append(OutboxRow(seq, p, topic, payload, retain))
            self._loaded[p] = seq
            if self.on_outbox is not None:
                self.on_outbox()

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

    def stage_states(self, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
        """Device states: each row is the columns' values, then the device id."""
        sql = self._state_sql.get(columns)
        if sql is None:
            cols = ", ".join(f"{k} = ?" for k in columns)
            sql = self._state_sql[columns] = f"UPDATE device_state SET {cols} WHERE device_id = ?"
        self._staged.extend((sql, row) for row in rows)

    @property
    def pending(self) -> int:
        return len(self._staged) + len(self._unsaved)

    def commit(self) -> None:
        """Commit everything staged in one transaction (synchronous=FULL: durable on return).

        Outbox rows the broker has already acknowledged are left out: they are delivered,
        and the event itself is in the journal."""
        if not self._staged and not self._unsaved:
            return
        staged, self._staged = self._staged, []
        unsaved, self._unsaved = self._unsaved, {}
        # Same statements run together (executemany); statements never depend on each
        # other within a batch, and each statement's rows keep their order.
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for sql, params in staged:
            groups.setdefault(sql, []).append(params)
        if unsaved:
            groups[_OUTBOX_INSERT] = list(unsaved.values())
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params_list in groups.items():
                conn.executemany(sql, params_list)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self.commits += 1
        if any(self._sql_only):
            self._sql_only = [0] * len(Priority)
            if self.on_outbox is not None:
                self.on_outbox()  # rows to read back

    # --- the outbox, as the upstream drains it ---

    def outbox_next(self) -> OutboxRow | None:
        """The next row to publish (priority, then age), now in flight; None if none."""
        for p, queue in enumerate(self._queues):
            if not queue and self._spilled[p]:
                self._read_back(p)
            if queue:
                row = queue.popleft()
                self._in_flight[row.seq] = row
                return row
        return None

    def _read_back(self, p: int) -> None:
        rows = self.conn.execute(
            "SELECT seq, priority, topic, payload, retain FROM outbox"
            " WHERE priority = ? AND seq > ? ORDER BY seq LIMIT ?",
            (p, self._loaded[p], OUTBOX_MEMORY),
        ).fetchall()
        queue = self._queues[p]
        for r in rows:
            if r[0] not in self._in_flight:
                queue.append(OutboxRow(r[0], r[1], r[2], r[3], bool(r[4])))
        if rows:
            self._loaded[p] = rows[-1][0]
        # Rows staged for SQLite only and not committed yet keep the priority spilled.
        self._spilled[p] = len(rows) == OUTBOX_MEMORY or self._sql_only[p] > 0

    def outbox_acked(self, row: OutboxRow) -> int:
        """The broker has it (PUBACK): the row is deleted with the next batch (at
        `DELETE_BATCH` rows, or when the caller calls `delete_acked`). Returns how many
        acknowledged rows wait for deletion."""
        self._in_flight.pop(row.seq, None)
        if self._unsaved.pop(row.seq, None) is not None:
            return len(self._acked)  # delivered before its commit: never written
        self._acked.append(row.seq)
        if len(self._acked) >= DELETE_BATCH:
            self.delete_acked()
        return len(self._acked)

    def delete_acked(self) -> None:
        """Delete the acknowledged rows now (a row acknowledged but not yet deleted when
        the power goes is published once more: QoS 1 is at least once)."""
        acked, self._acked = self._acked, []
        self.delete_outbox(acked)

    def outbox_requeue(self) -> None:
        """The session ended: rows without a PUBACK go back first in line (published again)."""
        self.delete_acked()
        back = sorted(self._in_flight.values(), key=lambda r: r.seq, reverse=True)
        self._in_flight.clear()
        for row in back:
            self._queues[row.priority].appendleft(row)

    @property
    def outbox_drained(self) -> bool:
        """Every message staged so far has the broker's PUBACK (deletions may lag)."""
        return not (self._unsaved or self._in_flight or any(self._queues) or any(self._spilled))

    @property
    def outbox_in_memory(self) -> int:
        """Rows queued or in flight (not counting rows spilled to SQLite only)."""
        return sum(map(len, self._queues)) + len(self._in_flight)

    # --- reading ---

    def outbox_size(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def delete_outbox(self, seqs: list[int]) -> None:
        """Delete published rows: runs of consecutive seqs (the usual case) as ranges."""
        if not seqs:
            return
        ranges: list[tuple[int, int]] = []
        for seq in sorted(seqs):
            if ranges and seq == ranges[-1][1] + 1:
                ranges[-1] = (ranges[-1][0], seq)
            else:
                ranges.append((seq, seq))
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("DELETE FROM outbox WHERE seq BETWEEN ? AND ?", ranges)
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
