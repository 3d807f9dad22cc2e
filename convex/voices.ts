// voices: the voice library (who a cloned voice belongs to, what made it, who consented), the
// erasure of a user's personal data, and retention, in Convex. The same records and rules as
// voiceq/store/sqlite_library.py; the Python side is convex_client/library.py.
//
// The voiceq service calls the internal functions with its deploy key. Frontends read their
// own voices through the two public queries, which check the caller's identity.

import { v } from "convex/values";
import type { Doc } from "./_generated/dataModel";
import { internalMutation, internalQuery, query } from "./_generated/server";
import type { QueryCtx } from "./_generated/server";
import { recordTransition } from "./model/counts";
import { sees, viewerOf } from "./model/identity";
import { TERMINAL } from "./model/transitions";
import type { Job } from "./model/transitions";
import { voiceObject } from "./model/voices";
import type { Voice } from "./model/voices";

const MAX_LIST = 1000;
const SWEEP_SCAN = 2000;

function toVoice(doc: Doc<"voices">): Voice {
  const { _id, _creationTime, ...voice } = doc;
  return voice;
}

function toJob(doc: Doc<"voiceCloneJobs">): Job {
  const { _id, _creationTime, ...job } = doc;
  return job;
}

function checkLimit(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > MAX_LIST) {
    throw new Error(`limit must be an integer from 0 to ${MAX_LIST}, not ${value}`);
  }
  return value;
}

async function loadVoice(ctx: QueryCtx, voiceId: string): Promise<Doc<"voices"> | null> {
  return await ctx.db
    .query("voices")
    .withIndex("by_voiceId", (q) => q.eq("voiceId", voiceId))
    .unique();
}

async function loadJob(ctx: QueryCtx, jobId: string): Promise<Doc<"voiceCloneJobs"> | null> {
  return await ctx.db
    .query("voiceCloneJobs")
    .withIndex("by_jobId", (q) => q.eq("jobId", jobId))
    .unique();
}

/** What a frontend may see of a voice: no storage keys, no owner. */
function publicVoice(voice: Voice) {
  return {
    voiceId: voice.voiceId,
    userId: voice.userId,
    name: voice.name,
    createdAt: voice.createdAt,
    updatedAt: voice.updatedAt,
    jobId: voice.jobId,
    models: voice.models,
    consent: voice.consent,
  };
}

// --- public queries (a signed-in user's own voices) -----------------------------------------

export const getMyVoices = query({
  args: { limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const limit = checkLimit(args.limit ?? 100);
    const viewer = await viewerOf(ctx);
    if (viewer === null || viewer.userId === "") {
      return [];
    }
    const docs = await ctx.db
      .query("voices")
      .withIndex("by_userId_owner", (q) =>
        viewer.owner === undefined ? q.eq("userId", viewer.userId) : q.eq("userId", viewer.userId).eq("owner", viewer.owner),
      )
      .collect();
    return docs
      .filter((d) => sees(viewer, d))
      .sort((a, b) => b.createdAt - a.createdAt)
      .slice(0, limit)
      .map((d) => publicVoice(toVoice(d)));
  },
});

export const getMyVoice = query({
  args: { voiceId: v.string() },
  handler: async (ctx, args) => {
    const doc = await loadVoice(ctx, args.voiceId);
    return doc === null || !sees(await viewerOf(ctx), doc) ? null : publicVoice(toVoice(doc));
  },
});

// --- the voice library (internal: deploy key only) ------------------------------------------

/** Insert a voice; a voice with the same id already there is returned unchanged. */
export const putVoice = internalMutation({
  args: { voice: voiceObject },
  handler: async (ctx, { voice }) => {
    const existing = await loadVoice(ctx, voice.voiceId);
    if (existing !== null) {
      return toVoice(existing);
    }
    await ctx.db.insert("voices", voice);
    return voice;
  },
});

