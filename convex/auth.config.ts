// Which JWTs Convex accepts as a signed-in user's identity (ctx.auth.getUserIdentity() in the
// public queries). Any OpenID Connect provider works (Clerk, Auth0, your own): Convex fetches
// `${domain}/.well-known/openid-configuration` and checks the token's signature, issuer
// (`domain`) and audience (`applicationID`).
//
// Set them on the deployment, then deploy:
//   npx convex env set AUTH_ISSUER_URL https://your-tenant.example.com
//   npx convex env set AUTH_APPLICATION_ID voiceq            (the token's `aud`)
//   npx convex env set VOICEQ_USER_ID_CLAIM subject          (optional; see model/identity.ts)
//
// The frontend passes its token with the Convex client, e.g.
//   const convex = new ConvexReactClient(url);
//   convex.setAuth(async () => await getTokenFromYourProvider());
// or over HTTP: `Authorization: Bearer <jwt>`. Without a token the public queries return
// nothing. The voiceq service itself uses the deploy key (internal functions), not a JWT.

export default {
  providers:
    process.env.AUTH_ISSUER_URL === undefined
      ? []
      : [
          {
            domain: process.env.AUTH_ISSUER_URL,
            applicationID: process.env.AUTH_APPLICATION_ID ?? "voiceq",
          },
        ],
};
