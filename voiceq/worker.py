"""The inference worker: claim a batch of jobs, run them through the engine, record outcomes.

    claim (atomic, in the store) ─▶ renew leases while working ─▶ engine.synthesize(batch)
        ─▶ per job: store voice + MP3, then complete │ or fail (retry with backoff / give up)

A job that fails fails alone. Finalization is shielded from cancellation, so a replica being
shut down mid-batch either records an outcome or leaves the lease to expire, never half of
one. A worker that finds its lease gone (expired and re-claimed, or cancelled) drops its
result instead of overwriting the newer state.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence

from .audio import decode_stored, to_mp3
from .batching import BatchLimits, plan_batches, worth_waiting
from .continuous import ContinuousRun
from .audio_encode import encode, result_format
from .engine import Engine, GenerationParams, Synthesis, SynthesisRequest
from .engine.base import ConversionRequest
from .errors import (BlobNotFound, InvalidInput, JobFailed, ServiceUnavailable, StaleLease, StorageUnavailable,
                     StoreUnavailable)
from .jobs import Job, JobResult, WorkerInfo, new_voice_id
from .metrics import Metrics
from .prepared import Prepared, Produced
from .models import CHATTERBOX, KIND_CONVERT, MODELS
from .storage import BlobStorage, result_key
from .storage.base import voice_model_key, voice_reference_key

log = logging.getLogger("voiceq.worker")

# Failures of bookkeeping that pass by themselves: worth waiting out, not worth a traceback.
_PASSING = (ServiceUnavailable, StoreUnavailable)


class JobsApi(Protocol):
    """What a worker needs from bookkeeping. `JobManager` provides it in-process; the
    inference deployment provides it over a Serve handle."""

    async def claim(self, worker: WorkerInfo, *, limit: int, job_ids: Sequence[str] | None = None,
                    model: str | None = None) -> list[Job]: ...

    async def get(self, job_id: str) -> Job: ...

    async def heartbeat(self, job_id: str, *, lease_id: str) -> Job: ...

    async def complete(self, job_id: str, *, lease_id: str, result: JobResult) -> Job: ...

    async def fail(
        self, job_id: str, *, lease_id: str, error: str, transient: bool, defer_s: float | None = None
    ) -> Job: ...


def classify(err: BaseException) -> JobFailed:
    """Which failures can pass (retry) and which cannot (fail now)."""
    if isinstance(err, JobFailed):
        return err
    if isinstance(err, BlobNotFound):
        return JobFailed(f"input missing from storage: {err}", transient=False)
    if isinstance(err, InvalidInput):
        return JobFailed(err.message, transient=False)
    if isinstance(err, StorageUnavailable):
        return JobFailed(f"storage unavailable: {err}", transient=True)
    if isinstance(err, (ValueError, TypeError)):
        return JobFailed(f"{type(err).__name__}: {err}", transient=False)
    return JobFailed(f"{type(err).__name__}: {err}", transient=True)


class VoiceCache:
    """Prepared voices by id: memory first (LRU), then storage."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()  # jobs are prepared on parallel threads
        self.hits = 0
        self.misses = 0

    def get(self, voice_id: str) -> Any | None:
        with self._lock:
            voice = self._items.get(voice_id)
            if voice is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(voice_id)
            return voice

    def __len__(self) -> int:
        return len(self._items)

    def put(self, voice_id: str, voice: Any) -> None:
        with self._lock:
            self._items[voice_id] = voice
            self._items.move_to_end(voice_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


def generation_params(job: Job) -> GenerationParams:
    """The job's settings over its model's upstream defaults (Turbo's top-p and top-k,
    Multilingual's repetition penalty) over ours."""
    spec = MODELS.get(job.model)
    raw = {**(dict(spec.defaults) if spec else {}), **dict(job.extra.get("params") or {})}
    known = set(GenerationParams.__dataclass_fields__)
    return GenerationParams(**{k: v for k, v in raw.items() if k in known})


class Worker:
    def __init__(
        self,
        jobs: JobsApi,
        storage: BlobStorage,
        engine: Engine,
        *,
        worker: WorkerInfo,
        limits: BatchLimits = BatchLimits(),
        tokens_of: Callable[[Job], int] | None = None,
        heartbeat_s: float = 20.0,
        poll_interval_s: float = 1.0,
        voice_cache: VoiceCache | None = None,
        metrics: Metrics | None = None,
        model: str | None = None,
    ) -> None:
        self.jobs = jobs
        # The family member this worker's engine is: it claims that model's jobs only
        # (None: every job, for single-model setups and stand-in engines).
        self.model = model
        self.storage = storage
        self.engine = engine
        self.worker = worker
        self.limits = limits
        # A job's cost for the token budget of an engine pass: the engine's own estimate (its
        # chunks and caps), so the worker plans with the numbers the engine decodes by.
        self.tokens_of = tokens_of or self._engine_cost
        self.heartbeat_s = heartbeat_s
        self.poll_interval_s = poll_interval_s
        self.voices = voice_cache or VoiceCache()
        self.metrics = metrics or Metrics(enabled=False)
        # The engine holds one model; batches take turns on it.
        self._engine_turn = asyncio.Lock()
        self._voice_turns = [threading.Lock() for _ in range(64)]  # a voice's lock: by its key's hash
        self._stopping = False
        self.batches_run = 0
        self.last_batch_size = 0

    # --- loops --------------------------------------------------------------------------

    async def run_forever(self) -> None:
        backoff = self.poll_interval_s
        while not self._stopping:
            try:
                n = await self.run_once()
                backoff = self.poll_interval_s
            except asyncio.CancelledError:
                raise
            except _PASSING as err:
                log.warning("worker loop: cannot claim (%s); retrying in %.1f s", err, backoff)
                n, backoff = 0, min(backoff * 2, 10.0)
            except Exception:
                log.exception("worker loop: claim or batch failed; backing off")
                n, backoff = 0, min(backoff * 2, 10.0)
            if n == 0:
                await asyncio.sleep(backoff)

    async def stop(self, *, timeout_s: float) -> None:
        """Claim nothing more and wait (up to `timeout_s`) for the batch in hand to be recorded."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._engine_turn.acquire(), timeout=timeout_s)
        except asyncio.TimeoutError:
            log.warning("worker stopped with a batch in flight; its leases will expire")

    @property
    def max_batch_size(self) -> int:
        return self.limits.max_rows

    def configure(self, limits: BatchLimits) -> None:
        """New limits at run time (Serve's `reconfigure`); the batch in flight keeps its own."""
        self.limits = limits

    async def run_once(self) -> int:
        async with self._engine_turn:
            if self._stopping:
                return 0
            limits = self.limits
            batch = await self._claim(limit=limits.max_rows)
            if worth_waiting(len(batch), limits):
                # A short wait fills a batch that just started to form: GPUs are paid by the
                # second, and a pass of 8 costs little more than a pass of 1.
                await asyncio.sleep(limits.wait_to_fill_s)
                batch += await self._claim(limit=limits.max_rows - len(batch))
            if not batch:
                return 0
            if hasattr(self.engine, "run_session"):
                return await ContinuousRun(self, batch).run()
            await self.process(batch)
            return len(batch)

    async def run_ids(self, job_ids: Sequence[str]) -> list[str]:
        """Process these jobs now if they are still pending (development mode's direct path).
        Returns the ids this call claimed; others were already taken by someone else."""
        return list(await self.run_now(job_ids))

    async def run_now(self, job_ids: Sequence[str]) -> dict[str, Job | None]:
        """`run_ids`, answering each claimed job's recorded outcome (a final state, or pending
        again for a retry); None where no outcome could be recorded (lease lost, bookkeeping
        unreachable). The caller has the outcome without reading the store again."""
        async with self._engine_turn:
            batch = await self._claim(limit=len(job_ids), job_ids=job_ids)
            if batch and hasattr(self.engine, "run_session"):
                run = ContinuousRun(self, batch, claim_more=False)
                await run.run()
                recorded = run.recorded
            else:
                recorded = await self.process(batch) if batch else {}
            return {j.job_id: recorded.get(j.job_id) for j in batch}

    async def _claim(self, *, limit: int, job_ids: Sequence[str] | None = None) -> list[Job]:
        if self.model is None:
            return await self.jobs.claim(self.worker, limit=limit, job_ids=job_ids)
        return await self.jobs.claim(self.worker, limit=limit, job_ids=job_ids, model=self.model)

    # --- one batch ----------------------------------------------------------------------

    async def process(self, batch: list[Job]) -> dict[str, Job]:
        """Run claimed jobs through the engine in passes within the batch limits, renewing
        every claimed job's lease until its own outcome is recorded. Returns the recorded
        outcomes by job id."""
        recorded: dict[str, Job] = {}
        lost: set[str] = set()  # lease ids (claims), not job ids: see _renew_leases
        finished: set[str] = set()
        beat = asyncio.create_task(self._renew_leases(batch, lost, finished))
        try:
            for part in plan_batches(batch, self.limits, self.tokens_of):
                started = time.perf_counter()
                try:
                    outcomes = await self._produce(part)
                except asyncio.CancelledError:
                    raise  # shutting down: the leases expire and the jobs run again elsewhere
                except Exception as err:  # the pass failed before per-job outcomes existed
                    outcomes = [err] * len(part)
                elapsed = time.perf_counter() - started
                self.batches_run += 1
                self.last_batch_size = len(part)
                self.metrics.batch(len(part))
                recorded.update(await asyncio.shield(self._finalize(part, outcomes, elapsed, lost)))
                finished.update(j.lease_id or "" for j in part)
        finally:
            beat.cancel()
        return recorded

    async def _renew_leases(self, batch: Iterable[Job], lost: set[str], finished: set[str]) -> None:
        """Renew the lease of every job in `batch` (a list, or a live view of the jobs in hand).
        `lost` and `finished` hold lease ids: a job whose lease was lost can be claimed again by
        the same run (the reaper requeued it while bookkeeping was out of reach), and its new
        claim is renewed and recorded as any other."""
        while True:
            await asyncio.sleep(self.heartbeat_s)
            for job in list(batch):
                lease = job.lease_id or ""
                if lease in lost or lease in finished:
                    continue
                try:
                    await self.jobs.heartbeat(job.job_id, lease_id=lease)
                except StaleLease:
                    lost.add(lease)
                    log.warning("job=%s event=stale: lease lost while running (cancelled or taken over)", job.job_id)
                except Exception as err:  # a store hiccup: try again next beat
                    log.warning("job=%s heartbeat failed: %s", job.job_id, err)

    async def _finalize(
        self, batch: list[Job], outcomes: list[Produced | BaseException], elapsed: float, lost: set[str],
        share: float | None = None,
    ) -> dict[str, Job]:
        # `batch` is one engine pass. Every job in it waited the whole pass (processing_time),
        # but they shared the GPU: each is charged an equal share, so a pass's shares add up to
        # its wall time once, however many jobs it held. Failed rows' shares are not recorded.
        # (A continuous run finalizes job by job and passes each job's own share.)
        if share is None:
            share = elapsed / len(batch) if batch else 0.0
        recorded: dict[str, Job] = {}
        for job, outcome in zip(batch, outcomes):
            lease = job.lease_id or ""
            try:
                if lease in lost:
                    raise StaleLease(job.job_id)
                if isinstance(outcome, BaseException):
                    failure = classify(outcome)
                    recorded[job.job_id] = await self._record(lambda: self.jobs.fail(
                        job.job_id, lease_id=lease, error=failure.message, transient=failure.transient,
                        defer_s=failure.defer_s,
                    ))
                    continue
                result = JobResult(
                    voice_id=outcome.voice_id,
                    voice_key=outcome.voice_key,
                    result_key=outcome.result_key,
                    speech_tokens=outcome.speech_tokens,
                    audio_seconds=outcome.audio_seconds,
                    processing_time=round(elapsed, 3),
                    gpu_seconds=round(share, 3),
                    models=(self.engine.info.name,),
                )
                recorded[job.job_id] = await self._record(
                    lambda: self.jobs.complete(job.job_id, lease_id=lease, result=result))
            except StaleLease:
                if isinstance(outcome, Produced):
                    await self._discard(job.job_id, outcome)
            except Exception:
                # Bookkeeping unreachable: the lease will expire and the job will run again.
                log.exception("job=%s could not record its outcome; its lease will expire", job.job_id)
        return recorded

    async def _record(self, call: Callable[[], Awaitable[Job]]) -> Job:
        """Record an outcome, riding out a short bookkeeping or store outage (a restart takes
        seconds) for up to a lease period; after that the lease expires and the job runs again."""
        delay, deadline = 0.25, time.monotonic() + self.heartbeat_s * 3
        while True:
            try:
                return await call()
            except _PASSING as err:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("recording an outcome failed (%s); retrying in %.2f s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _discard(self, job_id: str, outcome: Produced) -> None:
        """Remove a result the store did not take, except what the job's committed state points
        to: a retried call can be refused after the first one committed (its reply was lost),
        and deleting then would take a finished job's audio and voice. When the committed state
        cannot be read, keep everything: an orphan blob is the lesser harm."""
        # A new voice's blobs (its reference and this model's conditionals) go with it; a known
        # voice's stay, even those this job prepared for its model (others may use them).
        keys = [outcome.result_key] + (list(outcome.voice_blobs) if outcome.new_voice else [])
        try:
            committed = await self.jobs.get(job_id)
        except Exception as err:
            log.warning("job=%s could not read the committed state (%s); keeping %s", job_id, err, keys)
            return
        kept = {committed.result_key, committed.voice_key}
        if committed.voice_id == outcome.voice_id:
            kept.update(outcome.voice_blobs)
        await asyncio.to_thread(self._delete, [k for k in keys if k not in kept])

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self.storage.delete(key)
            except Exception:
                log.warning("could not remove %s of a discarded result", key)

    # --- the engine side (runs in a thread) -----------------------------------------------

    def _voice_for(self, job: Job) -> tuple[str, Any, list[str]]:
        """(voice id, this engine's prepared voice, blobs created for it). A known voice is
        read from memory, then from its conditionals for this model, else prepared from its
        reference clip (the first use of a voice with this model) and stored for next time.
        A new upload becomes a voice: its reference and this model's conditionals."""
        model = self.model or job.model or CHATTERBOX
        if job.voice_id:
            cache_key = job.voice_id if model == CHATTERBOX else f"{job.voice_id}:{model}"
            # Jobs are prepared on parallel threads: one voice is read or prepared once.
            with self._voice_turns[hash(cache_key) % len(self._voice_turns)]:
                return self._known_voice(job, model, cache_key)
        return self._new_voice(job, model)

    def _known_voice(self, job: Job, model: str, cache_key: str) -> tuple[str, Any, list[str]]:
        assert job.voice_id is not None
        voice = self.voices.get(cache_key)
        created: list[str] = []
        if voice is None:
            key = voice_model_key(job.voice_id, model)
            try:
                voice = self.engine.voice_from_bytes(self.storage.get(key))
            except BlobNotFound:
                clip = decode_stored(self.storage.get(voice_reference_key(job.voice_id)))
                voice = self.engine.prepare_voice(clip)
                self.storage.put(key, self.engine.voice_to_bytes(voice), content_type="application/octet-stream")
                created.append(key)
            self.voices.put(cache_key, voice)
        return job.voice_id, voice, created

    def _new_voice(self, job: Job, model: str) -> tuple[str, Any, list[str]]:
        upload = self.storage.get(job.audio_key)  # as it came: any container the edge accepted
        voice = self.engine.prepare_voice(decode_stored(upload))
        voice_id = new_voice_id()
        keys = [voice_reference_key(voice_id), voice_model_key(voice_id, model)]
        # The voice's reference is the upload as read, not re-encoded (read back by decode_stored).
        self.storage.put(keys[0], upload, content_type="application/octet-stream")
        self.storage.put(keys[1], self.engine.voice_to_bytes(voice), content_type="application/octet-stream")
        self.voices.put(voice_id if model == CHATTERBOX else f"{voice_id}:{model}", voice)
        return voice_id, voice, keys

    def _engine_cost(self, job: Job) -> int:
        """The engine's estimate of a job's speech tokens (1 for engines that give none: the
        pass is then bounded by its row count only)."""
        cost = getattr(self.engine, "request_cost", None)
        if cost is None or job.kind == KIND_CONVERT:
            return 1
        try:
            return cost(self.request_for(job, None)).expected_speech_tokens
        except Exception:  # an unplannable job fails in the engine, alone; it costs nothing here
            return 1

    def request_for(self, job: Job, voice: Any) -> SynthesisRequest:
        return SynthesisRequest(job.job_id, voice, job.sample_text, generation_params(job), job.language)

    def _prepare(self, job: Job) -> Prepared:
        """Everything a job needs before it enters the engine (runs on a preparation thread):
        its voice (read, or prepared from the stored upload) and, for a conversion, its source."""
        voice_id, voice, created = self._voice_for(job)
        if job.kind == KIND_CONVERT:
            if not hasattr(self.engine, "convert"):
                self._delete([] if job.voice_id else created)
                raise JobFailed(f"the {self.engine.info.name} engine cannot convert voices", transient=False)
            source = decode_stored(self.storage.get(str(job.extra.get("source_key") or "")))
            return Prepared(job, voice_id, created, conversion=ConversionRequest(job.job_id, voice, source,
                                                                                 generation_params(job).seed))
        return Prepared(job, voice_id, created, request=self.request_for(job, voice))

    def _outcome(self, prepared: Prepared, out: Synthesis | BaseException) -> Produced | BaseException:
        """Store what the engine made (MP3 encoding and upload; runs on a thread after the job left
        the engine), or clean up after a failure."""
        job = prepared.job
        if isinstance(out, BaseException):
            if not job.voice_id:  # a retry prepares the voice again under a new id
                self._delete(prepared.created)
            return out
        try:
            return self._store_result(job, prepared.voice_id, prepared.created, out)
        except Exception as err:
            return err

    async def _produce(self, batch: list[Job]) -> list[Produced | BaseException]:
        """One engine pass: inputs prepared on threads first, the engine alone in its call,
        results encoded and stored on threads after."""
        prepared = await asyncio.gather(*(asyncio.to_thread(self._prepare, job) for job in batch),
                                        return_exceptions=True)
        ready = [p for p in prepared if isinstance(p, Prepared)]
        clones = [p for p in ready if p.request is not None]
        conversions = [p for p in ready if p.conversion is not None]

        def engine_pass() -> tuple[list, list]:
            synthesized = self.engine.synthesize([p.request for p in clones]) if clones else []
            converted = (self.engine.convert([p.conversion for p in conversions])  # type: ignore[attr-defined]
                         if conversions else [])
            return list(synthesized), list(converted)

        try:
            synthesized, converted = await asyncio.to_thread(engine_pass)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            synthesized, converted = [err] * len(clones), [err] * len(conversions)
        made = dict(zip([id(p) for p in clones + conversions], synthesized + converted))
        stored = await asyncio.gather(*(asyncio.to_thread(self._outcome, p, made[id(p)]) for p in ready))
        by_job = {id(p): out for p, out in zip(ready, stored)}
        return [by_job[id(p)] if isinstance(p, Prepared) else p for p in prepared]

    def _store_result(self, job: Job, voice_id: str, created: list[str], out: Synthesis) -> Produced:
        fmt = result_format(job)
        key = result_key(job.job_id, job.lease_id or "nolease", fmt.extension)
        data = to_mp3(out.clip) if fmt.name == "mp3" else encode(out.clip, fmt)
        self.storage.put(key, data, content_type=fmt.media_type)
        return Produced(
            voice_id=voice_id,
            voice_key=voice_model_key(voice_id, self.model or job.model or CHATTERBOX),
            result_key=key,
            speech_tokens=out.speech_tokens,
            audio_seconds=round(out.seconds, 3),
            new_voice=not job.voice_id,
            voice_blobs=tuple(created),
        )
