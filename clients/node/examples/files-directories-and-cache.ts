// Files and folders: staged writes, directory artifacts, and the verified local cache.
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { createArtifactClient } from "@artifactd/client";

const client = createArtifactClient({
  baseUrl: process.env.ARTIFACTD_URL!,
  token: process.env.ARTIFACTD_TOKEN!,
  cacheMaxBytes: 2 * 1024 ** 3, // least recently used entries go past 2 GiB
});

// A tool that insists on writing to a path: stage it, then ingest it.
const staged = await client.stagePath(".csv");
await writeFile(staged, "id,score\n1,0.93\n");
const table = await client.ingestFile(staged, { kind: "dataset", name: "scores.csv", labels: { split: "test" } });

// A folder becomes one directory artifact; identical files are stored once.
const run = await client.stageDir("_checkpoint");
await mkdir(path.join(run, "weights"), { recursive: true });
await writeFile(path.join(run, "weights", "layer1.bin"), Buffer.alloc(4096, 1));
await writeFile(path.join(run, "config.json"), JSON.stringify({ layers: 1 }));
const checkpoint = await client.ingestDir(run, { kind: "checkpoint", provenance: { runId: "run-42" }, pinned: true });

// Local copies, verified with BLAKE3; the second call is served from the cache without a transfer.
const csv = await client.asLocalFile(table.id);
assert.equal(await readFile(csv, "utf8"), "id,score\n1,0.93\n");
assert.equal(await client.asLocalFile(table.id), csv);
const folder = await client.asLocalDir(checkpoint.id);
assert.deepEqual(JSON.parse(await readFile(path.join(folder, "config.json"), "utf8")), { layers: 1 });
await client.close();
