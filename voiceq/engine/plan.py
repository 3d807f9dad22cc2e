"""One request as the engine runs it: its voice and one T3 row per text chunk. Made by the
engine's `plan`, decoded pass by pass (`chatterbox.py`) or in a running session (`session.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .t3_decode import T3Row


@dataclass(frozen=True)
class JobPlan:
    index: int  # the request's place in its batch
    voice: Any
    rows: list[T3Row]  # one per text chunk
    s3gen_seeds: list[int]
