"""The status route places a queued job (in process, no Ray): its position among the jobs a
claim takes first and an estimate of the wait, beside the seed's fields; none once it left the
queue."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from serve_app.http import create_http_app
from tests.support.audio import voice_file
from tests.support.inprocess import InProcessBackend, settings_for

API = "/api/public/voice/onboarding"


def test_a_queued_job_carries_its_position_and_wait_and_a_finished_one_does_not(tmp_path: Path) -> None:
    backend = InProcessBackend(settings_for(tmp_path, environment="production", auth="off"))
    app = create_http_app(backend)  # type: ignore[arg-type]

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            ids = []
            for n in range(3):
                made = await c.post(f"{API}/clone", data={"user_id": "u1", "voice_name": f"V{n}"},
                                    files={"audio_file": ("v.wav", voice_file("wav", seconds=1.5), "audio/wav")})
                assert made.status_code == 202, made.text
                ids.append(made.json()["jobId"])
                await asyncio.sleep(0.01)  # distinct creation times: queue order is submission order
            before = [(await c.get(f"{API}/jobs/{i}/status")).json() for i in ids]
            first = await backend.manager.get(ids[0])
            await backend.run_now(first)
            after = [(await c.get(f"{API}/jobs/{i}/status")).json() for i in ids]
            return before, after

    before, after = asyncio.run(go())
    assert [b["status"] for b in before] == ["pending"] * 3
    assert [b["queuePosition"] for b in before] == [0, 1, 2]
    # Nothing completed here yet: no measure, so no figure rather than an invented one.
    assert [b["estimatedWaitS"] for b in before] == [None] * 3
    assert all(b["voiceName"] and b["jobId"] and "createdAt" in b for b in before)  # the seed's fields stay
    done, *queued = after
    assert done["status"] == "completed", done
    assert "queuePosition" not in done and "estimatedWaitS" not in done
    per_job = asyncio.run(backend.manager.get(done["jobId"])).gpu_seconds
    assert per_job and per_job > 0
    assert [q["queuePosition"] for q in queued] == [0, 1]
    assert [q["estimatedWaitS"] for q in queued] == [round(1 * per_job, 1), round(2 * per_job, 1)]
