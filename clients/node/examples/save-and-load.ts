// Small results saved inline, read back by id or by artifact:// URI, with typed references.
import assert from "node:assert/strict";
import { artifactUri, createArtifactClient, type JsonRef } from "@artifactd/client";

const client = createArtifactClient({ baseUrl: process.env.ARTIFACTD_URL!, token: process.env.ARTIFACTD_TOKEN! });

const summary = await client.saveJson(
  { rows: 1250, nulls: 3 },
  { kind: "summary", name: "profile.json", labels: { table: "orders" }, provenance: { runId: "run-42", nodeId: "profile" } },
);
const ref: JsonRef = summary.id; // json_…: the type follows the id's prefix
const report = await client.saveText("# Orders\n1250 rows", {
  kind: "report",
  mimeType: "text/markdown",
  typePrefix: "doc",
  inputs: [{ artifactId: ref, role: "profile" }], // lineage: what the report was made from
});

const uri = artifactUri(ref); // "artifact://json_…", to keep in configs and messages
assert.deepEqual(await client.loadJson<{ rows: number }>(uri), { rows: 1250, nulls: 3 });
assert.equal(await client.loadText(report.id), "# Orders\n1250 rows");
assert.ok(report.id.startsWith("doc_"));
await client.close();
