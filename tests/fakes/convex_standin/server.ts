// A local stand-in for a Convex deployment, for tests only.
//
// It runs the REAL functions in convex/ through convex-test's in-memory backend and answers
// Convex's HTTP API the way a deployment does:
//
//   POST /api/query | /api/mutation | /api/action
//     body    {"path": "voiceCloneJobs:getPendingJobs", "args": {...}, "format": "json"}
//             (the npm client's form, "args": [{...}] with "convex_encoded_json", works too)
//     200     {"status": "success", "value": ..., "logLines": []}
//     200     {"status": "error", "errorMessage": "...", "errorData"?: ..., "logLines": []}
//             when the function threw (errorData for a ConvexError)
//     4xx/5xx {"code": "...", "message": "..."} for everything else (bad key, bad request)
//
// Auth: `Authorization: Convex <admin key>` may call internal functions; no header or a
// `Bearer <jwt>` only public ones, the latter as the user the token's claims name (not
// verified: see identityOf). Started with CONVEX_STANDIN_ADMIN_KEY set, any other admin
// key is refused with 401.
//
// Test controls (not part of Convex's API): POST /_standin/reset empties the database;
// POST /_standin/faults {"status": 503, "count": 2} answers the next two API calls with that
// status without running them; with "after": true it runs them first (the reply is lost after
// the mutation committed), and "path": "module:function" limits it to that function.
//
// Usage: tsx tests/fakes/convex_standin/server.ts [--port N] [--host H]
// Prints one JSON line {"url": ..., "port": ...} on stdout once it listens. Exits when
// stdin closes, so a crashed parent never leaves it behind.

import { readdirSync } from "node:fs";
import { createServer, IncomingMessage, ServerResponse } from "node:http";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { convexTest } from "convex-test";
import { makeFunctionReference } from "convex/server";
import { ConvexError, convexToJson, jsonToConvex } from "convex/values";
import type { Value } from "convex/values";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const CONVEX_DIR = join(REPO, "convex");

type Kind = "query" | "mutation" | "action";
type Registered = { isQuery?: boolean; isMutation?: boolean; isAction?: boolean; isPublic?: boolean; isInternal?: boolean };

// The function modules, found the way `npx convex deploy` finds them (tests and schema aside).
function moduleFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      found.push(...moduleFiles(path));
    } else if (/\.(ts|js)$/.test(entry.name) && !entry.name.endsWith(".d.ts") && (entry.name.match(/\./g) ?? []).length === 1) {
      found.push(path);
    }
  }
  return found;
}

const modules: Record<string, () => Promise<any>> = Object.fromEntries(
  moduleFiles(CONVEX_DIR).map((path) => [path, () => import(pathToFileURL(path).href)]),
);

async function loadSchema() {
  return (await import(pathToFileURL(join(CONVEX_DIR, "schema.ts")).href)).default;
}

