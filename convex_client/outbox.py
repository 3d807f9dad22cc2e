"""The webhook outbox (voiceq/outbox.py) over convex/webhookOutbox.ts, for ConvexJobStore.
Entries are written by the job mutations themselves (convex/model/outbox.ts)."""

from __future__ import annotations

from typing import Any, Mapping

from voiceq.outbox import OutboxEntry

from .calls import ConvexCalls

MODULE = "webhookOutbox"

_FIELDS = {
    "webhook_id": "webhookId", "job_id": "jobId", "url": "url", "event": "event", "created_at": "createdAt",
    "state": "state", "attempts": "attempts", "next_attempt_at": "nextAttemptAt",
    "delivered_at": "deliveredAt", "last_error": "lastError",
}


def entry_from_document(doc: Mapping[str, Any]) -> OutboxEntry:
    return OutboxEntry.from_dict({name: doc.get(key) for name, key in _FIELDS.items()})


class ConvexOutbox(ConvexCalls):
    """`voiceq.outbox.WebhookOutbox` for ConvexJobStore (mixed into it)."""

    def outbox_due(self, *, now: float, limit: int, lease_s: float) -> list[OutboxEntry]:
        docs = self._call("mutation", "dueWebhooks", {"now": float(now), "limit": int(limit), "leaseS": float(lease_s)},
                          module=MODULE)
        return [entry_from_document(d) for d in docs]

    def outbox_settle(self, entry: OutboxEntry) -> None:
        args: dict[str, Any] = {"webhookId": entry.webhook_id, "state": entry.state, "attempts": int(entry.attempts),
                                "nextAttemptAt": float(entry.next_attempt_at)}
        if entry.delivered_at is not None:
            args["deliveredAt"] = float(entry.delivered_at)
        if entry.last_error is not None:
            args["lastError"] = entry.last_error[:1000]
        # Settling writes absolute values: repeating it is harmless.
        self._call("mutation", "settleWebhook", args, idempotent=True, module=MODULE)

    def outbox_get(self, webhook_id: str) -> OutboxEntry | None:
        doc = self._call("query", "getWebhook", {"webhookId": webhook_id}, module=MODULE)
        return entry_from_document(doc) if doc else None

    def outbox_list(self, *, job_id: str) -> list[OutboxEntry]:
        return [entry_from_document(d) for d in self._call("query", "listWebhooks", {"jobId": job_id}, module=MODULE)]
