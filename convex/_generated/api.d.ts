/* eslint-disable */
/**
 * Generated `api` utility.
 *
 * THIS CODE IS AUTOMATICALLY GENERATED.
 *
 * To regenerate, run `npx convex dev`.
 * @module
 */

import type {
  ApiFromModules,
  FilterApi,
  FunctionReference,
} from "convex/server";
import type * as keyQuotas from "../keyQuotas.js";
import type * as model_counts from "../model/counts.js";
import type * as model_outbox from "../model/outbox.js";
import type * as model_outboxTable from "../model/outboxTable.js";
import type * as model_identity from "../model/identity.js";
import type * as model_transitions from "../model/transitions.js";
import type * as model_voices from "../model/voices.js";
import type * as voiceCloneJobs from "../voiceCloneJobs.js";
import type * as webhookOutbox from "../webhookOutbox.js";
import type * as voices from "../voices.js";

/**
 * A utility for referencing Convex functions in your app's API.
 *
 * Usage:
 * ```js
 * const myFunctionReference = api.myModule.myFunction;
 * ```
 */
declare const fullApi: ApiFromModules<{
  keyQuotas: typeof keyQuotas;
  "model/counts": typeof model_counts;
  "model/outbox": typeof model_outbox;
  "model/outboxTable": typeof model_outboxTable;
  "model/identity": typeof model_identity;
  "model/transitions": typeof model_transitions;
  "model/voices": typeof model_voices;
  voiceCloneJobs: typeof voiceCloneJobs;
  webhookOutbox: typeof webhookOutbox;
  voices: typeof voices;
}>;
export declare const api: FilterApi<
  typeof fullApi,
  FunctionReference<any, "public">
>;
export declare const internal: FilterApi<
  typeof fullApi,
  FunctionReference<any, "internal">
>;
