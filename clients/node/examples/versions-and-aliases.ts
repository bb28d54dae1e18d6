// Versions of a name, an alias moved on approval, and references instead of ids.
import assert from "node:assert/strict";
import { createArtifactClient, Status } from "@artifactd/client";

const client = createArtifactClient({ baseUrl: process.env.ARTIFACTD_URL!, token: process.env.ARTIFACTD_TOKEN! });

// Each save of a versioned name is its next version: 1, 2, 3… in commit order, per project and name.
const spec = { kind: "config", name: "thresholds", project: "fraud", versioned: true };
const first = await client.saveJson({ block: 0.9 }, spec);
const second = await client.saveJson({ block: 0.8 }, spec);
assert.equal(second.version, first.version + 1n);

// `latest` follows the newest version not deleted; an alias points where it is told.
assert.deepEqual(await client.loadJson("fraud/thresholds:latest"), { block: 0.8 });
await client.setAlias(`fraud/thresholds@v${first.version}`, "production", { reason: "reviewed" });
assert.deepEqual(await client.loadJson("artifact://fraud/thresholds:production"), { block: 0.9 });

// Approving can move the alias in the same transaction; the history keeps every move.
await client.rpc.setStatus({ id: second.id, status: Status.REVIEW });
await client.rpc.setStatus({ id: second.id, status: Status.APPROVED, moveAlias: "production" });
assert.equal((await client.get("fraud/thresholds:production")).id, second.id);
const moves = [];
for await (const move of client.aliasHistory("fraud/thresholds", { alias: "production" })) {
  moves.push(move.toVersion);
  if (moves.length === 2) break; // newest first: the two moves above (a run before this one left older ones)
}
assert.deepEqual(moves, [second.version, first.version]);

// Versions newest first, a page at a time, each with its aliases.
for await (const page of client.listVersions("fraud/thresholds")) {
  assert.deepEqual(page[0]!.aliases, ["latest", "production"]);
  break; // the newest is on the first page
}
await client.close();
