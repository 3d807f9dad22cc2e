/// <reference types="vite/client" />
// Private views: every public query with and without an identity; the voice library and
// erasure functions the voiceq service calls with its deploy key.
import { convexTest } from "convex-test";
import { afterEach, describe, expect, test, vi } from "vitest";
import { api, internal } from "./_generated/api";
import type { Job } from "./model/transitions";
import type { Voice } from "./model/voices";
import schema from "./schema";

const modules = import.meta.glob("./**/*.ts");
const T0 = 1_700_000_000.5;
const ADMIN = { subject: "ops", voiceq_admin: true };
const ALICE = { subject: "alice" };
const BOB = { subject: "bob" };

let counter = 0;
function jobId(): string {
  counter += 1;
  return `00000000-0000-4000-9000-${counter.toString(16).padStart(12, "0")}`;
}

function newJob(overrides: Partial<Job> = {}): Job {
  const createdAt = overrides.createdAt ?? T0;
  return {
    jobId: jobId(),
    userId: "alice",
    status: "pending",
    voiceName: "Alice's voice",
    sampleText: "Something personal",
    createdAt,
    updatedAt: createdAt,
    audioKey: "uploads/x.wav",
    audioSeconds: 3,
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    nextAttemptAt: createdAt,
    owner: "acme",
    ...overrides,
  };
}

function newVoice(overrides: Partial<Voice> = {}): Voice {
  return {
    voiceId: `voice_${counter.toString(16).padStart(16, "0")}`,
    owner: "acme",
    userId: "alice",
    name: "Alice",
    createdAt: T0,
    updatedAt: T0,
    jobId: jobId(),
    referenceKey: "uploads/x.wav",
    models: ["chatterbox"],
    consent: { subject: "Alice A.", consentedAt: T0 - 60, reference: "consent/123" },
    ...overrides,
  };
}

async function seed() {
  const t = convexTest(schema, modules);
  const alices = await t.mutation(internal.voiceCloneJobs.createJob, { job: newJob() });
  const bobs = await t.mutation(internal.voiceCloneJobs.createJob, { job: newJob({ userId: "bob", createdAt: T0 + 1 }) });
  const voice = await t.mutation(internal.voices.putVoice, { voice: newVoice({ jobId: alices.jobId }) });
  counter += 1;
  const bobsVoice = await t.mutation(internal.voices.putVoice, { voice: newVoice({ userId: "bob", jobId: bobs.jobId }) });
  return { t, alices, bobs, voice, bobsVoice };
}

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("public queries are private views", () => {
  test("anonymous callers see nothing", async () => {
    const { t, alices, voice } = await seed();
    expect(await t.query(api.voiceCloneJobs.getPendingJobs, { limit: 10 })).toEqual([]);
    expect(await t.query(api.voiceCloneJobs.getUserJobs, { userId: "alice" })).toEqual([]);
    expect(await t.query(api.voiceCloneJobs.getJobStatus, { jobId: alices.jobId })).toBeNull();
    expect(await t.query(api.voiceCloneJobs.getStats, {})).toBeNull();
    expect(await t.query(api.voiceCloneJobs.getStats, { userId: "alice" })).toBeNull();
    expect(await t.query(api.voices.getMyVoices, {})).toEqual([]);
    expect(await t.query(api.voices.getMyVoice, { voiceId: voice.voiceId })).toBeNull();
  });

  test("a signed-in user sees only their own jobs and voices", async () => {
    const { t, alices, bobs, voice, bobsVoice } = await seed();
    const alice = t.withIdentity(ALICE);
    expect((await alice.query(api.voiceCloneJobs.getUserJobs, {})).map((j) => j.jobId)).toEqual([alices.jobId]);
    expect(await alice.query(api.voiceCloneJobs.getUserJobs, { userId: "bob" })).toEqual([]);
    expect((await alice.query(api.voiceCloneJobs.getJobStatus, { jobId: alices.jobId }))?.jobId).toBe(alices.jobId);
    expect(await alice.query(api.voiceCloneJobs.getJobStatus, { jobId: bobs.jobId })).toBeNull();
    expect(await alice.query(api.voiceCloneJobs.getPendingJobs, { limit: 10 })).toEqual([]);
    expect(await alice.query(api.voiceCloneJobs.getStats, {})).toMatchObject({ userId: "alice", total: 1, pending: 1 });
    expect(await alice.query(api.voiceCloneJobs.getStats, { userId: "bob" })).toBeNull();
    const voices = await alice.query(api.voices.getMyVoices, {});
    expect(voices.map((v) => v.voiceId)).toEqual([voice.voiceId]);
    expect(voices[0]).toMatchObject({ name: "Alice", models: ["chatterbox"], consent: voice.consent });
    expect(voices[0]).not.toHaveProperty("referenceKey");
    expect(voices[0]).not.toHaveProperty("owner");
    expect(await alice.query(api.voices.getMyVoice, { voiceId: bobsVoice.voiceId })).toBeNull();
    expect((await t.withIdentity(BOB).query(api.voices.getMyVoice, { voiceId: bobsVoice.voiceId }))?.userId).toBe("bob");
  });

  test("an operator identity sees the queue and everyone's totals", async () => {
    const { t, alices, bobs } = await seed();
    const admin = t.withIdentity(ADMIN);
    expect((await admin.query(api.voiceCloneJobs.getPendingJobs, { limit: 10 })).map((j) => j.jobId)).toEqual([
      alices.jobId,
      bobs.jobId,
    ]);
    expect(await admin.query(api.voiceCloneJobs.getStats, {})).toMatchObject({ userId: null, total: 2 });
    expect((await admin.query(api.voiceCloneJobs.getUserJobs, { userId: "bob" })).map((j) => j.jobId)).toEqual([
      bobs.jobId,
    ]);
  });

  test("the identity-to-user mapping is configurable, with an optional tenant claim", async () => {
    vi.stubEnv("VOICEQ_USER_ID_CLAIM", "email");
    vi.stubEnv("VOICEQ_OWNER_CLAIM", "tenant");
    const { t, alices } = await seed();
    const right = t.withIdentity({ subject: "x", email: "alice", tenant: "acme" });
    expect((await right.query(api.voiceCloneJobs.getUserJobs, {})).map((j) => j.jobId)).toEqual([alices.jobId]);
    const otherTenant = t.withIdentity({ subject: "x", email: "alice", tenant: "globex" });
    expect(await otherTenant.query(api.voiceCloneJobs.getUserJobs, {})).toEqual([]);
    expect(await otherTenant.query(api.voiceCloneJobs.getJobStatus, { jobId: alices.jobId })).toBeNull();
    expect(await otherTenant.query(api.voices.getMyVoices, {})).toEqual([]);
    const noTenant = t.withIdentity({ subject: "x", email: "alice" });
    expect(await noTenant.query(api.voiceCloneJobs.getUserJobs, {})).toEqual([]);
  });
});

