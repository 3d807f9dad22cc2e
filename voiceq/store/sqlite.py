"""Embedded job store: one SQLite file.

Each job is a JSON document plus the columns that queries filter and sort on. Every change
runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock up front, so a claim
in one process and a claim in another can never both read the same pending row. WAL mode
lets readers (status polls) carry on while a claim writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .. import jobs as transitions
from ..errors import JobNotFound, StoreUnavailable
from ..jobs import Job, JobResult, JobStatus, RetryPolicy, WorkerInfo
from ..private_files import private_dir, private_file
from .base import JobStats, model_breakdown
from .sqlite_library import LIBRARY_SCHEMA, SQLiteLibrary
from .sqlite_outbox import OUTBOX_SCHEMA, SQLiteOutbox, enqueue_webhook

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    owner TEXT,
    idempotency_key TEXT,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    lease_expires_at REAL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, next_attempt_at);
CREATE INDEX IF NOT EXISTS jobs_by_status_created ON jobs (status, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_user ON jobs (user_id, created_at);
CREATE INDEX IF NOT EXISTS jobs_by_lease ON jobs (status, lease_expires_at);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency
    ON jobs (owner, user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
"""
# Each model's inference deployment claims only its model's jobs. Added to files made before.
_MODEL_COLUMN = "ALTER TABLE jobs ADD COLUMN model TEXT NOT NULL DEFAULT 'chatterbox'"
_MODEL_INDEX = "CREATE INDEX IF NOT EXISTS jobs_by_model_status ON jobs (model, status, next_attempt_at)"
# Backpressure on each submission counts one user's and one key's active jobs: by index, so the
# cost follows their active jobs, not their history.
_LOAD_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_by_user_status ON jobs (user_id, status);
CREATE INDEX IF NOT EXISTS jobs_by_owner_status ON jobs (owner, status);
CREATE INDEX IF NOT EXISTS jobs_by_owner_created ON jobs (owner, created_at);
"""

_ACTIVE = (JobStatus.PENDING.value, JobStatus.PROCESSING.value)

# Running counts per (model, status), kept by triggers in the transaction of every change to
# `jobs`: the autoscaling policy, the reaper's gauges and backpressure read a few rows
# instead of counting the table. Files made before get them counted once, when first opened.
_COUNTS = """
CREATE TABLE job_counts (model TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
                         PRIMARY KEY (model, status));
CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO job_counts (model, status, n) VALUES (NEW.model, NEW.status, 1)
        ON CONFLICT (model, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_counts_update AFTER UPDATE OF status, model ON jobs
    WHEN OLD.status IS NOT NEW.status OR OLD.model IS NOT NEW.model BEGIN
    UPDATE job_counts SET n = n - 1 WHERE model = OLD.model AND status = OLD.status;
    INSERT INTO job_counts (model, status, n) VALUES (NEW.model, NEW.status, 1)
        ON CONFLICT (model, status) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET n = n - 1 WHERE model = OLD.model AND status = OLD.status;
END;
INSERT INTO job_counts (model, status, n) SELECT model, status, COUNT(*) FROM jobs GROUP BY model, status;
"""


class SQLiteJobStore(SQLiteOutbox, SQLiteLibrary):
    def __init__(
        self,
        path: str | Path,
        *,
        retry: RetryPolicy = RetryPolicy(),
        aging_s: float = 60.0,
        busy_timeout_s: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.retry = retry
        self.aging_s = aging_s
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        private_dir(self.path.parent)
        private_file(self.path)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA + LIBRARY_SCHEMA + OUTBOX_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "model" not in columns:
                conn.execute(_MODEL_COLUMN)
            conn.execute(_MODEL_INDEX)
            conn.executescript(_LOAD_INDEXES)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'job_counts'").fetchone() is None:
                for statement in _split_script(_COUNTS):
                    conn.execute(statement)

    # --- connections ------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One connection per thread, kept: opening one costs a hundred times the indexed read a
        # status poll makes. A connection that saw an error is closed, and the next call opens afresh.
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._file_id() != self._local.file_id:
            self._forget(conn)  # the file was moved or replaced: the kept connection reads the old one
            conn = None
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
            except sqlite3.Error as err:
                raise StoreUnavailable(f"cannot open job store {self.path}: {err}") from err
            self._local.conn, self._local.file_id = conn, self._file_id()
        try:
            yield conn
        except sqlite3.OperationalError as err:
            self._forget(conn)
            raise StoreUnavailable(f"job store {self.path}: {err}") from err
        except sqlite3.Error:
            self._forget(conn)
            raise
        if conn.in_transaction:  # never hand a half-finished transaction to the next call
            self._forget(conn)

    def _file_id(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _forget(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        conn.close()

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._forget(conn)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _row_values(job: Job) -> tuple:
        return (
            job.job_id,
            job.user_id,
            job.owner,
            job.idempotency_key,
            job.status.value,
            job.priority,
            job.created_at,
            job.next_attempt_at,
            job.lease_expires_at,
            json.dumps(job.to_dict()),
            job.model,
        )

    def _put(self, conn: sqlite3.Connection, job: Job) -> None:
        # An upsert, not INSERT OR REPLACE: a replace deletes without firing the delete trigger,
        # and the running counts would drift.
        conn.execute(
            "INSERT INTO jobs (job_id, user_id, owner, idempotency_key, status, priority,"
            " created_at, next_attempt_at, lease_expires_at, data, model) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT (job_id) DO UPDATE SET user_id = excluded.user_id, owner = excluded.owner,"
            " idempotency_key = excluded.idempotency_key, status = excluded.status, priority = excluded.priority,"
            " created_at = excluded.created_at, next_attempt_at = excluded.next_attempt_at,"
            " lease_expires_at = excluded.lease_expires_at, data = excluded.data, model = excluded.model",
            self._row_values(job),
        )

    @staticmethod
    def _load(conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_dict(json.loads(row[0]))

    def _update(self, job_id: str, change: Callable[[Job], Job]) -> Job:
        with self._write() as conn:
            before = self._load(conn, job_id)
            job = change(before)
            self._put(conn, job)
            enqueue_webhook(conn, before, job)
            return job

    # --- JobStore -----------------------------------------------------------------------

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()

    def create(self, job: Job) -> Job:
        with self._write() as conn:
            if job.idempotency_key is not None:
                row = conn.execute(
                    "SELECT data FROM jobs WHERE owner IS ? AND user_id = ? AND idempotency_key = ?",
                    (job.owner, job.user_id, job.idempotency_key),
                ).fetchone()
                if row is not None:
                    return Job.from_dict(json.loads(row[0]))
            self._put(conn, job)
            return job

    def get(self, job_id: str) -> Job | None:
        with self._connect() as conn:
            row = conn.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return Job.from_dict(json.loads(row[0])) if row else None

    def claim(
        self,
        *,
        worker: WorkerInfo,
        limit: int,
        lease_s: float,
        now: float,
        job_ids: Sequence[str] | None = None,
        model: str | None = None,
    ) -> list[Job]:
        if limit <= 0:
            return []
        only_model = "" if model is None else " AND model = ?"
        model_arg: tuple = () if model is None else (model,)
        with self._write() as conn:
            if job_ids is not None:
                if not job_ids:
                    return []
                marks = ",".join("?" * len(job_ids))
                rows = conn.execute(
                    f"SELECT data FROM jobs WHERE job_id IN ({marks}) AND status = 'pending'{only_model}",
                    tuple(job_ids) + model_arg,
                ).fetchall()
            else:
                # Aging: each `aging_s` seconds of waiting is worth one priority level.
                rows = conn.execute(
                    f"SELECT data FROM jobs WHERE status = 'pending' AND next_attempt_at <= ?{only_model}"
                    " ORDER BY priority + (? - created_at) / ? DESC, created_at, job_id LIMIT ?",
                    (now, *model_arg, now, self.aging_s, limit),
                ).fetchall()
            candidates = transitions.claim_order(
                [Job.from_dict(json.loads(r[0])) for r in rows], now, self.aging_s
            )[:limit]
            claimed = [
                transitions.claim(j, lease_id=uuid.uuid4().hex, lease_s=lease_s, worker=worker, now=now)
                for j in candidates
            ]
            for job in claimed:
                self._put(conn, job)
            return claimed

    def heartbeat(self, job_id: str, *, lease_id: str, lease_s: float, now: float) -> Job:
        return self._update(job_id, lambda j: transitions.heartbeat(j, lease_id=lease_id, lease_s=lease_s, now=now))

    def complete(self, job_id: str, *, lease_id: str, result: JobResult, now: float) -> Job:
        return self._update(job_id, lambda j: transitions.complete(j, lease_id=lease_id, result=result, now=now))

    def fail(
        self,
        job_id: str,
        *,
        lease_id: str,
        error: str,
        transient: bool,
        now: float,
        defer_s: float | None = None,
    ) -> Job:
        return self._update(
            job_id,
            lambda j: transitions.fail(
                j, lease_id=lease_id, error=error, transient=transient, retry=self.retry, now=now, defer_s=defer_s
            ),
        )

    def expire_leases(self, *, now: float) -> list[Job]:
        with self._write() as conn:
            rows = conn.execute(
                "SELECT data FROM jobs WHERE status = 'processing' AND lease_expires_at < ?", (now,)
            ).fetchall()
            expired = [transitions.expire(Job.from_dict(json.loads(r[0])), retry=self.retry, now=now) for r in rows]
            for job in expired:
                self._put(conn, job)
                enqueue_webhook(conn, None, job)
            return expired

    def cancel(self, job_id: str, *, now: float) -> Job:
        return self._update(job_id, lambda j: transitions.cancel(j, now=now))

    def requeue(self, job_id: str, *, now: float) -> Job:
        return self._update(job_id, lambda j: transitions.requeue(j, now=now))

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        user_id: str | None = None,
        limit: int = 50,
    ) -> list[Job]:
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status.value)
        if user_id is not None:
            clauses.append("user_id = ?")
            params.append(user_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        # Pending jobs are listed oldest first (queue order); everything else newest first.
        order = "created_at ASC" if status is JobStatus.PENDING else "created_at DESC"
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT data FROM jobs {where} ORDER BY {order} LIMIT ?", (*params, limit)
            ).fetchall()
        return [Job.from_dict(json.loads(r[0])) for r in rows]

    def count_active(self, *, user_id: str | None = None) -> int:
        if user_id is None:  # the running counts
            sql, params = "SELECT COALESCE(SUM(n), 0) FROM job_counts WHERE status IN (?, ?)", _ACTIVE
        else:
            sql, params = "SELECT COUNT(*) FROM jobs WHERE status IN (?, ?) AND user_id = ?", (*_ACTIVE, user_id)
        with self._connect() as conn:
            return int(conn.execute(sql, params).fetchone()[0])

    def queue_position(self, job_id: str, *, now: float) -> int | None:
        # The claim's score (jobs.claim_score) in SQL's doubles, as Python computes it, compared
        # with this job's, through the (model, status, next_attempt_at) index: only the model's
        # claimable jobs are read. One statement, so the job and the queue are one snapshot.
        with self._connect() as conn:
            row = conn.execute(
                "WITH me AS (SELECT job_id, model, created_at,"
                " priority + MAX(0.0, :now - created_at) / :aging AS s FROM jobs"
                " WHERE job_id = :id AND status = 'pending'),"
                " ahead AS (SELECT k.priority + MAX(0.0, :now - k.created_at) / :aging AS s, k.created_at, k.job_id"
                " FROM jobs AS k, me WHERE k.model = me.model AND k.status = 'pending'"
                " AND k.next_attempt_at <= :now AND k.job_id != me.job_id)"
                " SELECT (SELECT COUNT(*) FROM ahead WHERE ahead.s > me.s OR (ahead.s = me.s"
                " AND (ahead.created_at < me.created_at"
                " OR (ahead.created_at = me.created_at AND ahead.job_id < me.job_id)))) FROM me",
                {"id": job_id, "now": now, "aging": self.aging_s},
            ).fetchone()
        return None if row is None else int(row[0])

    def queue_stats(self) -> JobStats:
        """The queue's counts by status and model, from the running counts, and the oldest
        pending job's creation time (overall and per model) from the status index: the cost does
        not grow with the jobs table."""
        with self._connect() as conn:
            rows = conn.execute("SELECT model, status, n FROM job_counts WHERE n != 0").fetchall()
            (oldest,) = conn.execute("SELECT MIN(created_at) FROM jobs WHERE status = 'pending'").fetchone()
            by_model: dict[str, dict[str, float]] = {}
            for model, status, n in rows:
                entry = by_model.setdefault(model, {s.value: 0 for s in JobStatus})
                entry[status] = int(n)
            for model, entry in by_model.items():
                if entry[JobStatus.PENDING.value]:
                    (first,) = conn.execute("SELECT MIN(created_at) FROM jobs WHERE model = ? AND status = 'pending'",
                                            (model,)).fetchone()
                    entry["oldest_pending_created_at"] = first
        by_status = {s.value: sum(int(e.get(s.value, 0)) for e in by_model.values()) for s in JobStatus}
        return JobStats(total=sum(by_status.values()), by_status=by_status, avg_processing_time=None,
                        total_processing_time=0.0, oldest_pending_created_at=oldest, by_model=by_model)

    def stats(self, *, user_id: str | None = None) -> JobStats:
        where, params = ("WHERE user_id = ?", (user_id,)) if user_id is not None else ("", ())
        with self._connect() as conn:
            counts = dict(conn.execute(f"SELECT status, COUNT(*) FROM jobs {where} GROUP BY status", params).fetchall())
            done_where = f"{where} {'AND' if where else 'WHERE'} status = 'completed'"
            n_done, total_time, audio_s = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(json_extract(data, '$.processing_time')), 0),"
                f" COALESCE(SUM(json_extract(data, '$.result_seconds')), 0) FROM jobs {done_where}",
                params,
            ).fetchone()
            # A failed attempt held the GPU too: its share counts wherever one was recorded.
            spent_where = f"{where} {'AND' if where else 'WHERE'} status IN ('completed', 'failed')"
            (gpu_s,) = conn.execute(
                f"SELECT COALESCE(SUM(json_extract(data, '$.gpu_seconds')), 0) FROM jobs {spent_where}", params
            ).fetchone()
            pending_where = f"{where} {'AND' if where else 'WHERE'} status = 'pending'"
            (oldest,) = conn.execute(f"SELECT MIN(created_at) FROM jobs {pending_where}", params).fetchone()
            per_model = conn.execute(
                "SELECT model, status, COUNT(*), COALESCE(SUM(json_extract(data, '$.result_seconds')), 0),"
                " COALESCE(SUM(json_extract(data, '$.gpu_seconds')), 0), MIN(created_at)"
                f" FROM jobs {where} GROUP BY model, status",
                params,
            ).fetchall()
        by_status = {s.value: int(counts.get(s.value, 0)) for s in JobStatus}
        return JobStats(
            total=sum(by_status.values()),
            by_status=by_status,
            avg_processing_time=(total_time / n_done) if n_done else None,
            total_processing_time=float(total_time),
            oldest_pending_created_at=oldest,
            audio_seconds_generated=float(audio_s),
            total_gpu_seconds=float(gpu_s),
            user_id=user_id,
            by_model=model_breakdown(per_model),
        )


def _split_script(script: str) -> list[str]:
    """The statements of `_COUNTS` (a trigger's body holds semicolons of its own), to run them
    inside one transaction: `executescript` would commit first."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text)
            current = []
    return statements
