/// <reference types="vite/client" />
import { convexTest } from "convex-test";
import { ConvexError } from "convex/values";
import { describe, expect, test } from "vitest";
import { api, internal } from "./_generated/api";
import type { Job } from "./model/transitions";
import schema from "./schema";
import * as functions from "./voiceCloneJobs";

const modules = import.meta.glob("./**/*.ts");
const T0 = 1_700_000_000.25;
const WORKER = { environment: "production", gpuType: "rocm", workerId: "w1", dropletId: "123" };
const RETRY = { baseDelayS: 2, maxDelayS: 300 };
// An operator's identity (model/identity.ts): sees every job through the public queries.
const ADMIN = { subject: "ops", voiceq_admin: true };

let counter = 0;
function jobId(): string {
  counter += 1;
  return `00000000-0000-4000-8000-${counter.toString(16).padStart(12, "0")}`;
}

function newJob(overrides: Partial<Job> = {}): Job {
  const createdAt = overrides.createdAt ?? T0;
  return {
    jobId: jobId(),
    userId: "user_1",
    status: "pending",
    voiceName: "My Voice",
    sampleText: "Hello there",
    createdAt,
    updatedAt: createdAt,
    audioKey: "uploads/x.wav",
    audioSeconds: 4.5,
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    nextAttemptAt: createdAt,
    ...overrides,
  };
}

function setup() {
  return convexTest(schema, modules);
}
type Backend = ReturnType<typeof setup>;

async function create(t: Backend, overrides: Partial<Job> = {}): Promise<Job> {
  return await t.mutation(internal.voiceCloneJobs.createJob, { job: newJob(overrides) });
}

async function claim(t: Backend, now: number, limit = 1, jobIds?: string[]): Promise<Job[]> {
  return await t.mutation(internal.voiceCloneJobs.claimJobs, {
    worker: WORKER,
    limit,
    leaseS: 30,
    now,
    ...(jobIds === undefined ? {} : { jobIds }),
  });
}

async function errorData(promise: Promise<unknown>): Promise<{ kind: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(ConvexError);
    return (err as ConvexError<{ kind: string; message: string }>).data;
  }
  throw new Error("expected the call to fail");
}

/** Statistics recomputed from every document: what the running totals must always equal. */
async function recount(t: Backend, userId?: string) {
  return await t.run(async (ctx) => {
    const all = await ctx.db.query("voiceCloneJobs").collect();
    const docs = all.filter((d) => userId === undefined || d.userId === userId);
    const byStatus: Record<string, number> = { pending: 0, processing: 0, completed: 0, failed: 0, cancelled: 0 };
    for (const d of docs) byStatus[d.status] += 1;
    const done = docs.filter((d) => d.status === "completed");
    const time = done.reduce((s, d) => s + (d.processingTime ?? 0), 0);
    const spent = docs.filter((d) => d.status === "completed" || d.status === "failed");
    return {
      total: docs.length,
      byStatus,
      avgProcessingTime: done.length ? time / done.length : null,
      audioSecondsGenerated: done.reduce((s, d) => s + (d.resultSeconds ?? 0), 0),
      totalGpuSeconds: spent.reduce((s, d) => s + (d.gpuSeconds ?? 0), 0),
    };
  });
}

