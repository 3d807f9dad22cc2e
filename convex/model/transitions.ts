// The job state machine of voiceq/jobs.py, transition for transition, as pure functions on
// voiceCloneJobs documents. Nothing here touches the database: voiceCloneJobs.ts loads,
// applies one of these and writes the result inside a single mutation (one transaction).
//
//     pending ──claim──▶ processing ──complete──▶ completed
//        ▲                   │
//        └──retry/expire─────┤──fail (permanent, or attempts used up)──▶ failed
//                            └──cancel──▶ cancelled   (pending jobs can be cancelled too)

import { ConvexError, Infer, v } from "convex/values";
import { jobFields, jobStatus, workerInfo } from "../schema";

export const jobObject = v.object(jobFields);
export type Job = Infer<typeof jobObject>;
export type JobStatus = Infer<typeof jobStatus>;
export type WorkerInfo = Infer<typeof workerInfo>;

export const TERMINAL: ReadonlySet<JobStatus> = new Set(["completed", "failed", "cancelled"]);

// Errors the Python store turns back into voiceq.errors exceptions of the same name.
export type ErrorKind = "StaleLease" | "InvalidTransition" | "JobNotFound";

export function jobError(kind: ErrorKind, message: string, jobId?: string): ConvexError<{
  kind: ErrorKind;
  message: string;
  jobId?: string;
}> {
  return new ConvexError(jobId === undefined ? { kind, message } : { kind, message, jobId });
}

export function notFound(jobId: string) {
  return jobError("JobNotFound", `no job with id '${jobId}'`, jobId);
}

export const retryPolicy = v.object({
  baseDelayS: v.number(),
  maxDelayS: v.number(),
});
export type RetryPolicy = Infer<typeof retryPolicy>;
export const DEFAULT_RETRY: RetryPolicy = { baseDelayS: 2.0, maxDelayS: 300.0 };
export const DEFAULT_AGING_S = 60.0;

export function retryDelayS(retry: RetryPolicy, attempts: number): number {
  return Math.min(retry.maxDelayS, retry.baseDelayS * 2 ** Math.max(0, attempts - 1));
}

export const jobResult = v.object({
  voiceId: v.string(),
  resultKey: v.string(),
  voiceKey: v.string(),
  speechTokens: v.number(),
  audioSeconds: v.number(),
  processingTime: v.number(),
  gpuSeconds: v.number(),
});
export type JobResult = Infer<typeof jobResult>;

export function isClaimable(job: Job, now: number): boolean {
  return job.status === "pending" && job.nextAttemptAt <= now;
}

