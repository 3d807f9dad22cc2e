"""Voices belong to the key and user that cloned them: over HTTP against the real app in
production mode with two keys (real Ray, real SQLite file, real Chatterbox modules)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.audio import voice_file
from tests.support.server import VoiceqServer, wait_until

API = "/api/public/voice/onboarding"
pytestmark = pytest.mark.slow

KEYS = {"alice": "alice-voices-key-0123", "bob": "bob-voices-key-0123", "ops": "ops-voices-key-0123",
        "carol": "carol-voices-key-0123"}


@pytest.fixture(scope="module")
def app(voiceq_server: VoiceqServer, tmp_path_factory: pytest.TempPathFactory) -> VoiceqServer:
    voiceq_server.deploy(voiceq_server.settings_for(
        environment="production",
        auth="auto",
        api_keys=(f"alice:{KEYS['alice']},bob:{KEYS['bob']},ops:{KEYS['ops']}:admin,"
                  f"carol:{KEYS['carol']}:active=0"),
        data_dir=tmp_path_factory.mktemp("voices-data"),
        max_batch_size=4,
    ))
    return voiceq_server


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def clone(c: httpx.Client, who: str, *, user: str = "u1", **fields: str) -> httpx.Response:
    return c.post(f"{API}/clone", headers=auth(who), data={"user_id": user, "voice_name": "V", **fields},
                  files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")})


def reuse(c: httpx.Client, who: str, voice_id: str, *, user: str = "u1") -> httpx.Response:
    return c.post(f"{API}/clone", headers=auth(who),
                  data={"user_id": user, "voice_name": "Again", "voice_id": voice_id, "sample_text": "Hi."})


def wait_done(c: httpx.Client, job_id: str, who: str) -> dict:
    return wait_until(
        lambda: (b := c.get(f"{API}/jobs/{job_id}/status", headers=auth(who)).json())["status"]
        in ("completed", "failed", "cancelled") and b,
        timeout_s=300, interval_s=0.5, what=f"job {job_id}")


def job_count(c: httpx.Client, who: str, user: str) -> int:
    return len(c.get(f"{API}/jobs", params={"user_id": user}, headers=auth(who)).json()["jobs"])


def test_another_key_cannot_reuse_a_voice(app: VoiceqServer) -> None:
    with app.client() as c:
        made = clone(c, "alice", user="alice-user")
        assert made.status_code == 202, made.text
        done = wait_done(c, made.json()["jobId"], "alice")
        assert done["status"] == "completed", done
        voice_id = done["voiceId"]

        before = job_count(c, "bob", "alice-user")
        stolen = reuse(c, "bob", voice_id, user="alice-user")
        assert stolen.status_code == 404, stolen.text
        assert stolen.json()["error"] == f"no voice with id {voice_id!r}"
        assert job_count(c, "bob", "alice-user") == before  # nothing stored
        # ...answered exactly like a voice that does not exist.
        unknown = reuse(c, "bob", "voice_" + "0" * 16, user="alice-user")
        assert unknown.status_code == 404
        assert set(unknown.json()) == set(stolen.json())

        mine = reuse(c, "alice", voice_id, user="alice-user")
        assert mine.status_code == 202, mine.text
        assert reuse(c, "ops", voice_id, user="alice-user").status_code == 202  # admin keys may


def blob_files(app: VoiceqServer) -> list[str]:
    assert app.settings is not None
    root = app.settings.blob_dir
    return [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]


def test_the_voice_library_is_private_to_its_key_and_deletion_removes_the_files(app: VoiceqServer) -> None:
    with app.client() as c:
        made = clone(c, "alice", user="lib-user", voice_name="Narrator", consent_subject="Lib User",
                     consent_at="2026-11-01T10:00:00Z", consent_reference="consent/77")
        assert made.status_code == 202, made.text
        done = wait_done(c, made.json()["jobId"], "alice")
        assert done["status"] == "completed" and done["watermarked"] is True, done
        voice_id = done["voiceId"]

        listed = c.get(f"{API}/voices", params={"user_id": "lib-user"}, headers=auth("alice")).json()
        assert [v["voiceId"] for v in listed["voices"]] == [voice_id]
        view = c.get(f"{API}/voices/{voice_id}", headers=auth("alice")).json()
        assert view["name"] == "Narrator" and view["jobId"] == made.json()["jobId"]
        assert view["consent"] == {"subject": "Lib User", "consentedAt": 1_793_527_200.0, "reference": "consent/77"}
        assert view["models"] == ["chatterbox"] and "referenceKey" not in view

        # Key B: the voice and the job do not exist, whatever it tries; nothing changes.
        files_before = sorted(blob_files(app))
        assert c.get(f"{API}/voices", params={"user_id": "lib-user"}, headers=auth("bob")).json()["voices"] == []
        for r in (c.get(f"{API}/voices/{voice_id}", headers=auth("bob")),
                  c.patch(f"{API}/voices/{voice_id}", json={"name": "Mine now"}, headers=auth("bob")),
                  c.delete(f"{API}/voices/{voice_id}", headers=auth("bob")),
                  reuse(c, "bob", voice_id, user="lib-user"),
                  c.get(f"{API}/jobs/{made.json()['jobId']}/status", headers=auth("bob"))):
            assert r.status_code == 404, (r.request.method, r.request.url, r.text)
        assert sorted(blob_files(app)) == files_before
        assert c.get(f"{API}/voices/{voice_id}", headers=auth("alice")).json()["name"] == "Narrator"

        renamed = c.patch(f"{API}/voices/{voice_id}", json={"name": "Storyteller"}, headers=auth("alice"))
        assert renamed.status_code == 200 and renamed.json()["name"] == "Storyteller"
        assert c.patch(f"{API}/voices/{voice_id}", json={}, headers=auth("alice")).json()["field"] == "name"

        assert any(voice_id in f for f in blob_files(app))
        deleted = c.delete(f"{API}/voices/{voice_id}", headers=auth("alice"))
        assert deleted.status_code == 200 and deleted.json() == {"success": True, "voiceId": voice_id, "deleted": True}
        remaining = blob_files(app)
        assert not [f for f in remaining if voice_id in f or f == f"uploads/{made.json()['jobId']}.wav"]
        assert reuse(c, "alice", voice_id, user="lib-user").status_code == 404
        assert c.get(f"{API}/voices/{voice_id}", headers=auth("alice")).status_code == 404


def test_erasure_leaves_no_file_or_row_with_the_users_audio(app: VoiceqServer) -> None:
    import sqlite3

    assert app.settings is not None
    with app.client() as c:
        first = wait_done(c, clone(c, "alice", user="erase-me").json()["jobId"], "alice")
        again = reuse(c, "alice", first["voiceId"], user="erase-me")
        wait_done(c, again.json()["jobId"], "alice")
        wait_done(c, clone(c, "bob", user="erase-me").json()["jobId"], "bob")  # bob's user of that name
        ids = [first["jobId"], again.json()["jobId"]]

        assert c.delete(f"{API}/users/erase-me", headers=auth("bob")).json()["jobs"] == 1  # bob's own only
        assert c.get(f"{API}/jobs/{ids[0]}/status", headers=auth("alice")).json()["voiceName"] == "V"
        kept = wait_done(c, clone(c, "bob", user="erase-me").json()["jobId"], "bob")

        erased = c.delete(f"{API}/users/erase-me", headers=auth("alice"))
        assert erased.status_code == 200, erased.text
        body = erased.json()
        assert (body["status"], body["voices"], body["jobs"]) == ("done", 1, 2) and body["blobs"] >= 4
        assert c.delete(f"{API}/users/erase-me", headers=auth("alice")).json()["jobs"] == 0  # idempotent

        files = blob_files(app)
        assert not [f for f in files if any(i in f for i in ids) or first["voiceId"] in f]
        assert c.get(f"{API}/jobs", params={"user_id": "erase-me"}, headers=auth("alice")).json()["jobs"] == []
        assert reuse(c, "alice", first["voiceId"], user="erase-me").status_code == 404
        status = c.get(f"{API}/jobs/{ids[0]}/status", headers=auth("alice")).json()
        assert status["voiceName"] == "" and status["voiceId"] is None and status["userId"].startswith("erased-")
        assert c.get(f"{API}/jobs/{ids[0]}/audio", headers=auth("alice")).status_code in (404, 410)
    with sqlite3.connect(app.settings.sqlite_path) as db:
        rows = db.execute("SELECT data FROM jobs WHERE job_id IN (?, ?)", ids).fetchall()
        voices = db.execute("SELECT COUNT(*) FROM voices WHERE user_id = 'erase-me' AND owner = 'alice'").fetchone()
    assert len(rows) == 2 and voices == (0,)
    for (data,) in rows:
        assert "erase-me" not in data and "uploads/" not in data and "results/" not in data
    # Bob's user of the same name is another person: untouched by alice's erasure.
    with app.client() as c:
        still = c.get(f"{API}/jobs/{kept['jobId']}/status", headers=auth("bob")).json()
        assert (still["userId"], still["voiceName"]) == ("erase-me", "V")
        assert c.get(f"{API}/voices/{kept['voiceId']}", headers=auth("bob")).status_code == 200


def test_the_watermark_route_detects_the_apps_clips_and_not_the_upload(app: VoiceqServer) -> None:
    upload = voice_file("wav", seconds=2.0, seed=11)
    with app.client() as c:
        made = c.post(f"{API}/clone", headers=auth("alice"), data={"user_id": "wm-user", "voice_name": "W"},
                      files={"audio_file": ("v.wav", upload, "audio/wav")})
        done = wait_done(c, made.json()["jobId"], "alice")
        mp3 = c.get(done["resultUrl"], headers=auth("alice")).content

        def check(data: bytes, name: str) -> dict:
            r = c.post(f"{API}/watermark/detect", headers=auth("bob"), files={"audio_file": (name, data, "audio/x")})
            assert r.status_code == 200, r.text
            return r.json()

        produced, raw = check(mp3, "clip.mp3"), check(upload, "v.wav")
        assert produced["watermarked"] is True and produced["confidence"] > 0.5, produced
        assert raw["watermarked"] is False and raw["confidence"] < 0.5, raw
        assert produced["detector"] == "perth.PerthImplicitWatermarker"
        assert c.post(f"{API}/watermark/detect", headers=auth("bob"), data={"x": "1"}).status_code == 415


def test_per_key_quotas_priorities_and_stats_of_a_keys_own_users(app: VoiceqServer) -> None:
    with app.client() as c:
        # carol's key may have no job in the queue, whatever user_id it names.
        for user in ("c1", "c2"):
            refused = clone(c, "carol", user=user)
            assert refused.status_code == 429 and "'carol'" in refused.json()["error"], refused.text
        assert c.get(f"{API}/jobs", params={"user_id": "c1"}, headers=auth("ops")).json()["jobs"] == []
        jump = clone(c, "alice", user="prio-user", priority="1")
        assert jump.status_code == 403 and jump.json()["field"] == "priority"
        assert c.get(f"{API}/jobs", params={"user_id": "prio-user"}, headers=auth("alice")).json()["jobs"] == []

        wait_done(c, clone(c, "bob", user="stats-user").json()["jobId"], "bob")
        bobs = c.get(f"{API}/stats", headers=auth("bob")).json()
        alices = c.get(f"{API}/stats", headers=auth("alice")).json()
        everyone = c.get(f"{API}/stats", headers=auth("ops")).json()
        assert everyone["total"] >= bobs["total"] + alices["total"] > bobs["total"] > 0  # (+ the admin key's)
        assert c.get(f"{API}/stats", params={"user_id": "stats-user"}, headers=auth("alice")).json()["total"] == 0
        assert c.get(f"{API}/stats", params={"user_id": "stats-user"}, headers=auth("bob")).json()["total"] == 1