describe("visibility", () => {
  test("the seed's queries are public and every job-changing function is internal", () => {
    for (const name of ["getPendingJobs", "getUserJobs", "getStats", "getJobStatus"] as const) {
      expect((functions[name] as unknown as { isPublic?: boolean }).isPublic).toBe(true);
    }
    for (const name of [
      "createJob",
      "getJob",
      "claimJobs",
      "heartbeatJob",
      "completeJob",
      "failJob",
      "expireLeases",
      "cancelJob",
      "requeueJob",
      "listJobs",
      "countActive",
      "queuePosition",
      "ping",
    ] as const) {
      expect((functions[name] as unknown as { isInternal?: boolean }).isInternal).toBe(true);
    }
  });

  test("public views leave out leases, owners and callback URLs", async () => {
    const t = setup();
    const job = await create(t, { owner: "acme", idempotencyKey: "k1", callbackUrl: "https://x.test/cb" });
    const [claimed] = await claim(t, T0 + 1);
    expect(claimed.leaseId).toMatch(/^[0-9a-f]{32}$/);
    const view = await t.withIdentity(ADMIN).query(api.voiceCloneJobs.getJobStatus, { jobId: job.jobId });
    expect(view).toMatchObject({ jobId: job.jobId, status: "processing", voiceName: "My Voice", attempts: 1 });
    expect(view?.workerInfo).toEqual({ environment: "production", gpuType: "rocm", dropletId: "123" });
    for (const hidden of ["leaseId", "owner", "idempotencyKey", "callbackUrl", "sampleText", "extra"]) {
      expect(view).not.toHaveProperty(hidden);
    }
    expect(await t.withIdentity(ADMIN).query(api.voiceCloneJobs.getJobStatus, { jobId: "nope" })).toBeNull();
  });

  test("ping reports the functions' version", async () => {
    const t = setup();
    expect(await t.query(internal.voiceCloneJobs.ping, {})).toEqual({ ok: true, functionsVersion: 5 });
  });
});

describe("create", () => {
  test("stores every field and reads it back", async () => {
    const t = setup();
    const job = newJob({ extra: { params: { exaggeration: 0.7 } }, owner: "acme", callbackUrl: "https://x.test/cb" });
    expect(await t.mutation(internal.voiceCloneJobs.createJob, { job })).toEqual(job);
    expect(await t.query(internal.voiceCloneJobs.getJob, { jobId: job.jobId })).toEqual(job);
    expect(await t.query(internal.voiceCloneJobs.getJob, { jobId: "missing" })).toBeNull();
  });

  test("is idempotent per (owner, userId, idempotencyKey) and per jobId", async () => {
    const t = setup();
    const first = await create(t, { idempotencyKey: "k1" });
    const replay = await create(t, { idempotencyKey: "k1", voiceName: "Other" });
    expect(replay).toEqual(first);
    const otherOwner = await create(t, { idempotencyKey: "k1", owner: "acme" });
    const otherUser = await create(t, { idempotencyKey: "k1", userId: "user_2" });
    expect(new Set([first.jobId, otherOwner.jobId, otherUser.jobId]).size).toBe(3);
    // A retried request for the same job id (its reply was lost) returns the stored job.
    const again = await t.mutation(internal.voiceCloneJobs.createJob, { job: { ...first, voiceName: "Changed" } });
    expect(again).toEqual(first);
    expect((await t.query(internal.voiceCloneJobs.stats, {})).total).toBe(3);
  });

  test("rejects documents that do not match the schema", async () => {
    const t = setup();
    const bad = { ...newJob(), status: "queued" } as unknown as Job;
    await expect(t.mutation(internal.voiceCloneJobs.createJob, { job: bad })).rejects.toThrow(/Validator error.*queued/);
  });
});

