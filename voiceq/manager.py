"""Job bookkeeping: the only code that changes job state.

`JobManager` owns the job store and the uploads in blob storage. The HTTP layer submits and
reads through it; inference workers claim, renew, complete and fail through it. It has no Ray
in it and keeps no job state outside the store (only figures: metrics, the wait estimate), so
several may run over one store: the ingress holds one as its front desk (submissions and reads),
the bookkeeping deployment another (the worker protocol, the lease reaper, webhooks,
housekeeping), and tests use one directly.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TypeVar

from .errors import (BlobNotFound, IdempotencyKeyReused, InvalidInput, JobNotFound, QueueFull, StaleLease,
                     StoreUnavailable, VoiceNotFound)
from .jobs import Job, JobResult, JobStatus, WorkerInfo, new_job, new_job_id
from .audio_formats import media_type
from .logs import log_job
from .views import job_view
from .metrics import Metrics, failure_reason
from .settings import Settings
from .storage import BlobStorage, upload_key, voice_key
from .outbox import OutboxEntry, WebhookOutbox, after_attempt
from .storage.base import source_key, voice_reference_key
from .store import JobStats, JobStore
from .voice_library import Caller, VoiceLibraryManager
from .voices import Consent
from .quotas import KeyLimits, check_key_load, daily_limit
from .queue_wait import QueuePlace, WaitEstimator

log = logging.getLogger("voiceq.manager")
T = TypeVar("T")

# A webhook attempt's whole budget: resolve, connect, send, read the status line.
WEBHOOK_DEADLINE_S = 15.0


def webhook_body(entry: OutboxEntry, job: Job) -> bytes:
    """The Standard Webhooks payload: the event an entry announces, with the job's public view."""
    payload = {"type": f"voice_clone.{entry.event}", "timestamp": entry.created_at, "data": job_view(job)}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Submission:
    """A validated request to clone a voice. Either `audio` (a fresh upload, checked and kept
    as it came) or `voice_id` (a voice prepared by an earlier job)."""

    user_id: str
    voice_name: str
    sample_text: str
    audio: bytes | None = None
    audio_seconds: float = 0.0
    voice_id: str | None = None
    priority: int = 0
    idempotency_key: str | None = None
    owner: str | None = None
    callback_url: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # What the request asked for (serve_app/validation.py request_fingerprint): an Idempotency-Key reused with a
    # different request is refused instead of replaying the first job.
    request_hash: str | None = None
    admin: bool = False  # the submitting key is an admin key (may use any voice)
    consent: Consent | None = None
    limits: KeyLimits | None = None  # the submitting key's quotas (None: keys are off)
    # The Chatterbox family (voiceq.models): the model, its language, and the job's kind.
    # A conversion carries the speech to convert (`source_audio`, as uploaded); its voice is
    # `voice_id` or the target sample in `audio`.
    model: str = "chatterbox"
    language: str | None = None
    kind: str = "clone"
    source_audio: bytes | None = None
    # The result's audio format (voiceq.audio_encode); the seed's MP3 unless asked otherwise.
    response_format: str = "mp3"
    # A part of a speech request (serve_app.openai_routes): {"request", "part", "parts"}.
    speech: dict[str, Any] | None = None


def _job_extra(sub: Submission) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if sub.params:
        extra["params"] = dict(sub.params)
    if sub.consent is not None:
        extra["consent"] = sub.consent.to_dict()  # becomes the voice's, once it is cloned
    if sub.request_hash and sub.idempotency_key:
        extra["request_hash"] = sub.request_hash
    if sub.response_format != "mp3":
        extra["response_format"] = sub.response_format
    if sub.speech is not None:
        extra["speech"] = dict(sub.speech)
    return extra or None


