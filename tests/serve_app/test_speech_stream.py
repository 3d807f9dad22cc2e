"""A speech stream's chunks as jobs (in process: real bookkeeping on SQLite, a worker with the
tone engine, no Ray): later chunks wait until the first is made, and a listener that hangs up
leaves no chunk behind in the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serve_app.openai_routes import plan_speech
from serve_app.openai_validation import SpeechAsk
from serve_app.speech_stream import SpeechStream
from serve_app.auth import ANONYMOUS
from tests.support.audio import voice_file
from tests.support.inprocess import InProcessBackend, settings_for
from voiceq.audio import decode_upload
from voiceq.pcm import to_wav
from voiceq.jobs import JobStatus
from voiceq.manager import Submission

TEXT = "The first sentence. " + " ".join(f"Sentence {i} is long enough to need a chunk of its own, or part of one." for i in range(12))


async def voice(backend: InProcessBackend) -> str:
    clip = decode_upload(voice_file("wav", seconds=1.5), min_s=1, max_s=60)
    job = await backend.manager.submit(Submission(user_id="u1", voice_name="V", sample_text="Hi.",
                                                  audio=to_wav(clip), audio_seconds=clip.seconds))
    done = await backend.run_now(job)
    assert done.voice_id
    return done.voice_id


def test_a_listener_that_hangs_up_leaves_no_chunk_queued(tmp_path: Path) -> None:
    # Production: chunks wait in the queue for a worker; here the worker runs only when told.
    backend = InProcessBackend(settings_for(tmp_path, environment="production", auth="off"))

    async def scenario() -> None:
        voice_id = await voice(backend)
        plan = plan_speech(SpeechAsk(model="chatterbox", text=TEXT, voice_id=voice_id, response_format="mp3"),
                           user_id="u1", voice_name="V", principal=ANONYMOUS, request_id="speech_test")
        assert len(plan.parts) >= 3
        stream = SpeechStream(backend, plan)
        starting = asyncio.create_task(stream.start())
        while not stream.jobs:
            await asyncio.sleep(0.01)
        pending = await backend.manager.list_jobs(status="pending", user_id="u1")
        assert [j.job_id for j in pending] == [stream.jobs[0].job_id]  # the first chunk alone in the queue
        await backend.worker.run_once()
        await starting

        audio = stream.audio()
        assert await audio.__anext__()  # the first chunk's audio
        listening = asyncio.create_task(audio.__anext__())  # submits the rest, waits for them
        while len(stream.jobs) < len(plan.parts):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        listening.cancel()  # the listener hangs up
        try:
            await listening
        except (asyncio.CancelledError, StopAsyncIteration):
            pass
        await audio.aclose()
        states = [(await backend.manager.get(j.job_id)).status for j in stream.jobs]
        assert states[0] is JobStatus.COMPLETED and set(states[1:]) == {JobStatus.CANCELLED}, states
    asyncio.run(scenario())
