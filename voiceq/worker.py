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
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, Sequence

from .audio import decode_stored, from_wav, to_mp3
from .batching import BatchLimits, plan_batches, worth_waiting
from .audio import to_wav
from .audio_encode import encode, result_format
from .engine import Engine, GenerationParams, Synthesis, SynthesisRequest
from .engine.base import ConversionRequest
from .engine.text import speech_token_estimate
from .errors import (BlobNotFound, InvalidInput, JobFailed, ServiceUnavailable, StaleLease, StorageUnavailable,
                     StoreUnavailable)
from .jobs import Job, JobResult, WorkerInfo, new_voice_id
from .metrics import Metrics
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


@dataclass(frozen=True)
class Produced:
    """What the engine made for one job, already in storage, waiting to be recorded."""

    voice_id: str
    voice_key: str
    result_key: str
    speech_tokens: int
    audio_seconds: float
    new_voice: bool
    # blobs this job created for its voice (a new voice's reference, a model's conditionals):
    # removed again if its result is discarded
    voice_blobs: tuple[str, ...] = ()


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
        self.hits = 0
        self.misses = 0

    def get(self, voice_id: str) -> Any | None:
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
        # Estimated speech tokens of a job, for the token budget of an engine pass.
        self.tokens_of = tokens_of or (lambda job: speech_token_estimate(job.sample_text))
        self.heartbeat_s = heartbeat_s
        self.poll_interval_s = poll_interval_s
        self.voices = voice_cache or VoiceCache()
        self.metrics = metrics or Metrics(enabled=False)
        # The engine holds one model; batches take turns on it.
        self._engine_turn = asyncio.Lock()
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
            if batch:
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
        lost: set[str] = set()
        finished: set[str] = set()
        beat = asyncio.create_task(self._renew_leases(batch, lost, finished))
        try:
            for part in plan_batches(batch, self.limits, self.tokens_of):
                started = time.perf_counter()
                try:
                    outcomes = await asyncio.to_thread(self._produce, part)
                except asyncio.CancelledError:
                    raise  # shutting down: the leases expire and the jobs run again elsewhere
                except Exception as err:  # the pass failed before per-job outcomes existed
                    outcomes = [err] * len(part)
                elapsed = time.perf_counter() - started
                self.batches_run += 1
                self.last_batch_size = len(part)
                self.metrics.batch(len(part))
                recorded.update(await asyncio.shield(self._finalize(part, outcomes, elapsed, lost)))
                finished.update(j.job_id for j in part)
        finally:
            beat.cancel()
        return recorded

    async def _renew_leases(self, batch: list[Job], lost: set[str], finished: set[str]) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            for job in batch:
                if job.job_id in lost or job.job_id in finished:
                    continue
                try:
                    await self.jobs.heartbeat(job.job_id, lease_id=job.lease_id or "")
                except StaleLease:
                    lost.add(job.job_id)
                    log.warning("job=%s event=stale: lease lost while running (cancelled or taken over)", job.job_id)
                except Exception as err:  # a store hiccup: try again next beat
                    log.warning("job=%s heartbeat failed: %s", job.job_id, err)

    async def _finalize(
        self, batch: list[Job], outcomes: list[Produced | BaseException], elapsed: float, lost: set[str]
    ) -> dict[str, Job]:
        # `batch` is one engine pass. Every job in it waited the whole pass (processing_time),
        # but they shared the GPU: each is charged an equal share, so a pass's shares add up to
        # its wall time once, however many jobs it held. Failed rows' shares are not recorded.
        share = elapsed / len(batch) if batch else 0.0
        recorded: dict[str, Job] = {}
        for job, outcome in zip(batch, outcomes):
            lease = job.lease_id or ""
            try:
                if job.job_id in lost:
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
            voice = self.voices.get(cache_key)
            created: list[str] = []
            if voice is None:
                key = voice_model_key(job.voice_id, model)
                try:
                    voice = self.engine.voice_from_bytes(self.storage.get(key))
                except BlobNotFound:
                    clip = from_wav(self.storage.get(voice_reference_key(job.voice_id)))
                    voice = self.engine.prepare_voice(clip)
                    self.storage.put(key, self.engine.voice_to_bytes(voice), content_type="application/octet-stream")
                    created.append(key)
                self.voices.put(cache_key, voice)
            return job.voice_id, voice, created
        clip = decode_stored(self.storage.get(job.audio_key))  # the upload as it came
        voice = self.engine.prepare_voice(clip)
        voice_id = new_voice_id()
        keys = [voice_reference_key(voice_id), voice_model_key(voice_id, model)]
        self.storage.put(keys[0], to_wav(clip), content_type="audio/wav")
        self.storage.put(keys[1], self.engine.voice_to_bytes(voice), content_type="application/octet-stream")
        self.voices.put(voice_id if model == CHATTERBOX else f"{voice_id}:{model}", voice)
        return voice_id, voice, keys

    def _produce(self, batch: list[Job]) -> list[Produced | BaseException]:
        outcomes: list[Produced | BaseException] = [RuntimeError("not run")] * len(batch)
        clones: list[SynthesisRequest] = []
        conversions: list[ConversionRequest] = []
        slots: list[tuple[int, str, list[str], bool]] = []  # (job index, voice id, its new blobs, conversion?)
        for i, job in enumerate(batch):
            try:
                voice_id, voice, created = self._voice_for(job)
                if job.kind == KIND_CONVERT:
                    if not hasattr(self.engine, "convert"):
                        raise JobFailed(f"the {self.engine.info.name} engine cannot convert voices", transient=False)
                    source = decode_stored(self.storage.get(str(job.extra.get("source_key") or "")))
                    conversions.append(ConversionRequest(job.job_id, voice, source, generation_params(job).seed))
                else:
                    clones.append(SynthesisRequest(job.job_id, voice, job.sample_text, generation_params(job),
                                                   job.language))
                slots.append((i, voice_id, created, job.kind == KIND_CONVERT))
            except Exception as err:
                outcomes[i] = err
        synthesized = iter(self.engine.synthesize(clones) if clones else [])
        converted = iter(self.engine.convert(conversions) if conversions else [])  # type: ignore[attr-defined]
        for i, voice_id, created, is_conversion in slots:
            job = batch[i]
            out = next(converted) if is_conversion else next(synthesized)
            if isinstance(out, BaseException):
                outcomes[i] = out
                if not job.voice_id:  # a retry prepares the voice again under a new id
                    self._delete(created)
                continue
            try:
                outcomes[i] = self._store_result(job, voice_id, created, out)
            except Exception as err:
                outcomes[i] = err
        return outcomes

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
