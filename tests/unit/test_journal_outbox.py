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


def test_staged_rows_are_not_published_before_their_commit(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    j.stage_publish(Priority.ALARM, "t/alarm", "{}")
    assert j.outbox_next() is None
    j.commit()
    row = j.outbox_next()
    assert row is not None and row.topic == "t/alarm"


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
