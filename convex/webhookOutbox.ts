// webhookOutbox: the webhooks owed to jobs' callback URLs (see model/outbox.ts for how they are
// written). Internal functions only: the voiceq service (convex_client/outbox.py) claims due
// entries, delivers them and settles each attempt. A claimed entry is hidden for `leaseS`
// seconds, so one whose deliverer died comes back by itself; `now` is always an argument.

import { v } from "convex/values";
import type { Doc } from "./_generated/dataModel";
import { internalMutation, internalQuery } from "./_generated/server";
import { outboxState } from "./model/outboxTable";
import type { OutboxEntry } from "./model/outboxTable";

const MAX_DUE = 256;

function toEntry(doc: Doc<"webhookOutbox">): OutboxEntry {
  const { _id, _creationTime, ...entry } = doc;
  return entry;
}

/** Claim up to `limit` pending entries due by `now`, hiding each for `leaseS` seconds. */
export const dueWebhooks = internalMutation({
  args: { now: v.number(), limit: v.number(), leaseS: v.number() },
  handler: async (ctx, args) => {
    if (!Number.isInteger(args.limit) || args.limit < 0 || args.limit > MAX_DUE) {
      throw new Error(`limit must be an integer from 0 to ${MAX_DUE}, not ${args.limit}`);
    }
    const docs = await ctx.db
      .query("webhookOutbox")
      .withIndex("by_state_nextAttemptAt", (q) => q.eq("state", "pending").lte("nextAttemptAt", args.now))
      .order("asc")
      .take(args.limit);
    for (const doc of docs) {
      await ctx.db.patch(doc._id, { nextAttemptAt: args.now + args.leaseS });
    }
    return docs.map(toEntry);
  },
});

/** Record an attempt's outcome: the entry's new state, attempts, next due time and error. */
export const settleWebhook = internalMutation({
  args: {
    webhookId: v.string(),
    state: outboxState,
    attempts: v.number(),
    nextAttemptAt: v.number(),
    deliveredAt: v.optional(v.number()),
    lastError: v.optional(v.string()),
  },
  handler: async (ctx, args) => {
    const doc = await ctx.db
      .query("webhookOutbox")
      .withIndex("by_webhookId", (q) => q.eq("webhookId", args.webhookId))
      .unique();
    if (doc === null) {
      throw new Error(`no webhook with id '${args.webhookId}'`);
    }
    const { webhookId, ...change } = args;
    await ctx.db.replace(doc._id, { ...toEntry(doc), ...change, deliveredAt: args.deliveredAt, lastError: args.lastError });
    return null;
  },
});

export const getWebhook = internalQuery({
  args: { webhookId: v.string() },
  handler: async (ctx, args) => {
    const doc = await ctx.db
      .query("webhookOutbox")
      .withIndex("by_webhookId", (q) => q.eq("webhookId", args.webhookId))
      .unique();
    return doc === null ? null : toEntry(doc);
  },
});

export const listWebhooks = internalQuery({
  args: { jobId: v.string() },
  handler: async (ctx, args) => {
    const docs = await ctx.db
      .query("webhookOutbox")
      .withIndex("by_jobId", (q) => q.eq("jobId", args.jobId))
      .take(100);
    return docs.map(toEntry).sort((a, b) => a.createdAt - b.createdAt);
  },
});
