// Running totals per (scope, status), written in the same transaction as the job they count,
// so statistics and backpressure checks read a handful of documents instead of the jobs table.

import type { MutationCtx, QueryCtx } from "../_generated/server";
import type { Job, JobStatus } from "./transitions";

export const ALL_SCOPE = "*";

export function userScope(userId: string): string {
  return `user:${userId}`;
}

/** Per-model totals (stats and cost by model, and each model's queue for its scaling). */
export function modelScope(model: string | undefined): string {
  return `model:${model ?? "chatterbox"}`;
}

/** One API key's jobs (quotas and the key's own /stats), and one user's under that key. */
export function ownerScope(owner: string, userId?: string): string {
  return userId === undefined ? `owner:${owner}` : `owner:${owner}|user:${userId}`;
}

function scopesOf(job: Job): string[] {
  const scopes = [ALL_SCOPE, userScope(job.userId)];
  if (job.owner !== undefined) {
    scopes.push(ownerScope(job.owner), ownerScope(job.owner, job.userId));
  }
  scopes.push(modelScope(job.model));
  return scopes;
}

export type Count = { count: number; processingTime: number; resultSeconds: number; gpuSeconds: number };

/** What one job adds to the totals of the status it is in. */
function contribution(job: Job): Count {
  const completed = job.status === "completed";
  // A failed attempt held the GPU too: its share counts wherever one was recorded.
  const spent = completed || job.status === "failed";
  return {
    count: 1,
    processingTime: completed ? (job.processingTime ?? 0) : 0,
    resultSeconds: completed ? (job.resultSeconds ?? 0) : 0,
    gpuSeconds: spent ? (job.gpuSeconds ?? 0) : 0,
  };
}

function negate(c: Count): Count {
  return {
    count: -c.count,
    processingTime: -c.processingTime,
    resultSeconds: -c.resultSeconds,
    gpuSeconds: -c.gpuSeconds,
  };
}

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
    gpuSeconds: (row.gpuSeconds ?? 0) + delta.gpuSeconds,
  });
}

/** Account for a job moving from `before` (null for a new job) to `after`: the status it leaves
 * loses what the job added to it, the status it enters gains the job's new contribution. */
export async function recordTransition(ctx: MutationCtx, before: Job | null, after: Job): Promise<void> {
  // A job changes scope only when its user is erased (it then counts under the pseudonym).
  if (before !== null && before.status === after.status && before.userId === after.userId) {
    return;
  }
  // Completed is terminal, so its sums only ever grow; a failed job can be requeued and leaves
  // the failed totals again.
  const entering = contribution(after);
  if (before !== null) {
    for (const scope of scopesOf(before)) {
      await adjust(ctx, scope, before.status, negate(contribution(before)));
    }
  }
  for (const scope of scopesOf(after)) {
    await adjust(ctx, scope, after.status, entering);
  }
}

export async function readCounts(ctx: QueryCtx, scope: string): Promise<Map<JobStatus, Count>> {
  const rows = await ctx.db
    .query("voiceCloneJobCounts")
    .withIndex("by_scope_status", (q) => q.eq("scope", scope))
    .collect();
  return new Map(
    rows.map((r) => [
      r.status,
      {
        count: r.count,
        processingTime: r.processingTime,
        resultSeconds: r.resultSeconds,
        gpuSeconds: r.gpuSeconds ?? 0,
      },
    ]),
  );
}