describe("claim", () => {
  test("takes higher priority first, with waiting worth one level per 60 s", async () => {
    const t = setup();
    const old = await create(t, { createdAt: T0, priority: 0 });
    const urgent = await create(t, { createdAt: T0 + 100, priority: 1 });
    const newer = await create(t, { createdAt: T0 + 110, priority: 0 });
    // At T0+120: old scores 2.0, urgent 1 + 20/60, newer 10/60.
    const order = (await claim(t, T0 + 120, 3)).map((j) => j.jobId);
    expect(order).toEqual([old.jobId, urgent.jobId, newer.jobId]);
  });

  test("breaks ties by creation time, then job id, and skips jobs waiting out a backoff", async () => {
    const t = setup();
    const b = await create(t, { jobId: "00000000-0000-4000-8000-00000000000b" });
    const a = await create(t, { jobId: "00000000-0000-4000-8000-00000000000a" });
    const earlier = await create(t, { createdAt: T0 - 1 });
    await create(t, { nextAttemptAt: T0 + 50, createdAt: T0 - 100 });
    const got = await claim(t, T0, 10);
    expect(got.map((j) => j.jobId)).toEqual([earlier.jobId, a.jobId, b.jobId]);
    expect(got.every((j) => j.status === "processing" && j.attempts === 1 && j.leaseExpiresAt === T0 + 30)).toBe(true);
    expect(new Set(got.map((j) => j.leaseId)).size).toBe(3);
    expect(await claim(t, T0, 10)).toEqual([]);
    expect(await claim(t, T0 + 50, 10)).toHaveLength(1);
  });

  test("reaches low priorities past a deep high-priority level", async () => {
    const t = setup();
    for (let i = 0; i < 5; i++) await create(t, { priority: 10, createdAt: T0 + i });
    const starving = await create(t, { priority: -10, createdAt: T0 - 3600 });
    // Waiting an hour is worth 60 levels: the low-priority job goes first.
    const got = await claim(t, T0 + 10, 2);
    expect(got[0].jobId).toBe(starving.jobId);
    expect(got[1].priority).toBe(10);
  });

  test("by job ids takes only those that are claimable, in claim order", async () => {
    const t = setup();
    const a = await create(t, { createdAt: T0 + 1 });
    const b = await create(t, { createdAt: T0 });
    const other = await create(t);
    const later = await create(t, { nextAttemptAt: T0 + 99 });
    const got = await claim(t, T0 + 2, 10, [a.jobId, b.jobId, later.jobId, "missing", a.jobId]);
    expect(got.map((j) => j.jobId)).toEqual([b.jobId, a.jobId]);
    expect(await claim(t, T0 + 2, 10, [])).toEqual([]);
    expect((await claim(t, T0 + 2, 1, [other.jobId]))[0].jobId).toBe(other.jobId);
    expect(await claim(t, T0 + 2, 0)).toEqual([]);
  });

  test("concurrent claims never hand out the same job", async () => {
    const t = setup();
    for (let i = 0; i < 30; i++) await create(t, { createdAt: T0 + i });
    const batches = await Promise.all(Array.from({ length: 8 }, () => claim(t, T0 + 100, 5)));
    const ids = batches.flat().map((j) => j.jobId);
    expect(ids).toHaveLength(30);
    expect(new Set(ids).size).toBe(30);
  });

  test("refuses out-of-range limits", async () => {
    const t = setup();
    await expect(claim(t, T0, -1)).rejects.toThrow(/limit/);
    await expect(claim(t, T0, 1.5)).rejects.toThrow(/limit/);
  });
});

describe("queuePosition", () => {
  test("counts the claimable jobs of the model that a claim takes first", async () => {
    const t = setup();
    const position = (job: Job, now: number) =>
      t.query(internal.voiceCloneJobs.queuePosition, { jobId: job.jobId, now });
    const old = await create(t, { createdAt: T0, priority: 0 });
    const urgent = await create(t, { createdAt: T0 + 100, priority: 1 });
    const newer = await create(t, { createdAt: T0 + 110, priority: 0 });
    await create(t, { createdAt: T0 - 500, model: "chatterbox-turbo" });
    const deferred = await create(t, { createdAt: T0 - 100, nextAttemptAt: T0 + 200 });
    // Deep levels either side: past the bound of one level, and starved ones that aged past it.
    for (let i = 0; i < 3; i++) await create(t, { priority: 5, createdAt: T0 + 119 });
    const starving = await create(t, { priority: -10, createdAt: T0 - 3600 });
    const now = T0 + 120; // old 2.0, urgent 1.33, newer 0.17, level 5: 5.02, starving: 52
    expect(await position(starving, now)).toBe(0);
    expect(await Promise.all([old, urgent, newer].map((j) => position(j, now)))).toEqual([4, 5, 6]);
    expect(await position(deferred, now)).toBe(4); // 3.67: placed, though not claimable yet
    // The claim (all models: the other model's job first) takes exactly the jobs counted ahead.
    const order = (await claim(t, now, 6)).map((j) => j.jobId);
    expect(order[5]).toBe(old.jobId);
    expect(await Promise.all([urgent, newer].map((j) => position(j, now)))).toEqual([0, 1]);
    expect(await position(old, now)).toBeNull();
    expect(await t.query(internal.voiceCloneJobs.queuePosition, { jobId: "missing", now })).toBeNull();
  });
});

