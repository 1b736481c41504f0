"""The outbox as the upstream drains it: priority then age, spilled to SQLite and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import db
from gateway import journal as journal_mod
from gateway.journal import Journal, OutboxRow, Priority


def _journal(tmp_path: Path) -> Journal:
    return Journal(db.connect(tmp_path / "gateway.db"))


def _stage(j: Journal, priority: Priority, *names: str) -> None:
    for name in names:
        j.stage_publish(priority, f"t/{name}", f'"{name}"')
    j.commit()


def _drain(j: Journal) -> list[str]:
    out = []
    while (row := j.outbox_next()) is not None:
        out.append(row.topic[2:])
        j.outbox_acked(row)
    j.delete_acked()  # the upstream does this 0.1 s after a PUBACK, or per 1,024 rows
    return out


def test_rows_go_out_by_priority_then_age_and_leave_the_table_once_acked(
    tmp_path: Path,
) -> None:
    j = _journal(tmp_path)
    _stage(j, Priority.EVENT, "hb1", "hb2")
    _stage(j, Priority.ALARM, "alarm1")
    _stage(j, Priority.STATE, "state1")
    _stage(j, Priority.EVENT, "hb3")
    _stage(j, Priority.ALARM, "alarm2")
    assert _drain(j) == ["alarm1", "alarm2", "state1", "hb1", "hb2", "hb3"]
    assert j.outbox_size() == 0


def test_a_row_the_broker_acknowledged_before_the_commit_is_never_written(
    tmp_path: Path,
) -> None:
    j = _journal(tmp_path)
    assert j.outbox_next() is None  # the upstream connected and found nothing waiting
    j.stage_event("0a000001-00000001", 0x0A000001, "heartbeat", 1, 1.0, "{}")
    j.stage_publish(Priority.EVENT, "t/fast", "{}")
    j.stage_publish(Priority.EVENT, "t/slow", "{}")
    fast, slow = j.outbox_next(), j.outbox_next()
    assert fast and slow and fast.topic == "t/fast"
    j.outbox_acked(fast)  # delivered while the batch was still being gathered
    j.commit()
    # The event is journaled; only the message still waiting for its PUBACK is durable.
    assert j.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    assert [r[0] for r in j.conn.execute("SELECT topic FROM outbox")] == ["t/slow"]
    j.outbox_acked(slow)
    j.delete_acked()
    assert j.outbox_size() == 0


def test_rows_staged_while_spilled_are_read_back_after_their_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_mod, "OUTBOX_MEMORY", 2)
    j = _journal(tmp_path)
    _stage(j, Priority.EVENT, "a")
    assert _drain(j) == ["a"]
    for name in ("b", "c", "d"):  # "d" does not fit in memory
        j.stage_publish(Priority.EVENT, f"t/{name}", "{}")
    # Memory drains before the batch commits: "d" is not lost, nor overtaken by "e".
    assert _drain(j) == ["b", "c"]
    j.stage_publish(Priority.EVENT, "t/e", "{}")
    j.commit()
    assert _drain(j) == ["d", "e"]
    assert j.outbox_size() == 0


def test_a_long_outage_spills_to_sqlite_and_drains_in_order_alarms_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_mod, "OUTBOX_MEMORY", 5)
    j = _journal(tmp_path)
    heartbeats = [f"hb{i}" for i in range(23)]
    _stage(j, Priority.EVENT, *heartbeats[:3])
    assert _drain(j)[:3] == heartbeats[:3]  # memory is in use from here on
    _stage(j, Priority.EVENT, *heartbeats[3:])  # more than memory holds
    _stage(j, Priority.ALARM, "alarm")
    assert j.outbox_in_memory <= 5 + 1
    assert _drain(j) == ["alarm", *heartbeats[3:]]
    assert j.outbox_size() == 0


def test_rows_without_a_puback_go_out_again_first_after_a_lost_session(
    tmp_path: Path,
) -> None:
    j = _journal(tmp_path)
    _stage(j, Priority.EVENT, "a", "b", "c", "d")
    first, second, third = j.outbox_next(), j.outbox_next(), j.outbox_next()
    assert first and second and third
    j.outbox_acked(second)  # PUBACKs may come back in any order
    j.outbox_requeue()  # the connection dropped
    assert _drain(j) == ["a", "c", "d"]
    assert j.outbox_size() == 0


def test_a_restart_publishes_what_waited_and_never_reuses_a_sequence_number(
    tmp_path: Path,
) -> None:
    j = _journal(tmp_path)
    _stage(j, Priority.EVENT, "old1", "old2")
    _stage(j, Priority.FAULT, "fault")
    taken = j.outbox_next()
    assert isinstance(taken, OutboxRow) and taken.topic == "t/fault"
    j.conn.close()  # power cut with the fault in flight, no PUBACK

    j = _journal(tmp_path)
    assert _drain(j) == ["fault", "old1", "old2"]
    # Every row was published and deleted: a new one still gets a fresh number, so a
    # PUBACK that arrives late can never delete the wrong row.
    _stage(j, Priority.EVENT, "new")
    row = j.outbox_next()
    assert row is not None and row.seq == 4
