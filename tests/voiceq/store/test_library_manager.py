"""The voice library and erasure through the bookkeeping (JobManager, the real worker with a
tone engine, a local blob folder) on SQLite and on the Convex stand-in alike."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.support.audio import voice_file
from tests.support.engines import ToneEngine
from tests.voiceq.store.test_contract import kind, opener  # noqa: F401  (fixtures)
from voiceq.audio import decode_upload
from voiceq.pcm import to_wav
from voiceq.batching import BatchLimits
from voiceq.errors import StorageUnavailable, VoiceNotFound
from voiceq.jobs import JobStatus, WorkerInfo
from voiceq.manager import JobManager, Submission
from voiceq.settings import Settings
from voiceq.storage.local import LocalBlobStorage
from voiceq.store import JobStore
from voiceq.voice_library import Caller
from voiceq.voices import Consent, erased_user_id
from voiceq.worker import Worker

W = WorkerInfo(environment="production", gpu_type="cpu", worker_id="w")
ACME, GLOBEX, OPS = Caller("acme"), Caller("globex"), Caller("ops", admin=True)
CONSENT = Consent(subject="Alice Example", consented_at=1_700_000_000.0, reference="consent/42")
WAV = to_wav(decode_upload(voice_file("wav", seconds=1.5), min_s=1, max_s=60))


def clone(user: str = "alice", owner: str = "acme", **kw: Any) -> Submission:
    return Submission(user_id=user, voice_name="Alice's voice", sample_text="Hello.", audio=WAV,
                      audio_seconds=1.5, owner=owner, **kw)


def reuse(voice_id: str, user: str = "alice", owner: str = "acme", admin: bool = False) -> Submission:
    return Submission(user_id=user, voice_name="again", sample_text="Again.", voice_id=voice_id, owner=owner,
                      admin=admin)


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


class FailingAfter(LocalBlobStorage):
    """Storage that fails after `n` prefix deletes: a crash in the middle of an erasure."""

    def __init__(self, root: Path, n: int) -> None:
        super().__init__(root)
        self.left = n

    def delete_prefix(self, prefix: str) -> int:
        if self.left <= 0:
            raise StorageUnavailable("disk went away")
        self.left -= 1
        return super().delete_prefix(prefix)


@pytest.fixture
def blobs(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


def make(opener: Callable[[], JobStore], blobs: Path, storage: LocalBlobStorage | None = None,
         **options: Any) -> tuple[JobManager, Worker]:
    clock = options.pop("clock", None)
    settings = Settings(data_dir=blobs.parent, lease_s=30.0, **options)
    manager = JobManager(opener(), storage or LocalBlobStorage(blobs), settings, **({"clock": clock} if clock else {}))
    worker = Worker(manager, manager.storage, ToneEngine(), worker=W, limits=BatchLimits(max_rows=8),
                    heartbeat_s=10, poll_interval_s=0.05)
    return manager, worker


async def cloned(manager: JobManager, worker: Worker, sub: Submission) -> str:
    job = await manager.submit(sub)
    assert await worker.run_once() == 1
    done = await manager.get(job.job_id)
    assert done.status is JobStatus.COMPLETED, done
    assert done.voice_id is not None
    return done.voice_id


def test_a_voice_belongs_to_its_key_and_user(opener: Callable[[], JobStore], blobs: Path) -> None:
    manager, worker = make(opener, blobs)

    async def scenario() -> None:
        voice_id = await cloned(manager, worker, clone(consent=CONSENT))
        voice = await manager.get_voice(voice_id, caller=ACME)
        assert (voice.owner, voice.user_id, voice.name, voice.models, voice.consent) == (
            "acme", "alice", "Alice's voice", ("tone",), CONSENT)
        before = len(await manager.list_jobs(user_id="alice"))
        for sub in (reuse(voice_id, owner="globex"), reuse(voice_id, user="mallory")):
            with pytest.raises(VoiceNotFound):
                await manager.submit(sub)
        assert len(await manager.list_jobs(user_id="alice")) == before  # nothing stored
        for op in (manager.get_voice(voice_id, caller=GLOBEX), manager.rename_voice(voice_id, "x", caller=GLOBEX),
                   manager.delete_voice(voice_id, caller=GLOBEX)):
            with pytest.raises(VoiceNotFound):
                await op
        assert await manager.list_voices("alice", caller=GLOBEX) == []
        assert (await manager.submit(reuse(voice_id))).voice_id == voice_id
        assert (await manager.submit(reuse(voice_id, owner="ops", admin=True))).voice_id == voice_id
        assert [v.voice_id for v in await manager.list_voices("alice", caller=OPS)] == [voice_id]
        assert (await manager.rename_voice(voice_id, "Narrator", caller=ACME)).name == "Narrator"

    asyncio.run(scenario())


def test_deleting_a_voice_removes_every_model_of_it_and_its_upload(opener: Callable[[], JobStore],
                                                                   blobs: Path) -> None:
    manager, worker = make(opener, blobs)

    async def scenario() -> None:
        keep = await cloned(manager, worker, clone(user="bob"))
        voice_id = await cloned(manager, worker, clone())
        voice = await manager.get_voice(voice_id, caller=ACME)
        # Another model's conditionals for the same voice, stored under its prefix.
        manager.storage.put(f"voices/{voice_id}/turbo.pt", b"conds", content_type="application/octet-stream")
        assert {f"voices/{voice_id}.pt", f"voices/{voice_id}/turbo.pt", voice.reference_key} <= files(blobs)
        await manager.delete_voice(voice_id, caller=ACME)
        assert not [f for f in files(blobs) if voice_id in f or f == voice.reference_key]
        assert f"voices/{keep}.pt" in files(blobs)
        with pytest.raises(VoiceNotFound):
            await manager.submit(reuse(voice_id))
        with pytest.raises(VoiceNotFound):
            await manager.get_voice(voice_id, caller=ACME)

    asyncio.run(scenario())


def test_erasure_finishes_after_a_crash_in_the_middle_and_is_idempotent(opener: Callable[[], JobStore],
                                                                        blobs: Path) -> None:
    manager, worker = make(opener, blobs)

    async def setup() -> tuple[str, list[str]]:
        voice_id = await cloned(manager, worker, clone(consent=CONSENT))
        await manager.submit(reuse(voice_id))
        assert await worker.run_once() == 1
        other = await cloned(manager, worker, clone(owner="globex"))  # same user id, another key
        await manager.submit(clone())  # still pending when the erasure comes
        return voice_id, [other]

    voice_id, others = asyncio.run(setup())
    jobs = asyncio.run(manager.list_jobs(user_id="alice", limit=50))
    mine = [j for j in jobs if j.owner == "acme"]
    assert len(mine) == 3 and files(blobs)

    crashing, _ = make(opener, blobs, FailingAfter(blobs, 2))
    with pytest.raises(StorageUnavailable):
        asyncio.run(crashing.erase_user("alice", caller=ACME))
    assert [e.user_id for e in crashing.store.unfinished_erasures()] == ["alice"]  # type: ignore[attr-defined]

    restarted, _ = make(opener, blobs)
    assert asyncio.run(restarted.resume_erasures()) == 1
    assert restarted.store.unfinished_erasures() == []  # type: ignore[attr-defined]
    remaining = files(blobs)
    for job in mine:
        assert not [f for f in remaining if job.job_id in f], job.job_id
        after = asyncio.run(restarted.get(job.job_id))
        assert after.user_id == erased_user_id("acme", "alice") and after.voice_name == "" and after.audio_key == ""
        assert after.status.terminal
    assert not [f for f in remaining if voice_id in f]
    assert restarted.store.list_voices(user_id="alice", owner="acme") == []  # type: ignore[attr-defined]
    # The same user under another key is another person's data: untouched.
    assert f"voices/{others[0]}.pt" in remaining
    assert [v.voice_id for v in asyncio.run(restarted.list_voices("alice", caller=GLOBEX))] == others

    again = asyncio.run(restarted.erase_user("alice", caller=ACME))
    assert (again.status, again.voices, again.jobs, again.blobs) == ("done", 0, 0, 0)


def test_retention_sweeps_old_uploads_and_results_but_keeps_voices(opener: Callable[[], JobStore], blobs: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    now = [1_800_000_000.0]
    manager, worker = make(opener, blobs, retention_days=1.0, clock=lambda: now[0])

    async def scenario() -> tuple[str, str, str]:
        voice_id = await cloned(manager, worker, clone())
        reused = await manager.submit(reuse(voice_id))
        assert await worker.run_once() == 1
        now[0] += 2 * 86_400  # two days later
        young = await cloned(manager, worker, clone(user="bob"))
        with caplog.at_level("INFO", logger="voiceq"):
            counts = await manager.sweep()
        assert counts == {"jobs": 2, "uploads": 0, "results": 2}
        assert await manager.sweep() == {"jobs": 0, "uploads": 0, "results": 0}  # once
        return voice_id, reused.job_id, young

    voice_id, reused_job, young = asyncio.run(scenario())
    remaining = files(blobs)
    voice = asyncio.run(manager.get_voice(voice_id, caller=ACME))
    # The voice and the upload it was cloned from stay until the voice is deleted.
    assert f"voices/{voice_id}.pt" in remaining and voice.reference_key in remaining
    assert not [f for f in remaining if f.startswith("results/") and reused_job in f]
    assert f"voices/{young}.pt" in remaining and sum(f.startswith("results/") for f in remaining) == 1
    swept = asyncio.run(manager.get(reused_job))
    assert swept.result_key is None and swept.extra["swept_at"] == now[0]
    assert "event=sweep retention_days=1.000 before=" in caplog.text and "jobs=2" in caplog.text
    assert f"job={reused_job} event=swept" in caplog.text
    assert manager.metrics.value("voiceq_blobs_deleted_total", reason="retention", kind="result") == 2
