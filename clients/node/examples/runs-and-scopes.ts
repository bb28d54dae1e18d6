// A job's steps saving under one scope, then the best model, its lineage and the runs that used it.
import assert from "node:assert/strict";
import { createArtifactClient, Status } from "@artifactd/client";

const client = createArtifactClient({ baseUrl: process.env.ARTIFACTD_URL!, token: process.env.ARTIFACTD_TOKEN! });
const job = `sweep-${Date.now()}`;

// Every save of a scoped client carries its provenance; a call's own values win.
for (const lr of [0.1, 0.01]) {
  const step = client.withScope({ parentRunId: job, runId: `${job}-lr${lr}`, toolName: "trainer" });
  const data = await step.saveJson({ rows: 1000 }, { kind: "dataset", name: "train-split" });
  await step.saveText(`weights for lr=${lr}`, {
    kind: "model",
    name: "classifier",
    metrics: { accuracy: lr === 0.01 ? 0.93 : 0.88 },
    inputs: [{ artifactId: data.id, role: "training-data" }],
  });
}

// Queries of a scoped client see only its artifacts: here, the job's.
const sweep = client.withScope({ parentRunId: job });
const best = (await sweep.best("model", "accuracy"))!;
assert.equal(best.metrics.accuracy, 0.93);

// An evaluation reads the model without producing one: record the use.
const evaluation = client.withScope({ runId: `${job}-eval`, parentRunId: job });
await evaluation.recordUsage({ artifactId: best.id, role: "evaluation-model" }); // run: the scope's
await client.setStatus(best.id, Status.REVIEW);
await client.pin(best.id);

const lineage = await client.lineage(best.id);
assert.equal(lineage.ancestors[0]!.name, "train-split");
assert.deepEqual(
  lineage.usages.map((u) => [u.runId, u.role]),
  [[`${job}-eval`, "evaluation-model"]],
);
await client.close();
