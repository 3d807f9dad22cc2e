"""How a cloud bills a machine's lifetime: the granularity, as a pure model.

DigitalOcean bills droplets from creation to destruction (powered off still counts). Since
1 January 2026 droplets are billed per second with a minimum of 60 seconds (docs/digitalocean.md
cites the sources); before, per started hour. Both are one model: a lifetime is rounded up to
the minimum, then up to whole increments.

    per_second: increment 1 s, minimum 60 s (the default)
    hourly:     increment 3600 s, minimum 3600 s

The scaling policy uses it to price a size choice (a GPU started for one job is billed at
least the minimum) and to keep a GPU whose current increment is already paid for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOUR_S = 3600.0


@dataclass(frozen=True)
class Billing:
    increment_s: float = 1.0
    minimum_s: float = 60.0

    def __post_init__(self) -> None:
        if self.increment_s <= 0:
            raise ValueError("the billing increment must be positive")
        if self.minimum_s < 0:
            raise ValueError("the billing minimum must not be negative")

    @classmethod
    def named(cls, name: str) -> Billing:
        """`per_second`, `hourly`, or `<increment_s>/<minimum_s>` (for example `60/600`)."""
        text = name.strip().lower()
        if text in ("per_second", "per-second", "second"):
            return cls(1.0, 60.0)
        if text in ("hourly", "per_hour", "per-hour", "hour"):
            return cls(HOUR_S, HOUR_S)
        increment, sep, minimum = text.partition("/")
        try:
            return cls(float(increment), float(minimum) if sep else 0.0)
        except ValueError:
            raise ValueError(f"billing must be per_second, hourly or INCREMENT_S/MINIMUM_S, not {name!r}") from None

    def billed_s(self, lifetime_s: float) -> float:
        """Seconds billed for a machine that existed `lifetime_s` seconds."""
        lifetime = max(0.0, lifetime_s, self.minimum_s)
        # A hair of float noise must not buy another increment.
        return math.ceil(lifetime / self.increment_s - 1e-9) * self.increment_s

    def cost(self, lifetime_s: float, hourly_usd: float) -> float:
        return self.billed_s(lifetime_s) * hourly_usd / HOUR_S

    def paid_ahead_s(self, lifetime_s: float) -> float:
        """Seconds already paid for beyond `lifetime_s` (keeping the machine that long is free)."""
        return max(0.0, self.billed_s(lifetime_s) - max(0.0, lifetime_s))

    def describe(self) -> str:
        if (self.increment_s, self.minimum_s) == (1.0, 60.0):
            return "per second, 60 s minimum"
        if (self.increment_s, self.minimum_s) == (HOUR_S, HOUR_S):
            return "per started hour"
        return f"per {self.increment_s:g} s, {self.minimum_s:g} s minimum"
