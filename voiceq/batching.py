"""Batch planning: which claimed jobs go through the engine together. Pure functions.

A worker claims up to `max_rows` jobs at once (one atomic claim), then runs them in as few
engine passes as fit both limits: at most `max_rows` jobs per pass, and at most
`token_budget` estimated speech tokens per pass (the decode loop's KV cache and S3Gen's
activations grow with tokens, not with rows). A job bigger than the whole budget runs alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    max_rows: int = 8
    token_budget: int = 8000
    wait_to_fill_s: float = 0.0  # after a short claim, wait this long once for more jobs

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.token_budget < 1 or self.wait_to_fill_s < 0:
            raise ValueError("batch limits must be positive")


def plan_batches(items: Sequence[T], limits: BatchLimits, tokens_of: Callable[[T], int]) -> list[list[T]]:
    """Split `items` (in claim order) into engine passes within the limits, keeping the order.
    Greedy first-fit in order: it keeps the oldest jobs in the first pass, which is what the
    claim order asked for."""
    passes: list[list[T]] = []
    current: list[T] = []
    used = 0
    for item in items:
        cost = max(1, tokens_of(item))
        if current and (len(current) >= limits.max_rows or used + cost > limits.token_budget):
            passes.append(current)
            current, used = [], 0
        current.append(item)
        used += cost
    if current:
        passes.append(current)
    return passes


def worth_waiting(claimed: int, limits: BatchLimits) -> bool:
    """A short claim in a batch-friendly setup waits once for company."""
    return 0 < claimed < limits.max_rows and limits.wait_to_fill_s > 0