describe("leases", () => {
  test("heartbeat extends the lease; a wrong lease is stale", async () => {
    const t = setup();
    await create(t);
    const [job] = await claim(t, T0);
    const renewed = await t.mutation(internal.voiceCloneJobs.heartbeatJob, {
      jobId: job.jobId,
      leaseId: job.leaseId!,
      leaseS: 30,
      now: T0 + 20,
    });
    expect(renewed.leaseExpiresAt).toBe(T0 + 50);
    const err = await errorData(
      t.mutation(internal.voiceCloneJobs.heartbeatJob, { jobId: job.jobId, leaseId: "x", leaseS: 30, now: T0 }),
    );
    expect(err.kind).toBe("StaleLease");
    expect(err.message).toContain(job.jobId);
  });

  test("complete records the result; a late worker after a re-claim is stale", async () => {
    const t = setup();
    await create(t);
    const [first] = await claim(t, T0);
    const expired = await t.mutation(internal.voiceCloneJobs.expireLeases, { now: T0 + 31, retry: RETRY });
    expect(expired.map((j) => [j.status, j.error])).toEqual([["pending", "worker lost (lease expired)"]]);
    const [second] = await claim(t, T0 + 32);
    expect(second.attempts).toBe(2);
    const result = {
      voiceId: "voice_0123456789abcdef",
      resultKey: `results/${second.jobId}-${second.leaseId}.mp3`,
      voiceKey: "voices/voice_0123456789abcdef.pt",
      speechTokens: 42,
      audioSeconds: 1.68,
      processingTime: 3.5,
      gpuSeconds: 0.875,
    };
    const late = await errorData(
      t.mutation(internal.voiceCloneJobs.completeJob, { jobId: first.jobId, leaseId: first.leaseId!, result, now: T0 + 40 }),
    );
    expect(late.kind).toBe("StaleLease");
    const done = await t.mutation(internal.voiceCloneJobs.completeJob, {
      jobId: second.jobId,
      leaseId: second.leaseId!,
      result,
      now: T0 + 40,
    });
    expect(done).toMatchObject({
      status: "completed",
      completedAt: T0 + 40,
      voiceId: result.voiceId,
      resultKey: result.resultKey,
      speechTokens: 42,
      resultSeconds: 1.68,
      processingTime: 3.5,
      gpuSeconds: 0.875,
    });
    expect(done.leaseId).toBeUndefined();
    expect(done.error).toBeUndefined();
    const missing = await errorData(
      t.mutation(internal.voiceCloneJobs.completeJob, { jobId: "nope", leaseId: "x", result, now: T0 }),
    );
    expect(missing).toMatchObject({ kind: "JobNotFound", jobId: "nope" });
  });
});

