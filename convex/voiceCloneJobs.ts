// voiceCloneJobs: the job queue's records in Convex.
//
// Public queries (the seed's, for frontends that watch jobs in real time) return a public
// view of each job: no lease ids, owners, idempotency keys or callback URLs. Everything that
// changes a job is an internal function: only the voiceq service, holding the deploy key,
// calls them (through convex_client.store.ConvexJobStore). Every mutation applies exactly one
// transition of voiceq/jobs.py (see model/transitions.ts) inside Convex's serializable
// transaction, so two claimers can never receive the same job.
//
// `now` is always an argument: the service's clock decides, as with the SQLite store, and
// tests control time.

import { v } from "convex/values";
import type { Doc } from "./_generated/dataModel";
import { internalMutation, internalQuery, query } from "./_generated/server";
import type { MutationCtx, QueryCtx } from "./_generated/server";
import { ALL_SCOPE, modelScope, readCounts, recordTransition, userScope } from "./model/counts";
import { enqueueWebhook } from "./model/outbox";
import { sees, viewerOf } from "./model/identity";
import * as t from "./model/transitions";
import { jobObject, jobResult, retryPolicy } from "./model/transitions";
import { jobStatus, workerInfo } from "./schema";
import type { Job, JobStatus } from "./model/transitions";

// Bumped when the functions' arguments or results change; the Python store checks it on ping
// so an outdated deployment is reported as "run npx convex deploy" rather than odd failures.
const FUNCTIONS_VERSION = 5;

// voiceq/models.py's names; a job without a model is an English one.
const MODELS = ["chatterbox", "chatterbox-turbo", "chatterbox-multilingual"];

function modelOf(doc: { model?: string }): string {
  return doc.model ?? "chatterbox";
}

const STATUSES: JobStatus[] = ["pending", "processing", "completed", "failed", "cancelled"];
const MAX_LIST = 1000;
const MAX_CLAIM = 256;
const EXPIRE_BATCH = 256;

// --- documents --------------------------------------------------------------------------

function toJob(doc: Doc<"voiceCloneJobs">): Job {
  const { _id, _creationTime, ...job } = doc;
  return job;
}

async function loadDoc(ctx: QueryCtx, jobId: string): Promise<Doc<"voiceCloneJobs"> | null> {
  return await ctx.db
    .query("voiceCloneJobs")
    .withIndex("by_jobId", (q) => q.eq("jobId", jobId))
    .unique();
}

async function write(ctx: MutationCtx, doc: Doc<"voiceCloneJobs">, next: Job): Promise<Job> {
  await ctx.db.replace(doc._id, next);
  await recordTransition(ctx, toJob(doc), next);
  await enqueueWebhook(ctx, toJob(doc), next);
  return next;
}

/** Load a job, apply one transition, write it back: one atomic step. */
async function update(ctx: MutationCtx, jobId: string, change: (job: Job) => Job): Promise<Job> {
  const doc = await loadDoc(ctx, jobId);
  if (doc === null) {
    throw t.notFound(jobId);
  }
  return await write(ctx, doc, change(toJob(doc)));
}

function newLeaseId(): string {
  return crypto.randomUUID().replace(/-/g, "");
}

function checkLimit(name: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new Error(`${name} must be an integer from 0 to ${max}, not ${value}`);
  }
  return value;
}

/** What anyone may see about a job: the seed's fields and its progress. */
function publicView(job: Job) {
  return {
    jobId: job.jobId,
    userId: job.userId,
    status: job.status,
    voiceName: job.voiceName,
    audioFileUrl: job.audioFileUrl,
    voiceId: job.voiceId,
    resultUrl: job.resultUrl,
    workerInfo:
      job.workerInfo === undefined
        ? undefined
        : {
            environment: job.workerInfo.environment,
            gpuType: job.workerInfo.gpuType,
            dropletId: job.workerInfo.dropletId,
          },
    error: job.error,
    createdAt: job.createdAt,
    startedAt: job.startedAt,
    completedAt: job.completedAt,
    updatedAt: job.updatedAt,
    processingTime: job.processingTime,
    priority: job.priority,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
  };
}

