import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";
import { sourceHash } from "./build-stamp.mjs";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
// The build is package data of the Python package, so `graphflow serve` works without Node.
const outDir = resolve(repoRoot, "graphflow", "web_dist");

function buildStamp(): Plugin {
  return {
    name: "graphflow-build-stamp",
    apply: "build",
    closeBundle() {
      const stamp = sourceHash(repoRoot);
      writeFileSync(resolve(outDir, "build-stamp.json"), `${JSON.stringify(stamp, null, 2)}\n`);
    },
  };
}

export default defineConfig({
  base: "./",
  plugins: [react(), buildStamp()],
  build: { outDir, emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  // workflows/txt2img.json (the default workflow) lies outside web/.
  server: { fs: { allow: [repoRoot] } },
  test: { include: ["tests/**/*.test.ts"], environment: "node" },
});