describe("failures", () => {
  async function failOnce(t: Backend, jobId: string, now: number, transient = true, deferS?: number) {
    const [job] = await claim(t, now, 1, [jobId]);
    expect(job).toBeDefined();
    return await t.mutation(internal.voiceCloneJobs.failJob, {
      jobId,
      leaseId: job.leaseId!,
      error: "GPU fell over",
      transient,
      now: now + 1,
      retry: RETRY,
      ...(deferS === undefined ? {} : { deferS }),
    });
  }

  test("transient failures back off exponentially, then give up", async () => {
    const t = setup();
    const job = await create(t);
    const one = await failOnce(t, job.jobId, T0);
    expect(one).toMatchObject({ status: "pending", nextAttemptAt: T0 + 1 + 2, error: "GPU fell over" });
    const two = await failOnce(t, job.jobId, T0 + 3);
    expect(two.nextAttemptAt).toBe(T0 + 4 + 4);
    const three = await failOnce(t, job.jobId, T0 + 8);
    expect(three).toMatchObject({
      status: "failed",
      attempts: 3,
      completedAt: T0 + 9,
      processingTime: 1,
      error: "GPU fell over (gave up after 3 attempts)",
    });
  });

  test("permanent failures fail at once; deferS overrides the backoff", async () => {
    const t = setup();
    const a = await create(t);
    expect(await failOnce(t, a.jobId, T0, false)).toMatchObject({ status: "failed", error: "GPU fell over" });
    const b = await create(t);
    expect((await failOnce(t, b.jobId, T0, true, 17)).nextAttemptAt).toBe(T0 + 1 + 17);
  });

  test("expired leases with no attempts left fail", async () => {
    const t = setup();
    const job = await create(t, { maxAttempts: 1 });
    await claim(t, T0);
    const live = await t.mutation(internal.voiceCloneJobs.expireLeases, { now: T0 + 30 });
    expect(live).toEqual([]);
    const [gone] = await t.mutation(internal.voiceCloneJobs.expireLeases, { now: T0 + 31 });
    expect(gone).toMatchObject({
      jobId: job.jobId,
      status: "failed",
      error: "worker lost (lease expired) (gave up after 1 attempts)",
    });
  });

  test("expiry works in batches", async () => {
    const t = setup();
    for (let i = 0; i < 5; i++) await create(t);
    await claim(t, T0, 5);
    const first = await t.mutation(internal.voiceCloneJobs.expireLeases, { now: T0 + 60, limit: 3 });
    const second = await t.mutation(internal.voiceCloneJobs.expireLeases, { now: T0 + 60, limit: 3 });
    expect([first.length, second.length]).toEqual([3, 2]);
  });
});

describe("cancel and requeue", () => {
  test("cancel a pending or processing job, never a finished one", async () => {
    const t = setup();
    const job = await create(t);
    const [claimed] = await claim(t, T0);
    const cancelled = await t.mutation(internal.voiceCloneJobs.cancelJob, { jobId: job.jobId, now: T0 + 5 });
    expect(cancelled).toMatchObject({ status: "cancelled", error: "cancelled by request", completedAt: T0 + 5 });
    // A retried cancel (its reply was lost): the first one stands.
    const again = await t.mutation(internal.voiceCloneJobs.cancelJob, { jobId: job.jobId, now: T0 + 6 });
    expect(again).toMatchObject({ status: "cancelled", completedAt: T0 + 5 });
    const stale = await errorData(
      t.mutation(internal.voiceCloneJobs.heartbeatJob, { jobId: job.jobId, leaseId: claimed.leaseId!, leaseS: 1, now: T0 }),
    );
    expect(stale.kind).toBe("StaleLease");
  });

  test("requeue gives a failed job a fresh set of attempts", async () => {
    const t = setup();
    const job = await create(t);
    const [claimed] = await claim(t, T0);
    await t.mutation(internal.voiceCloneJobs.failJob, {
      jobId: job.jobId,
      leaseId: claimed.leaseId!,
      error: "bad audio",
      transient: false,
      now: T0 + 1,
    });
    const back = await t.mutation(internal.voiceCloneJobs.requeueJob, { jobId: job.jobId, now: T0 + 10 });
    expect(back).toMatchObject({ status: "pending", attempts: 0, nextAttemptAt: T0 + 10 });
    expect(back.error).toBeUndefined();
    expect(back.completedAt).toBeUndefined();
    const err = await errorData(t.mutation(internal.voiceCloneJobs.requeueJob, { jobId: job.jobId, now: T0 }));
    expect(err.kind).toBe("InvalidTransition");
  });
});