// --- the seed's public queries ------------------------------------------------------------
//
// Private views: each checks the caller's identity (model/identity.ts). A signed-in user sees
// only their own jobs; an anonymous caller sees nothing; the queue and global totals are for
// operators (an admin identity) only. The voiceq service reads through the internal functions
// below with its deploy key.

/** Pending jobs in the order they were submitted: an operator's view of the queue. */
export const getPendingJobs = query({
  args: { limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const limit = checkLimit("limit", args.limit ?? 10, MAX_LIST);
    const viewer = await viewerOf(ctx);
    if (viewer === null || !viewer.admin) {
      return [];
    }
    const docs = await ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_status_createdAt", (q) => q.eq("status", "pending"))
      .order("asc")
      .take(limit);
    return docs.map((d) => publicView(toJob(d)));
  },
});

/** The caller's jobs, newest first (`userId` may be left out; an operator may name anyone). */
export const getUserJobs = query({
  args: { userId: v.optional(v.string()), limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const limit = checkLimit("limit", args.limit ?? 50, MAX_LIST);
    const viewer = await viewerOf(ctx);
    const userId = args.userId ?? viewer?.userId;
    if (viewer === null || userId === undefined || (!viewer.admin && userId !== viewer.userId)) {
      return [];
    }
    const docs = await ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_userId_createdAt", (q) => q.eq("userId", userId))
      .order("desc")
      .take(viewer.admin || viewer.owner === undefined ? limit : MAX_LIST);
    return docs
      .filter((d) => sees(viewer, d))
      .slice(0, limit)
      .map((d) => publicView(toJob(d)));
  },
});

/** One of the caller's jobs, for a frontend that subscribes to it; null for anyone else's. */
export const getJobStatus = query({
  args: { jobId: v.string() },
  handler: async (ctx, args) => {
    const doc = await loadDoc(ctx, args.jobId);
    return doc === null || !sees(await viewerOf(ctx), doc) ? null : publicView(toJob(doc));
  },
});

/** The caller's totals (an operator's: everyone's, or one user's); null without an identity. */
export const getStats = query({
  args: { userId: v.optional(v.string()) },
  handler: async (ctx, args) => {
    const viewer = await viewerOf(ctx);
    if (viewer === null) {
      return null;
    }
    if (viewer.admin) {
      return await statsFor(ctx, args.userId);
    }
    if (args.userId !== undefined && args.userId !== viewer.userId) {
      return null;
    }
    return await statsFor(ctx, viewer.userId);
  },
});

/** Totals by status, processing time and GPU time, for everyone or for one user. */
async function statsFor(ctx: QueryCtx, userId: string | undefined) {
  const counts = await readCounts(ctx, userId === undefined ? ALL_SCOPE : userScope(userId));
  const byStatus = Object.fromEntries(STATUSES.map((s) => [s, counts.get(s)?.count ?? 0])) as Record<
    JobStatus,
    number
  >;
  const completed = counts.get("completed");
  // GPU time spent: each job's share of its engine pass, so a batch counts its pass once.
  const totalGpuSeconds = (completed?.gpuSeconds ?? 0) + (counts.get("failed")?.gpuSeconds ?? 0);
  const oldestPending =
    userId === undefined
      ? await ctx.db
          .query("voiceCloneJobs")
          .withIndex("by_status_createdAt", (q) => q.eq("status", "pending"))
          .order("asc")
          .first()
      : await ctx.db
          .query("voiceCloneJobs")
          .withIndex("by_userId_status", (q) => q.eq("userId", userId).eq("status", "pending"))
          .order("asc")
          .first();
  return {
    userId: userId ?? null,
    total: STATUSES.reduce((sum, s) => sum + byStatus[s], 0),
    byStatus,
    ...byStatus,
    avgProcessingTime: completed && completed.count > 0 ? completed.processingTime / completed.count : null,
    totalProcessingTime: completed?.processingTime ?? 0,
    audioSecondsGenerated: completed?.resultSeconds ?? 0,
    totalGpuSeconds,
    oldestPendingCreatedAt: oldestPending?.createdAt ?? null,
    // Over all users only: per-model totals are kept for the whole queue.
    byModel: userId === undefined ? await modelTotals(ctx) : {},
  };
}

