/// <reference types="vite/client" />
// The webhook outbox: written in the job transition's own mutation, claimed with a lease,
// settled per attempt; and completion, failure and cancellation replayed per lease.
import { convexTest } from "convex-test";
import { describe, expect, test } from "vitest";
import { internal } from "./_generated/api";
import type { Job } from "./model/transitions";
import schema from "./schema";

const modules = import.meta.glob("./**/*.ts");
const T0 = 1_700_000_000.25;
const WORKER = { environment: "production", gpuType: "rocm", workerId: "w1" };
const HOOK = "https://hooks.example.com/voiceq";

let counter = 0;
function newJob(overrides: Partial<Job> = {}): Job {
  counter += 1;
  return {
    jobId: `00000000-0000-4000-9000-${counter.toString(16).padStart(12, "0")}`,
    userId: "user_1",
    status: "pending",
    voiceName: "My Voice",
    sampleText: "Hello there",
    createdAt: T0,
    updatedAt: T0,
    audioKey: "uploads/x.wav",
    audioSeconds: 4.5,
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    nextAttemptAt: T0,
    ...overrides,
  };
}

function setup() {
  return convexTest(schema, modules);
}
type Backend = ReturnType<typeof setup>;

async function claimed(t: Backend, overrides: Partial<Job> = {}): Promise<Job> {
  const job = await t.mutation(internal.voiceCloneJobs.createJob, { job: newJob(overrides) });
  const [got] = await t.mutation(internal.voiceCloneJobs.claimJobs, {
    worker: WORKER, limit: 1, leaseS: 30, now: T0, jobIds: [job.jobId],
  });
  return got;
}

function resultFor(job: Job) {
  return {
    voiceId: "voice_0123456789abcdef",
    resultKey: `results/${job.jobId}-${job.leaseId}.mp3`,
    voiceKey: "voices/voice_0123456789abcdef.pt",
    speechTokens: 10,
    audioSeconds: 0.4,
    processingTime: 1.0,
    gpuSeconds: 0.5,
  };
}

describe("webhook outbox", () => {
  test("a final transition writes one entry, replays write none", async () => {
    const t = setup();
    const job = await claimed(t, { callbackUrl: HOOK });
    const args = { jobId: job.jobId, leaseId: job.leaseId!, result: resultFor(job), now: T0 + 5 };
    const done = await t.mutation(internal.voiceCloneJobs.completeJob, args);
    // The same call again (reply lost): the recorded outcome, and no second webhook.
    expect(await t.mutation(internal.voiceCloneJobs.completeJob, { ...args, now: T0 + 9 })).toEqual(done);
    const entries = await t.query(internal.webhookOutbox.listWebhooks, { jobId: job.jobId });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({
      webhookId: `${job.jobId}.completed.${Math.floor((T0 + 5) * 1000)}`,
      url: HOOK, event: "completed", state: "pending", attempts: 0, nextAttemptAt: T0 + 5,
    });
  });

  test("jobs without a callback, and non-final transitions, owe nothing", async () => {
    const t = setup();
    const plain = await claimed(t);
    await t.mutation(internal.voiceCloneJobs.completeJob, {
      jobId: plain.jobId, leaseId: plain.leaseId!, result: resultFor(plain), now: T0 + 1,
    });
    const hooked = await claimed(t, { callbackUrl: HOOK });
    await t.mutation(internal.voiceCloneJobs.failJob, {
      jobId: hooked.jobId, leaseId: hooked.leaseId!, error: "oom", transient: true, now: T0 + 1,
    });
    expect(await t.query(internal.webhookOutbox.listWebhooks, { jobId: plain.jobId })).toEqual([]);
    expect(await t.query(internal.webhookOutbox.listWebhooks, { jobId: hooked.jobId })).toEqual([]);
  });

  test("due entries are claimed under a lease and settled per attempt", async () => {
    const t = setup();
    const job = await claimed(t, { callbackUrl: HOOK });
    await t.mutation(internal.voiceCloneJobs.cancelJob, { jobId: job.jobId, now: T0 + 2 });
    expect(await t.mutation(internal.webhookOutbox.dueWebhooks, { now: T0 + 1, limit: 10, leaseS: 60 })).toEqual([]);
    const [entry] = await t.mutation(internal.webhookOutbox.dueWebhooks, { now: T0 + 3, limit: 10, leaseS: 60 });
    expect(entry.event).toBe("cancelled");
    // Hidden while its deliverer holds it; back once the lease is over.
    expect(await t.mutation(internal.webhookOutbox.dueWebhooks, { now: T0 + 4, limit: 10, leaseS: 60 })).toEqual([]);
    const [again] = await t.mutation(internal.webhookOutbox.dueWebhooks, { now: T0 + 64, limit: 10, leaseS: 60 });
    expect(again.webhookId).toBe(entry.webhookId);
    await t.mutation(internal.webhookOutbox.settleWebhook, {
      webhookId: entry.webhookId, state: "pending", attempts: 1, nextAttemptAt: T0 + 70, lastError: "receiver answered 503",
    });
    await t.mutation(internal.webhookOutbox.settleWebhook, {
      webhookId: entry.webhookId, state: "delivered", attempts: 2, nextAttemptAt: T0 + 70, deliveredAt: T0 + 71,
    });
    expect(await t.query(internal.webhookOutbox.getWebhook, { webhookId: entry.webhookId })).toMatchObject({
      state: "delivered", attempts: 2, deliveredAt: T0 + 71,
    });
    expect(await t.mutation(internal.webhookOutbox.dueWebhooks, { now: T0 + 999, limit: 10, leaseS: 60 })).toEqual([]);
  });

  test("a failure is replayed per lease, and a requeued job's second failure owes a second webhook", async () => {
    const t = setup();
    const job = await claimed(t, { callbackUrl: HOOK });
    const args = { jobId: job.jobId, leaseId: job.leaseId!, error: "bad audio", transient: false, now: T0 + 1 };
    const failed = await t.mutation(internal.voiceCloneJobs.failJob, args);
    expect(await t.mutation(internal.voiceCloneJobs.failJob, { ...args, now: T0 + 2 })).toEqual(failed);
    await t.mutation(internal.voiceCloneJobs.requeueJob, { jobId: job.jobId, now: T0 + 3 });
    const [second] = await t.mutation(internal.voiceCloneJobs.claimJobs, { worker: WORKER, limit: 1, leaseS: 30, now: T0 + 4 });
    await t.mutation(internal.voiceCloneJobs.failJob, { ...args, leaseId: second.leaseId!, now: T0 + 5 });
    const entries = await t.query(internal.webhookOutbox.listWebhooks, { jobId: job.jobId });
    expect(entries.map((e) => e.event)).toEqual(["failed", "failed"]);
    expect(new Set(entries.map((e) => e.webhookId)).size).toBe(2);
  });
});
