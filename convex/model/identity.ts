// Who is asking a public query: the signed-in frontend user, from the JWT the frontend passes
// (see auth.config.ts). A caller without an identity sees nothing.
//
// The mapping from the identity to voiceq's records is configured with the deployment's
// environment variables (`npx convex env set NAME value`):
//   VOICEQ_USER_ID_CLAIM  the claim holding the user_id the backend submits jobs with
//                         (default "subject", the JWT's `sub`)
//   VOICEQ_OWNER_CLAIM    optional: a claim holding the API key name the user's jobs are
//                         submitted under, for a deployment shared by several keys
//   VOICEQ_ADMIN_CLAIM    a boolean claim that makes the caller an operator, who sees every
//                         job (default "voiceq_admin")

import type { QueryCtx } from "../_generated/server";

export type Viewer = { userId: string; owner: string | undefined; admin: boolean };

function setting(name: string, fallback: string): string {
  const value = typeof process === "undefined" ? undefined : process.env[name];
  return value === undefined || value === "" ? fallback : value;
}

export async function viewerOf(ctx: QueryCtx): Promise<Viewer | null> {
  const identity = await ctx.auth.getUserIdentity();
  if (identity === null) {
    return null;
  }
  const claims = identity as unknown as Record<string, unknown>;
  const adminClaim = claims[setting("VOICEQ_ADMIN_CLAIM", "voiceq_admin")];
  const admin = adminClaim === true || adminClaim === "true";
  const userId = claims[setting("VOICEQ_USER_ID_CLAIM", "subject")];
  const ownerClaim = setting("VOICEQ_OWNER_CLAIM", "");
  const owner = ownerClaim === "" ? undefined : claims[ownerClaim];
  if (typeof userId !== "string" || userId === "" || (ownerClaim !== "" && typeof owner !== "string")) {
    // An identity that does not name a user (or a tenant, when one is required) sees nothing
    // of its own; an operator still sees everything.
    return admin ? { userId: "", owner: undefined, admin } : null;
  }
  return { userId, owner: owner as string | undefined, admin };
}

/** Whether this viewer may see a job or voice record. */
export function sees(viewer: Viewer | null, record: { userId: string; owner?: string }): boolean {
  if (viewer === null) {
    return false;
  }
  if (viewer.admin) {
    return true;
  }
  return record.userId === viewer.userId && (viewer.owner === undefined || record.owner === viewer.owner);
}