async function modelTotals(ctx: QueryCtx) {
  const out: Record<string, Record<string, number | null>> = {};
  for (const model of MODELS) {
    const counts = await readCounts(ctx, modelScope(model));
    if (counts.size === 0) {
      continue;
    }
    const oldest = await ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_status_createdAt", (q) => q.eq("status", "pending"))
      .filter((q) => (model === "chatterbox"
        ? q.or(q.eq(q.field("model"), model), q.eq(q.field("model"), undefined))
        : q.eq(q.field("model"), model)))
      .order("asc")
      .first();
    out[model] = {
      ...Object.fromEntries(STATUSES.map((s) => [s, counts.get(s)?.count ?? 0])),
      audio_seconds: counts.get("completed")?.resultSeconds ?? 0,
      gpu_seconds: (counts.get("completed")?.gpuSeconds ?? 0) + (counts.get("failed")?.gpuSeconds ?? 0),
      oldest_pending_created_at: oldest?.createdAt ?? null,
    };
  }
  return out;
}

// --- the job store's functions (internal: deploy key only) ---------------------------------

/** getStats for the voiceq service (deploy key): everyone's totals, or one user's. */
export const stats = internalQuery({
  args: { userId: v.optional(v.string()) },
  handler: async (ctx, args) => await statsFor(ctx, args.userId),
});

export const ping = internalQuery({
  args: {},
  handler: async (ctx) => {
    await ctx.db.query("voiceCloneJobs").first();
    return { ok: true, functionsVersion: FUNCTIONS_VERSION };
  },
});

/** Insert a job. A repeated call for the same jobId, or a job with the same
 * (owner, userId, idempotencyKey) as an existing one, returns the existing job instead. */
export const createJob = internalMutation({
  args: { job: jobObject },
  handler: async (ctx, { job }) => {
    const sameId = await loadDoc(ctx, job.jobId);
    if (sameId !== null) {
      return toJob(sameId);
    }
    if (job.idempotencyKey !== undefined) {
      const replay = await ctx.db
        .query("voiceCloneJobs")
        .withIndex("by_idempotency", (q) =>
          q.eq("owner", job.owner).eq("userId", job.userId).eq("idempotencyKey", job.idempotencyKey),
        )
        .first();
      if (replay !== null) {
        return toJob(replay);
      }
    }
    await ctx.db.insert("voiceCloneJobs", job);
    await recordTransition(ctx, null, job);
    return job;
  },
});

export const getJob = internalQuery({
  args: { jobId: v.string() },
  handler: async (ctx, args) => {
    const doc = await loadDoc(ctx, args.jobId);
    return doc === null ? null : toJob(doc);
  },
});

/** How many jobs a claim of this job's model at `now` takes before this pending job (0: it is
 * next), or null when it is not pending: the claimable jobs of its model, other than itself,
 * ahead of it in claimJobs' order (t.claimOrder) at `now`; the store contract's rule.
 *
 * A claimable job is never younger than `now`, so one of priority level p can be ahead only if
 * created by `createdAt + (p - priority) * agingS`: each level is read through the index up to
 * that bound (a second of slack for rounding; claimOrder's comparison decides). */
