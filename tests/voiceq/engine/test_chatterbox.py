"""ChatterboxEngine.synthesize over a batch: chunked texts, mixed voices and settings, and
jobs that fail without taking the batch down."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voiceq.engine.base import GenerationParams, Synthesis, SynthesisRequest
from voiceq.engine.chatterbox import _isolated, _passes, derive_seed
from voiceq.engine.text import JOIN_SILENCE_S

SAMPLES_PER_FRAME = 480  # 24 kHz, two mel frames per speech token


def expected_samples(voice, tokens: int, chunks: int) -> int:
    """Upstream's output length: per chunk 2 frames a token, less the frame its reference mel
    may have beyond twice its prompt tokens; plus the pauses between chunks."""
    extra = voice.gen["prompt_feat"].size(1) - 2 * voice.gen["prompt_token"].numel()
    frames = 2 * tokens - extra * chunks
    return SAMPLES_PER_FRAME * frames + round(JOIN_SILENCE_S * 24_000) * (chunks - 1)


def broken(voice):
    """A voice whose T3 prompt holds token ids the model has no embedding for: it passes the
    engine's checks and breaks inside the batched T3 pass."""
    from chatterbox.models.t3.modules.cond_enc import T3Cond
    from chatterbox.tts import Conditionals

    tokens = torch.full_like(voice.t3.cond_prompt_speech_tokens, 10**6)
    return Conditionals(T3Cond(speaker_emb=voice.t3.speaker_emb, cond_prompt_speech_tokens=tokens,
                               emotion_adv=voice.t3.emotion_adv), voice.gen)


def test_a_mixed_batch_completes_around_its_failing_jobs(engine, voices, monkeypatch):
    monkeypatch.setattr(engine, "max_chunk_chars", 30)  # the first text becomes two chunks
    few = dict(max_speech_tokens=3)  # S3Gen is full size: keep every chunk tiny
    requests = [
        SynthesisRequest("chunked", voices[0], "The first sentence is here. And then a second one.",
                         GenerationParams(seed=1, **few)),
        SynthesisRequest("unguided", voices[1], "Hello there.", GenerationParams(seed=2, cfg_weight=0.0,
                                                                                 exaggeration=1.0, **few)),
        SynthesisRequest("bad-settings", voices[2], "Hi.", GenerationParams(seed=3, temperature=0.0, **few)),
        SynthesisRequest("bad-voice", broken(voices[2]), "Hi.", GenerationParams(seed=4, **few)),
    ]
    outcomes = engine.synthesize(requests)
    chunked, unguided, bad_settings, bad_voice = outcomes

    assert isinstance(bad_settings, ValueError) and "temperature" in str(bad_settings)
    assert isinstance(bad_voice, (IndexError, RuntimeError))
    assert isinstance(chunked, Synthesis) and isinstance(unguided, Synthesis)

    # Two chunks sharing the job's cap of 3 tokens, joined with a pause.
    assert 2 <= chunked.speech_tokens <= 3
    assert len(chunked.samples) == expected_samples(voices[0], chunked.speech_tokens, chunks=2)
    assert 1 <= unguided.speech_tokens <= 3
    assert len(unguided.samples) == expected_samples(voices[1], unguided.speech_tokens, chunks=1)
    for out in (chunked, unguided):
        assert out.sample_rate == 24_000 and out.samples.dtype == np.float32
        assert np.isfinite(out.samples).all() and np.abs(out.samples).max() > 0

    stats = engine.last_stats
    assert stats is not None and (stats.jobs, stats.failed, stats.t3_rows) == (4, 2, 4)

    # A job gets the same audio in a batch as alone (its seed decides everything).
    alone = engine.synthesize([requests[1]])[0]
    assert isinstance(alone, Synthesis)
    assert alone.speech_tokens == unguided.speech_tokens
    assert np.array_equal(alone.samples, unguided.samples)


def test_plans_chunk_the_text_and_seed_each_chunk(engine, voices, monkeypatch):
    monkeypatch.setattr(engine, "max_chunk_chars", 30)
    req = SynthesisRequest("k", voices[0], "One sentence here. Another one there.",
                           GenerationParams(seed=9, max_speech_tokens=20, temperature=0.7))
    plan = engine.plan(0, req)
    assert len(plan.rows) == 2
    # The job's cap is shared by its chunks, not granted to each (budget.py).
    assert sum(r.max_new_tokens for r in plan.rows) == engine.cap_for(req.params) == 20
    assert all(r.max_new_tokens >= 1 for r in plan.rows)
    assert all(r.sampling.temperature == 0.7 for r in plan.rows)
    seeds = [r.seed for r in plan.rows] + plan.s3gen_seeds
    assert len(set(seeds)) == 4
    assert engine.plan(0, req).rows[1].seed == plan.rows[1].seed  # seeded jobs are reproducible
    cost = engine.request_cost(req)
    assert (cost.chunks, cost.model_rows, cost.max_speech_tokens) == (2, 4, 20)
    assert 0 < cost.expected_speech_tokens <= 40
    unseeded = SynthesisRequest("u", voices[0], "Hi.", GenerationParams())
    assert engine.plan(0, unseeded).rows[0].seed != engine.plan(0, unseeded).rows[0].seed
    with pytest.raises(ValueError):
        engine.plan(0, SynthesisRequest("e", voices[0], "   ", GenerationParams()))
    with pytest.raises(TypeError):
        engine.plan(0, SynthesisRequest("v", object(), "Hi.", GenerationParams()))


def test_a_failing_stage_is_retried_item_by_item():
    calls: list[list[int]] = []

    def stage(items):
        calls.append(list(items))
        if 3 in items:
            raise RuntimeError("three breaks the batch")
        return [i * 10 for i in items]

    out = _isolated(stage, [1, 2, 3, 4])
    assert out[:2] == [10, 20] and out[3] == 40 and isinstance(out[2], RuntimeError)
    assert calls == [[1, 2, 3, 4], [1], [2], [3], [4]]
    assert _isolated(stage, [1, 2]) == [10, 20]
    assert _isolated(stage, []) == []


def test_passes_respect_the_row_limit():
    assert _passes([1, 2, 1, 1, 2], 3, lambda w: w) == [[1, 2], [1, 1], [2]]
    assert _passes([5, 1], 3, lambda w: w) == [[5], [1]]  # too heavy alone: still runs


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(1, 0, "t3") == derive_seed(1, 0, "t3")
    assert len({derive_seed(s, k, st) for s in (1, 2) for k in (0, 1) for st in ("t3", "s3gen")}) == 8
    assert 0 <= derive_seed(2**62, 5, "t3") < 2**63