describe("queries", () => {
  test("getPendingJobs in queue order, getUserJobs newest first, listJobs by filter", async () => {
    const t = setup();
    const a = await create(t, { createdAt: T0 + 2 });
    const b = await create(t, { createdAt: T0 + 1, userId: "user_2" });
    const c = await create(t, { createdAt: T0 + 3 });
    await claim(t, T0 + 3, 1, [c.jobId]);
    const admin = t.withIdentity(ADMIN);
    const pending = await admin.query(api.voiceCloneJobs.getPendingJobs, { limit: 10 });
    expect(pending.map((j) => j.jobId)).toEqual([b.jobId, a.jobId]);
    expect(await admin.query(api.voiceCloneJobs.getPendingJobs, { limit: 1 })).toHaveLength(1);
    const mine = await t.withIdentity({ subject: "user_1" }).query(api.voiceCloneJobs.getUserJobs, {});
    expect(mine.map((j) => j.jobId)).toEqual([c.jobId, a.jobId]);
    const list = (args: { status?: Job["status"]; userId?: string; limit?: number }) =>
      t.query(internal.voiceCloneJobs.listJobs, args).then((jobs) => jobs.map((j) => j.jobId));
    expect(await list({})).toEqual([c.jobId, a.jobId, b.jobId]);
    expect(await list({ limit: 2 })).toEqual([c.jobId, a.jobId]);
    expect(await list({ status: "pending" })).toEqual([b.jobId, a.jobId]);
    expect(await list({ status: "processing" })).toEqual([c.jobId]);
    expect(await list({ status: "pending", userId: "user_1" })).toEqual([a.jobId]);
    expect(await list({ userId: "user_2" })).toEqual([b.jobId]);
    expect(await t.query(internal.voiceCloneJobs.countActive, {})).toBe(3);
    expect(await t.query(internal.voiceCloneJobs.countActive, { userId: "user_2" })).toBe(1);
    expect(await t.query(internal.voiceCloneJobs.countActive, { userId: "nobody" })).toBe(0);
  });

  test("running totals always equal a full recount, through any sequence of transitions", async () => {
    const t = setup();
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    let now = T0;
    for (let step = 0; step < 120; step++) {
      now += random() * 20;
      const roll = random();
      const userId = random() < 0.5 ? "user_1" : "user_2";
      if (roll < 0.3) {
        await create(t, { userId, createdAt: now, priority: Math.floor(random() * 3) - 1, maxAttempts: 2 });
      } else if (roll < 0.5) {
        await claim(t, now, 2);
      } else if (roll < 0.85) {
        const busy = await t.query(internal.voiceCloneJobs.listJobs, { status: "processing", limit: 1 });
        if (busy.length) {
          const job = busy[0];
          const r = random();
          if (r < 0.5) {
            await t.mutation(internal.voiceCloneJobs.completeJob, {
              jobId: job.jobId,
              leaseId: job.leaseId!,
              now,
              result: {
                voiceId: "voice_0123456789abcdef",
                resultKey: `results/${job.jobId}-${job.leaseId}.mp3`,
                voiceKey: "voices/voice_0123456789abcdef.pt",
                speechTokens: 10,
                audioSeconds: 0.4 + r,
                processingTime: 1 + r,
                gpuSeconds: (1 + r) / 4,
              },
            });
          } else if (r < 0.8) {
            await t.mutation(internal.voiceCloneJobs.failJob, {
              jobId: job.jobId,
              leaseId: job.leaseId!,
              error: "boom",
              transient: r < 0.7,
              now,
            });
          } else {
            await t.mutation(internal.voiceCloneJobs.cancelJob, { jobId: job.jobId, now });
          }
        }
      } else if (roll < 0.95) {
        await t.mutation(internal.voiceCloneJobs.expireLeases, { now });
      } else {
        const failed = await t.query(internal.voiceCloneJobs.listJobs, { status: "failed", limit: 1 });
        if (failed.length) await t.mutation(internal.voiceCloneJobs.requeueJob, { jobId: failed[0].jobId, now });
      }
    }
    for (const userId of [undefined, "user_1", "user_2"]) {
      const stats = await t.query(internal.voiceCloneJobs.stats, userId === undefined ? {} : { userId });
      const expected = await recount(t, userId);
      expect(stats.total).toBe(expected.total);
      expect(stats.byStatus).toEqual(expected.byStatus);
      expect(stats.completed).toBe(expected.byStatus.completed);
      if (expected.avgProcessingTime === null) expect(stats.avgProcessingTime).toBeNull();
      else expect(stats.avgProcessingTime).toBeCloseTo(expected.avgProcessingTime, 9);
      expect(stats.audioSecondsGenerated).toBeCloseTo(expected.audioSecondsGenerated, 9);
      expect(stats.totalGpuSeconds).toBeCloseTo(expected.totalGpuSeconds, 9);
    }
    const all = await recount(t);
    expect(all.byStatus.completed + all.byStatus.failed).toBeGreaterThan(0);
  });

  test("getStats on an empty table", async () => {
    const t = setup();
    expect(await t.query(internal.voiceCloneJobs.stats, { userId: "nobody" })).toMatchObject({
      userId: "nobody",
      total: 0,
      pending: 0,
      avgProcessingTime: null,
      totalProcessingTime: 0,
      totalGpuSeconds: 0,
      oldestPendingCreatedAt: null,
    });
  });

  test("GPU seconds: each job's share, summed over completed and failed jobs", async () => {
    const t = setup();
    // Three jobs of one 6 s engine pass: each waited 6 s and used a third of the pass.
    await create(t);
    await create(t);
    await create(t, { userId: "user_2" });
    for (const job of await claim(t, T0 + 1, 3)) {
      await t.mutation(internal.voiceCloneJobs.completeJob, {
        jobId: job.jobId,
        leaseId: job.leaseId!,
        now: T0 + 7,
        result: {
          voiceId: "voice_0123456789abcdef",
          resultKey: `results/${job.jobId}-${job.leaseId}.mp3`,
          voiceKey: "voices/voice_0123456789abcdef.pt",
          speechTokens: 10,
          audioSeconds: 0.4,
          processingTime: 6,
          gpuSeconds: 2,
        },
      });
    }
    // A failed job that carries a share (written by a store that records one on failure).
    const failed = await create(t, { status: "failed", gpuSeconds: 1.5, completedAt: T0 + 5 });
    const stats = await t.query(internal.voiceCloneJobs.stats, {});
    expect(stats).toMatchObject({ completed: 3, failed: 1, totalProcessingTime: 18 });
    expect(stats.totalGpuSeconds).toBeCloseTo(7.5, 9);
    expect((await t.query(internal.voiceCloneJobs.stats, { userId: "user_1" })).totalGpuSeconds).toBeCloseTo(5.5, 9);
    expect((await t.query(internal.voiceCloneJobs.stats, { userId: "user_2" })).totalGpuSeconds).toBeCloseTo(2, 9);
    // Requeued, the failed job is pending again: its share leaves the failed totals, as a
    // recount of jobs by status would have it.
    await t.mutation(internal.voiceCloneJobs.requeueJob, { jobId: failed.jobId, now: T0 + 10 });
    expect((await t.query(internal.voiceCloneJobs.stats, {})).totalGpuSeconds).toBeCloseTo(6, 9);
    expect((await recount(t)).totalGpuSeconds).toBeCloseTo(6, 9);
  });
});
