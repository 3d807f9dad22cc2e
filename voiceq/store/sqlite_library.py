"""The voice library and erasure records in the embedded SQLite file, beside the jobs table
(`SQLiteJobStore` mixes this in; the same write lock guards both)."""

from __future__ import annotations

import json
import sqlite3
from typing import Sequence

from ..errors import JobNotFound, VoiceNotFound
from ..jobs import Job, JobStatus
from ..voices import Erasure, Voice, scrub_job, swept_job
from .base import JobStats

LIBRARY_SCHEMA = """
CREATE TABLE IF NOT EXISTS voices (
    voice_id TEXT PRIMARY KEY,
    owner TEXT,
    user_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS voices_by_user ON voices (user_id, owner, created_at);
CREATE INDEX IF NOT EXISTS voices_by_job ON voices (job_id);
CREATE TABLE IF NOT EXISTS erasures (
    owner TEXT NOT NULL,  -- '' when keys are off (NULLs would not collide in the key)
    user_id TEXT NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (owner, user_id)
);
"""

_TERMINAL = ("completed", "failed", "cancelled")


def _erasure(row: str) -> Erasure:
    data = json.loads(row)
    return Erasure(**data)


class SQLiteLibrary:
    """Mixed into `SQLiteJobStore`, whose `_connect`, `_write` and `_put` it uses."""

    # --- voices -------------------------------------------------------------------------

    def put_voice(self, voice: Voice) -> Voice:
        with self._write() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT data FROM voices WHERE voice_id = ?", (voice.voice_id,)).fetchone()
            if row is not None:
                return Voice.from_dict(json.loads(row[0]))
            self._put_voice(conn, voice)
            return voice

    @staticmethod
    def _put_voice(conn: sqlite3.Connection, voice: Voice) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO voices (voice_id, owner, user_id, job_id, created_at, data) VALUES (?,?,?,?,?,?)",
            (voice.voice_id, voice.owner, voice.user_id, voice.job_id, voice.created_at, json.dumps(voice.to_dict())),
        )

    def get_voice(self, voice_id: str) -> Voice | None:
        with self._connect() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT data FROM voices WHERE voice_id = ?", (voice_id,)).fetchone()
        return Voice.from_dict(json.loads(row[0])) if row else None

    def voice_of_job(self, job_id: str) -> Voice | None:
        with self._connect() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT data FROM voices WHERE job_id = ?", (job_id,)).fetchone()
        return Voice.from_dict(json.loads(row[0])) if row else None

    def list_voices(self, *, user_id: str, owner: str | None, any_owner: bool = False,
                    limit: int = 100) -> list[Voice]:
        sql, params = "SELECT data FROM voices WHERE user_id = ?", [user_id]
        if not any_owner:
            sql += " AND owner IS ?"
            params.append(owner)  # type: ignore[arg-type]
        with self._connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(sql + " ORDER BY created_at DESC, voice_id LIMIT ?", (*params, limit)).fetchall()
        return [Voice.from_dict(json.loads(r[0])) for r in rows]

    def rename_voice(self, voice_id: str, name: str, *, now: float) -> Voice:
        with self._write() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT data FROM voices WHERE voice_id = ?", (voice_id,)).fetchone()
            if row is None:
                raise VoiceNotFound(voice_id)
            voice = Voice.from_dict(json.loads(row[0])).replace(name=name, updated_at=now)
            self._put_voice(conn, voice)
            return voice

    def delete_voice(self, voice_id: str) -> bool:
        with self._write() as conn:  # type: ignore[attr-defined]
            return conn.execute("DELETE FROM voices WHERE voice_id = ?", (voice_id,)).rowcount > 0

    # --- erasure ------------------------------------------------------------------------

    def user_jobs(self, *, user_id: str, owner: str | None, limit: int = 500) -> list[Job]:
        with self._connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                "SELECT data FROM jobs WHERE user_id = ? AND owner IS ? ORDER BY created_at LIMIT ?",
                (user_id, owner, limit),
            ).fetchall()
        return [Job.from_dict(json.loads(r[0])) for r in rows]

    def scrub_jobs(self, job_ids: Sequence[str], *, now: float) -> int:
        changed = 0
        with self._write() as conn:  # type: ignore[attr-defined]
            for job_id in job_ids:
                row = conn.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                if row is None:
                    continue
                job = Job.from_dict(json.loads(row[0]))
                if "erased_at" in job.extra:
                    continue
                self._put(conn, scrub_job(job, now=now))  # type: ignore[attr-defined]
                changed += 1
        return changed

    def begin_erasure(self, *, owner: str | None, user_id: str, now: float) -> Erasure:
        erasure = Erasure(owner=owner, user_id=user_id, status="running", started_at=now)
        with self._write() as conn:  # type: ignore[attr-defined]
            self._put_erasure(conn, erasure)
        return erasure

    @staticmethod
    def _put_erasure(conn: sqlite3.Connection, erasure: Erasure) -> None:
        data = {k: getattr(erasure, k) for k in ("owner", "user_id", "status", "started_at", "finished_at",
                                                 "voices", "jobs", "blobs", "extra")}
        conn.execute("INSERT OR REPLACE INTO erasures (owner, user_id, status, data) VALUES (?,?,?,?)",
                     (erasure.owner or "", erasure.user_id, erasure.status, json.dumps(data)))

    def finish_erasure(self, *, owner: str | None, user_id: str, now: float, voices: int, jobs: int,
                       blobs: int) -> Erasure:
        with self._write() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT data FROM erasures WHERE owner = ? AND user_id = ?",
                               (owner or "", user_id)).fetchone()
            started = _erasure(row[0]).started_at if row else now
            erasure = Erasure(owner=owner, user_id=user_id, status="done", started_at=started, finished_at=now,
                              voices=voices, jobs=jobs, blobs=blobs)
            self._put_erasure(conn, erasure)
        return erasure

    def unfinished_erasures(self, *, limit: int = 100) -> list[Erasure]:
        with self._connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute("SELECT data FROM erasures WHERE status = 'running' LIMIT ?", (limit,)).fetchall()
        return [_erasure(r[0]) for r in rows]

    # --- retention ----------------------------------------------------------------------

    def sweepable_jobs(self, *, before: float, limit: int = 200) -> list[Job]:
        with self._connect() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                "SELECT data FROM jobs WHERE created_at < ? AND status IN (?, ?, ?)"
                " AND json_extract(data, '$.extra.swept_at') IS NULL"
                " AND (json_extract(data, '$.result_key') IS NOT NULL OR json_extract(data, '$.audio_key') != '')"
                " ORDER BY created_at LIMIT ?",
                (before, *_TERMINAL, limit),
            ).fetchall()
        return [Job.from_dict(json.loads(r[0])) for r in rows]

    def mark_swept(self, job_id: str, *, keep_upload: bool, now: float) -> Job:
        with self._write() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT data FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            job = swept_job(Job.from_dict(json.loads(row[0])), keep_upload=keep_upload, now=now)
            self._put(conn, job)  # type: ignore[attr-defined]
            return job

    # --- per-key quotas and stats ---------------------------------------------------------

    def count_key_jobs(self, *, owner: str, since: float | None = None) -> int:
        if since is None:
            sql, params = "SELECT COUNT(*) FROM jobs WHERE owner = ? AND status IN ('pending', 'processing')", (owner,)
        else:
            sql, params = "SELECT COUNT(*) FROM jobs WHERE owner = ? AND created_at >= ?", (owner, since)
        with self._connect() as conn:  # type: ignore[attr-defined]
            return int(conn.execute(sql, params).fetchone()[0])

    def key_stats(self, *, owner: str, user_id: str | None = None) -> JobStats:
        where, params = "WHERE owner = ?", [owner]
        if user_id is not None:
            where += " AND user_id = ?"
            params.append(user_id)
        with self._connect() as conn:  # type: ignore[attr-defined]
            counts = dict(conn.execute(f"SELECT status, COUNT(*) FROM jobs {where} GROUP BY status", params).fetchall())
            n_done, total_time, audio_s = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(json_extract(data, '$.processing_time')), 0),"
                f" COALESCE(SUM(json_extract(data, '$.result_seconds')), 0) FROM jobs {where} AND status = 'completed'",
                params,
            ).fetchone()
            (gpu_s,) = conn.execute(
                "SELECT COALESCE(SUM(json_extract(data, '$.gpu_seconds')), 0) FROM jobs"
                f" {where} AND status IN ('completed', 'failed')", params).fetchone()
            (oldest,) = conn.execute(f"SELECT MIN(created_at) FROM jobs {where} AND status = 'pending'",
                                     params).fetchone()
        by_status = {s.value: int(counts.get(s.value, 0)) for s in JobStatus}
        return JobStats(total=sum(by_status.values()), by_status=by_status,
                        avg_processing_time=(total_time / n_done) if n_done else None,
                        total_processing_time=float(total_time),
                        oldest_pending_created_at=oldest if user_id is not None else None,
                        audio_seconds_generated=float(audio_s), total_gpu_seconds=float(gpu_s), user_id=user_id)
