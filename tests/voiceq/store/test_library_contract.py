"""The voice library, erasure and retention records: one contract for SQLite and for Convex
(the stand-in serving the real convex/voices.ts), with the fixtures of test_contract.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.voiceq.store.test_contract import T0, add, claim_one, kind, opener, result_for, store  # noqa: F401
from voiceq.errors import VoiceNotFound
from voiceq.jobs import JobStatus
from voiceq.store import JobStore
from voiceq.voices import Consent, Voice, erased_user_id

CONSENT = Consent(subject="Alice Example", consented_at=T0 - 3600, reference="https://consent.example/r/1")


def voice(n: int, **fields: Any) -> Voice:
    values: dict[str, Any] = dict(
        voice_id=f"voice_{n:016x}", owner="acme", user_id="alice", name=f"Voice {n}", created_at=T0 + n,
        updated_at=T0 + n, job_id=f"00000000-0000-4000-8000-{n:012x}", reference_key=f"uploads/job{n}.wav",
        models=("chatterbox",), consent=CONSENT,
    )
    values.update(fields)
    return Voice(**values)


def test_voices_are_recorded_once_and_read_back_whole(store: JobStore) -> None:
    first = voice(1)
    assert store.put_voice(first) == first  # type: ignore[attr-defined]
    assert store.put_voice(first.replace(name="other")) == first  # type: ignore[attr-defined]
    assert store.get_voice(first.voice_id) == first  # type: ignore[attr-defined]
    assert store.voice_of_job(first.job_id) == first  # type: ignore[attr-defined]
    assert store.get_voice("voice_ffffffffffffffff") is None  # type: ignore[attr-defined]
    bare = voice(2, owner=None, consent=None, models=())
    assert store.put_voice(bare) == bare and store.get_voice(bare.voice_id) == bare  # type: ignore[attr-defined]


def test_a_users_voices_are_listed_per_owner_newest_first(store: JobStore) -> None:
    for v in (voice(1), voice(2), voice(3, owner="globex"), voice(4, user_id="bob"), voice(5, owner=None)):
        store.put_voice(v)  # type: ignore[attr-defined]
    ids = lambda voices: [v.voice_id for v in voices]  # noqa: E731
    assert ids(store.list_voices(user_id="alice", owner="acme")) == [voice(2).voice_id, voice(1).voice_id]  # type: ignore[attr-defined]
    assert ids(store.list_voices(user_id="alice", owner=None)) == [voice(5).voice_id]  # type: ignore[attr-defined]
    assert len(store.list_voices(user_id="alice", owner=None, any_owner=True)) == 4  # type: ignore[attr-defined]
    assert ids(store.list_voices(user_id="alice", owner="acme", limit=1)) == [voice(2).voice_id]  # type: ignore[attr-defined]


def test_rename_and_delete(store: JobStore) -> None:
    store.put_voice(voice(1))  # type: ignore[attr-defined]
    renamed = store.rename_voice(voice(1).voice_id, "Narrator", now=T0 + 50)  # type: ignore[attr-defined]
    assert (renamed.name, renamed.updated_at, renamed.created_at) == ("Narrator", T0 + 50, T0 + 1)
    assert store.get_voice(voice(1).voice_id) == renamed  # type: ignore[attr-defined]
    with pytest.raises(VoiceNotFound):
        store.rename_voice(voice(9).voice_id, "x", now=T0)  # type: ignore[attr-defined]
    assert store.delete_voice(voice(1).voice_id) is True  # type: ignore[attr-defined]
    assert store.delete_voice(voice(1).voice_id) is False  # type: ignore[attr-defined]
    assert store.get_voice(voice(1).voice_id) is None  # type: ignore[attr-defined]


def test_erasure_scrubs_a_users_jobs_under_one_owner_and_moves_their_totals(store: JobStore) -> None:
    mine = add(store, user_id="alice", owner="acme", idempotency_key="k1", callback_url="https://x.test/cb",
               extra={"params": {"seed": 1}, "consent": CONSENT.to_dict()})
    done = claim_one(store, T0 + 1)
    store.complete(done.job_id, lease_id=done.lease_id or "", result=result_for(done), now=T0 + 2)
    other_key = add(store, user_id="alice", owner="globex")
    other_user = add(store, user_id="bob", owner="acme")
    jobs = store.user_jobs(user_id="alice", owner="acme")  # type: ignore[attr-defined]
    assert [j.job_id for j in jobs] == [mine.job_id]

    assert store.scrub_jobs([mine.job_id], now=T0 + 10) == 1  # type: ignore[attr-defined]
    assert store.scrub_jobs([mine.job_id], now=T0 + 11) == 0  # type: ignore[attr-defined]
    scrubbed = store.get(mine.job_id)
    assert scrubbed is not None
    assert scrubbed.user_id == erased_user_id("acme", "alice")
    assert (scrubbed.voice_name, scrubbed.sample_text, scrubbed.audio_key) == ("", "", "")
    assert scrubbed.result_key is None and scrubbed.voice_id is None and scrubbed.voice_key is None
    assert scrubbed.callback_url is None and scrubbed.idempotency_key is None
    assert scrubbed.extra == {"erased_at": T0 + 10}
    # What accounting needs stays: status, timings, sizes.
    assert scrubbed.status is JobStatus.COMPLETED and scrubbed.speech_tokens == 37
    assert store.user_jobs(user_id="alice", owner="acme") == []  # type: ignore[attr-defined]
    assert store.get(other_key.job_id) == other_key and store.get(other_user.job_id) == other_user
    assert store.stats(user_id="alice").total == 1  # the other key's
    assert store.stats(user_id=erased_user_id("acme", "alice")).by_status["completed"] == 1
    assert store.stats().total == 3


def test_an_erasure_is_recorded_until_it_is_finished(store: JobStore) -> None:
    assert store.unfinished_erasures() == []  # type: ignore[attr-defined]
    store.begin_erasure(owner="acme", user_id="alice", now=T0)  # type: ignore[attr-defined]
    store.begin_erasure(owner=None, user_id="alice", now=T0 + 1)  # type: ignore[attr-defined]
    running = sorted(store.unfinished_erasures(), key=lambda e: e.started_at)  # type: ignore[attr-defined]
    assert [(e.owner, e.user_id, e.status) for e in running] == [("acme", "alice", "running"), (None, "alice", "running")]
    done = store.finish_erasure(owner="acme", user_id="alice", now=T0 + 5, voices=1, jobs=2, blobs=3)  # type: ignore[attr-defined]
    assert (done.status, done.started_at, done.finished_at, done.voices, done.jobs, done.blobs) == (
        "done", T0, T0 + 5, 1, 2, 3)
    assert [e.owner for e in store.unfinished_erasures()] == [None]  # type: ignore[attr-defined]
    again = store.begin_erasure(owner="acme", user_id="alice", now=T0 + 9)  # type: ignore[attr-defined]
    assert again.status == "running"


def test_retention_finds_old_finished_jobs_with_audio_once(store: JobStore) -> None:
    old = add(store, now=T0)
    claimed = claim_one(store, T0 + 1)
    store.complete(claimed.job_id, lease_id=claimed.lease_id or "", result=result_for(claimed), now=T0 + 2)
    still_pending = add(store, now=T0 + 3)
    add(store, now=T0 + 500)  # too young
    found = store.sweepable_jobs(before=T0 + 100)  # type: ignore[attr-defined]
    assert [j.job_id for j in found] == [old.job_id]
    swept = store.mark_swept(old.job_id, keep_upload=True, now=T0 + 600)  # type: ignore[attr-defined]
    assert swept.result_key is None and swept.audio_key == old.audio_key and swept.extra["swept_at"] == T0 + 600
    assert swept.status is JobStatus.COMPLETED
    assert store.sweepable_jobs(before=T0 + 100) == []  # type: ignore[attr-defined]
    # The job that was still pending is found once it is finished.
    store.cancel(still_pending.job_id, now=T0 + 700)
    assert [j.job_id for j in store.sweepable_jobs(before=T0 + 100)] == [still_pending.job_id]  # type: ignore[attr-defined]
    dropped = store.mark_swept(still_pending.job_id, keep_upload=False, now=T0 + 701)  # type: ignore[attr-defined]
    assert dropped.audio_key == ""


def test_a_keys_jobs_are_counted_and_totalled_apart_from_other_keys(store: JobStore) -> None:
    a1 = add(store, owner="acme", user_id="u1", now=T0)
    add(store, owner="acme", user_id="u2", now=T0 + 10)
    add(store, owner="globex", user_id="u1", now=T0 + 20)
    add(store, owner=None, user_id="u1", now=T0 + 30)
    claimed = claim_one(store, T0 + 40, job_ids=[a1.job_id])
    store.complete(claimed.job_id, lease_id=claimed.lease_id or "", result=result_for(claimed, gpu=2.0), now=T0 + 41)
    assert store.count_key_jobs(owner="acme") == 1  # type: ignore[attr-defined]
    assert store.count_key_jobs(owner="acme", since=T0 + 5) == 1  # type: ignore[attr-defined]
    assert store.count_key_jobs(owner="acme", since=T0 - 1) == 2  # type: ignore[attr-defined]
    assert store.count_key_jobs(owner="nobody") == 0  # type: ignore[attr-defined]
    acme = store.key_stats(owner="acme")  # type: ignore[attr-defined]
    assert (acme.total, acme.by_status["completed"], acme.pending, acme.total_gpu_seconds) == (2, 1, 1, 2.0)
    one = store.key_stats(owner="acme", user_id="u1")  # type: ignore[attr-defined]
    assert (one.total, one.by_status["completed"], one.user_id) == (1, 1, "u1")
    assert store.key_stats(owner="globex", user_id="u1").pending == 1  # type: ignore[attr-defined]
    assert store.stats(user_id="u1").total == 3
