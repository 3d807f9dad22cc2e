"""The webhook outbox: webhooks owed, kept in the job store, delivered at least once.

A store writes an entry in the same transaction as the transition that owes it (a job with a
`callback_url` reaching a final state), so no restart of any deployment can lose one: the
bookkeeping replica that comes up next finds it and delivers it. Each entry's `webhook_id` is
fixed when it is written, so every attempt, before and after a restart, carries the same
`webhook-id` and receivers can drop repeats (the Standard Webhooks contract).

Delivery claims due entries for a while (`lease_s`), so an entry whose deliverer died comes back
by itself; a receiver that keeps failing is retried with exponential backoff, then the entry is
left `dead` with its last error, inspectable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .jobs import Job

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
STATES = (PENDING, DELIVERED, DEAD)

# Attempts before an entry is left dead, and the backoff between them (1 s doubling to 10 min:
# about 40 minutes in all, enough to ride out a receiver's deploy or restart).
MAX_ATTEMPTS = 12
BASE_DELAY_S = 1.0
MAX_DELAY_S = 600.0


@dataclass(frozen=True)
class OutboxEntry:
    webhook_id: str
    job_id: str
    url: str
    event: str  # the job status the webhook announces
    created_at: float
    state: str = PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    delivered_at: float | None = None
    last_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutboxEntry:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def webhook_id(job: Job) -> str:
    """Unique per outcome (a job failed, requeued and failed again owes two webhooks), fixed once
    written. convex/model/outbox.ts computes the same."""
    return f"{job.job_id}.{job.status.value}.{int(job.updated_at * 1000)}"


def entry_for(before: Job | None, after: Job) -> OutboxEntry | None:
    """The webhook a transition from `before` to `after` owes, if any: a job with a callback URL
    that reached a final state by this transition (a replayed call changes nothing and owes
    nothing)."""
    if not after.callback_url or not after.status.terminal:
        return None
    if before is not None and before.status is after.status and before.updated_at == after.updated_at:
        return None
    return OutboxEntry(webhook_id=webhook_id(after), job_id=after.job_id, url=after.callback_url,
                       event=after.status.value, created_at=after.updated_at, next_attempt_at=after.updated_at)


def after_attempt(entry: OutboxEntry, *, delivered: bool, retryable: bool, error: str | None,
                  now: float) -> OutboxEntry:
    """The entry once an attempt is over: delivered, due again after a backoff, or dead."""
    attempts = entry.attempts + 1
    if delivered:
        return dataclasses.replace(entry, state=DELIVERED, attempts=attempts, delivered_at=now, last_error=None)
    if retryable and attempts < MAX_ATTEMPTS:
        delay = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempts - 1))
        return dataclasses.replace(entry, attempts=attempts, next_attempt_at=now + delay, last_error=error)
    return dataclasses.replace(entry, state=DEAD, attempts=attempts, last_error=error)


@runtime_checkable
class WebhookOutbox(Protocol):
    """What a job store that keeps an outbox offers (SQLite and Convex do). Entries are written
    by the store's own transitions; these methods read and settle them."""

    def outbox_due(self, *, now: float, limit: int, lease_s: float) -> list[OutboxEntry]:
        """Claim up to `limit` pending entries due by `now`: each is hidden from other callers
        for `lease_s` (it comes back if its deliverer dies) and returned."""
        ...

    def outbox_settle(self, entry: OutboxEntry) -> None:
        """Record an attempt's outcome (`after_attempt`'s entry)."""
        ...

    def outbox_get(self, webhook_id: str) -> OutboxEntry | None: ...

    def outbox_list(self, *, job_id: str) -> list[OutboxEntry]: ...
