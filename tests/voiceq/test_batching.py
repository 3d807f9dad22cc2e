from __future__ import annotations

import pytest

from voiceq.batching import BatchLimits, plan_batches, worth_waiting


def test_passes_respect_rows_and_token_budget_in_claim_order() -> None:
    costs = {"a": 300, "b": 300, "c": 500, "d": 100, "e": 100, "f": 100}
    passes = plan_batches(list(costs), BatchLimits(max_rows=3, token_budget=800), costs.__getitem__)
    assert passes == [["a", "b"], ["c", "d", "e"], ["f"]]
    assert [x for p in passes for x in p] == list(costs)  # nothing lost, order kept


def test_a_job_bigger_than_the_budget_runs_alone() -> None:
    passes = plan_batches(["small", "huge", "small2"], BatchLimits(max_rows=8, token_budget=100),
                          lambda x: 5000 if x == "huge" else 10)
    assert passes == [["small"], ["huge"], ["small2"]]


def test_waiting_to_fill_only_helps_a_started_short_batch() -> None:
    limits = BatchLimits(max_rows=8, wait_to_fill_s=0.2)
    assert worth_waiting(3, limits)
    assert not worth_waiting(0, limits) and not worth_waiting(8, limits)
    assert not worth_waiting(3, BatchLimits(max_rows=8, wait_to_fill_s=0.0))
    with pytest.raises(ValueError):
        BatchLimits(max_rows=0)
