"""Streamed speech's chunks: the first sentence alone, the rest packed, nothing lost."""

from __future__ import annotations

from voiceq.engine.text import DEFAULT_MAX_CHARS, stream_chunks


def test_the_first_chunk_is_the_first_sentence_whatever_follows() -> None:
    one = stream_chunks("It begins here. ")
    long = stream_chunks("It begins here. " + "Then it goes on and on for a while. " * 40)
    assert one == ["It begins here."] and long[0] == "It begins here."
    assert all(len(c) <= DEFAULT_MAX_CHARS for c in long)
    assert " ".join(long) == " ".join(("It begins here. " + "Then it goes on and on for a while. " * 40).split())


def test_a_long_first_sentence_is_cut_to_the_first_chunks_size() -> None:
    words = " ".join(f"word{i}," for i in range(60)) + " end."
    chunks = stream_chunks(words, first_max_chars=50)
    assert len(chunks[0]) <= 50 and " ".join(chunks) == words


def test_empty_text_has_no_chunks() -> None:
    assert stream_chunks("   ") == []
