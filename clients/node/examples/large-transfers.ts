// Large files: progress, cancellation, and transfers that survive a dropped connection.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createArtifactClient } from "@artifactd/client";

const client = createArtifactClient({
  baseUrl: process.env.ARTIFACTD_URL!,
  token: process.env.ARTIFACTD_TOKEN!,
  retry: { maxAttempts: 8, initialDelayMs: 200, maxDelayMs: 10_000 }, // UNAVAILABLE and dropped connections
});
const dir = await mkdtemp(path.join(os.tmpdir(), "example-"));
const file = path.join(dir, "shard-0001.bin");
await writeFile(file, randomBytes(20 * 1024 * 1024));

// 16 MiB and more go through a resumable upload session: after a drop it continues from the last stored part.
let sent = 0;
const { artifact } = await client.uploadFile(
  file,
  { kind: "dataset", name: "shard-0001.bin" },
  {
    onProgress: ({ bytes }) => (sent = bytes),
    signal: AbortSignal.timeout(10 * 60_000), // give up after ten minutes
  },
);
assert.equal(sent, 20 * 1024 * 1024);

// Downloads resume from the last byte received and are verified before the file is renamed into place.
await client.downloadToFile(artifact!.id, path.join(dir, "copy.bin"));
assert.equal((await stat(path.join(dir, "copy.bin"))).size, 20 * 1024 * 1024);
await rm(dir, { recursive: true });
await client.close();