/** Higher is claimed first: waiting `agingS` seconds is worth one priority level. */
export function claimScore(job: Job, now: number, agingS: number): number {
  return job.priority + Math.max(0, now - job.createdAt) / agingS;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function claimOrder<T extends Job>(jobs: T[], now: number, agingS: number): T[] {
  return jobs
    .filter((j) => isClaimable(j, now))
    .map((j) => ({ j, score: claimScore(j, now, agingS) }))
    .sort(
      (a, b) =>
        b.score - a.score ||
        a.j.createdAt - b.j.createdAt ||
        compareStrings(a.j.jobId, b.j.jobId),
    )
    .map(({ j }) => j);
}

export function claim(
  job: Job,
  args: { leaseId: string; leaseS: number; worker: WorkerInfo; now: number },
): Job {
  if (!isClaimable(job, args.now)) {
    throw jobError("InvalidTransition", `job ${job.jobId} is ${job.status}, not claimable`, job.jobId);
  }
  return {
    ...job,
    status: "processing",
    attempts: job.attempts + 1,
    leaseId: args.leaseId,
    leaseExpiresAt: args.now + args.leaseS,
    startedAt: args.now,
    workerInfo: args.worker,
    error: undefined,
    updatedAt: args.now,
  };
}

function checkLease(job: Job, leaseId: string): void {
  if (job.status !== "processing" || job.leaseId !== leaseId) {
    throw jobError(
      "StaleLease",
      `job ${job.jobId} is ${job.status} under another lease; this worker's result is discarded`,
      job.jobId,
    );
  }
}

export function heartbeat(job: Job, args: { leaseId: string; leaseS: number; now: number }): Job {
  checkLease(job, args.leaseId);
  return { ...job, leaseExpiresAt: args.now + args.leaseS, updatedAt: args.now };
}

/** This lease's outcome is already recorded (the first call committed; its reply was lost). */
export function isReplay(job: Job, leaseId: string, statuses: JobStatus[]): boolean {
  return job.lastLeaseId === leaseId && statuses.includes(job.status) && job.leaseId === undefined;
}

export function complete(job: Job, args: { leaseId: string; result: JobResult; now: number }): Job {
  if (isReplay(job, args.leaseId, ["completed"])) {
    return job;
  }
  checkLease(job, args.leaseId);
  const r = args.result;
  return {
    ...job,
    status: "completed",
    lastLeaseId: args.leaseId,
    leaseId: undefined,
    leaseExpiresAt: undefined,
    completedAt: args.now,
    voiceId: r.voiceId,
    voiceKey: r.voiceKey,
    resultKey: r.resultKey,
    speechTokens: r.speechTokens,
    resultSeconds: r.audioSeconds,
    processingTime: r.processingTime,
    gpuSeconds: r.gpuSeconds,
    error: undefined,
    updatedAt: args.now,
  };
}

function retryOrFail(
  job: Job,
  args: { error: string; transient: boolean; retry: RetryPolicy; now: number; deferS?: number },
): Job {
  const { now } = args;
  if (args.transient && job.attempts < job.maxAttempts) {
    const delay = args.deferS === undefined ? retryDelayS(args.retry, job.attempts) : args.deferS;
    return {
      ...job,
      status: "pending",
      leaseId: undefined,
      leaseExpiresAt: undefined,
      nextAttemptAt: now + delay,
      error: args.error,
      updatedAt: now,
    };
  }
  const reason = args.transient ? `${args.error} (gave up after ${job.attempts} attempts)` : args.error;
  return {
    ...job,
    status: "failed",
    leaseId: undefined,
    leaseExpiresAt: undefined,
    completedAt: now,
    error: reason,
    processingTime: job.startedAt !== undefined ? now - job.startedAt : undefined,
    updatedAt: now,
  };
}

export function fail(
  job: Job,
  args: {
    leaseId: string;
    error: string;
    transient: boolean;
    retry: RetryPolicy;
    now: number;
    deferS?: number;
  },
): Job {
  if (isReplay(job, args.leaseId, ["pending", "failed"])) {
    return job;
  }
  checkLease(job, args.leaseId);
  return { ...retryOrFail(job, args), lastLeaseId: args.leaseId };
}

export function leaseExpired(job: Job, now: number): boolean {
  return job.status === "processing" && job.leaseExpiresAt !== undefined && job.leaseExpiresAt < now;
}

/** A worker stopped renewing its lease (killed, node gone): the job goes back to the queue. */
export function expire(job: Job, args: { retry: RetryPolicy; now: number }): Job {
  if (!leaseExpired(job, args.now)) {
    throw jobError("InvalidTransition", `job ${job.jobId} holds a live lease`, job.jobId);
  }
  return retryOrFail(job, {
    error: "worker lost (lease expired)",
    transient: true,
    retry: args.retry,
    now: args.now,
    deferS: 0.0,
  });
}

export function cancel(job: Job, args: { now: number }): Job {
  if (job.status === "cancelled") {
    return job; // a retried cancel: the first one stands
  }
  if (TERMINAL.has(job.status)) {
    throw jobError("InvalidTransition", `job ${job.jobId} is already ${job.status}`, job.jobId);
  }
  return {
    ...job,
    status: "cancelled",
    leaseId: undefined,
    leaseExpiresAt: undefined,
    completedAt: args.now,
    error: "cancelled by request",
    updatedAt: args.now,
  };
}

/** Operator retry of a dead-lettered (failed) job: a fresh set of attempts. */
export function requeue(job: Job, args: { now: number }): Job {
  if (job.status !== "failed") {
    throw jobError(
      "InvalidTransition",
      `only failed jobs can be retried; job ${job.jobId} is ${job.status}`,
      job.jobId,
    );
  }
  return {
    ...job,
    status: "pending",
    attempts: 0,
    nextAttemptAt: args.now,
    completedAt: undefined,
    error: undefined,
    updatedAt: args.now,
  };
}