function parseArgs(argv: string[]): { port: number; host: string } {
  const opts = { port: 0, host: "127.0.0.1" };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--port") opts.port = Number(argv[++i]);
    else if (argv[i] === "--host") opts.host = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  return opts;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Why a function call failed, as the function error envelope carries it. */
class FunctionError extends Error {}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

async function main(): Promise<void> {
  const { port, host } = parseArgs(process.argv.slice(2));
  const adminKey = process.env.CONVEX_STANDIN_ADMIN_KEY || null;
  const schema = await loadSchema();
  let backend = convexTest(schema, modules);
  // `after`: run the call, then answer the fault (a reply lost after the mutation committed);
  // `path`: only calls of that function count.
  type Faults = { status: number; count: number; after: boolean; path?: string };
  let faults: Faults = { status: 503, count: 0, after: false };

  function callerIsAdmin(req: IncomingMessage): boolean {
    const header = req.headers.authorization;
    if (header === undefined) return false;
    if (header.startsWith("Convex ")) {
      if (adminKey !== null && header.slice("Convex ".length) !== adminKey) {
        throw new HttpError(401, "BadAdminKey", "The provided admin key was invalid for this instance");
      }
      return true;
    }
    if (header.startsWith("Bearer ")) return false; // a user's JWT: public functions only, as that user
    throw new HttpError(401, "BadAuthHeader", "Authorization header must be 'Convex <key>' or 'Bearer <token>'");
  }

  async function resolveFunction(path: string, kind: Kind, admin: boolean): Promise<void> {
    const [modulePath, exportName = "default"] = path.split(":");
    const file = Object.keys(modules).find(
      (f) => relative(CONVEX_DIR, f).replace(/\.[^.]+$/, "") === modulePath.replace(/\.js$/, ""),
    );
    const fn: Registered | undefined = file === undefined ? undefined : (await modules[file]())[exportName];
    const visible = fn !== undefined && (fn.isPublic || (admin && fn.isInternal));
    if (!visible) {
      const which = admin ? "function" : "public function";
      throw new FunctionError(
        `Could not find ${which} for '${path}'. Did you forget to run \`npx convex dev\` or \`npx convex deploy\`?`,
      );
    }
    const actual = fn.isQuery ? "query" : fn.isMutation ? "mutation" : "action";
    if (actual !== kind) {
      const cap = (s: string) => s[0].toUpperCase() + s.slice(1);
      throw new FunctionError(`Trying to execute ${path} as ${cap(kind)}, but it is defined as ${cap(actual)}.`);
    }
  }

  // A user's identity from `Authorization: Bearer <jwt>`. A deployment checks the token's
  // signature against the provider in auth.config.ts; the stand-in only decodes its claims
  // (tests make unsigned tokens), then maps them the way Convex does (sub -> subject).
  function identityOf(req: IncomingMessage): Record<string, unknown> | null {
    const header = req.headers.authorization;
    if (header === undefined || !header.startsWith("Bearer ")) return null;
    const parts = header.slice("Bearer ".length).trim().split(".");
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(Buffer.from(parts[1] ?? "", "base64url").toString("utf8"));
    } catch {
      throw new HttpError(401, "InvalidAuthHeader", "Could not parse the JWT in the Authorization header");
    }
    const { sub, iss, ...rest } = claims;
    if (typeof sub !== "string") {
      throw new HttpError(401, "InvalidAuthHeader", "The JWT has no subject (sub)");
    }
    const issuer = typeof iss === "string" ? iss : "https://standin.invalid";
    return { ...rest, subject: sub, issuer, tokenIdentifier: `${issuer}|${sub}` };
  }

  async function call(kind: Kind, req: IncomingMessage): Promise<[number, unknown]> {
    const admin = callerIsAdmin(req);
    const identity = identityOf(req);
    let body: { path?: unknown; args?: unknown; format?: unknown };
    try {
      body = JSON.parse(await readBody(req));
    } catch (err) {
      throw new HttpError(400, "BadJsonBody", `Failed to parse the request body as JSON: ${err}`);
    }
    if (typeof body.path !== "string" || body.path === "") {
      throw new HttpError(400, "BadJsonBody", "The request body needs a function `path`");
    }
    const format = body.format ?? "json";
    if (format !== "json" && format !== "convex_encoded_json") {
      throw new HttpError(400, "BadJsonBody", `Unsupported format ${JSON.stringify(format)}`);
    }
    const rawArgs = Array.isArray(body.args) ? (body.args[0] ?? {}) : (body.args ?? {});
    if (typeof rawArgs !== "object" || rawArgs === null || Array.isArray(rawArgs)) {
      throw new HttpError(400, "BadJsonBody", "`args` must be an object");
    }
    const faulty = faults.count > 0 && (faults.path === undefined || faults.path === body.path);
    if (faulty && !faults.after) {
      faults.count -= 1;
      throw new HttpError(faults.status, "InjectedFault", `injected fault (HTTP ${faults.status})`);
    }
    try {
      await resolveFunction(body.path, kind, admin);
      const args = jsonToConvex(rawArgs as any) as Record<string, Value>;
      const ref = makeFunctionReference<any>(body.path) as any;
      const caller = identity === null ? backend : backend.withIdentity(identity as Parameters<typeof backend.withIdentity>[0]);
      const value =
        kind === "query"
          ? await caller.query(ref, args)
          : kind === "mutation"
            ? await caller.mutation(ref, args)
            : await caller.action(ref, args);
      if (faulty && faults.after) {
        faults.count -= 1;
        throw new HttpError(faults.status, "InjectedFault", `injected fault after the call ran (HTTP ${faults.status})`);
      }
      return [200, { status: "success", value: convexToJson(value === undefined ? null : (value as Value)), logLines: [] }];
    } catch (err) {
      if (err instanceof HttpError) {
        throw err;
      }
      if (err instanceof FunctionError) {
        return [200, { status: "error", errorMessage: err.message, logLines: [] }];
      }
      if (err instanceof ConvexError) {
        return [
          200,
          { status: "error", errorMessage: err.message, errorData: convexToJson(err.data as Value), logLines: [] },
        ];
      }
      const message = err instanceof Error ? err.message : String(err);
      return [200, { status: "error", errorMessage: `Uncaught Error: ${message}`, logLines: [] }];
    }
  }

  const server = createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? "/", "http://standin");
      const route = url.pathname.replace(/\/+$/, "");
      if (req.method === "POST" && route === "/_standin/reset") {
        backend = convexTest(schema, modules);
        faults = { status: 503, count: 0, after: false };
        return send(res, 200, { ok: true });
      }
      if (req.method === "POST" && route === "/_standin/faults") {
        const body = JSON.parse((await readBody(req)) || "{}");
        faults = {
          status: Number(body.status ?? 503),
          count: Number(body.count ?? 1),
          after: Boolean(body.after ?? false),
          path: typeof body.path === "string" ? body.path : undefined,
        };
        return send(res, 200, { ok: true });
      }
      if (req.method === "GET" && route === "/version") {
        res.writeHead(200, { "Content-Type": "text/plain" });
        return res.end("convex-standin");
      }
      const match = /^\/api\/(query|mutation|action)$/.exec(route);
      if (match === null) {
        throw new HttpError(404, "NotFound", `No route for ${req.method} ${url.pathname}`);
      }
      if (req.method !== "POST") {
        throw new HttpError(405, "MethodNotAllowed", `${url.pathname} takes POST`);
      }
      const [status, body] = await call(match[1] as Kind, req);
      send(res, status, body);
    } catch (err) {
      if (err instanceof HttpError) {
        send(res, err.status, { code: err.code, message: err.message });
      } else {
        send(res, 500, { code: "InternalServerError", message: String(err) });
      }
    }
  });

  server.listen(port, host, () => {
    const address = server.address();
    const actualPort = typeof address === "object" && address !== null ? address.port : port;
    process.stdout.write(JSON.stringify({ url: `http://${host}:${actualPort}`, port: actualPort }) + "\n");
  });
  const stop = () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}

main().catch((err) => {
  process.stderr.write(`convex stand-in failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
});
