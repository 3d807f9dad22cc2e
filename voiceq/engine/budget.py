"""A job's speech-token cap, shared out among its text chunks.

`max_speech_tokens` bounds a job, not each chunk of it: a long text split into seven chunks
must not decode seven caps' worth. Each chunk gets a share in proportion to how long it is
expected to take to say, at least one token, and the shares add up to the cap. Pure.
"""

from __future__ import annotations


def chunk_budgets(cap: int, estimates: list[int]) -> list[int]:
    """Per-chunk token budgets summing to at most `cap` (exactly `cap` when the chunks would use
    more). Raises ValueError when the cap cannot give every chunk even one token."""
    n = len(estimates)
    if n == 0:
        return []
    if cap < n:
        raise ValueError(f"max_speech_tokens={cap} is too small for a text of {n} chunks")
    weights = [max(1, e) for e in estimates]
    total = sum(weights)
    shares = [max(1, cap * w // total) for w in weights]
    # Hand out what flooring left over, to the longest chunks first.
    left = cap - sum(shares)
    for i in sorted(range(n), key=lambda i: -weights[i]):
        if left <= 0:
            break
        shares[i] += 1
        left -= 1
    while sum(shares) > cap:  # the at-least-one floors overshot: take back from the largest
        i = max(range(n), key=lambda i: shares[i])
        shares[i] -= 1
    return shares
