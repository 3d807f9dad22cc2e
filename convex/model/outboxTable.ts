// The webhook outbox's table (voiceq/outbox.py): webhooks owed, written in the same mutation
// as the job transition that owes them, delivered at least once by the voiceq service.

import { defineTable } from "convex/server";
import { Infer, v } from "convex/values";

export const outboxState = v.union(v.literal("pending"), v.literal("delivered"), v.literal("dead"));

export const outboxFields = {
  webhookId: v.string(), // the `webhook-id` header of every attempt: fixed once written
  jobId: v.string(),
  url: v.string(),
  event: v.string(), // the job status the webhook announces
  createdAt: v.number(),
  state: outboxState,
  attempts: v.number(),
  nextAttemptAt: v.number(),
  deliveredAt: v.optional(v.number()),
  lastError: v.optional(v.string()),
};

export const outboxEntry = v.object(outboxFields);
export type OutboxEntry = Infer<typeof outboxEntry>;

export const webhookOutboxTable = defineTable(outboxFields)
  .index("by_webhookId", ["webhookId"])
  // Delivery reads only pending entries that are due, oldest due first.
  .index("by_state_nextAttemptAt", ["state", "nextAttemptAt"])
  .index("by_jobId", ["jobId"]);
