"""Continuous synthesis: requests join a running T3 decode as slots free up, and each job's
audio is made (S3Gen, watermark) on a vocoder thread while T3 keeps decoding the others.

    feed(room) ─▶ plan (chunks as T3 rows) ─▶ waiting rows ─▶ SlotDecoder slots ─▶ finished rows
                                                                  │ all of a job's chunks done
    emit(key, Synthesis | error) ◀── watermark ◀── S3Gen ◀── vocoder thread ◀──┘

The session asks its `feed` for more requests whenever the decoder has free slots, so a long
job never holds a batch of short ones and the accelerator stays full while there is work. It
ends when the decoder is empty and `feed(room, idle=True)` has nothing more.

Failures stay per job: a request that cannot be planned or prefilled fails alone; a failing
vocoder batch is retried job by job; only a failing decode step fails the jobs decoding in it.

The vocoder thread takes every job that is ready when it is free and runs them through the
engine's S3Gen stage together: the flow batched where the engine batches it (padded rows whose
outputs are provably unchanged, see `s3gen_batch.py`), HiFT per job (its convolutions and
reflection padding are not exact under padding). On a GPU both threads queue work on the same
device; on a CPU they share its cores.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch

from .base import Synthesis, SynthesisRequest
from .isolation import isolated
from .plan import JobPlan
from .t3_decode import SlotDecoder

log = logging.getLogger("voiceq.engine")

Feed = Callable[[int, bool], Sequence[SynthesisRequest]]
Emit = Callable[[str, "Synthesis | BaseException"], None]


class SessionEngine(Protocol):
    """What a session uses of its engine (`ChatterboxEngine`): the model, its sizes, how it plans
    a request, and its S3Gen stage and finishing step."""

    model: Any
    t3_rows_per_pass: int
    s3gen_rows_per_pass: int
    max_speech_tokens: int

    @property
    def t3_columns(self) -> int: ...

    def plan(self, index: int, req: SynthesisRequest) -> JobPlan: ...

    def _run_s3gen(self, ready: Sequence[tuple[JobPlan, list[torch.Tensor]]]) -> list[np.ndarray]: ...

    def _finish(self, wav: np.ndarray, speech_tokens: int) -> Synthesis: ...


@dataclass
class SessionStats:
    jobs: int = 0
    failed: int = 0
    t3_steps: int = 0
    speech_tokens: int = 0
    t3_seconds: float = 0.0  # wall time of the decode loop (admissions included)
    total_seconds: float = 0.0  # until the last job's audio was emitted
    first_audio_s: float | None = None  # from the session's start to its first emitted job


@dataclass
class _Job:
    key: str
    plan: JobPlan
    tokens: list[torch.Tensor | None]
    left: int
    failed: bool = False
    started: float = field(default_factory=time.perf_counter)


class _Vocoder:
    """S3Gen and the watermark for finished jobs, on its own thread, in batches of whatever is
    ready."""

    def __init__(self, engine: SessionEngine, emit: Callable[[str, Synthesis | BaseException], None]) -> None:
        self.engine, self.emit = engine, emit
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="voiceq-vocoder", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            batch: list[_Job] = []
            item = self.jobs.get()
            while True:
                if item is None:
                    closing = True
                else:
                    batch.append(item)
                if len(batch) >= self.engine.s3gen_rows_per_pass:
                    break
                try:
                    item = self.jobs.get_nowait()
                except queue.Empty:
                    break
            if not batch:
                continue
            ready = [(j.plan, [t for t in j.tokens if t is not None]) for j in batch]  # all set by now
            with torch.inference_mode():
                waves = isolated(self.engine._run_s3gen, ready)
            for job, (_, toks), wav in zip(batch, ready, waves):
                if isinstance(wav, BaseException):
                    log.error("S3Gen failed for %s: %r", job.key, wav)
                    self.emit(job.key, wav)
                    continue
                try:
                    self.emit(job.key, self.engine._finish(wav, sum(int(t.numel()) for t in toks)))
                except Exception as err:
                    self.emit(job.key, err)


def run_session(engine: SessionEngine, feed: Feed, emit: Emit, *, slots: int | None = None,
                ignore_stop: bool = False) -> SessionStats:
    """Synthesize requests from `feed` as they come; every request's outcome goes to `emit`
    (from this thread or the vocoder's). `feed(room, idle)` returns requests to start (room:
    free model rows; idle: the decoder is empty, so an empty answer ends the session)."""
    from chatterbox.models.s3tokenizer import SPEECH_VOCAB_SIZE

    stats = SessionStats()
    started = time.perf_counter()
    lock = threading.Lock()

    def emitted(key: str, outcome: Synthesis | BaseException) -> None:
        with lock:
            if isinstance(outcome, BaseException):
                stats.failed += 1
            elif stats.first_audio_s is None:
                stats.first_audio_s = time.perf_counter() - started
        emit(key, outcome)

    t3 = engine.model.t3
    width = max(2, slots or engine.t3_rows_per_pass)
    dec = SlotDecoder(t3, width, engine.t3_columns, ignore_stop=ignore_stop, max_new_tokens=engine.max_speech_tokens)
    vocoder = _Vocoder(engine, emitted)
    jobs: dict[str, _Job] = {}
    waiting: deque[tuple[tuple[str, int], object]] = deque()  # ((job key, chunk), T3Row)
    counter = 0

    def fail(key: str, err: BaseException) -> None:
        job = jobs.get(key)
        if job is not None and job.failed:
            return
        if job is not None:
            job.failed = True
        emitted(key, err)

    try:
        with torch.inference_mode():
            while True:
                room = dec.free_slots - sum(SlotDecoder.slots_for(r) for _, r in waiting)  # type: ignore[arg-type]
                idle = not dec.active and not waiting
                if room > 0 or idle:
                    for req in feed(max(room, 0), idle):
                        stats.jobs += 1
                        counter += 1
                        try:
                            plan = engine.plan(counter, req)
                        except Exception as err:
                            log.warning("cannot synthesize %s: %s", req.key, err)
                            emitted(req.key, err)
                            continue
                        jobs[req.key] = _Job(req.key, plan, [None] * len(plan.rows), len(plan.rows))
                        waiting.extend(((req.key, k), row) for k, row in enumerate(plan.rows))
                batch = []
                room = dec.free_slots
                while waiting and SlotDecoder.slots_for(waiting[0][1]) <= room:  # type: ignore[arg-type]
                    item = waiting.popleft()
                    if jobs[item[0][0]].failed:
                        continue
                    room -= SlotDecoder.slots_for(item[1])  # type: ignore[arg-type]
                    batch.append(item)
                t0 = time.perf_counter()
                if batch:
                    try:
                        refused = dec.admit(batch)  # type: ignore[arg-type]
                    except Exception:  # the prefill of the group failed: admit row by row
                        refused = []
                        for item in batch:
                            try:
                                refused += dec.admit([item])  # type: ignore[list-item]
                            except Exception as err:
                                refused.append((item[0], err))
                    for (key, _), err in refused:  # type: ignore[misc]
                        fail(key, err)
                if not dec.active:
                    if waiting:
                        continue
                    if idle:
                        break
                    continue
                try:
                    finished = dec.advance()
                except Exception as err:  # a failing step fails every job decoding in it
                    log.error("T3 step failed: %r", err)
                    for key in {r[0][0] for r in dec._rows.values()}:
                        fail(key, err)
                    dec = SlotDecoder(t3, width, dec.cache.length, ignore_stop=ignore_stop,
                                      max_new_tokens=engine.max_speech_tokens)
                    continue
                stats.t3_seconds += time.perf_counter() - t0
                stats.t3_steps += 1
                for (key, k), out in finished:  # type: ignore[misc]
                    job = jobs[key]
                    if job.failed:
                        continue
                    toks = out.tokens[out.tokens < SPEECH_VOCAB_SIZE]
                    job.tokens[k] = toks
                    stats.speech_tokens += int(toks.numel())
                    job.left -= 1
                    if job.left == 0:
                        del jobs[key]
                        if not any(t is not None and t.numel() for t in job.tokens):
                            emitted(key, RuntimeError("the model produced no speech tokens"))
                        else:
                            vocoder.submit(job)
    finally:
        vocoder.close()
        stats.total_seconds = time.perf_counter() - started
    return stats
