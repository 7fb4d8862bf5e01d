// The build stamp: one hash over every input of the editor's production build.
// tests/web/test_web_build.py computes the same hash in Python and fails when the committed
// build in graphflow/web_dist was made from other sources. Keep the two in step.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";

/** Repository-relative inputs of the build (web/tests and web/e2e are not inputs). */
export const STAMP_INPUTS = [
  "web/index.html",
  "web/package-lock.json",
  "web/vite.config.ts",
  "web/tsconfig.json",
  "web/build-stamp.mjs",
  "web/src",
  "workflows/txt2img.json",
];

function walk(path) {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path).flatMap((name) => walk(join(path, name)));
}

/** sha256 over "path\n" + bytes + "\n" of each input file, in sorted path order. */
export function sourceHash(repoRoot) {
  const files = STAMP_INPUTS.flatMap((item) => walk(join(repoRoot, item)))
    .map((file) => relative(repoRoot, file).split(sep).join("/"))
    .sort();
  const hash = createHash("sha256");
  for (const file of files) {
    hash.update(`${file}\n`);
    hash.update(readFileSync(join(repoRoot, file)));
    hash.update("\n");
  }
  return { source_hash: hash.digest("hex"), files: files.length };
}