export const queuePosition = internalQuery({
  args: { jobId: v.string(), now: v.number(), agingS: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const agingS = args.agingS ?? t.DEFAULT_AGING_S;
    const doc = await loadDoc(ctx, args.jobId);
    if (doc === null || doc.status !== "pending") {
      return null;
    }
    const model = modelOf(doc);
    const me = { ...doc, nextAttemptAt: -Infinity }; // placed as if claimable, as the rule says
    let ahead = 0;
    for await (const level of pendingLevels(ctx)) {
      const latest = doc.createdAt + (level - doc.priority) * agingS + 1;
      for await (const other of ctx.db
        .query("voiceCloneJobs")
        .withIndex("by_status_priority", (q) =>
          q.eq("status", "pending").eq("priority", level).lte("createdAt", latest),
        )) {
        if (other.jobId === doc.jobId || modelOf(other) !== model || !t.isClaimable(other, args.now)) {
          continue;
        }
        if (t.claimOrder([other, me], args.now, agingS)[0] === other) {
          ahead += 1;
        }
      }
    }
    return ahead;
  },
});

/** The priority levels that have pending jobs, highest first: one index read per level (at
 * most 21), never a scan of the queue. */
async function* pendingLevels(ctx: QueryCtx): AsyncGenerator<number> {
  let below: number | undefined = undefined;
  for (;;) {
    const bound: number | undefined = below;
    const top: Doc<"voiceCloneJobs"> | null = await ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_status_priority", (q) =>
        bound === undefined ? q.eq("status", "pending") : q.eq("status", "pending").lt("priority", bound),
      )
      .order("desc")
      .first();
    if (top === null) {
      return;
    }
    yield top.priority;
    below = top.priority;
  }
}

/** The `limit` best claimable jobs in claim order (priority with aging, then age, then id).
 *
 * Within one priority level claim order is plain age order, so the best `limit` overall are
 * among the first `limit` claimable jobs of each level: walk the levels (at most 21) through
 * the index, oldest first, instead of reading the whole queue. */
async function bestClaimable(
  ctx: QueryCtx,
  limit: number,
  now: number,
  agingS: number,
  model?: string,
): Promise<Doc<"voiceCloneJobs">[]> {
  const candidates: Doc<"voiceCloneJobs">[] = [];
  for await (const level of pendingLevels(ctx)) {
    let taken = 0;
    for await (const doc of ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_status_priority", (q) => q.eq("status", "pending").eq("priority", level))
      .order("asc")) {
      if (taken >= limit) {
        break;
      }
      if (t.isClaimable(doc, now) && (model === undefined || modelOf(doc) === model)) {
        candidates.push(doc);
        taken += 1;
      }
    }
  }
  return t.claimOrder(candidates, now, agingS).slice(0, limit);
}

/** Atomically move up to `limit` claimable jobs (or those of `jobIds` that are claimable) to
 * processing, each under a fresh lease. */
export const claimJobs = internalMutation({
  args: {
    worker: workerInfo,
    limit: v.number(),
    leaseS: v.number(),
    now: v.number(),
    agingS: v.optional(v.number()),
    jobIds: v.optional(v.array(v.string())),
    // Each model's inference deployment claims its own model's jobs only.
    model: v.optional(v.string()),
  },
  handler: async (ctx, args) => {
    const limit = checkLimit("limit", args.limit, MAX_CLAIM);
    const agingS = args.agingS ?? t.DEFAULT_AGING_S;
    if (!(agingS > 0)) {
      throw new Error(`agingS must be positive, not ${agingS}`);
    }
    if (limit === 0 || (args.jobIds !== undefined && args.jobIds.length === 0)) {
      return [];
    }
    let chosen: Doc<"voiceCloneJobs">[];
    if (args.jobIds !== undefined) {
      const docs: Doc<"voiceCloneJobs">[] = [];
      for (const jobId of new Set<string>(args.jobIds)) {
        const doc = await loadDoc(ctx, jobId);
        if (doc !== null && doc.status === "pending" && (args.model === undefined || modelOf(doc) === args.model)) {
          docs.push(doc);
        }
      }
      chosen = t.claimOrder(docs, args.now, agingS).slice(0, limit);
    } else {
      chosen = await bestClaimable(ctx, limit, args.now, agingS, args.model);
    }
    const claimed: Job[] = [];
    for (const doc of chosen) {
      const next = t.claim(toJob(doc), {
        leaseId: newLeaseId(),
        leaseS: args.leaseS,
        worker: args.worker,
        now: args.now,
      });
      claimed.push(await write(ctx, doc, next));
    }
    return claimed;
  },
});

