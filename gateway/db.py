"""The gateway's SQLite database: one file holding the registry, the journal and the outbox.

WAL mode, ``synchronous=FULL``: a commit that returned survives a power cut, which is what
lets the gateway acknowledge an alarm to the bell only after its commit (invariant 1).
The file is created 0600: it holds device keys.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('bell', 'light', 'bridge')),
    name TEXT NOT NULL,
    key BLOB NOT NULL,
    lat REAL NOT NULL,
    lon REAL NOT NULL,
    national_point_number TEXT,
    plate_id TEXT,
    trail TEXT,
    cameras TEXT NOT NULL DEFAULT '[]',
    heartbeat_s INTEGER,
    created_at REAL NOT NULL,
    retired_at REAL,
    listen_only INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS device_state (
    device_id INTEGER PRIMARY KEY,
    up_counter INTEGER,
    down_counter INTEGER NOT NULL DEFAULT 0,
    last_seen REAL,
    online INTEGER NOT NULL DEFAULT 1,
    battery_mv INTEGER,
    temperature INTEGER,
    faults INTEGER NOT NULL DEFAULT 0,
    fw_version INTEGER,
    rssi INTEGER,
    snr REAL,
    receiver TEXT,
    level INTEGER,
    energy_wh INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    device_id INTEGER NOT NULL,
    type TEXT NOT NULL,
    counter INTEGER NOT NULL,
    received_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    event_id TEXT PRIMARY KEY,
    device_id INTEGER NOT NULL,
    counter INTEGER NOT NULL,
    state TEXT NOT NULL,
    pressed_at REAL NOT NULL,
    received_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    press_count INTEGER NOT NULL,
    battery_mv INTEGER,
    alarm_flags INTEGER NOT NULL DEFAULT 0,
    test INTEGER NOT NULL DEFAULT 0,
    receptions TEXT NOT NULL DEFAULT '[]',
    operator TEXT,
    message TEXT,
    history TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (device_id, state);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS downlinks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id INTEGER NOT NULL,
    command TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating 0600 if needed) the database, in WAL mode with synchronous=FULL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.executescript(SCHEMA)
    _migrate(conn)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
        (str(SCHEMA_VERSION),),
    )
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.chmod(side, 0o600)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Columns added since a database was created."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(devices)")}
    if "listen_only" not in columns:
        conn.execute("ALTER TABLE devices ADD COLUMN listen_only INTEGER NOT NULL DEFAULT 0")
