"""Long texts split into chunks the model speaks well, and the chunks' audio joined back.

Chatterbox is trained on utterances up to about 30-40 s (upstream caps a generation at 1000
speech tokens, 40 s at 25 tokens/s); past that it drifts or stops early. A long `sample_text`
is therefore split at sentence ends into chunks of at most `max_chars` characters, which at
a typical 14-15 characters per second of speech stays well inside that length. A sentence
longer than a chunk is split at clause punctuation, then at spaces. The chunks run as rows of
the batch like any other text, and their audio is joined with a short pause.
"""

from __future__ import annotations

import re

import numpy as np

DEFAULT_MAX_CHARS = 300  # about 20 s of speech: comfortably inside the model's range
CHARS_PER_SECOND = 14.0  # typical English read speech, for budgets and estimates
SPEECH_TOKENS_PER_SECOND = 25  # S3 tokenizer rate
JOIN_SILENCE_S = 0.15

# A sentence ends at . ! ? or … and any closing quotes or brackets, before a space.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s)")
_CLAUSE_END = re.compile(r"(?<=[,;:—–])\s+")


def _sentences(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        out.append(text[start : m.end()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def _pack(pieces: list[str], max_chars: int) -> list[str]:
    """Greedily join pieces (with a space) into chunks of at most max_chars."""
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= max_chars:
            current = f"{current} {piece}"
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Pieces of at most max_chars from one sentence: at clause marks, then at spaces,
    and only as a last resort inside a word."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        for word in clause.split():
            while len(word) > max_chars:
                pieces.append(word[:max_chars])
                word = word[max_chars:]
            pieces.append(word)
    return _pack(pieces, max_chars)


def split_text(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """The text in chunks of at most `max_chars` characters, cut at sentence ends where it
    can be. Whitespace runs collapse to one space; a text that fits is one chunk."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    text = " ".join(text.split())
    if not text:
        return []
    if len(text) <= max_chars:
        return [text]
    pieces: list[str] = []
    for sentence in _sentences(text):
        pieces.extend(_split_long(sentence, max_chars))
    return _pack(pieces, max_chars)


def speech_token_estimate(text: str) -> int:
    """Roughly how many speech tokens the model takes to say `text`."""
    return max(1, round(len(text) / CHARS_PER_SECOND * SPEECH_TOKENS_PER_SECOND))


def join_audio(parts: list[np.ndarray], sample_rate: int, silence_s: float = JOIN_SILENCE_S) -> np.ndarray:
    """The parts (each (n,) float32) one after another with `silence_s` between them."""
    if not parts:
        return np.zeros(0, dtype=np.float32)
    gap = np.zeros(int(round(silence_s * sample_rate)), dtype=np.float32)
    out: list[np.ndarray] = []
    for i, part in enumerate(parts):
        if i:
            out.append(gap)
        out.append(np.asarray(part, dtype=np.float32))
    return np.concatenate(out)


def stream_chunks(text: str, *, first_max_chars: int = 120, max_chars: int = DEFAULT_MAX_CHARS) -> list[str]:
    """Chunks for streamed speech: the first sentence alone (cut to `first_max_chars`), so the
    first audio is one short sentence's work however long the text is; the rest packed into
    chunks of at most `max_chars`, cut at sentence ends where it can be."""
    if first_max_chars < 1 or max_chars < 1:
        raise ValueError("chunk sizes must be at least 1")
    text = " ".join(text.split())
    if not text:
        return []
    sentences = _sentences(text)
    first = _split_long(sentences[0], first_max_chars)
    head, rest = first[0], first[1:]
    pieces: list[str] = []
    for sentence in [" ".join(rest)] + sentences[1:] if rest else sentences[1:]:
        pieces.extend(_split_long(sentence, max_chars))
    return [head] + _pack(pieces, max_chars)
