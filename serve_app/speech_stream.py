"""A speech request as a stream of audio: one job per chunk of text, each chunk's audio sent
as soon as it is made.

The text is cut into chunks (`voiceq.engine.text.stream_chunks`): the first sentence alone,
then larger chunks. Every chunk is an ordinary job (queue, batches shared with other users'
jobs, retries, stats, metrics, cost), tagged with the request it belongs to. The first chunk
is submitted alone and the rest only once it is made, so the first audio never waits in an
engine pass with the later chunks: its time does not grow with the text. The rest are
submitted together and ride in whatever batches the workers form. Their audio is encoded,
in order, into one file in the requested format as it arrives.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Protocol, Sequence

import numpy as np

from voiceq.pcm import from_wav
from voiceq.audio_encode import StreamEncoder
from voiceq.audio_tempo import change_speed
from voiceq.engine.text import JOIN_SILENCE_S
from voiceq.errors import JobFailed
from voiceq.jobs import Job, JobStatus
from voiceq.manager import Submission
from voiceq.settings import Settings

log = logging.getLogger("voiceq.speech")

# How often a production stream looks at its chunks' jobs.
POLL_S = 0.1


class SpeechBackend(Protocol):
    settings: Settings

    async def submit(self, sub: Submission) -> Job: ...

    async def get(self, job_id: str) -> Job: ...

    async def run_now(self, job: Job) -> Job: ...

    async def read_result(self, job: Job) -> bytes: ...

    async def cancel(self, job_id: str) -> Job: ...


@dataclass(frozen=True)
class SpeechPlan:
    """The chunks' submissions (in order) and how to render them."""

    request_id: str
    parts: tuple[Submission, ...]
    response_format: str
    speed: float = 1.0


def new_request_id() -> str:
    return f"speech_{uuid.uuid4().hex[:16]}"


async def wait_final(backend: SpeechBackend, submitted: Job, *, timeout_s: float,
                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Job:
    """The job once it is completed, failed or cancelled (a transient failure is waited out).
    Development runs it at once on an inference replica; production leaves it to the queue."""
    deadline = time.monotonic() + timeout_s
    job_id = submitted.job_id
    if not backend.settings.production:
        job = await asyncio.wait_for(backend.run_now(submitted), timeout=timeout_s)
        if job.status.terminal:
            return job
    while True:
        job = await backend.get(job_id)
        if job.status.terminal:
            return job
        if time.monotonic() > deadline:
            raise asyncio.TimeoutError(f"job {job_id} did not finish within {timeout_s:g} s")
        await sleep(POLL_S)


def _failed(job: Job) -> JobFailed:
    return JobFailed(f"speech chunk {job.job_id} {job.status.value}: {job.error or 'no audio'}", transient=False)


class SpeechStream:
    """Runs one plan: `start` makes the first chunk (errors surface before any byte is sent),
    then `audio()` yields the encoded bytes chunk by chunk."""

    def __init__(self, backend: SpeechBackend, plan: SpeechPlan) -> None:
        self.backend = backend
        self.plan = plan
        self.jobs: list[Job] = []
        self._encoder: StreamEncoder | None = None
        self._first: Job | None = None

    @property
    def timeout_s(self) -> float:
        return self.backend.settings.dev_timeout_s

    async def start(self) -> Job:
        """Submit and wait for the first chunk; raises if it cannot be made."""
        job = await self.backend.submit(self.plan.parts[0])
        self.jobs.append(job)
        done = await wait_final(self.backend, job, timeout_s=self.timeout_s)
        if done.status is not JobStatus.COMPLETED:
            raise _failed(done)
        self._first = done
        return done

    async def _render(self, job: Job, *, first: bool) -> bytes:
        data = await self.backend.read_result(job)
        return await asyncio.to_thread(self._encode, data, first)

    def _encode(self, wav: bytes, first: bool) -> bytes:
        clip = from_wav(wav)
        if self._encoder is None:
            self._encoder = StreamEncoder(self.plan.response_format, clip.sample_rate)
        samples = clip.samples
        if not first:  # the pause between chunks that joining a long text's chunks leaves
            samples = np.concatenate([np.zeros(int(JOIN_SILENCE_S * clip.sample_rate), np.float32), samples])
        if self.plan.speed != 1.0:
            samples = change_speed(samples, clip.sample_rate, self.plan.speed)
        return self._encoder.feed(samples)

    async def audio(self) -> AsyncIterator[bytes]:
        assert self._first is not None, "start() first"
        rest: list[Job] = []
        try:
            yield await self._render(self._first, first=True)
            for sub in self.plan.parts[1:]:
                job = await self.backend.submit(sub)
                rest.append(job)
                self.jobs.append(job)
            waits = [asyncio.ensure_future(wait_final(self.backend, j, timeout_s=self.timeout_s))
                     for j in rest]
            try:
                for waiting in waits:
                    done = await waiting
                    if done.status is not JobStatus.COMPLETED:
                        # The response has begun: the stream ends early; the job's record says why.
                        log.warning("speech=%s stopped: %s", self.plan.request_id, _failed(done).message)
                        return
                    yield await self._render(done, first=False)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if self._encoder is not None:
                yield await asyncio.to_thread(self._encoder.close)
        finally:
            await self._cancel_unfinished(rest)

    async def _cancel_unfinished(self, jobs: Sequence[Job]) -> None:
        """A listener that hung up wants no more audio: its chunks still queued are cancelled."""
        for job in jobs:
            try:
                current = await self.backend.get(job.job_id)
                if not current.status.terminal:
                    await self.backend.cancel(job.job_id)
            except Exception as err:  # best effort: the jobs finish on their own otherwise
                log.warning("speech=%s could not cancel chunk %s: %s", self.plan.request_id, job.job_id, err)