export const heartbeatJob = internalMutation({
  args: { jobId: v.string(), leaseId: v.string(), leaseS: v.number(), now: v.number() },
  handler: async (ctx, args) => await update(ctx, args.jobId, (job) => t.heartbeat(job, args)),
});

export const completeJob = internalMutation({
  args: { jobId: v.string(), leaseId: v.string(), result: jobResult, now: v.number() },
  handler: async (ctx, args) => await update(ctx, args.jobId, (job) => t.complete(job, args)),
});

export const failJob = internalMutation({
  args: {
    jobId: v.string(),
    leaseId: v.string(),
    error: v.string(),
    transient: v.boolean(),
    now: v.number(),
    deferS: v.optional(v.number()),
    retry: v.optional(retryPolicy),
  },
  handler: async (ctx, args) =>
    await update(ctx, args.jobId, (job) =>
      t.fail(job, {
        leaseId: args.leaseId,
        error: args.error,
        transient: args.transient,
        now: args.now,
        deferS: args.deferS,
        retry: args.retry ?? t.DEFAULT_RETRY,
      }),
    ),
});

/** Return up to `limit` jobs whose lease ran out to the queue (or fail those whose attempts
 * are used up). Callers repeat while a full batch comes back. */
export const expireLeases = internalMutation({
  args: { now: v.number(), retry: v.optional(retryPolicy), limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const limit = checkLimit("limit", args.limit ?? EXPIRE_BATCH, MAX_LIST);
    const docs = await ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_status_leaseExpiresAt", (q) => q.eq("status", "processing").lt("leaseExpiresAt", args.now))
      .take(limit);
    const expired: Job[] = [];
    for (const doc of docs) {
      const job = toJob(doc);
      if (t.leaseExpired(job, args.now)) {
        expired.push(await write(ctx, doc, t.expire(job, { retry: args.retry ?? t.DEFAULT_RETRY, now: args.now })));
      }
    }
    return expired;
  },
});

export const cancelJob = internalMutation({
  args: { jobId: v.string(), now: v.number() },
  handler: async (ctx, args) => await update(ctx, args.jobId, (job) => t.cancel(job, args)),
});

export const requeueJob = internalMutation({
  args: { jobId: v.string(), now: v.number() },
  handler: async (ctx, args) => await update(ctx, args.jobId, (job) => t.requeue(job, args)),
});

/** Pending jobs oldest first (queue order); any other listing newest first. */
export const listJobs = internalQuery({
  args: { status: v.optional(jobStatus), userId: v.optional(v.string()), limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const limit = checkLimit("limit", args.limit ?? 50, MAX_LIST);
    const order = args.status === "pending" ? "asc" : "desc";
    const { status, userId } = args;
    const table = ctx.db.query("voiceCloneJobs");
    const indexed =
      status !== undefined && userId !== undefined
        ? table.withIndex("by_userId_status", (q) => q.eq("userId", userId).eq("status", status))
        : status !== undefined
          ? table.withIndex("by_status_createdAt", (q) => q.eq("status", status))
          : userId !== undefined
            ? table.withIndex("by_userId_createdAt", (q) => q.eq("userId", userId))
            : table.withIndex("by_createdAt");
    const docs = await indexed.order(order).take(limit);
    return docs.map(toJob);
  },
});

/** Jobs pending or processing (backpressure), from the running totals. */
export const countActive = internalQuery({
  args: { userId: v.optional(v.string()) },
  handler: async (ctx, args) => {
    const counts = await readCounts(ctx, args.userId === undefined ? ALL_SCOPE : userScope(args.userId));
    return (counts.get("pending")?.count ?? 0) + (counts.get("processing")?.count ?? 0);
  },
});
