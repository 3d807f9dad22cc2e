"""The worker's continuous run over real bookkeeping (JobManager, SQLite file, local folder)
with a stand-in engine that has the real engine's session interface: jobs claimed while a
long one decodes join it and finish first, failures stay per job, leases are renewed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.engines import StreamingToneEngine
from tests.voiceq.test_worker import W as W_INFO
from tests.voiceq.test_worker import make, submission
from voiceq.jobs import JobStatus


def test_jobs_arriving_during_a_long_job_join_its_run_and_finish_first(tmp_path: Path) -> None:
    engine = StreamingToneEngine(slots=4, step_s=0.02)
    manager, worker = make(tmp_path, engine, lease_s=0.6)  # heartbeats every 0.2 s

    async def scenario():
        long = await manager.submit(submission(0, text=" ".join(["word"] * 60)))  # ~1.2 s of steps
        run = asyncio.create_task(worker.run_once())
        await asyncio.sleep(0.3)
        late = [(await manager.submit(submission(i, text=text))).job_id
                for i, text in [(1, "Short one."), (2, "Another short one <<fail>>"), (3, "Third.")]]
        expired = []
        while not run.done():
            await asyncio.sleep(0.1)
            expired += await manager.expire_leases()  # the reaper runs while the session does
        n = await run
        return n, expired, await manager.get(long.job_id), [await manager.get(j) for j in late]

    n, expired, long, late = asyncio.run(scenario())
    assert n == 4 and engine.sessions == 1  # one run, one engine session for all four
    assert expired == []
    assert long.status is JobStatus.COMPLETED and long.attempts == 1
    ok, failed, third = late
    # The engine's failure is transient: that job alone goes back to the queue for a retry.
    assert failed.status is JobStatus.PENDING and failed.attempts == 1 and "asked to fail" in (failed.error or "")
    for job in (ok, third):
        assert job.status is JobStatus.COMPLETED
        assert engine.joined[job.job_id] >= {long.job_id}  # joined while the long job decoded
        assert job.completed_at < long.completed_at  # and did not wait for it
        assert manager.storage.exists(job.result_key)


def test_a_job_whose_input_is_missing_fails_alone_in_a_run(tmp_path: Path) -> None:
    engine = StreamingToneEngine()
    manager, worker = make(tmp_path, engine)

    async def scenario():
        jobs = [await manager.submit(submission(i)) for i in range(3)]
        manager.storage.delete(jobs[1].audio_key)
        assert await worker.run_once() == 3
        return [await manager.get(j.job_id) for j in jobs]

    a, b, c = asyncio.run(scenario())
    assert a.status is JobStatus.COMPLETED and c.status is JobStatus.COMPLETED
    assert b.status is JobStatus.FAILED and "missing from storage" in (b.error or "")


def test_passes_are_planned_by_the_engines_own_cost(tmp_path: Path) -> None:
    """One planner: without an override the worker's pass budget counts what the engine's
    `request_cost` says a job costs (here one token per word), not an estimate of its own."""
    from tests.support.engines import ToneEngine
    from voiceq.batching import BatchLimits
    from voiceq.worker import Worker

    class CostedTone(ToneEngine):
        request_cost = StreamingToneEngine.request_cost

    engine = CostedTone()
    manager, _ = make(tmp_path, engine)
    worker = Worker(manager, manager.storage, engine, worker=W_INFO, limits=BatchLimits(max_rows=8, token_budget=5),
                    poll_interval_s=0.05)

    async def scenario():
        ids = [(await manager.submit(submission(i, text=text))).job_id
               for i, text in enumerate(["one two three", "four five", "six"])]
        assert await worker.run_once() == 3
        return ids

    ids = asyncio.run(scenario())
    assert engine.batches == [ids[:2], ids[2:]]  # 3 + 2 words fill the budget of 5, then 1


def test_a_job_taken_back_after_its_lease_was_lost_finishes_under_the_new_lease(tmp_path: Path) -> None:
    """Bookkeeping unreachable for longer than a lease while a job decodes: the reaper requeues
    it, a heartbeat with the old lease is refused, and the run's next claim takes the same job
    back. The decode in flight carries on under the new lease, which the run renews and records
    the result with. (Keyed by job id, the run took the new claim for the lost one: it never
    renewed it, the reaper requeued it again and again, and the job failed after its attempts.)"""
    from voiceq.errors import StaleLease, StoreUnavailable

    engine = StreamingToneEngine(slots=4, step_s=0.02)
    manager, worker = make(tmp_path, engine, lease_s=0.6, max_attempts=3)  # heartbeats every 0.2 s
    outage = False
    refused = asyncio.Event()  # a heartbeat with the lost lease was refused
    heartbeat, claim = manager.heartbeat, worker._claim

    async def flaky_heartbeat(job_id: str, *, lease_id: str):
        if outage:
            raise StoreUnavailable("job store not reachable")
        try:
            return await heartbeat(job_id, lease_id=lease_id)
        except StaleLease:
            refused.set()
            raise

    async def flaky_claim(**kwargs):
        if outage or (expired_once and not refused.is_set()):
            return []  # the store is down; then the refusal comes before the claim (the failing order)
        return await claim(**kwargs)

    manager.heartbeat = flaky_heartbeat  # type: ignore[method-assign]
    worker._claim = flaky_claim  # type: ignore[method-assign]
    expired_once = False

    async def scenario():
        nonlocal outage, expired_once
        job = await manager.submit(submission(0, text=" ".join(["word"] * 150)))  # ~3 s of steps
        run = asyncio.create_task(worker.run_once())
        await asyncio.sleep(0.3)
        outage = True
        await asyncio.sleep(0.9)  # no renewal for longer than the lease
        first = await manager.expire_leases()
        expired_once, outage = True, False
        later = []
        while not run.done():
            await asyncio.sleep(0.1)
            later += await manager.expire_leases()
        await run
        return job, first, later, await manager.get(job.job_id)

    job, first, later, final = asyncio.run(scenario())
    assert [j.job_id for j in first] == [job.job_id]
    assert refused.is_set()
    assert later == []  # the new lease was renewed
    assert final.status is JobStatus.COMPLETED and final.attempts == 2, (final.status, final.attempts, final.error)
    assert manager.storage.exists(final.result_key)
