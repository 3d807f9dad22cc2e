// The voice library's tables: who a cloned voice belongs to, what made it, who consented;
// and the durable record of a user's erasure (see voiceq/voices.py, the same records).

import { Infer, v } from "convex/values";

export const consent = v.object({
  subject: v.string(), // who consented (the speaker)
  consentedAt: v.number(), // Unix seconds
  reference: v.string(), // where the consent record lives
});

export const voiceFields = {
  voiceId: v.string(),
  owner: v.optional(v.string()), // the API key's name; absent when keys are off
  userId: v.string(),
  name: v.string(),
  createdAt: v.number(),
  updatedAt: v.number(),
  jobId: v.string(),
  referenceKey: v.string(),
  models: v.array(v.string()),
  consent: v.optional(consent),
};
export const voiceObject = v.object(voiceFields);
export type Voice = Infer<typeof voiceObject>;

export const erasureStatus = v.union(v.literal("running"), v.literal("done"));

export const erasureFields = {
  owner: v.string(), // "" when keys are off (so that the index can match it)
  userId: v.string(),
  status: erasureStatus,
  startedAt: v.number(),
  finishedAt: v.optional(v.number()),
  voices: v.number(),
  jobs: v.number(),
  blobs: v.number(),
};
