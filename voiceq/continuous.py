"""A worker's continuous run: jobs keep joining the engine's running decode while there is work.

    claim (leased) ─▶ prepare on a thread (storage reads, voice) ─▶ ready ─▶ engine session
      ▲   (while fewer than max_rows in hand)                                  │ one job's audio
      └──────────────── renew every lease in hand ◀── record ◀── MP3 + upload on a thread ◀┘

The engine's session (`voiceq.engine.session`) asks for more work whenever decode slots free
up; it takes prepared requests by the engine's own cost (`request_cost`: text chunks, guidance
rows), so one planner decides what shares the decoder. Storage and encoding never run on the
engine's thread. Every claimed job's lease is renewed until its own outcome is recorded; a job
that fails (preparation, the engine, storing) fails alone; a lease found lost drops that job's
result. Conversions run beside the session through the engine's `convert`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

from .batching import BatchLimits
from .jobs import Job
from .metrics import Metrics
from .prepared import Prepared, Produced

if TYPE_CHECKING:
    from .engine import Engine, Synthesis, SynthesisRequest

log = logging.getLogger("voiceq.worker")

# How long an empty engine waits for jobs still being claimed or prepared before its session
# ends (the worker's loop then polls the store at its own pace).
_IDLE_GRACE_S = 0.05
_REFILL_S = 0.1  # how often a running session looks for more jobs to claim


class RunHost(Protocol):
    """What a continuous run uses of its worker (`voiceq.worker.Worker`): claiming, preparing,
    storing and recording jobs, and renewing their leases, all as the worker does them."""

    engine: Engine
    limits: BatchLimits
    metrics: Metrics
    batches_run: int
    last_batch_size: int
    _stopping: bool

    async def _claim(self, *, limit: int, job_ids: Sequence[str] | None = None) -> list[Job]: ...

    def _prepare(self, job: Job) -> Prepared: ...

    def _outcome(self, prepared: Prepared, out: Any) -> Produced | BaseException: ...

    async def _finalize(self, batch: list[Job], outcomes: list[Produced | BaseException], elapsed: float,
                        lost: set[str], share: float | None = None) -> dict[str, Job]: ...

    async def _renew_leases(self, batch: Iterable[Job], lost: set[str], finished: set[str]) -> None: ...


class ContinuousRun:
    def __init__(self, worker: RunHost, first: list[Job], *, claim_more: bool = True) -> None:
        self.w = worker
        self.first = first
        self.claim_more = claim_more
        self.loop = asyncio.get_running_loop()
        self.in_hand: dict[str, Job] = {}  # claimed, outcome not recorded yet: each job's current claim
        self.lost: set[str] = set()  # lease ids
        self.finished: set[str] = set()  # lease ids
        self.recorded: dict[str, Job] = {}  # outcomes as recorded in the store, by job id
        self.ready: queue.Queue[Prepared] = queue.Queue()  # read by the engine's thread
        self.prepared: dict[str, Prepared] = {}
        self.entered: dict[str, float] = {}  # job id -> when it entered the engine
        self.results: asyncio.Queue[tuple[str, Any, float]] = asyncio.Queue()
        self.tasks: set[asyncio.Task] = set()
        self._busy = 0  # jobs being claimed or prepared (read by the engine's thread)
        self._busy_lock = threading.Lock()
        self._claiming = False
        self._no_more = asyncio.Event()  # the session ended: claim nothing more for it
        self.count = 0

    # --- on the event loop ------------------------------------------------------------------

    async def run(self) -> int:
        beat = asyncio.create_task(self.w._renew_leases(self.in_hand.values(), self.lost, self.finished))
        recorder = asyncio.create_task(self._record_results())
        try:
            for job in self.first:
                self._start(job)
            while True:
                self._no_more.clear()
                claimer = asyncio.create_task(self._claim_more()) if self.claim_more else None
                try:
                    await asyncio.to_thread(self.w.engine.run_session, self._feed, self._emit)  # type: ignore[attr-defined]
                finally:
                    # Let a claim in flight finish (cancelling it could lose claimed jobs
                    # until their leases expire); jobs it brings go to the next session.
                    self._no_more.set()
                    if claimer is not None:
                        await asyncio.gather(claimer, return_exceptions=True)
                await asyncio.gather(*list(self.tasks), return_exceptions=True)
                if self.ready.empty():
                    break  # everything claimed went through (or failed before the engine)
            await self._drain()
        finally:
            recorder.cancel()
            beat.cancel()
        return self.count

    def _start(self, job: Job) -> None:
        taken_back = job.job_id in self.in_hand
        self.in_hand[job.job_id] = job
        if taken_back:
            # Claimed again while its work is still here: its lease was lost (bookkeeping out of
            # reach for longer than a lease, the reaper requeued it) and this claim took it back.
            # The work in flight carries on under the new claim, which is renewed and recorded.
            return
        self.count += 1
        with self._busy_lock:
            self._busy += 1
        task = asyncio.create_task(self._prepare(job))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _prepare(self, job: Job) -> None:
        try:
            prepared = await asyncio.to_thread(self.w._prepare, job)
        except Exception as err:
            await self._finish(job, err, 0.0, 0.0)
            return
        finally:
            with self._busy_lock:
                self._busy -= 1
        self.prepared[job.job_id] = prepared
        if prepared.conversion is not None:  # beside the session: the engine's convert path
            started = time.perf_counter()
            try:
                out = (await asyncio.to_thread(self.w.engine.convert, [prepared.conversion]))[0]  # type: ignore[attr-defined]
            except Exception as err:
                out = err
            elapsed = time.perf_counter() - started
            await self._finish(job, await asyncio.to_thread(self.w._outcome, self._current(prepared), out),
                               elapsed, elapsed)
            return
        self.ready.put(prepared)

    async def _claim_more(self) -> None:
        """Keep up to max_rows jobs in hand while the session runs."""
        while not self.w._stopping and not self._no_more.is_set():
            room = self.w.limits.max_rows - len(self.in_hand)
            if room > 0:
                self._claiming = True
                try:
                    for job in await self.w._claim(limit=room):
                        self._start(job)
                except Exception as err:
                    log.warning("claiming more jobs during a run failed: %s", err)
                finally:
                    self._claiming = False
            try:
                await asyncio.wait_for(self._no_more.wait(), timeout=_REFILL_S)
            except asyncio.TimeoutError:
                pass

    async def _record_results(self) -> None:
        while True:
            job_id, out, at = await self.results.get()
            task = asyncio.create_task(self._store_and_record(job_id, out, at))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _store_and_record(self, job_id: str, out: Any, at: float) -> None:
        prepared = self._current(self.prepared.pop(job_id))
        elapsed = at - self.entered.pop(job_id, at)
        # GPU share: the job's time in the engine divided among the jobs that shared it then.
        sharing = max(1, len(self.entered) + 1)
        produced = await asyncio.to_thread(self.w._outcome, prepared, out)
        await self._finish(prepared.job, produced, elapsed, elapsed / sharing)

    def _current(self, prepared: Prepared) -> Prepared:
        """`prepared` with its job's current claim (a job taken back after a lost lease)."""
        job = self.in_hand.get(prepared.job.job_id, prepared.job)
        return prepared if job is prepared.job else replace(prepared, job=job)

    async def _finish(self, job: Job, outcome: Produced | BaseException, elapsed: float, share: float) -> None:
        job = self.in_hand.get(job.job_id, job)  # its current claim
        try:
            self.recorded.update(
                await asyncio.shield(self.w._finalize([job], [outcome], elapsed, self.lost, share=share)))
        finally:
            self.finished.add(job.lease_id or "")
            self.in_hand.pop(job.job_id, None)

    async def _drain(self) -> None:
        """Wait until every job in hand has its outcome recorded."""
        while self.in_hand or self.tasks or not self.results.empty():
            await asyncio.sleep(0.01)
        self.w.batches_run += 1
        self.w.metrics.batch(self.count)
        self.w.last_batch_size = self.count

    # --- on the engine's thread -----------------------------------------------------------------

    def _feed(self, room: int, idle: bool) -> list["SynthesisRequest"]:
        """Prepared requests that fit `room` free model rows by the engine's own cost (at least
        one when the engine is empty). With the engine empty, wait a moment for jobs still
        being claimed or prepared; an empty answer then ends the session."""
        cost = getattr(self.w.engine, "request_cost", None)
        out: list[SynthesisRequest] = []
        used = 0
        deadline = time.monotonic() + _IDLE_GRACE_S
        while True:
            try:
                prepared = self.ready.get_nowait() if not (idle and not out) else self.ready.get(timeout=0.01)
            except queue.Empty:
                if out or not idle:
                    return out
                if self._busy == 0 and not self._claiming and time.monotonic() > deadline:
                    return out
                continue
            req = prepared.request
            assert req is not None
            rows = cost(req).model_rows if cost is not None else 1
            if out and used + rows > room:
                self._put_back(prepared)
                return out
            used += rows
            self.entered[req.key] = time.perf_counter()
            out.append(req)

    def _put_back(self, prepared: Prepared) -> None:
        # Order among waiting jobs matters little; a job put back goes first next time.
        rest = [prepared]
        while True:
            try:
                rest.append(self.ready.get_nowait())
            except queue.Empty:
                break
        for p in rest:
            self.ready.put(p)

    def _emit(self, job_id: str, out: "Synthesis | BaseException") -> None:
        self.loop.call_soon_threadsafe(self.results.put_nowait, (job_id, out, time.perf_counter()))
