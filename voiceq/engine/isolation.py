"""Failure isolation for batch stages: one bad item fails alone, not the whole batch."""

from __future__ import annotations

import logging
from typing import Callable, Sequence, TypeVar

log = logging.getLogger("voiceq.engine")

T = TypeVar("T")
R = TypeVar("R")


def isolated(stage: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R | BaseException]:
    """Run a batch stage over all items; if it fails, run it item by item so that only the
    items that fail on their own get the exception."""
    if not items:
        return []
    try:
        return list(stage(items))
    except Exception as err:
        if len(items) == 1:
            return [err]
        log.warning("a batch of %d failed (%r); retrying one by one", len(items), err)
    results: list[R | BaseException] = []
    for item in items:
        try:
            results.extend(stage([item]))
        except Exception as err:
            results.append(err)
    return results
