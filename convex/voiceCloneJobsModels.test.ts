/// <reference types="vite/client" />
// The Chatterbox family in Convex: each model's deployment claims its own jobs, and the
// totals are kept per model (stats and cost by model, each model's queue for scaling).
import { convexTest } from "convex-test";
import { expect, test } from "vitest";
import { internal } from "./_generated/api";
import type { Job } from "./model/transitions";
import schema from "./schema";

const modules = import.meta.glob("./**/*.ts");
const T0 = 1_700_000_000.25;
const WORKER = { environment: "production", gpuType: "cuda", workerId: "w1" };

let counter = 0;
function newJob(overrides: Partial<Job> = {}): Job {
  counter += 1;
  return {
    jobId: `00000000-0000-4000-9000-${counter.toString(16).padStart(12, "0")}`,
    userId: "user_1",
    status: "pending",
    voiceName: "v",
    sampleText: "Hello",
    createdAt: T0 + counter,
    updatedAt: T0 + counter,
    audioKey: "uploads/x.wav",
    audioSeconds: 6,
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    nextAttemptAt: T0,
    ...overrides,
  };
}

test("a model's claim takes only its model's jobs; jobs without a model are English", async () => {
  const t = convexTest(schema, modules);
  const legacy = await t.mutation(internal.voiceCloneJobs.createJob, { job: newJob() });
  const turbo = await t.mutation(internal.voiceCloneJobs.createJob, {
    job: newJob({ model: "chatterbox-turbo", kind: "clone" }),
  });
  const french = await t.mutation(internal.voiceCloneJobs.createJob, {
    job: newJob({ model: "chatterbox-multilingual", language: "fr" }),
  });
  const claim = (model: string, jobIds?: string[]) =>
    t.mutation(internal.voiceCloneJobs.claimJobs, {
      worker: WORKER, limit: 10, leaseS: 30, now: T0 + 100, model, ...(jobIds ? { jobIds } : {}),
    });
  expect((await claim("chatterbox-turbo", [legacy.jobId, french.jobId])).length).toBe(0);
  const turboJobs = await claim("chatterbox-turbo");
  expect(turboJobs.map((j: Job) => j.jobId)).toEqual([turbo.jobId]);
  const english = await claim("chatterbox");
  expect(english.map((j: Job) => j.jobId)).toEqual([legacy.jobId]);
  const stats = await t.query(internal.voiceCloneJobs.stats, {});
  expect(stats.byModel["chatterbox-multilingual"].pending).toBe(1);
  expect(stats.byModel["chatterbox-multilingual"].oldest_pending_created_at).toBe(french.createdAt);
  expect(stats.byModel["chatterbox-turbo"].processing).toBe(1);
  expect(stats.byModel["chatterbox"].processing).toBe(1);
  const done = await t.mutation(internal.voiceCloneJobs.completeJob, {
    jobId: turbo.jobId, leaseId: turboJobs[0].leaseId!, now: T0 + 110,
    result: { voiceId: "voice_0123456789abcdef", voiceKey: "voices/voice_0123456789abcdef/chatterbox-turbo.pt",
              resultKey: "results/r.mp3", speechTokens: 50, audioSeconds: 2.0, processingTime: 3, gpuSeconds: 1.5 },
  });
  expect(done.status).toBe("completed");
  const after = await t.query(internal.voiceCloneJobs.stats, {});
  expect(after.byModel["chatterbox-turbo"]).toMatchObject({ completed: 1, processing: 0, audio_seconds: 2.0,
                                                            gpu_seconds: 1.5 });
});
