"""Workers of several models over one queue (real JobManager, SQLite file, local folder, tone
engines): each claims its own model's jobs, a voice cloned with one model is prepared for
another from its kept reference on first use, and a model not served is refused at submission."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.engines import ToneEngine
from tests.voiceq.test_worker import W, submission
from voiceq.batching import BatchLimits
from deployments.connections import open_blob_storage, open_job_store
from voiceq.errors import InvalidInput
from voiceq.jobs import JobStatus
from voiceq.manager import JobManager, Submission
from voiceq.settings import Settings
from voiceq.storage.base import voice_key
from voiceq.worker import Worker

ALL = "chatterbox,chatterbox-turbo,chatterbox-multilingual"


class CountingEngine(ToneEngine):
    """A tone engine that also notes the language of each request it speaks."""

    def __init__(self) -> None:
        super().__init__()
        self.languages: list[str | None] = []

    def synthesize(self, requests):
        self.languages += [r.language for r in requests]
        return super().synthesize(requests)


def test_each_model_runs_its_own_jobs_and_one_voice_serves_every_model(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, models=ALL, lease_s=30.0)
    manager = JobManager(open_job_store(settings), open_blob_storage(settings), settings)
    engines = {m: CountingEngine() for m in settings.served_models}
    workers = {m: Worker(manager, manager.storage, e, worker=W, limits=BatchLimits(max_rows=8), model=m)
               for m, e in engines.items()}

    async def scenario() -> dict:
        first = await manager.submit(submission(1, model="chatterbox-turbo"))
        assert await workers["chatterbox"].run_once() == 0  # not its model
        assert await workers["chatterbox-multilingual"].run_once() == 0
        assert await workers["chatterbox-turbo"].run_once() == 1
        done = await manager.get(first.job_id)
        voice = done.voice_id
        later = [await manager.submit(Submission(user_id="user1", voice_name="v", sample_text="Hi.", voice_id=voice,
                                                 model=model, language=language))
                 for model, language in [("chatterbox", None), ("chatterbox-multilingual", "fr"),
                                         ("chatterbox-multilingual", "de"), ("chatterbox-turbo", None)]]
        for model in ("chatterbox", "chatterbox-multilingual", "chatterbox-turbo"):
            await workers[model].run_once()
        return {"first": done, "later": [await manager.get(j.job_id) for j in later]}

    out = asyncio.run(scenario())
    assert out["first"].status is JobStatus.COMPLETED
    voice = out["first"].voice_id
    assert [j.status for j in out["later"]] == [JobStatus.COMPLETED] * 4
    assert [j.voice_id for j in out["later"]] == [voice] * 4
    # Each model prepared the voice once: Turbo from the upload, the others from the reference.
    assert {m: e.prepared for m, e in engines.items()} == {
        "chatterbox": 1, "chatterbox-turbo": 1, "chatterbox-multilingual": 1}
    keys = {p.relative_to(settings.blob_dir).as_posix() for p in settings.blob_dir.rglob("*") if p.is_file()}
    assert {k for k in keys if k.startswith(f"voices/{voice}")} == {
        f"voices/{voice}/reference.wav", f"voices/{voice}/chatterbox-turbo.pt", f"voices/{voice}.pt",
        f"voices/{voice}/chatterbox-multilingual.pt"}
    # The multilingual jobs kept their languages through the engine.
    assert engines["chatterbox-multilingual"].languages == ["fr", "de"]


def test_a_model_not_served_is_refused_at_submission_and_old_voices_serve_english_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, models="chatterbox,chatterbox-turbo")
    manager = JobManager(open_job_store(settings), open_blob_storage(settings), settings)

    async def scenario() -> None:
        with pytest.raises(InvalidInput) as err:
            await manager.submit(submission(1, model="chatterbox-multilingual", language="fr"))
        assert err.value.field == "model"
        # A voice from before the family (and the library): English conditionals only, no
        # reference clip; such voices answer to admin keys.
        old = "voice_" + "ab" * 8
        manager.storage.put(voice_key(old), b"conds", content_type="application/octet-stream")
        english = await manager.submit(Submission(user_id="u", voice_name="v", sample_text="Hi.", voice_id=old,
                                                  admin=True))
        assert english.voice_id == old
        with pytest.raises(InvalidInput) as err:
            await manager.submit(Submission(user_id="u", voice_name="v", sample_text="Hi.", voice_id=old,
                                            model="chatterbox-turbo", admin=True))
        assert err.value.status_code == 409 and "reference" in err.value.message

    asyncio.run(scenario())
    assert manager.store.stats().total == 1
