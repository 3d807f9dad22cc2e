"""The Serve app in production mode on the production stores: jobs in Convex (the real convex/
functions behind the Convex HTTP API stand-in), audio in S3 (moto's server). And with Convex
gone: 503 with a clear message, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakes import fake_convex, fake_convex_session, fake_s3  # noqa: F401 (fixtures)
from convex_client.client import ConvexClient
from tests.fakes.convex_standin import ConvexStandin, start_convex_standin, user_token
from tests.fakes.s3_server import S3Server
from tests.support.audio import decode_mp3, voice_file
from tests.support.server import VoiceqServer, wait_until

API = "/api/public/voice/onboarding"
pytestmark = pytest.mark.slow


def objects(s3: S3Server, bucket: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_jobs_in_convex_and_audio_in_s3_complete_end_to_end(voiceq_server: VoiceqServer, fake_convex: ConvexStandin,
                                                            fake_s3: S3Server, tmp_path: Path) -> None:
    bucket = fake_s3.create_bucket()
    settings = voiceq_server.deploy(voiceq_server.settings_for(
        environment="production", data_dir=tmp_path / "unused",
        convex_url=fake_convex.url, convex_deploy_key=fake_convex.admin_key,
        s3_bucket=bucket, s3_endpoint_url=fake_s3.endpoint_url, s3_region=fake_s3.region,
        s3_access_key_id=fake_s3.access_key_id, s3_secret_access_key=fake_s3.secret_access_key,
    ))
    assert (settings.job_store_kind, settings.storage_kind) == ("convex", "s3")
    with voiceq_server.client() as c:
        ready = c.get("/ready").json()
        assert ready["checks"]["job_store"]["status"] == "ok" and ready["checks"]["storage"]["status"] == "ok"
        job_id = c.post(f"{API}/clone", data={"user_id": "convex-user", "voice_name": "Cloud Voice"},
                        files={"audio_file": ("v.m4a", voice_file("m4a", seconds=2.0, sample_rate=44_100),
                                              "audio/mp4")}).json()["jobId"]
        final = wait_until(lambda: (b := c.get(f"{API}/jobs/{job_id}/status").json())["status"]
                           in ("completed", "failed") and b, timeout_s=300, interval_s=0.5, what="the job")
        assert final["status"] == "completed", final
        # The result URL is a presigned S3 URL; the audio route redirects to it.
        assert final["resultUrl"].startswith(fake_s3.endpoint_url)
        mp3 = httpx.get(final["resultUrl"]).content
        samples, rate = decode_mp3(mp3)
        assert rate == 24_000 and len(samples) > 0
        redirect = c.get(f"{API}/jobs/{job_id}/audio")
        assert redirect.status_code == 307 and redirect.headers["location"].startswith(fake_s3.endpoint_url)

    # The record is in Convex, readable by its user's frontend through the seed's public queries.
    # No deploy key: what a browser can call, signed in as the user (private views).
    frontend = ConvexClient(fake_convex.url, auth_token=user_token({"sub": "convex-user"}))
    try:
        jobs = frontend.query("voiceCloneJobs:getUserJobs", {"userId": "convex-user"})
        assert [j["jobId"] for j in jobs] == [job_id] and jobs[0]["status"] == "completed"
        stats = frontend.query("voiceCloneJobs:getStats", {"userId": "convex-user"})
        assert stats["total"] == 1 and stats["completed"] == 1
    finally:
        frontend.close()
    keys = objects(fake_s3, bucket)
    assert f"uploads/{job_id}.wav" in keys
    assert any(k.startswith(f"results/{job_id}-") for k in keys)
    assert any(k.startswith(f"voices/{final['voiceId']}") for k in keys)


def test_with_convex_unreachable_submission_answers_503_and_stores_nothing(
        voiceq_server: VoiceqServer, fake_s3: S3Server, tmp_path: Path) -> None:
    bucket = fake_s3.create_bucket()
    convex = start_convex_standin()  # its own, since this test takes it down
    voiceq_server.deploy(voiceq_server.settings_for(
        environment="production", data_dir=tmp_path / "unused",
        convex_url=convex.url, convex_deploy_key=convex.admin_key,
        s3_bucket=bucket, s3_endpoint_url=fake_s3.endpoint_url, s3_region=fake_s3.region,
        s3_access_key_id=fake_s3.access_key_id, s3_secret_access_key=fake_s3.secret_access_key,
    ))
    convex.stop()
    try:
        with voiceq_server.client() as c:
            r = c.post(f"{API}/clone", data={"user_id": "u", "voice_name": "v"},
                       files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")})
            assert r.status_code == 503, r.text
            assert r.json()["error"].startswith("Convex not reachable")
            assert int(r.headers["retry-after"]) > 0
            ready = c.get("/ready")
            assert ready.status_code == 503
            assert ready.json()["checks"]["job_store"]["message"] == "Convex not reachable"
        assert objects(fake_s3, bucket) == []  # the upload was removed again
    finally:
        voiceq_server.undeploy()  # its replicas point at the stopped stand-in
