"""A job's speech-token cap shared out among its text chunks (voiceq/engine/budget.py)."""

from __future__ import annotations

import pytest

from voiceq.engine.budget import chunk_budgets


@pytest.mark.parametrize("cap,estimates", [
    (1000, [60] * 7),            # a long text in seven chunks: seven chunks, one cap
    (100, [10, 200, 30]),
    (7, [1, 1, 1, 1, 1, 1, 1]),
    (1000, [5]),
    (50, [0, 0, 3]),
])
def test_the_chunks_of_a_job_share_its_cap(cap: int, estimates: list[int]) -> None:
    budgets = chunk_budgets(cap, estimates)
    assert len(budgets) == len(estimates)
    assert sum(budgets) == cap and min(budgets) >= 1


def test_longer_chunks_get_larger_shares() -> None:
    short, long = chunk_budgets(90, [10, 80])
    assert long > short and short >= 1


def test_a_cap_smaller_than_the_chunk_count_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        chunk_budgets(2, [5, 5, 5])
    assert chunk_budgets(10, []) == []
