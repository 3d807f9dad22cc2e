"""API keys, idempotent submission, cancellation, backpressure, operator retry and webhooks,
over HTTP against the real app in production mode."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.audio import voice_file
from tests.support.receiver import webhook_receiver
from tests.support.server import VoiceqServer, wait_until
from voiceq.webhooks import verify

API = "/api/public/voice/onboarding"
pytestmark = pytest.mark.slow

KEYS = {"alice": "alice-key-0123456789", "bob": "bob-key-0123456789", "ops": "ops-key-0123456789"}
SECRET = "whsec-test-secret"


@pytest.fixture(scope="module")
def app(voiceq_server: VoiceqServer) -> VoiceqServer:
    voiceq_server.deploy(voiceq_server.settings_for(
        environment="production",
        auth="auto",  # production: keys required
        api_keys=f"alice:{KEYS['alice']},bob:{KEYS['bob']},ops:{KEYS['ops']}:admin",
        webhook_secret=SECRET,
        webhook_allow_private=True,
        max_active_jobs_per_user=2,
        max_batch_size=4,
    ))
    return voiceq_server


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


def submit(c: httpx.Client, who: str, *, user: str = "u1", headers: dict[str, str] | None = None,
           **fields: str) -> httpx.Response:
    return c.post(f"{API}/clone", headers={**auth(who), **(headers or {})},
                  data={"user_id": user, "voice_name": "V", **fields},
                  files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")})


def status(c: httpx.Client, job_id: str, who: str = "alice") -> httpx.Response:
    return c.get(f"{API}/jobs/{job_id}/status", headers=auth(who))


def wait_done(c: httpx.Client, job_id: str, who: str = "alice") -> dict:
    return wait_until(lambda: (b := status(c, job_id, who).json())["status"] in ("completed", "failed", "cancelled")
                      and b, timeout_s=300, interval_s=0.5, what=f"job {job_id}")


def test_production_requires_api_keys_except_for_health_checks(app: VoiceqServer) -> None:
    with app.client() as c:
        assert c.get("/health").status_code == 200 and c.get("/ready").status_code == 200
        anonymous = c.post(f"{API}/clone", data={"user_id": "u", "voice_name": "v"})
        assert anonymous.status_code == 401 and "missing API key" in anonymous.json()["error"]
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        wrong = c.get(f"{API}/stats", headers={"Authorization": "Bearer not-a-key"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid API key"
        assert c.get(f"{API}/stats", headers={"Authorization": "Basic abc"}).status_code == 401
        assert "not-a-key" not in wrong.text


def test_a_job_is_visible_only_to_its_owners_key_and_admins(app: VoiceqServer) -> None:
    with app.client() as c:
        job_id = submit(c, "alice", user="alice-user").json()["jobId"]
        assert status(c, job_id, "alice").status_code == 200
        assert status(c, job_id, "ops").status_code == 200
        hidden = status(c, job_id, "bob")
        assert hidden.status_code == 404 and "no job" in hidden.json()["error"]
        assert c.delete(f"{API}/jobs/{job_id}", headers=auth("bob")).status_code == 404
        listing = c.get(f"{API}/jobs", params={"user_id": "alice-user"}, headers=auth("bob")).json()
        assert listing["jobs"] == []
        mine = c.get(f"{API}/jobs", params={"user_id": "alice-user"}, headers=auth("alice")).json()
        assert [j["jobId"] for j in mine["jobs"]] == [job_id]
        assert wait_done(c, job_id)["status"] == "completed"


def test_a_retried_submission_with_the_same_idempotency_key_creates_one_job(app: VoiceqServer) -> None:
    with app.client() as c:
        first = submit(c, "alice", user="idem", headers={"Idempotency-Key": "order-42"})
        again = submit(c, "alice", user="idem", headers={"Idempotency-Key": "order-42"})
        other_key = submit(c, "bob", user="idem", headers={"Idempotency-Key": "order-42"})
        assert first.status_code == again.status_code == 202
        assert first.json()["jobId"] == again.json()["jobId"]
        assert other_key.json()["jobId"] != first.json()["jobId"]  # keys are scoped to their owner
        jobs = c.get(f"{API}/jobs", params={"user_id": "idem"}, headers=auth("ops")).json()["jobs"]
        assert len(jobs) == 2
        for job in jobs:
            c.delete(f"{API}/jobs/{job['jobId']}", headers=auth("ops"))


def test_cancelling_a_queued_job_and_backpressure_per_user(app: VoiceqServer) -> None:
    with app.client() as c:
        ids = [submit(c, "alice", user="flood").json()["jobId"] for _ in range(2)]
        refused = submit(c, "alice", user="flood")
        assert refused.status_code == 429, refused.text
        assert "already has 2 jobs" in refused.json()["error"] and int(refused.headers["retry-after"]) > 0
        for job_id in ids:
            cancelled = c.post(f"{API}/jobs/{job_id}/cancel", headers=auth("alice"))
            assert cancelled.status_code in (200, 409), cancelled.text
        finals = [wait_done(c, j) for j in ids]
        assert all(f["status"] in ("cancelled", "completed") for f in finals)
        assert any(f["status"] == "cancelled" for f in finals)
        again = c.delete(f"{API}/jobs/{ids[0]}", headers=auth("alice"))
        if finals[0]["status"] == "cancelled":  # a repeated cancel answers the cancelled job
            assert again.status_code == 200 and again.json()["status"] == "cancelled"
        else:
            assert again.status_code == 409 and "already" in again.json()["error"]
        # With the flood's jobs finished, the user may submit again.
        assert submit(c, "alice", user="flood").status_code == 202


def test_operator_retry_needs_an_admin_key_and_a_failed_job(app: VoiceqServer) -> None:
    with app.client() as c:
        job_id = submit(c, "alice", user="retry").json()["jobId"]
        assert c.post(f"{API}/jobs/{job_id}/retry", headers=auth("alice")).status_code == 403
        wait_done(c, job_id)
        refused = c.post(f"{API}/jobs/{job_id}/retry", headers=auth("ops"))
        assert refused.status_code == 409 and "only failed jobs" in refused.json()["error"]


def test_webhooks_are_signed_and_called_when_a_job_finishes(app: VoiceqServer) -> None:
    with webhook_receiver() as receiver, app.client() as c:
        job_id = submit(c, "alice", user="hooked", callback_url=receiver.url).json()["jobId"]
        assert wait_done(c, job_id)["status"] == "completed"
        got = wait_until(lambda: receiver.received, timeout_s=30, what="the webhook")[0]
        assert verify(SECRET, got.headers, got.body)
        event = json.loads(got.body)
        assert event["type"] == "voice_clone.completed"
        assert event["data"]["jobId"] == job_id and event["data"]["voiceId"].startswith("voice_")
        assert got.headers["webhook-id"].startswith(f"{job_id}.completed.")  # one id per outcome
        assert KEYS["alice"] not in got.body.decode()
