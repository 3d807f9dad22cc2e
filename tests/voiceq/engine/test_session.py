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