export const getVoice = internalQuery({
  args: { voiceId: v.string() },
  handler: async (ctx, args) => {
    const doc = await loadVoice(ctx, args.voiceId);
    return doc === null ? null : toVoice(doc);
  },
});

export const voiceOfJob = internalQuery({
  args: { jobId: v.string() },
  handler: async (ctx, args) => {
    const doc = await ctx.db
      .query("voices")
      .withIndex("by_jobId", (q) => q.eq("jobId", args.jobId))
      .first();
    return doc === null ? null : toVoice(doc);
  },
});

/** A user's voices under one owner (`anyOwner`: under every owner), newest first. */
export const listVoices = internalQuery({
  args: {
    userId: v.string(),
    owner: v.optional(v.string()),
    anyOwner: v.optional(v.boolean()),
    limit: v.optional(v.number()),
  },
  handler: async (ctx, args) => {
    const limit = checkLimit(args.limit ?? 100);
    const docs = await ctx.db
      .query("voices")
      .withIndex("by_userId_owner", (q) =>
        args.anyOwner ? q.eq("userId", args.userId) : q.eq("userId", args.userId).eq("owner", args.owner),
      )
      .collect();
    return docs
      .sort((a, b) => b.createdAt - a.createdAt || (a.voiceId < b.voiceId ? -1 : 1))
      .slice(0, limit)
      .map(toVoice);
  },
});

export const renameVoice = internalMutation({
  args: { voiceId: v.string(), name: v.string(), now: v.number() },
  handler: async (ctx, args) => {
    const doc = await loadVoice(ctx, args.voiceId);
    if (doc === null) {
      return null; // the Python side raises VoiceNotFound
    }
    await ctx.db.patch(doc._id, { name: args.name, updatedAt: args.now });
    return { ...toVoice(doc), name: args.name, updatedAt: args.now };
  },
});

export const deleteVoice = internalMutation({
  args: { voiceId: v.string() },
  handler: async (ctx, args) => {
    const doc = await loadVoice(ctx, args.voiceId);
    if (doc === null) {
      return false;
    }
    await ctx.db.delete(doc._id);
    return true;
  },
});

// --- erasure ---------------------------------------------------------------------------------

/** Every job of a user under one owner, any status, oldest first. */
export const userJobs = internalQuery({
  args: { userId: v.string(), owner: v.optional(v.string()), limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const limit = checkLimit(args.limit ?? 500);
    const found: Job[] = [];
    for await (const doc of ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_userId_createdAt", (q) => q.eq("userId", args.userId))
      .order("asc")) {
      if (found.length >= limit) {
        break;
      }
      if (doc.owner === args.owner) {
        found.push(toJob(doc));
      }
    }
    return found;
  },
});

/** Replace the personal fields of these jobs (voiceq.voices.scrub_job); the job keeps its
 * status, timings and costs, and counts under `erasedUserId` from now on. */
export const scrubJobs = internalMutation({
  args: { jobIds: v.array(v.string()), erasedUserId: v.string(), now: v.number() },
  handler: async (ctx, args) => {
    let changed = 0;
    for (const jobId of args.jobIds) {
      const doc = await loadJob(ctx, jobId);
      if (doc === null || (doc.extra !== undefined && "erased_at" in doc.extra)) {
        continue;
      }
      const before = toJob(doc);
      const after: Job = {
        ...before,
        userId: args.erasedUserId,
        voiceName: "",
        sampleText: "",
        audioKey: "",
        audioFileUrl: undefined,
        resultUrl: undefined,
        voiceId: undefined,
        voiceKey: undefined,
        resultKey: undefined,
        idempotencyKey: undefined,
        callbackUrl: undefined,
        error: before.error === undefined ? undefined : "erased",
        extra: { erased_at: args.now },
        updatedAt: args.now,
      };
      await ctx.db.replace(doc._id, after);
      await recordTransition(ctx, before, after);
      changed += 1;
    }
    return changed;
  },
});

