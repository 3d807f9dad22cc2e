// Running totals per (scope, status), written in the same transaction as the job they count,
// so statistics and backpressure checks read a handful of documents instead of the jobs table.

import type { MutationCtx, QueryCtx } from "../_generated/server";
import type { Job, JobStatus } from "./transitions";

export const ALL_SCOPE = "*";

export function userScope(userId: string): string {
  return `user:${userId}`;
}

export type Count = { count: number; processingTime: number; resultSeconds: number };

const ZERO: Count = { count: 0, processingTime: 0, resultSeconds: 0 };

async function adjust(
  ctx: MutationCtx,
  scope: string,
  status: JobStatus,
  delta: Count,
): Promise<void> {
  const row = await ctx.db
    .query("voiceCloneJobCounts")
    .withIndex("by_scope_status", (q) => q.eq("scope", scope).eq("status", status))
    .unique();
  if (row === null) {
    await ctx.db.insert("voiceCloneJobCounts", { scope, status, ...delta });
    return;
  }
  await ctx.db.patch(row._id, {
    count: row.count + delta.count,
    processingTime: row.processingTime + delta.processingTime,
    resultSeconds: row.resultSeconds + delta.resultSeconds,
  });
}

/** Account for a job moving from `before` (null for a new job) to `after`. */
export async function recordTransition(ctx: MutationCtx, before: Job | null, after: Job): Promise<void> {
  if (before !== null && before.status === after.status) {
    return;
  }
  // Completed is terminal, so its sums only ever grow.
  const entering: Count =
    after.status === "completed"
      ? { count: 1, processingTime: after.processingTime ?? 0, resultSeconds: after.resultSeconds ?? 0 }
      : { count: 1, processingTime: 0, resultSeconds: 0 };
  for (const scope of [ALL_SCOPE, userScope(after.userId)]) {
    if (before !== null) {
      await adjust(ctx, scope, before.status, { ...ZERO, count: -1 });
    }
    await adjust(ctx, scope, after.status, entering);
  }
}

export async function readCounts(ctx: QueryCtx, scope: string): Promise<Map<JobStatus, Count>> {
  const rows = await ctx.db
    .query("voiceCloneJobCounts")
    .withIndex("by_scope_status", (q) => q.eq("scope", scope))
    .collect();
  return new Map(rows.map((r) => [r.status, { count: r.count, processingTime: r.processingTime, resultSeconds: r.resultSeconds }]));
}
