import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Client as MinioClient } from "minio";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { blobStoreState, type BlobStoreState } from "../support/blob-store-state.ts";
import { expectCode } from "../support/expect-code.ts";
import { minioClient } from "../support/minio-client.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

/**
 * ARTIFACTD_UPLOAD_MAX_BYTES on both backends: a streaming Upload that
 * declares more is refused before any content is sent, one that does not
 * declare is refused as it passes the limit (the client is still sending),
 * and upload sessions are held to it at create and per part. Every refusal
 * is RESOURCE_EXHAUSTED naming the limit, records no artifact and leaves
 * nothing in the blob store. (tenant-quotas.test.ts checks the session
 * messages on postgres+minio; here the point is that nothing is stored.)
 */
const MiB = 1024 * 1024;
const LIMIT = 6 * MiB;
const PART = 5 * MiB;
type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

describe.each(BACKENDS)("the upload size limit on %s", (backend) => {
  let t: TestApp;
  let minio: MinioClient | undefined;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_UPLOAD_MAX_BYTES: String(LIMIT), ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    minio = backend === "postgres+minio" ? minioClient() : undefined;
  });
  afterAll(async () => {
    await t?.close();
  });

  const artifactsOfKind = async (kind: string) => (await t.client().listArtifacts({ filter: { kind } })).artifacts;
  /** A refused call removes what it stored on its way out: the store must come back to `before`, polled with a deadline. */
  const expectStoreBackTo = async (before: BlobStoreState) => {
    const deadline = Date.now() + 10_000;
    let now = await blobStoreState(t, minio);
    while (JSON.stringify(now.entries) !== JSON.stringify(before.entries) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      now = await blobStoreState(t, minio);
    }
    expect(now.entries).toEqual(before.entries);
  };

  it("refuses a stream declaring more than the limit before any content, storing nothing", async () => {
    const before = await blobStoreState(t, minio);
    let chunksPulled = 0;
    const refused = t.client().upload(
      (async function* (): AsyncGenerator<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "declared-too-big" }, expectedSize: BigInt(LIMIT + 1) } } };
        // The content would follow; the server must answer from the header alone.
        await new Promise((r) => setTimeout(r, 30_000));
        chunksPulled++;
        yield { message: { case: "chunk", value: randomBytes(1024) } };
      })(),
    );
    await expectCode(refused, Code.ResourceExhausted, new RegExp(`expected_size ${LIMIT + 1} exceeds this server's upload limit of ${LIMIT} bytes`));
    expect(chunksPulled).toBe(0);
    expect(await artifactsOfKind("declared-too-big")).toEqual([]);
    await expectStoreBackTo(before);
  });

  it("refuses an undeclared stream as it passes the limit, while the client is still sending, storing nothing", async () => {
    const before = await blobStoreState(t, minio);
    // Far more than the limit: a server that only checked at the end would take all of it, or hang.
    const offered = 20 * LIMIT;
    let sent = 0;
    const refused = t.client().upload(
      (async function* (): AsyncGenerator<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "undeclared-too-big" } } } };
        while (sent < offered) {
          const chunk = randomBytes(256 * 1024);
          sent += chunk.byteLength;
          yield { message: { case: "chunk", value: chunk } };
        }
      })(),
    );
    await expectCode(refused, Code.ResourceExhausted, new RegExp(`exceeds this server's limit of ${LIMIT} bytes`));
    // What the client got out before the refusal reached it: the limit plus what HTTP/2 flow control lets through.
    expect(sent).toBeLessThan(offered / 2);
    expect(await artifactsOfKind("undeclared-too-big")).toEqual([]);
    await expectStoreBackTo(before);
  });

  it("takes a stream of exactly the limit", async () => {
    const data = randomBytes(LIMIT);
    const { artifact } = await t.client().upload(
      (async function* (): AsyncGenerator<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "at-the-limit" } } } };
        for (let at = 0; at < data.length; at += MiB) yield { message: { case: "chunk", value: data.subarray(at, at + MiB) } };
      })(),
    );
    expect(artifact!.sizeBytes).toBe(BigInt(LIMIT));
  });

  it("holds upload sessions to it: a declared size at create, a part that would end past it, storing nothing for either", async () => {
    await expectCode(
      t.client().createUploadSession({ spec: { kind: "session-too-big" }, expectedSize: BigInt(LIMIT + 1), partSize: BigInt(PART) }),
      Code.ResourceExhausted,
      new RegExp(`expected_size ${LIMIT + 1} exceeds this server's upload limit of ${LIMIT} bytes`),
    );
    const { session } = await t.client().createUploadSession({ spec: { kind: "session-too-big" }, partSize: BigInt(PART) });
    const sessionId = session!.sessionId;
    await t.client().uploadPart({ sessionId, partNumber: 1, data: randomBytes(PART) });
    const withOnePart = await blobStoreState(t, minio);
    // Part 2 would end at 10 MiB: parts summing past the limit.
    await expectCode(
      t.client().uploadPart({ sessionId, partNumber: 2, data: randomBytes(PART) }),
      Code.ResourceExhausted,
      new RegExp(`part 2 ends at byte ${2 * PART}, past this server's upload limit of ${LIMIT} bytes \\(ARTIFACTD_UPLOAD_MAX_BYTES\\): nothing was stored`),
    );
    expect((await t.client().getUploadSession({ sessionId })).session!.committedParts).toEqual([1]);
    await expectStoreBackTo(withOnePart);
    expect(await artifactsOfKind("session-too-big")).toEqual([]);
    await t.client().abortUploadSession({ sessionId });
  });
});
