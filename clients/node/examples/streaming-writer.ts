// A writer-style streaming save, then a verified download.
import assert from "node:assert/strict";
import { createArtifactClient } from "@artifactd/client";

const client = createArtifactClient({ baseUrl: process.env.ARTIFACTD_URL!, token: process.env.ARTIFACTD_TOKEN! });

async function* checkpoints() {
  for (let epoch = 1; epoch <= 3; epoch++) yield Buffer.alloc(1024 * 1024, epoch); // stands in for real bytes
}

let id: string;
{
  await using writer = client.openWriter({ kind: "model", name: "resnet.pt", provenance: { runId: "run-42" } });
  for await (const chunk of checkpoints()) await writer.write(chunk); // awaiting is backpressure
  writer.addMetrics({ accuracy: 0.93 }).addLabels({ stage: "candidate" });
  const { artifact } = await writer.commit(); // leaving the block without commit records nothing
  id = artifact!.id;
}

const bytes = await client.loadBytes(id); // verified against the artifact's BLAKE3
assert.equal(bytes.byteLength, 3 * 1024 * 1024);
assert.deepEqual((await client.get(id)).metrics, { accuracy: 0.93 });
await client.close();
