import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";
import { webhookOutboxTable } from "./model/outboxTable";
import { erasureFields, voiceFields } from "./model/voices";

// Timestamps are Unix seconds (floats), as the Python service writes them with time.time().

export const jobStatus = v.union(
  v.literal("pending"),
  v.literal("processing"),
  v.literal("completed"),
  v.literal("failed"),
  v.literal("cancelled"),
);

export const workerInfo = v.object({
  environment: v.string(),
  gpuType: v.string(),
  dropletId: v.optional(v.string()),
  workerId: v.optional(v.string()),
  nodeId: v.optional(v.string()),
});

// The seed's voiceCloneJobs fields first, then what the job state machine (voiceq/jobs.py) needs.
export const jobFields = {
  jobId: v.string(),
  userId: v.string(),
  status: jobStatus,
  voiceName: v.string(),
  audioFileUrl: v.optional(v.string()),
  voiceId: v.optional(v.string()),
  resultUrl: v.optional(v.string()),
  workerInfo: v.optional(workerInfo),
  error: v.optional(v.string()),
  createdAt: v.number(),
  completedAt: v.optional(v.number()),
  processingTime: v.optional(v.number()),

  sampleText: v.string(),
  audioKey: v.string(),
  audioSeconds: v.number(),
  priority: v.number(),
  attempts: v.number(),
  maxAttempts: v.number(),
  nextAttemptAt: v.number(),
  leaseId: v.optional(v.string()),
  leaseExpiresAt: v.optional(v.number()),
  startedAt: v.optional(v.number()),
  updatedAt: v.number(),
  voiceKey: v.optional(v.string()),
  resultKey: v.optional(v.string()),
  speechTokens: v.optional(v.number()),
  resultSeconds: v.optional(v.number()),
  // The job's share of its engine pass (the pass's wall time over its jobs): what it cost in
  // GPU time, where processingTime is what the user waited.
  gpuSeconds: v.optional(v.number()),
  idempotencyKey: v.optional(v.string()),
  owner: v.optional(v.string()),
  callbackUrl: v.optional(v.string()),
  extra: v.optional(v.record(v.string(), v.any())),
  // The lease under which the last complete/fail was recorded (voiceq/jobs.py last_lease_id).
  lastLeaseId: v.optional(v.string()),
  // The Chatterbox family (voiceq/models.py): absent on older jobs, which read as
  // model "chatterbox", kind "clone".
  model: v.optional(v.string()),
  language: v.optional(v.string()),
  kind: v.optional(v.string()),
};

export default defineSchema({
  voiceCloneJobs: defineTable(jobFields)
    .index("by_jobId", ["jobId"])
    // Claiming walks the pending jobs one priority level at a time, oldest first.
    .index("by_status_priority", ["status", "priority", "createdAt", "jobId"])
    // Queue order (getPendingJobs, list by status) and the oldest pending job.
    .index("by_status_createdAt", ["status", "createdAt"])
    // The lease reaper reads only processing jobs whose lease ran out.
    .index("by_status_leaseExpiresAt", ["status", "leaseExpiresAt"])
    .index("by_createdAt", ["createdAt"])
    .index("by_userId_createdAt", ["userId", "createdAt"])
    .index("by_userId_status", ["userId", "status", "createdAt"])
    .index("by_idempotency", ["owner", "userId", "idempotencyKey"])
    // Per-key quotas: a key's submissions in the last day (convex/keyQuotas.ts).
    .index("by_owner_createdAt", ["owner", "createdAt"]),

  // The voice library (convex/voices.ts) and the durable records of users' erasures.
  voices: defineTable(voiceFields)
    .index("by_voiceId", ["voiceId"])
    .index("by_userId_owner", ["userId", "owner", "createdAt"])
    .index("by_jobId", ["jobId"]),
  voiceErasures: defineTable(erasureFields)
    .index("by_owner_userId", ["owner", "userId"])
    .index("by_status", ["status"]),

  // Running totals per (scope, status), kept in the same transaction as every job write, so
  // getStats and countActive never scan the jobs table. scope is "*" (all jobs) or "user:<userId>".
  voiceCloneJobCounts: defineTable({
    scope: v.string(),
    status: jobStatus,
    count: v.number(),
    // Sums over completed jobs (the only status these grow in).
    processingTime: v.number(),
    resultSeconds: v.number(),
    // Sum of the gpuSeconds of the jobs now in this status (completed and failed ones carry
    // them). Optional: rows written before it existed read as 0.
    gpuSeconds: v.optional(v.number()),
  }).index("by_scope_status", ["scope", "status"]),

  // Webhooks owed to jobs' callback URLs (convex/webhookOutbox.ts).
  webhookOutbox: webhookOutboxTable,
});
