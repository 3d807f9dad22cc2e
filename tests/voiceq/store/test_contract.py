"""One contract for every job store: the same tests against SQLite and against Convex.

The Convex store runs against the local stand-in, which serves the real convex/ functions
through convex-test behind Convex's HTTP API, so these tests also prove that the TypeScript
mutations and voiceq/jobs.py make the same transitions.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from convex_client.client import ConvexClient
from convex_client.store import ConvexJobStore
from tests.fakes import ConvexStandin
from voiceq.errors import InvalidTransition, JobNotFound, StaleLease
from voiceq.jobs import Job, JobResult, JobStatus, RetryPolicy, WorkerInfo, new_job, new_job_id
from voiceq.storage import result_key, upload_key, voice_key
from voiceq.store import JobStore
from voiceq.store.sqlite import SQLiteJobStore

T0 = 1_700_000_000.0
RETRY = RetryPolicy(max_attempts=3, base_delay_s=2.0, max_delay_s=300.0)
WORKER = WorkerInfo(environment="production", gpu_type="rocm", worker_id="w-1", node_id="n1", droplet_id="42")
OTHER_WORKER = WorkerInfo(environment="production", gpu_type="rocm", worker_id="w-2")


def convex_store(url: str, key: str | None, **options: Any) -> ConvexJobStore:
    client = ConvexClient(url, deploy_key=key, timeout_s=10, backoff_base_s=0.05)
    # A small batch, so that expire_leases' batching is exercised by a handful of jobs.
    return ConvexJobStore(client, retry=RETRY, expire_batch=options.pop("expire_batch", 3), **options)


@pytest.fixture(params=["sqlite", "convex"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[[], JobStore]]:
    """Opens another handle on the same store (as another process or replica would)."""
    opened: list[Any] = []
    if kind == "sqlite":
        path = tmp_path / "jobs.sqlite3"

        def open_store() -> JobStore:
            return SQLiteJobStore(path, retry=RETRY)
    else:
        standin: ConvexStandin = request.getfixturevalue("fake_convex")

        def open_store() -> JobStore:
            store = convex_store(standin.url, standin.admin_key)
            opened.append(store)
            return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Callable[[], JobStore]) -> JobStore:
    return opener()


@pytest.fixture
def store_spec(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str, str | None]:
    """What a separate process needs to open the same store."""
    if kind == "sqlite":
        return ("sqlite", str(tmp_path / "jobs.sqlite3"), None)
    standin: ConvexStandin = request.getfixturevalue("fake_convex")
    return ("convex", standin.url, standin.admin_key)


def add(store: JobStore, *, now: float = T0, **fields: Any) -> Job:
    job_id = fields.pop("job_id", None) or new_job_id()
    defaults: dict[str, Any] = dict(
        user_id="user_1", voice_name="My Voice", sample_text="Hello there", audio_key=upload_key(job_id),
        audio_seconds=4.5,
    )
    defaults.update(fields)
    return store.create(new_job(job_id=job_id, now=now, **defaults))


def result_for(job: Job, *, seconds: float = 1.5, processing: float = 3.0, gpu: float = 0.0) -> JobResult:
    assert job.lease_id is not None
    return JobResult(
        voice_id="voice_0123456789abcdef",
        result_key=result_key(job.job_id, job.lease_id),
        voice_key=voice_key("voice_0123456789abcdef"),
        speech_tokens=37,
        audio_seconds=seconds,
        processing_time=processing,
        gpu_seconds=gpu,
    )


def claim_one(store: JobStore, now: float, **kwargs: Any) -> Job:
    jobs = store.claim(worker=kwargs.pop("worker", WORKER), limit=1, lease_s=30.0, now=now, **kwargs)
    assert len(jobs) == 1, jobs
    return jobs[0]


# --- create / get -------------------------------------------------------------------------


def test_create_and_get_return_every_field(store: JobStore) -> None:
    job = new_job(
        job_id=new_job_id(), user_id="user_1", voice_name="My Voice", sample_text="Hello, this is my cloned voice",
        audio_key="uploads/x.wav", audio_seconds=7.25, now=T0 + 0.125, priority=3, max_attempts=5,
        idempotency_key="key-1", owner="acme", callback_url="https://example.test/cb",
        extra={"params": {"exaggeration": 0.7, "seed": 42}},
    ).replace(voice_id="voice_0123456789abcdef", voice_key="voices/voice_0123456789abcdef.pt")
    assert store.create(job) == job
    assert store.get(job.job_id) == job
    assert store.get(new_job_id()) is None


def test_create_is_idempotent_per_owner_user_and_key(store: JobStore) -> None:
    first = add(store, idempotency_key="k1")
    assert add(store, idempotency_key="k1", voice_name="Again") == first
    others = [
        add(store, idempotency_key="k1", owner="acme"),
        add(store, idempotency_key="k1", user_id="user_2"),
        add(store, idempotency_key="k2"),
        add(store),
        add(store),
    ]
    assert len({first.job_id, *(j.job_id for j in others)}) == 6
    assert add(store, idempotency_key="k1", owner="acme") == others[0]
    assert store.stats().total == 6


# --- claim ----------------------------------------------------------------------------------


def test_claim_takes_priority_with_aging(store: JobStore) -> None:
    old = add(store, now=T0, priority=0)
    urgent = add(store, now=T0 + 100, priority=1)
    newer = add(store, now=T0 + 110, priority=0)
    # At T0+120 (a level per 60 s of waiting): old 2.0, urgent 1.33, newer 0.17.
    got = store.claim(worker=WORKER, limit=3, lease_s=30, now=T0 + 120)
    assert [j.job_id for j in got] == [old.job_id, urgent.job_id, newer.job_id]


def test_claim_prefers_priority_until_waiting_catches_up(store: JobStore) -> None:
    low = add(store, now=T0, priority=0)
    high = add(store, now=T0 + 30, priority=1)
    assert claim_one(store, T0 + 40).job_id == high.job_id
    assert claim_one(store, T0 + 40).job_id == low.job_id
    # A low-priority job that waited long enough goes ahead of a fresh high-priority one.
    starving = add(store, now=T0, priority=-10)
    fresh = add(store, now=T0 + 3600, priority=10)
    assert claim_one(store, T0 + 3600).job_id == starving.job_id
    assert claim_one(store, T0 + 3600).job_id == fresh.job_id


def test_claim_breaks_ties_by_age_then_id_and_skips_backoff(store: JobStore) -> None:
    b = add(store, job_id="00000000-0000-4000-8000-00000000000b")
    a = add(store, job_id="00000000-0000-4000-8000-00000000000a")
    earlier = add(store, now=T0 - 1)
    waiting = add(store, now=T0 - 100)
    deferred = claim_one(store, T0 - 50, job_ids=[waiting.job_id])
    store.fail(waiting.job_id, lease_id=deferred.lease_id or "", error="busy", transient=True, now=T0 - 50,
               defer_s=60)
    got = store.claim(worker=WORKER, limit=10, lease_s=30, now=T0)
    assert [j.job_id for j in got] == [earlier.job_id, a.job_id, b.job_id]
    assert store.claim(worker=WORKER, limit=10, lease_s=30, now=T0 + 9) == []
    assert claim_one(store, T0 + 10).job_id == waiting.job_id


def test_claim_sets_a_fresh_lease(store: JobStore) -> None:
    job = add(store)
    claimed = claim_one(store, T0 + 5)
    assert claimed.job_id == job.job_id
    assert claimed.status is JobStatus.PROCESSING
    assert claimed.attempts == 1
    assert claimed.lease_id and claimed.lease_expires_at == T0 + 35
    assert claimed.started_at == T0 + 5 and claimed.updated_at == T0 + 5
    assert claimed.worker_info == WORKER
    assert store.get(job.job_id) == claimed
    assert store.claim(worker=WORKER, limit=1, lease_s=30, now=T0 + 5) == []


def test_claim_respects_limit(store: JobStore) -> None:
    for i in range(5):
        add(store, now=T0 + i)
    assert store.claim(worker=WORKER, limit=0, lease_s=30, now=T0 + 10) == []
    assert len(store.claim(worker=WORKER, limit=2, lease_s=30, now=T0 + 10)) == 2
    assert len(store.claim(worker=WORKER, limit=10, lease_s=30, now=T0 + 10)) == 3
    leases = {j.lease_id for j in store.list_jobs(status=JobStatus.PROCESSING)}
    assert len(leases) == 5


def test_claim_by_job_ids(store: JobStore) -> None:
    a = add(store, now=T0 + 1)
    b = add(store, now=T0)
    other = add(store)
    got = store.claim(worker=WORKER, limit=10, lease_s=30, now=T0 + 2, job_ids=[a.job_id, new_job_id(), b.job_id])
    assert [j.job_id for j in got] == [b.job_id, a.job_id]
    assert store.claim(worker=WORKER, limit=10, lease_s=30, now=T0 + 2, job_ids=[a.job_id]) == []
    assert store.claim(worker=WORKER, limit=10, lease_s=30, now=T0 + 2, job_ids=[]) == []
    assert store.get(other.job_id).status is JobStatus.PENDING  # type: ignore[union-attr]


def test_concurrent_claimers_in_threads_never_share_a_job(opener: Callable[[], JobStore]) -> None:
    store = opener()
    ids = {add(store, now=T0 + i * 0.01).job_id for i in range(40)}
    handles = [opener() for _ in range(6)]
    results: list[list[str]] = [[] for _ in handles]
    start = threading.Barrier(len(handles))
    errors: list[BaseException] = []

    def claimer(i: int) -> None:
        try:
            start.wait()
            while jobs := handles[i].claim(worker=WORKER, limit=3, lease_s=30, now=T0 + 60):
                results[i] += [j.job_id for j in jobs]
                time.sleep(0.005)  # a worker works on its batch before it claims again
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(len(handles))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    claimed = [job_id for r in results for job_id in r]
    assert len(claimed) == len(set(claimed)) == 40
    assert set(claimed) == ids
    assert sum(1 for r in results if r) > 1, "the claimers did not actually run side by side"


def _claim_in_process(spec: tuple[str, str, str | None], out: Any, start: Any) -> None:
    kind, where, key = spec
    store: Any = SQLiteJobStore(where, retry=RETRY) if kind == "sqlite" else convex_store(where, key)
    start.wait()
    got: list[str] = []
    while jobs := store.claim(worker=OTHER_WORKER, limit=2, lease_s=30, now=T0 + 60):
        got += [j.job_id for j in jobs]
        time.sleep(0.005)
    out.put(got)


def test_concurrent_claimers_in_processes_never_share_a_job(
    store: JobStore, store_spec: tuple[str, str, str | None]
) -> None:
    ids = {add(store, now=T0 + i * 0.01).job_id for i in range(30)}
    ctx = multiprocessing.get_context("spawn")
    out, start = ctx.Queue(), ctx.Barrier(3)
    procs = [ctx.Process(target=_claim_in_process, args=(store_spec, out, start)) for _ in range(3)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    claimed = [job_id for r in results for job_id in r]
    assert len(claimed) == len(set(claimed)) == 30
    assert set(claimed) == ids


# --- leases ---------------------------------------------------------------------------------


def test_heartbeat_extends_the_lease(store: JobStore) -> None:
    job = add(store)
    claimed = claim_one(store, T0)
    renewed = store.heartbeat(job.job_id, lease_id=claimed.lease_id or "", lease_s=30, now=T0 + 20)
    assert renewed.lease_expires_at == T0 + 50 and renewed.updated_at == T0 + 20
    assert store.expire_leases(now=T0 + 40) == []
    with pytest.raises(StaleLease):
        store.heartbeat(job.job_id, lease_id="not-the-lease", lease_s=30, now=T0 + 21)
    with pytest.raises(JobNotFound):
        store.heartbeat(new_job_id(), lease_id="x", lease_s=30, now=T0)


def test_complete_records_the_result(store: JobStore) -> None:
    job = add(store)
    claimed = claim_one(store, T0)
    result = result_for(claimed, seconds=1.68, processing=3.5)
    done = store.complete(job.job_id, lease_id=claimed.lease_id or "", result=result, now=T0 + 4)
    assert done.status is JobStatus.COMPLETED
    assert (done.voice_id, done.voice_key, done.result_key) == (result.voice_id, result.voice_key, result.result_key)
    assert (done.speech_tokens, done.result_seconds, done.processing_time) == (37, 1.68, 3.5)
    assert done.completed_at == T0 + 4 and done.lease_id is None and done.lease_expires_at is None
    assert done.error is None
    assert store.get(job.job_id) == done
    # The same call again (its reply was lost): the recorded outcome, unchanged.
    assert store.complete(job.job_id, lease_id=claimed.lease_id or "", result=result, now=T0 + 5) == done
    with pytest.raises(StaleLease):
        store.complete(job.job_id, lease_id="another-lease", result=result, now=T0 + 5)


def test_a_late_worker_after_an_expired_lease_is_stale(store: JobStore) -> None:
    job = add(store)
    first = claim_one(store, T0)
    expired = store.expire_leases(now=T0 + 31)
    assert [(j.job_id, j.status, j.error) for j in expired] == [
        (job.job_id, JobStatus.PENDING, "worker lost (lease expired)")
    ]
    with pytest.raises(StaleLease):
        store.heartbeat(job.job_id, lease_id=first.lease_id or "", lease_s=30, now=T0 + 31)
    second = claim_one(store, T0 + 32, worker=OTHER_WORKER)
    assert second.attempts == 2 and second.lease_id != first.lease_id
    with pytest.raises(StaleLease):
        store.complete(job.job_id, lease_id=first.lease_id or "", result=result_for(first), now=T0 + 40)
    with pytest.raises(StaleLease):
        store.fail(job.job_id, lease_id=first.lease_id or "", error="late", transient=True, now=T0 + 40)
    done = store.complete(job.job_id, lease_id=second.lease_id or "", result=result_for(second), now=T0 + 41)
    assert done.status is JobStatus.COMPLETED and done.worker_info == OTHER_WORKER


def test_expire_leases_returns_jobs_to_the_queue_or_fails_them(store: JobStore) -> None:
    retried = add(store, now=T0)
    spent = add(store, now=T0 + 1, max_attempts=1)
    live = add(store, now=T0 + 2)
    claim_one(store, T0 + 10, job_ids=[retried.job_id])
    claim_one(store, T0 + 10, job_ids=[spent.job_id])
    claim_one(store, T0 + 30, job_ids=[live.job_id])
    assert store.expire_leases(now=T0 + 40) == []  # a lease that ends exactly now still holds
    expired = {j.job_id: j for j in store.expire_leases(now=T0 + 40.5)}
    assert set(expired) == {retried.job_id, spent.job_id}
    back = expired[retried.job_id]
    assert (back.status, back.next_attempt_at, back.lease_id, back.attempts) == (JobStatus.PENDING, T0 + 40.5, None, 1)
    gone = expired[spent.job_id]
    assert gone.status is JobStatus.FAILED
    assert gone.error == "worker lost (lease expired) (gave up after 1 attempts)"
    assert gone.completed_at == T0 + 40.5 and gone.processing_time == 30.5
    assert store.get(live.job_id).status is JobStatus.PROCESSING  # type: ignore[union-attr]
    assert claim_one(store, T0 + 41).job_id == retried.job_id


def test_expire_leases_handles_many_jobs(store: JobStore) -> None:
    for i in range(8):
        add(store, now=T0 + i)
    store.claim(worker=WORKER, limit=8, lease_s=30, now=T0 + 10)
    expired = store.expire_leases(now=T0 + 100)
    assert len(expired) == 8 and all(j.status is JobStatus.PENDING for j in expired)
    assert store.count_active() == 8 and store.stats().pending == 8


# --- failures -------------------------------------------------------------------------------


def test_transient_failures_back_off_then_give_up(store: JobStore) -> None:
    job = add(store)
    now = T0
    delays = []
    for attempt in range(1, 4):
        claimed = claim_one(store, now, job_ids=[job.job_id])
        assert claimed.attempts == attempt
        after = store.fail(job.job_id, lease_id=claimed.lease_id or "", error="GPU fell over", transient=True,
                           now=now + 1)
        if attempt < 3:
            assert after.status is JobStatus.PENDING and after.error == "GPU fell over"
            assert after.lease_id is None and after.lease_expires_at is None
            delays.append(after.next_attempt_at - (now + 1))
            assert store.claim(worker=WORKER, limit=1, lease_s=30, now=after.next_attempt_at - 0.5) == []
            now = after.next_attempt_at
    assert delays == [RETRY.delay_s(1), RETRY.delay_s(2)] == [2.0, 4.0]
    assert after.status is JobStatus.FAILED
    assert after.error == "GPU fell over (gave up after 3 attempts)"
    assert after.completed_at == now + 1 and after.processing_time == 1.0


def test_permanent_failure_and_explicit_defer(store: JobStore) -> None:
    a = add(store)
    claimed = claim_one(store, T0, job_ids=[a.job_id])
    failed = store.fail(a.job_id, lease_id=claimed.lease_id or "", error="not speech", transient=False, now=T0 + 2)
    assert (failed.status, failed.error, failed.attempts) == (JobStatus.FAILED, "not speech", 1)
    b = add(store)
    claimed = claim_one(store, T0, job_ids=[b.job_id])
    deferred = store.fail(b.job_id, lease_id=claimed.lease_id or "", error="busy", transient=True, now=T0 + 2,
                          defer_s=17.5)
    assert deferred.status is JobStatus.PENDING and deferred.next_attempt_at == T0 + 19.5
    with pytest.raises(JobNotFound):
        store.fail(new_job_id(), lease_id="x", error="e", transient=True, now=T0)


# --- cancel / requeue -----------------------------------------------------------------------


def test_cancel(store: JobStore) -> None:
    pending = add(store)
    busy = add(store)
    cancelled = store.cancel(pending.job_id, now=T0 + 1)
    assert (cancelled.status, cancelled.error, cancelled.completed_at) == (
        JobStatus.CANCELLED, "cancelled by request", T0 + 1)
    claimed = claim_one(store, T0 + 2)
    assert claimed.job_id == busy.job_id
    store.cancel(busy.job_id, now=T0 + 3)
    with pytest.raises(StaleLease):
        store.complete(busy.job_id, lease_id=claimed.lease_id or "", result=result_for(claimed), now=T0 + 4)
    again = store.cancel(busy.job_id, now=T0 + 5)  # a retried cancel: the first one stands
    assert (again.status, again.completed_at) == (JobStatus.CANCELLED, T0 + 3)
    with pytest.raises(JobNotFound):
        store.cancel(new_job_id(), now=T0)
    assert store.claim(worker=WORKER, limit=5, lease_s=30, now=T0 + 10) == []


def test_requeue_gives_a_failed_job_fresh_attempts(store: JobStore) -> None:
    job = add(store)
    claimed = claim_one(store, T0)
    store.fail(job.job_id, lease_id=claimed.lease_id or "", error="bad", transient=False, now=T0 + 1)
    back = store.requeue(job.job_id, now=T0 + 10)
    assert (back.status, back.attempts, back.next_attempt_at, back.error, back.completed_at) == (
        JobStatus.PENDING, 0, T0 + 10, None, None)
    with pytest.raises(InvalidTransition):
        store.requeue(job.job_id, now=T0 + 11)
    with pytest.raises(JobNotFound):
        store.requeue(new_job_id(), now=T0)
    assert claim_one(store, T0 + 10).attempts == 1


# --- reads ----------------------------------------------------------------------------------


def test_list_jobs_filters_and_orders(store: JobStore) -> None:
    a = add(store, now=T0 + 2)
    b = add(store, now=T0 + 1, user_id="user_2")
    c = add(store, now=T0 + 3)
    claim_one(store, T0 + 5, job_ids=[c.job_id])

    def ids(**kw: Any) -> list[str]:
        return [j.job_id for j in store.list_jobs(**kw)]

    assert ids() == [c.job_id, a.job_id, b.job_id]
    assert ids(limit=2) == [c.job_id, a.job_id]
    assert ids(status=JobStatus.PENDING) == [b.job_id, a.job_id]
    assert ids(status=JobStatus.PROCESSING) == [c.job_id]
    assert ids(user_id="user_1") == [c.job_id, a.job_id]
    assert ids(status=JobStatus.PENDING, user_id="user_1") == [a.job_id]
    assert ids(status=JobStatus.COMPLETED) == []
    assert store.list_jobs(status=JobStatus.PROCESSING)[0] == store.get(c.job_id)


def test_count_active(store: JobStore) -> None:
    a = add(store)
    add(store)
    add(store, user_id="user_2")
    claimed = claim_one(store, T0 + 1, job_ids=[a.job_id])
    assert store.count_active() == 3
    assert store.count_active(user_id="user_1") == 2
    store.complete(a.job_id, lease_id=claimed.lease_id or "", result=result_for(claimed), now=T0 + 2)
    assert store.count_active() == 2 and store.count_active(user_id="user_1") == 1
    assert store.count_active(user_id="nobody") == 0


def test_stats(store: JobStore) -> None:
    empty = store.stats()
    assert (empty.total, empty.avg_processing_time, empty.total_processing_time) == (0, None, 0.0)
    assert empty.oldest_pending_created_at is None
    jobs = [add(store, now=T0 + i, user_id="user_1" if i < 4 else "user_2") for i in range(6)]
    for job, processing in ((jobs[0], 2.0), (jobs[1], 4.0), (jobs[4], 9.0)):
        claimed = claim_one(store, T0 + 10, job_ids=[job.job_id])
        store.complete(job.job_id, lease_id=claimed.lease_id or "",
                       result=result_for(claimed, seconds=processing / 2, processing=processing), now=T0 + 20)
    failed = claim_one(store, T0 + 10, job_ids=[jobs[2].job_id])
    store.fail(jobs[2].job_id, lease_id=failed.lease_id or "", error="x", transient=False, now=T0 + 12)
    claim_one(store, T0 + 10, job_ids=[jobs[5].job_id])

    stats = store.stats()
    assert stats.total == 6
    assert stats.by_status == {"pending": 1, "processing": 1, "completed": 3, "failed": 1, "cancelled": 0}
    assert stats.pending == 1 and stats.processing == 1
    assert stats.avg_processing_time == pytest.approx(5.0)
    assert stats.total_processing_time == pytest.approx(15.0)
    assert stats.audio_seconds_generated == pytest.approx(7.5)
    assert stats.oldest_pending_created_at == jobs[3].created_at
    assert stats.user_id is None

    mine = store.stats(user_id="user_1")
    assert mine.user_id == "user_1" and mine.total == 4
    assert mine.by_status == {"pending": 1, "processing": 0, "completed": 2, "failed": 1, "cancelled": 0}
    assert mine.avg_processing_time == pytest.approx(3.0)
    assert mine.oldest_pending_created_at == jobs[3].created_at
    theirs = store.stats(user_id="user_2")
    assert theirs.oldest_pending_created_at is None and theirs.by_status["processing"] == 1


def test_stats_sum_gpu_shares_once_per_pass(store: JobStore) -> None:
    assert store.stats().total_gpu_seconds == 0.0
    # One 6 s engine pass of three jobs (two of user_1's, one of user_2's): each job waited 6 s
    # and holds a third of the pass.
    jobs = [add(store, now=T0 + i, user_id="user_1" if i < 2 else "user_2") for i in range(3)]
    batch = store.claim(worker=WORKER, limit=3, lease_s=30.0, now=T0 + 10)
    assert {j.job_id for j in batch} == {j.job_id for j in jobs}
    for claimed in batch:
        done = store.complete(claimed.job_id, lease_id=claimed.lease_id or "",
                              result=result_for(claimed, processing=6.0, gpu=2.0), now=T0 + 16)
        assert (done.processing_time, done.gpu_seconds) == (6.0, 2.0)
        assert store.get(claimed.job_id) == done
    add(store, now=T0 + 20)  # pending jobs have used no GPU
    stats = store.stats()
    assert stats.total_processing_time == pytest.approx(18.0)
    assert stats.total_gpu_seconds == pytest.approx(6.0)  # the pass, once
    assert store.stats(user_id="user_1").total_gpu_seconds == pytest.approx(4.0)
    assert store.stats(user_id="user_2").total_gpu_seconds == pytest.approx(2.0)
    assert store.stats(user_id="nobody").total_gpu_seconds == 0.0

    # A failed job that carries a share (a failed attempt held the GPU too) counts while it
    # is failed; requeued, it is pending again and counts no more.
    failed = store.create(new_job(job_id=new_job_id(), user_id="user_2", voice_name="V", sample_text="hi",
                                  audio_key="uploads/f.wav", audio_seconds=2.0, now=T0 + 21)
                          .replace(status=JobStatus.FAILED, completed_at=T0 + 22, error="x", gpu_seconds=1.5))
    assert store.stats().total_gpu_seconds == pytest.approx(7.5)
    assert store.stats(user_id="user_2").total_gpu_seconds == pytest.approx(3.5)
    store.requeue(failed.job_id, now=T0 + 30)
    assert store.stats().total_gpu_seconds == pytest.approx(6.0)


def test_ping(store: JobStore) -> None:
    store.ping()


def test_queue_position_counts_the_jobs_a_claim_would_take_first(store: JobStore) -> None:
    old = add(store, now=T0, priority=0)
    urgent = add(store, now=T0 + 100, priority=1)
    newer = add(store, now=T0 + 110, priority=0)
    add(store, now=T0 - 500, model="chatterbox-turbo")  # another model's queue
    waiting = add(store, now=T0 - 100)
    deferred = claim_one(store, T0 - 50, job_ids=[waiting.job_id])
    store.fail(waiting.job_id, lease_id=deferred.lease_id or "", error="busy", transient=True, now=T0 - 50,
               defer_s=300)
    done = add(store, now=T0 - 200)
    claimed = claim_one(store, T0 - 150, job_ids=[done.job_id])
    store.complete(done.job_id, lease_id=claimed.lease_id or "", result=result_for(claimed), now=T0 - 140)
    now = T0 + 120  # old 2.0, urgent 1.33, newer 0.17; the deferred one is not claimable yet
    assert [store.queue_position(j.job_id, now=now) for j in (old, urgent, newer)] == [0, 1, 2]
    # Waiting out its backoff, the deferred job (created first: 3.67) is placed among the
    # claimable ones, and counts for them once claimable.
    assert store.queue_position(waiting.job_id, now=now) == 0
    assert store.queue_position(old.job_id, now=T0 + 250) == 1
    # It is exactly the claim's order: claiming one moves everyone up.
    assert claim_one(store, now, model="chatterbox").job_id == old.job_id
    assert [store.queue_position(j.job_id, now=now) for j in (urgent, newer)] == [0, 1]
    # Ties: same priority and age, the smaller job id first.
    b = add(store, now=T0 + 110, job_id="00000000-0000-4000-8000-00000000000b")
    a = add(store, now=T0 + 110, job_id="00000000-0000-4000-8000-00000000000a")
    assert store.queue_position(b.job_id, now=now) == store.queue_position(a.job_id, now=now) + 1  # type: ignore[operator]
    assert store.queue_position(old.job_id, now=now) is None  # processing: not in the queue
    assert store.queue_position(done.job_id, now=now) is None
    assert store.queue_position(new_job_id(), now=now) is None
