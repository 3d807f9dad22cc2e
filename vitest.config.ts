import { defineConfig } from "vitest/config";

// Convex functions run in Convex's isolate runtime; edge-runtime is the closest stand-in,
// and convex-test must be inlined so that it shares vitest's module graph.
export default defineConfig({
  test: {
    environment: "edge-runtime",
    include: ["convex/**/*.test.ts"],
    server: { deps: { inline: ["convex-test"] } },
  },
});
