import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import net from "node:net";
import { describe, expect, it } from "vitest";
import type { UploadRequestSchema } from "../src/gen/artifacts/v1/artifact_service_pb.js";
import { expectCode } from "./support/expect-code.ts";
import { startTestApp } from "./support/test-app.ts";

/** SIGTERM's path: stop accepting, let transfers finish within the grace period, cancel the rest cleanly. */
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;
const MiB = 1024 * 1024;

async function* slowUpload(kind: string, chunks: number, delayMs: number): AsyncIterable<UploadInit> {
  yield { message: { case: "header", value: { spec: { kind } } } };
  for (let i = 0; i < chunks; i++) {
    yield { message: { case: "chunk", value: randomBytes(MiB) } };
    await new Promise((r) => setTimeout(r, delayMs));
  }
}

const refusesConnections = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });

describe("graceful shutdown", () => {
  it("lets an upload in flight finish within the grace period and refuses new connections", async () => {
    const t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    const client = t.client();
    const upload = client.upload(slowUpload("graceful", 8, 100));
    upload.catch(() => {}); // awaited below; never an unhandled rejection meanwhile
    await new Promise((r) => setTimeout(r, 250));
    const stopping = t.app.server.shutdown(20_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(await refusesConnections(t.app.server.port)).toBe(true);
    const { artifact } = await upload;
    expect(artifact!.sizeBytes).toBe(BigInt(8 * MiB));
    await stopping;
    // Recorded: visible to a fresh server on the same database.
    expect((await t.app.metadata.getArtifact("alpha", artifact!.id))?.sizeBytes).toBe(8 * MiB);
    await t.close();
  });

  it("cancels what does not finish in time, leaving no artifact", async () => {
    const t = await startTestApp("postgres+minio", { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    // Observed from the start: the call fails while shutdown runs.
    const outcome = expectCode(t.client().upload(slowUpload("too-slow", 50, 100)), Code.Unavailable, /shutting down/);
    await new Promise((r) => setTimeout(r, 300));
    await t.app.server.shutdown(300);
    await outcome;
    const page = await t.app.metadata.listArtifacts("alpha", { kind: "too-slow", includeDeleted: true }, { pageSize: 10, pageToken: "" });
    expect(page.items).toEqual([]);
    await t.close();
  });
});
