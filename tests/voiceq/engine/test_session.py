"""Continuous synthesis: requests that arrive while the decode runs join it in freed slots,
each job's audio is made while others still decode, and a bad request fails alone."""

from __future__ import annotations

import numpy as np

from tests.voiceq.engine.test_chatterbox import broken
from voiceq.engine.base import GenerationParams, Synthesis, SynthesisRequest


def test_late_requests_join_the_running_decode_and_match_a_batch(engine, voices):
    few = dict(max_speech_tokens=6)  # S3Gen is full size: keep every job tiny
    first = SynthesisRequest("first", voices[0], "A first job that starts alone.", GenerationParams(seed=1, **few))
    late = [
        SynthesisRequest("late-a", voices[1], "Hello there.", GenerationParams(seed=2, cfg_weight=0.0, **few)),
        SynthesisRequest("late-b", voices[2], "Hi.", GenerationParams(seed=3, **few)),
        SynthesisRequest("bad-voice", broken(voices[2]), "Hi.", GenerationParams(seed=4, **few)),
    ]
    calls: list[tuple[int, bool, int]] = []  # (room, idle, outcomes so far) at each feed
    outcomes: dict[str, Synthesis | BaseException] = {}

    def feed(room: int, idle: bool) -> list[SynthesisRequest]:
        calls.append((room, idle, len(outcomes)))
        if len(calls) == 1:
            return [first]
        if len(calls) == 3:  # two decode steps in: the first job is still running
            return late
        return []

    stats = engine.run_session(feed, lambda key, out: outcomes.__setitem__(key, out), slots=4)

    assert calls[0] == (4, True, 0)
    assert calls[2][:2] == (2, False) and calls[2][2] == 0  # joined mid-decode, in the free slots
    assert set(outcomes) == {"first", "late-a", "late-b", "bad-voice"}
    assert isinstance(outcomes["bad-voice"], (IndexError, RuntimeError))
    assert stats.jobs == 4 and stats.failed == 1 and stats.first_audio_s is not None
    # Joining late changes nothing of a job's audio: the same as one batch of all of them.
    batch = engine.synthesize([first] + late[:2])
    for req, out in zip([first] + late[:2], batch):
        got = outcomes[req.key]
        assert isinstance(got, Synthesis) and isinstance(out, Synthesis)
        assert got.speech_tokens == out.speech_tokens
        assert np.array_equal(got.samples, out.samples)


def test_the_worker_runs_jobs_through_the_real_engines_session(engine, tmp_path):
    """Claim, prepare (upload read and voice prepared off the engine's thread), the real
    engine's session, MP3 and upload after: every job completed with its audio stored."""
    import asyncio

    from tests.support.audio import decode_mp3
    from tests.voiceq.test_worker import make, submission
    from voiceq.jobs import JobStatus

    manager, worker = make(tmp_path, engine)
    few = {"max_speech_tokens": 4, "seed": 5}

    async def scenario():
        ids = [(await manager.submit(submission(i, text=text, params=few))).job_id
               for i, text in enumerate(["Hello there.", "A second voice speaks."])]
        assert await worker.run_once() == 2
        return [await manager.get(j) for j in ids]

    for job in asyncio.run(scenario()):
        assert job.status is JobStatus.COMPLETED and 1 <= job.speech_tokens <= 4
        samples, rate = decode_mp3(manager.storage.get(job.result_key))
        assert rate == 24_000 and len(samples) > 0
        assert manager.storage.exists(job.voice_key)