class JobManager(VoiceLibraryManager):
    def __init__(
        self,
        store: JobStore,
        storage: BlobStorage,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.metrics = metrics or Metrics(enabled=False)
        # Stores that keep a webhook outbox write its entries in their own transitions; this
        # manager delivers them (deliver_webhooks_forever).
        self.outbox: WebhookOutbox | None = store if isinstance(store, WebhookOutbox) else None
        self._webhooks_due = asyncio.Event()
        self.waits = WaitEstimator()  # learns from the completions recorded here

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # Store and storage clients are blocking; keep the replica's event loop free.
        return await asyncio.to_thread(fn, *args, **kwargs)

    # --- submission ---------------------------------------------------------------------

    async def submit(self, sub: Submission) -> Job:
        """Store the upload, then the job record. If the record cannot be written the upload
        is removed again, so a failed submission leaves nothing behind."""
        if sub.model not in self.settings.served_models:
            raise InvalidInput(f"model {sub.model!r} is not served here (this deployment serves "
                               f"{', '.join(self.settings.served_models)})", field="model")
        job = self._new_job(sub)
        if sub.voice_id is not None:
            await self._call(self._check_load, sub)
            # Another key's voice answers exactly like one that does not exist.
            await self.check_voice(sub.voice_id, caller=Caller(sub.owner, sub.admin), user_id=sub.user_id)
            await self._check_voice_blobs(sub.voice_id, sub.model)
            stored = await self._call(self._store_new, sub, job)
        else:
            # One trip to a thread for the whole admission: under load, every hop between the
            # event loop and the thread pool costs more than the SQLite statements themselves.
            stored = await self._call(self._admit, sub, job)
        if stored.job_id != job.job_id:  # an idempotent replay: the first submission stands
            first = stored.extra.get("request_hash")
            if sub.request_hash is not None and first is not None and first != sub.request_hash:
                raise IdempotencyKeyReused(sub.idempotency_key or "")
            log_job("replayed", stored, idempotency_key=sub.idempotency_key)
            return stored
        log_job("submitted", stored, priority=stored.priority or None)
        self.metrics.submitted(self.settings.environment)
        return stored

    def _new_job(self, sub: Submission) -> Job:
        job_id = new_job_id()
        if sub.voice_id is None:
            assert sub.audio is not None, "a submission needs audio or a voice id"
        job = new_job(
            job_id=job_id,
            user_id=sub.user_id,
            voice_name=sub.voice_name,
            sample_text=sub.sample_text,
            audio_key=upload_key(job_id) if sub.voice_id is None else "",
            audio_seconds=sub.audio_seconds,
            now=self.clock(),
            priority=sub.priority,
            max_attempts=self.settings.max_attempts,
            idempotency_key=sub.idempotency_key,
            owner=sub.owner,
            callback_url=sub.callback_url,
            extra=_job_extra(sub),
            model=sub.model,
            language=sub.language,
            kind=sub.kind,
        )
        if sub.source_audio is not None:
            job = job.replace(extra={**job.extra, "source_key": source_key(job_id)})
        if sub.voice_id is not None:
            job = job.replace(voice_id=sub.voice_id, voice_key=voice_key(sub.voice_id))
        return job

    def _admit(self, sub: Submission, job: Job) -> Job:
        """Blocking: backpressure, then the blobs and the record."""
        self._check_load(sub)
        return self._store_new(sub, job)

    def _check_load(self, sub: Submission) -> None:
        """Blocking: backpressure before anything is stored, overall, per user and per key."""
        self.check_capacity_now(sub.user_id)
        if sub.owner is not None and sub.limits is not None:
            self.check_key_capacity_now(sub.owner, sub.limits)

    def _store_new(self, sub: Submission, job: Job) -> Job:
        """Blocking: the uploads (as they came), then the record; the blobs go again if the
        record is not written, or is an earlier submission's (an idempotent replay)."""
        blobs = [(key, data) for key, data in ((job.audio_key, sub.audio),
                                               (str(job.extra.get("source_key") or ""), sub.source_audio))
                 if key and data is not None]
        written: list[str] = []
        try:
            for key, data in blobs:
                self.storage.put(key, data, content_type=media_type(data))
                written.append(key)
            stored = self.store.create(job)
        except BaseException:
            self._delete_quietly(written)
            raise
        if stored.job_id != job.job_id:
            self._delete_quietly(written)
        return stored

    async def _check_voice_blobs(self, voice_id: str, model: str) -> None:
        """A voice exists if its reference or its English conditionals do. Voices made before
        the family was served have no reference: they serve the English model only."""
        if await self._call(self.storage.exists, voice_reference_key(voice_id)):
            return
        if not await self._call(self.storage.exists, voice_key(voice_id)):
            raise VoiceNotFound(voice_id)
        if model != "chatterbox":
            raise InvalidInput(f"voice {voice_id} was cloned before other models were served and keeps no "
                               f"reference clip to prepare {model!r} from; clone it again from its sample",
                               field="voice_id", status_code=409)

    def _delete_quietly(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.storage.delete(key)
            except Exception:  # the job was never recorded; an orphan blob is the lesser harm
                log.warning("could not remove orphaned upload %s", key)

    def check_capacity_now(self, user_id: str) -> None:
        """Blocking. Backpressure before anything is stored. The bound is soft by a few jobs
        under concurrent submissions (count, then insert), which is what a bound on load needs."""
        limit = self.settings.max_active_jobs
        total = self.store.count_active()
        if total >= limit:
            raise QueueFull(f"the queue is full ({total} jobs waiting or running); try again later",
                            retry_after_s=30, per_user=False)
        mine = self.store.count_active(user_id=user_id)
        if mine >= self.settings.max_active_jobs_per_user:
            raise QueueFull(
                f"user {user_id!r} already has {mine} jobs waiting or running; wait for one to finish",
                retry_after_s=10, per_user=True,
            )

    def check_key_capacity_now(self, owner: str, limits: KeyLimits) -> None:
        """Blocking. Per-key quotas: a client rotating user_id still cannot fill the queue."""
        active = self.store.count_key_jobs(owner=owner)
        # The day's count reads every job of the key's last 24 hours: only where a daily bound exists.
        today = (self.store.count_key_jobs(owner=owner, since=self.clock() - 86_400.0)
                 if daily_limit(limits, self.settings) else 0)
        check_key_load(key=owner, active=active, today=today, limits=limits, settings=self.settings)

    # --- reads --------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job:
        job = await self._call(self.store.get, job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list_jobs(self, *, status: str | None = None, user_id: str | None = None, limit: int = 50) -> list[Job]:
        return await self._call(
            self.store.list_jobs, status=JobStatus(status) if status else None, user_id=user_id, limit=limit
        )

    async def stats(self, user_id: str | None = None, owner: str | None = None) -> JobStats:
        """Everyone's totals (or one user's); with `owner`, only that key's jobs."""
        if owner is not None:
            return await self._call(self.store.key_stats, owner=owner, user_id=user_id)
        return await self._call(self.store.stats, user_id=user_id)

    async def queue_snapshot(self) -> JobStats:
        """The active part of the queue for readiness checks, from indexed reads whose cost
        grows with the jobs waiting or running, never with the table (a health probe must stay
        cheap at any history size): pending and processing counts, the oldest pending job's
        creation time and the oldest running job's start (in `extra`)."""
        active = await self._call(self.store.count_active)
        running = await self._call(self.store.list_jobs, status=JobStatus.PROCESSING, limit=1000)
        oldest = await self._call(self.store.list_jobs, status=JobStatus.PENDING, limit=1)
        started = min((j.started_at for j in running if j.started_at), default=None)
        by_status = {JobStatus.PENDING.value: max(0, active - len(running)), JobStatus.PROCESSING.value: len(running)}
        return JobStats(total=active, by_status=by_status, avg_processing_time=None, total_processing_time=0.0,
                        oldest_pending_created_at=oldest[0].created_at if oldest else None,
                        extra={"oldest_processing_started_at": started} if started is not None else {})

    async def read_result(self, job: Job) -> bytes:
        """The result's bytes of a job the caller has just read (not read again here)."""
        if job.status is not JobStatus.COMPLETED or not job.result_key:
            raise BlobNotFound(f"results/{job.job_id}")
        return await self._call(self.storage.get, job.result_key)

    async def status(self, job_id: str, *, expires_s: int = 3600) -> tuple[Job, str | None, QueuePlace | None]:
        """A status read in one call: the job, its result's URL once it has one (None where
        the storage has no URLs, or the job has no result), and a pending job's place in the
        queue with a rough wait (voiceq.queue_wait: (position + 1) x recent GPU time per job)."""
        # One trip to a thread for the whole read: at a poll's cost, the hops between the event
        # loop and the thread pool weigh more than the indexed reads themselves.
        job, position, url = await self._call(self._status_now, job_id, expires_s)
        return job, url, None if position is None else self.waits.place(job.model, position)

    def _status_now(self, job_id: str, expires_s: int) -> tuple[Job, int | None, str | None]:
        """Blocking: the job, a pending job's queue position, a completed job's result URL."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.status is JobStatus.PENDING:
            # Claimed (or cancelled) between the two reads: no place, the next poll shows it.
            return job, self.store.queue_position(job_id, now=self.clock()), None
        if job.status is not JobStatus.COMPLETED or not job.result_key:
            return job, None, None
        return job, None, self.storage.presigned_url(job.result_key, expires_s=expires_s)

    def wait_rates(self) -> dict[str, float]:
        """The recent GPU seconds per job of each model, learned from the completions recorded here."""
        return self.waits.rates()

    async def ping(self) -> dict[str, str]:
        """Health of the store and storage: 'ok' or the error text, per component."""
        report: dict[str, str] = {}
        for name, probe in (("job_store", self.store.ping), ("storage", self.storage.ping)):
            try:
                await asyncio.wait_for(self._call(probe), timeout=10)
                report[name] = "ok"
            except Exception as err:  # report, don't raise: this feeds the health route
                report[name] = f"{type(err).__name__}: {err}"
        return report

    # --- worker protocol ----------------------------------------------------------------

    async def claim(self, worker: WorkerInfo, *, limit: int, job_ids: Sequence[str] | None = None,
                    model: str | None = None) -> list[Job]:
        jobs = await self._call(
            self.store.claim,
            worker=worker,
            limit=limit,
            lease_s=self.settings.lease_s,
            now=self.clock(),
            job_ids=list(job_ids) if job_ids is not None else None,
            **({"model": model} if model is not None else {}),
        )
        for job in jobs:
            waited = (job.started_at or job.created_at) - job.created_at
            log_job("claimed", job, worker=worker.worker_id, waited_s=waited)
            self.metrics.claimed(waited)
        return jobs

    async def heartbeat(self, job_id: str, *, lease_id: str) -> Job:
        return await self._call(
            self.store.heartbeat, job_id, lease_id=lease_id, lease_s=self.settings.lease_s, now=self.clock()
        )

    async def complete(self, job_id: str, *, lease_id: str, result: JobResult) -> Job:
        now = self.clock()
        # The voice is recorded before the job completes: a completed clone always has its
        # voice's record (and owner), so reusing it is never refused for want of one.
        voice = await self.record_new_voice(job_id, result)
        try:
            job = await self._call(self.store.complete, job_id, lease_id=lease_id, result=result, now=now)
        except StaleLease:
            await self.forget_voice_record(voice)
            log.warning("job=%s event=stale lease=%s: result of a late worker discarded", job_id, lease_id)
            raise
        if job.updated_at != now:  # a retried call whose first reply was lost: already recorded
            log_job("replayed", job, lease=lease_id)
            return job
        log_job("completed", job, voice=job.voice_id, processing_s=job.processing_time, tokens=job.speech_tokens)
        self.waits.record(job.model, job.gpu_seconds or 0.0)
        self.metrics.completed(processing_s=job.processing_time or 0.0, speech_tokens=job.speech_tokens or 0,
                               audio_s=job.result_seconds or 0.0,
                               gpu_type=job.worker_info.gpu_type if job.worker_info else "unknown")
        self._notify(job)
        return job

    async def fail(
        self, job_id: str, *, lease_id: str, error: str, transient: bool, defer_s: float | None = None
    ) -> Job:
        now = self.clock()
        job = await self._call(
            self.store.fail,
            job_id,
            lease_id=lease_id,
            error=error,
            transient=transient,
            now=now,
            defer_s=defer_s,
        )
        if job.updated_at != now:  # a retried call whose first reply was lost: already recorded
            log_job("replayed", job, lease=lease_id)
            return job
        event = "retry" if job.status is JobStatus.PENDING else "failed"
        log_job(event, job, level=logging.WARNING, error=error,
                retry_in_s=(job.next_attempt_at - self.clock()) if event == "retry" else None)
        self.metrics.failed(failure_reason(error), final=event == "failed")
        self._notify(job)
        return job

    async def expire_leases(self) -> list[Job]:
        jobs = await self._call(self.store.expire_leases, now=self.clock())
        for job in jobs:
            log_job("expired", job, level=logging.WARNING, status=job.status.value)
            self.metrics.failed("worker_lost", final=job.status is JobStatus.FAILED)
            self._notify(job)
        return jobs

    async def observe_queue(self) -> JobStats:
        stats = await self._call(self.store.queue_stats)  # running counts, never a count over the table
        oldest = stats.oldest_pending_created_at
        self.metrics.queue(stats.by_status, max(0.0, self.clock() - oldest) if oldest is not None else 0.0)
        return stats

    async def cancel(self, job_id: str) -> Job:
        job = await self._call(self.store.cancel, job_id, now=self.clock())
        log_job("cancelled", job)
        self._notify(job)
        return job

    async def requeue(self, job_id: str) -> Job:
        job = await self._call(self.store.requeue, job_id, now=self.clock())
        log_job("requeued", job)
        return job

    # --- webhooks -----------------------------------------------------------------------

    def _notify(self, job: Job) -> None:
        """The store wrote the webhook a final job owes (in its outbox); deliver it soon."""
        if job.callback_url and job.status.terminal:
            self._webhooks_due.set()

    async def deliver_due_webhooks(self, *, limit: int = 64, lease_s: float = 2 * WEBHOOK_DEADLINE_S) -> int:
        """Attempt every due outbox entry once (concurrently); returns how many were attempted."""
        if self.outbox is None or not self.settings.webhook_secret:
            return 0
        from .webhooks import new_client

        entries = await self._call(self.outbox.outbox_due, now=self.clock(), limit=limit, lease_s=lease_s)
        if entries:
            async with new_client(WEBHOOK_DEADLINE_S) as http:
                await asyncio.gather(*(self._deliver(e, http) for e in entries))
        return len(entries)

    async def _deliver(self, entry: OutboxEntry, http: Any) -> None:
        from .webhooks import deliver_once

        job = await self._call(self.store.get, entry.job_id)
        if job is None:  # the job is gone: nothing to announce
            await self._call(self.outbox.outbox_settle, after_attempt(  # type: ignore[union-attr]
                entry, delivered=False, retryable=False, error="job no longer exists", now=self.clock()))
            return
        body = webhook_body(entry, job)
        attempt = await deliver_once(entry.url, entry.webhook_id, body, secret=self.settings.webhook_secret,
                                     allow_private=self.settings.webhook_allow_private,
                                     deadline_s=WEBHOOK_DEADLINE_S, client=http)
        settled = after_attempt(entry, delivered=attempt.delivered, retryable=attempt.retryable,
                                error=attempt.error, now=self.clock())
        await self._call(self.outbox.outbox_settle, settled)  # type: ignore[union-attr]
        level = logging.INFO if attempt.delivered else logging.WARNING
        log_job("webhook", job, level=level, webhook_id=entry.webhook_id, delivered=attempt.delivered,
                attempt=settled.attempts, state=settled.state, status_code=attempt.status_code, error=attempt.error)

    async def drain_webhooks(self, timeout_s: float) -> None:
        """Deliver what is due now, for up to `timeout_s` (tests, shutdown)."""
        async def drain() -> None:
            while await self.deliver_due_webhooks() > 0:
                pass

        try:
            await asyncio.wait_for(drain(), timeout=timeout_s)
        except asyncio.TimeoutError:
            pass

    async def deliver_webhooks_forever(self, interval_s: float) -> None:
        """Deliver the outbox, forever: at once when a transition owed a webhook, else every
        `interval_s` (retries come due, entries of a replica that died come back)."""
        while True:
            try:
                if await self.deliver_due_webhooks() > 0:
                    continue
            except StoreUnavailable as err:
                log.warning("webhook outbox: job store unavailable: %s", err)
            except Exception:
                log.exception("webhook delivery failed")
            self._webhooks_due.clear()
            try:
                await asyncio.wait_for(self._webhooks_due.wait(), timeout=interval_s)
            except asyncio.TimeoutError:
                pass

    async def reap_forever(self, interval_s: float) -> None:
        """Return expired leases to the queue and refresh the queue gauges, forever. A store
        outage is logged and waited out."""
        while True:
            try:
                await self.expire_leases()
                await self.observe_queue()
            except StoreUnavailable as err:
                log.warning("lease reaper: job store unavailable: %s", err)
            except Exception:
                log.exception("lease reaper failed")
            await asyncio.sleep(interval_s)

