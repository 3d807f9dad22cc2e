"""The webhook outbox (voiceq/outbox.py) in the SQLite job store: a table beside `jobs`,
written in the same transaction as the job transition that owes the webhook."""

from __future__ import annotations

import sqlite3
from typing import Any, ContextManager, Protocol

from ..jobs import Job
from ..outbox import PENDING, OutboxEntry, entry_for

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_outbox (
    webhook_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    created_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at REAL NOT NULL,
    delivered_at REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_outbox_by_job ON webhook_outbox (job_id);
"""

_COLUMNS = ("webhook_id", "job_id", "url", "event", "created_at", "state", "attempts", "next_attempt_at",
            "delivered_at", "last_error")


def enqueue_webhook(conn: sqlite3.Connection, before: Job | None, after: Job) -> None:
    """Inside a job transition's transaction: write the webhook it owes, if any."""
    entry = entry_for(before, after)
    if entry is not None:
        values = entry.to_dict()
        conn.execute(f"INSERT OR IGNORE INTO webhook_outbox ({', '.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
                     tuple(values[c] for c in _COLUMNS))


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    return OutboxEntry.from_dict(dict(zip(_COLUMNS, row)))


class _Connections(Protocol):
    def _connect(self) -> ContextManager[sqlite3.Connection]: ...

    def _write(self) -> ContextManager[sqlite3.Connection]: ...


class SQLiteOutbox:
    """`voiceq.outbox.WebhookOutbox` for SQLiteJobStore (mixed into it)."""

    def outbox_due(self: _Connections, *, now: float, limit: int, lease_s: float) -> list[OutboxEntry]:
        with self._write() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM webhook_outbox WHERE state = ? AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at LIMIT ?", (PENDING, now, limit)).fetchall()
            entries = [_entry(r) for r in rows]
            conn.executemany("UPDATE webhook_outbox SET next_attempt_at = ? WHERE webhook_id = ?",
                             [(now + lease_s, e.webhook_id) for e in entries])
            return entries

    def outbox_settle(self: _Connections, entry: OutboxEntry) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE webhook_outbox SET state = ?, attempts = ?, next_attempt_at = ?, delivered_at = ?,"
                " last_error = ? WHERE webhook_id = ?",
                (entry.state, entry.attempts, entry.next_attempt_at, entry.delivered_at, entry.last_error,
                 entry.webhook_id))

    def outbox_get(self: _Connections, webhook_id: str) -> OutboxEntry | None:
        with self._connect() as conn:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM webhook_outbox WHERE webhook_id = ?",
                               (webhook_id,)).fetchone()
        return _entry(row) if row else None

    def outbox_list(self: _Connections, *, job_id: str) -> list[OutboxEntry]:
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM webhook_outbox WHERE job_id = ?"
                                " ORDER BY created_at", (job_id,)).fetchall()
        return [_entry(r) for r in rows]
