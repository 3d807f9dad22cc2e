// Writing the webhook a job transition owes, inside that transition's mutation (the same rule
// as voiceq/outbox.py entry_for, and the same webhook id).

import type { MutationCtx } from "../_generated/server";
import { TERMINAL } from "./transitions";
import type { Job } from "./transitions";

export function webhookId(job: Job): string {
  return `${job.jobId}.${job.status}.${Math.floor(job.updatedAt * 1000)}`;
}

/** A job with a callback URL that reached a final state by this transition owes a webhook; a
 * replayed call (nothing changed) owes nothing. */
export async function enqueueWebhook(ctx: MutationCtx, before: Job | null, after: Job): Promise<void> {
  if (after.callbackUrl === undefined || !TERMINAL.has(after.status)) {
    return;
  }
  if (before !== null && before.status === after.status && before.updatedAt === after.updatedAt) {
    return;
  }
  const id = webhookId(after);
  const existing = await ctx.db
    .query("webhookOutbox")
    .withIndex("by_webhookId", (q) => q.eq("webhookId", id))
    .unique();
  if (existing !== null) {
    return;
  }
  await ctx.db.insert("webhookOutbox", {
    webhookId: id,
    jobId: after.jobId,
    url: after.callbackUrl,
    event: after.status,
    createdAt: after.updatedAt,
    state: "pending",
    attempts: 0,
    nextAttemptAt: after.updatedAt,
  });
}