describe("voice library and erasure (internal)", () => {
  test("voices are listed per owner, renamed and deleted", async () => {
    const { t, voice } = await seed();
    const again = await t.mutation(internal.voices.putVoice, { voice: { ...voice, name: "other" } });
    expect(again.name).toBe("Alice"); // safe to repeat: the first stands
    const list = (owner?: string) => t.query(internal.voices.listVoices, { userId: "alice", owner });
    expect((await list("acme")).map((v) => v.voiceId)).toEqual([voice.voiceId]);
    expect(await list("globex")).toEqual([]);
    expect(await t.query(internal.voices.listVoices, { userId: "alice", anyOwner: true })).toHaveLength(1);
    const renamed = await t.mutation(internal.voices.renameVoice, { voiceId: voice.voiceId, name: "New", now: T0 + 5 });
    expect(renamed).toMatchObject({ name: "New", updatedAt: T0 + 5 });
    expect(await t.query(internal.voices.voiceOfJob, { jobId: voice.jobId })).toMatchObject({ name: "New" });
    expect(await t.mutation(internal.voices.deleteVoice, { voiceId: voice.voiceId })).toBe(true);
    expect(await t.mutation(internal.voices.deleteVoice, { voiceId: voice.voiceId })).toBe(false);
    expect(await t.query(internal.voices.getVoice, { voiceId: voice.voiceId })).toBeNull();
  });

  test("scrubbing moves an erased user's jobs and totals to the pseudonym", async () => {
    const { t, alices } = await seed();
    const jobs = await t.query(internal.voices.userJobs, { userId: "alice", owner: "acme" });
    expect(jobs.map((j) => j.jobId)).toEqual([alices.jobId]);
    expect(await t.query(internal.voices.userJobs, { userId: "alice", owner: "globex" })).toEqual([]);
    const args = { jobIds: [alices.jobId], erasedUserId: "erased-0123456789abcdef", now: T0 + 9 };
    expect(await t.mutation(internal.voices.scrubJobs, args)).toBe(1);
    expect(await t.mutation(internal.voices.scrubJobs, args)).toBe(0);
    const job = await t.query(internal.voiceCloneJobs.getJob, { jobId: alices.jobId });
    expect(job).toMatchObject({ userId: "erased-0123456789abcdef", voiceName: "", sampleText: "", audioKey: "" });
    expect(job?.extra).toEqual({ erased_at: T0 + 9 });
    expect(await t.query(internal.voiceCloneJobs.stats, { userId: "alice" })).toMatchObject({ total: 0 });
    expect(await t.query(internal.voiceCloneJobs.stats, { userId: "erased-0123456789abcdef" })).toMatchObject({
      total: 1,
      pending: 1,
    });
    expect(await t.query(internal.voiceCloneJobs.stats, {})).toMatchObject({ total: 2 });
  });

  test("an erasure record is running until finished", async () => {
    const t = convexTest(schema, modules);
    await t.mutation(internal.voices.beginErasure, { owner: "acme", userId: "alice", now: T0 });
    expect(await t.query(internal.voices.unfinishedErasures, {})).toMatchObject([{ userId: "alice", status: "running" }]);
    const done = await t.mutation(internal.voices.finishErasure, {
      owner: "acme", userId: "alice", now: T0 + 2, voices: 1, jobs: 2, blobs: 3,
    });
    expect(done).toMatchObject({ status: "done", startedAt: T0, finishedAt: T0 + 2, blobs: 3 });
    expect(await t.query(internal.voices.unfinishedErasures, {})).toEqual([]);
  });
});