async function loadErasure(ctx: QueryCtx, owner: string, userId: string) {
  return await ctx.db
    .query("voiceErasures")
    .withIndex("by_owner_userId", (q) => q.eq("owner", owner).eq("userId", userId))
    .unique();
}

function toErasure(doc: Doc<"voiceErasures">) {
  const { _id, _creationTime, ...erasure } = doc;
  return erasure;
}

export const beginErasure = internalMutation({
  args: { owner: v.string(), userId: v.string(), now: v.number() },
  handler: async (ctx, args) => {
    const record = {
      owner: args.owner,
      userId: args.userId,
      status: "running" as const,
      startedAt: args.now,
      voices: 0,
      jobs: 0,
      blobs: 0,
    };
    const doc = await loadErasure(ctx, args.owner, args.userId);
    if (doc === null) {
      await ctx.db.insert("voiceErasures", record);
    } else {
      await ctx.db.replace(doc._id, record);
    }
    return record;
  },
});

export const finishErasure = internalMutation({
  args: { owner: v.string(), userId: v.string(), now: v.number(), voices: v.number(), jobs: v.number(), blobs: v.number() },
  handler: async (ctx, args) => {
    const doc = await loadErasure(ctx, args.owner, args.userId);
    const record = {
      owner: args.owner,
      userId: args.userId,
      status: "done" as const,
      startedAt: doc?.startedAt ?? args.now,
      finishedAt: args.now,
      voices: args.voices,
      jobs: args.jobs,
      blobs: args.blobs,
    };
    if (doc === null) {
      await ctx.db.insert("voiceErasures", record);
    } else {
      await ctx.db.replace(doc._id, record);
    }
    return record;
  },
});

export const unfinishedErasures = internalQuery({
  args: { limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const docs = await ctx.db
      .query("voiceErasures")
      .withIndex("by_status", (q) => q.eq("status", "running"))
      .take(checkLimit(args.limit ?? 100));
    return docs.map(toErasure);
  },
});

// --- retention -------------------------------------------------------------------------------

/** Finished jobs created in [since, before) that still hold a result or an upload and were
 * not swept yet. Reads at most SWEEP_SCAN jobs; `next` is where the following call starts
 * (null: the range is read), `firstActive` the oldest job read that has not finished. */
export const sweepableJobs = internalQuery({
  args: { before: v.number(), since: v.optional(v.number()), limit: v.optional(v.number()) },
  handler: async (ctx, args) => {
    const limit = checkLimit(args.limit ?? 200);
    const found: Job[] = [];
    let scanned = 0;
    let next: number | null = null;
    let firstActive: number | null = null;
    for await (const doc of ctx.db
      .query("voiceCloneJobs")
      .withIndex("by_createdAt", (q) => q.gte("createdAt", args.since ?? 0).lt("createdAt", args.before))
      .order("asc")) {
      if (found.length >= limit || scanned >= SWEEP_SCAN) {
        next = doc.createdAt;
        break;
      }
      scanned += 1;
      if (firstActive === null && !TERMINAL.has(doc.status)) {
        firstActive = doc.createdAt;
      }
      const swept = doc.extra !== undefined && "swept_at" in doc.extra;
      if (TERMINAL.has(doc.status) && !swept && (doc.resultKey !== undefined || doc.audioKey !== "")) {
        found.push(toJob(doc));
      }
    }
    return { jobs: found, next, firstActive };
  },
});

export const markSwept = internalMutation({
  args: { jobId: v.string(), keepUpload: v.boolean(), now: v.number() },
  handler: async (ctx, args) => {
    const doc = await loadJob(ctx, args.jobId);
    if (doc === null) {
      return null;
    }
    const next: Job = {
      ...toJob(doc),
      resultKey: undefined,
      resultUrl: undefined,
      audioKey: args.keepUpload ? doc.audioKey : "",
      extra: { ...(doc.extra ?? {}), swept_at: args.now },
    };
    await ctx.db.replace(doc._id, next);
    return next;
  },
});

