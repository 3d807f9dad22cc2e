"""Splitting long texts into chunks the model speaks well, and joining the chunks' audio."""

from __future__ import annotations

import numpy as np
import pytest

from voiceq.engine.text import join_audio, speech_token_estimate, split_text

STORY = (
    "It was a bright cold day in April, and the clocks were striking thirteen. "
    "Winston Smith, his chin nuzzled into his breast in an effort to escape the vile wind, "
    "slipped quickly through the glass doors of Victory Mansions. \"Not quickly enough!\" he said. "
    "Why? Nobody knew… The hallway smelt of boiled cabbage and old rag mats."
)


def words(texts: list[str]) -> list[str]:
    return " ".join(texts).split()


def test_a_text_that_fits_is_one_chunk():
    assert split_text("Hello there.  How are\nyou?", 100) == ["Hello there. How are you?"]
    assert split_text("   ", 100) == []


def test_long_text_splits_at_sentence_ends_within_the_limit():
    chunks = split_text(STORY, 160)
    assert len(chunks) > 1
    assert all(len(c) <= 160 for c in chunks)
    assert words(chunks) == STORY.split()  # nothing lost, nothing reordered
    # Every chunk but the last ends a sentence (closing quotes stay with their sentence).
    for chunk in chunks[:-1]:
        assert chunk.rstrip("\"'”’)]").endswith((".", "!", "?", "…"))
    assert '"Not quickly enough!"' in " ".join(chunks)


def test_sentences_pack_greedily():
    text = "One. Two. Three. Four. Five. Six."
    assert split_text(text, 10) == ["One. Two.", "Three.", "Four.", "Five. Six."]


def test_an_overlong_sentence_splits_at_clauses_then_words():
    sentence = "first clause here, second clause there, " + " ".join(["word"] * 40) + "."
    chunks = split_text(sentence, 50)
    assert all(len(c) <= 50 for c in chunks)
    assert chunks[0].startswith("first clause here, second clause there,")  # whole clauses kept
    assert words(chunks) == sentence.split()
    giant = "x" * 120
    assert split_text(giant, 50) == ["x" * 50, "x" * 50, "x" * 20]


def test_limit_must_be_positive():
    with pytest.raises(ValueError):
        split_text("text", 0)


def test_estimate_scales_with_length():
    assert speech_token_estimate("Hi.") >= 1
    short, long = speech_token_estimate("a" * 140), speech_token_estimate("a" * 280)
    assert long == 2 * short == 500  # 14 characters a second, 25 tokens a second


def test_join_puts_silence_between_parts():
    a, b = np.ones(100, dtype=np.float32), np.full(50, 0.5, dtype=np.float32)
    out = join_audio([a, b], sample_rate=1000, silence_s=0.02)
    assert out.dtype == np.float32 and len(out) == 170
    assert np.all(out[100:120] == 0) and np.all(out[:100] == 1) and np.all(out[120:] == 0.5)
    assert len(join_audio([a], 1000)) == 100
    assert len(join_audio([], 1000)) == 0
