// keyQuotas: what one API key has in the queue and its own totals, for per-key quotas and
// the /stats route (a key sees its own users only). Internal: the voiceq service's deploy key.
// The totals are the running counts of model/counts.ts under the key's scopes.

import { v } from "convex/values";
import { internalQuery } from "./_generated/server";
import { ownerScope, readCounts } from "./model/counts";
import type { JobStatus } from "./model/transitions";

const STATUSES: JobStatus[] = ["pending", "processing", "completed", "failed", "cancelled"];
const MAX_COUNT = 100_000;

/** Jobs of a key waiting or running (no `since`), or submitted since `since`, up to `limit`. */
export const countKeyJobs = internalQuery({
  args: { owner: v.string(), since: v.optional(v.number()), limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    if (args.since === undefined) {
      const counts = await readCounts(ctx, ownerScope(args.owner));
      return (counts.get("pending")?.count ?? 0) + (counts.get("processing")?.count ?? 0);
    }
    const limit = Math.min(args.limit ?? MAX_COUNT, MAX_COUNT);
    const recent = await ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_owner_createdAt", (q) => q.eq("owner", args.owner).gte("createdAt", args.since!))
      .take(limit);
    return recent.length;
  },
});

/** A key's totals, or one of its users': the shape of voiceCloneJobs:stats. */
export const keyStats = internalQuery({
  args: { owner: v.string(), userId: v.optional(v.string()) },
  handler: async (ctx, args) => {
    const counts = await readCounts(ctx, ownerScope(args.owner, args.userId));
    const byStatus = Object.fromEntries(STATUSES.map((s) => [s, counts.get(s)?.count ?? 0])) as Record<
      JobStatus,
      number
    >;
    const completed = counts.get("completed");
    let oldestPending: number | null = null;
    if (args.userId !== undefined) {
      for await (const doc of ctx.db
        .query("voiceCloneJobs")
        .withIndex("by_userId_status", (q) => q.eq("userId", args.userId!).eq("status", "pending"))
        .order("asc")) {
        if (doc.owner === args.owner) {
          oldestPending = doc.createdAt;
          break;
        }
      }
    }
    return {
      userId: args.userId ?? null,
      total: STATUSES.reduce((sum, s) => sum + byStatus[s], 0),
      byStatus,
      ...byStatus,
      avgProcessingTime: completed && completed.count > 0 ? completed.processingTime / completed.count : null,
      totalProcessingTime: completed?.processingTime ?? 0,
      audioSecondsGenerated: completed?.resultSeconds ?? 0,
      totalGpuSeconds: (completed?.gpuSeconds ?? 0) + (counts.get("failed")?.gpuSeconds ?? 0),
      oldestPendingCreatedAt: oldestPending,
    };
  },
});
