import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { Storage } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";
import { randomBytes } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { expectCode } from "../support/expect-code.ts";
import { captureStorageKeys, expectNothingStored } from "../support/nothing-stored.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

async function* uploadStream(messages: UploadInit[]): AsyncIterable<UploadInit> {
  yield* messages;
}

function chunks(data: Uint8Array, size: number): UploadInit[] {
  const out: UploadInit[] = [];
  for (let i = 0; i < data.length; i += size) out.push({ message: { case: "chunk", value: data.subarray(i, i + size) } });
  return out;
}

async function downloadAll(t: TestApp, id: string, range: { offset?: bigint; length?: bigint } = {}) {
  let artifact;
  const parts: Uint8Array[] = [];
  for await (const response of t.client().download({ id, ...range })) {
    if (response.message.case === "artifact") artifact = response.message.value;
    else if (response.message.case === "chunk") parts.push(response.message.value);
  }
  return { artifact, data: Buffer.concat(parts) };
}

describe.each(BACKENDS)("ArtifactService on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // No maintenance pass: what a refused upload stored must be gone by its own doing, not collected.
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB", ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  it("uploads a blob larger than several parts and downloads it intact", async () => {
    const data = randomBytes(17 * 1024 * 1024 + 123);
    const digest = blake3Hex(data);
    const response = await t.client().upload(
      uploadStream([
        {
          message: {
            case: "header",
            value: { spec: { kind: "dataset", name: "big.bin", labels: { split: "train" } }, expectedSize: BigInt(data.length), expectedBlake3: digest },
          },
        },
        ...chunks(data, 256 * 1024),
        { message: { case: "trailer", value: { metrics: { rows: 42 }, tags: ["late"] } } },
      ]),
    );
    const artifact = response.artifact!;
    expect(artifact.id).toMatch(/^art_[0-9a-z]{26}$/);
    expect(artifact.sizeBytes).toBe(BigInt(data.length));
    expect(artifact.blake3).toBe(digest);
    expect(artifact.storage).toBe(Storage.BLOB);
    expect(artifact.labels).toEqual({ split: "train" });
    expect(artifact.metrics).toEqual({ rows: 42 });
    expect(artifact.tags).toEqual(["late"]);
    expect(response.deduplicated).toBe(false);

    const downloaded = await downloadAll(t, artifact.id);
    expect(downloaded.artifact?.blake3).toBe(digest);
    expect(downloaded.data.length).toBe(data.length);
    expect(blake3Hex(downloaded.data)).toBe(digest);
  });

  it("stores identical content once per tenant", async () => {
    const data = randomBytes(300_000);
    const up = () => t.client().upload(uploadStream([{ message: { case: "header", value: { spec: { kind: "log" } } } }, ...chunks(data, 65536)]));
    const first = await up();
    const second = await up();
    expect(first.deduplicated).toBe(false);
    expect(second.deduplicated).toBe(true);
    expect(second.artifact!.id).not.toBe(first.artifact!.id);
    expect(second.artifact!.blake3).toBe(first.artifact!.blake3);
    const blob = await t.app.metadata.findBlob("alpha", first.artifact!.blake3);
    expect(blob?.sizeBytes).toBe(data.length);
  });

  it("serves byte ranges", async () => {
    const data = randomBytes(1_000_000);
    const { artifact } = await t.client().upload(uploadStream([{ message: { case: "header", value: { spec: { kind: "log" } } } }, ...chunks(data, 100_000)]));
    const middle = await downloadAll(t, artifact!.id, { offset: 123_456n, length: 500_000n });
    expect(middle.data.equals(data.subarray(123_456, 623_456))).toBe(true);
    const tail = await downloadAll(t, artifact!.id, { offset: 999_000n });
    expect(tail.data.equals(data.subarray(999_000))).toBe(true);
    const pastEnd = await downloadAll(t, artifact!.id, { offset: 999_990n, length: 1_000n });
    expect(pastEnd.data.equals(data.subarray(999_990))).toBe(true);
    const atEnd = await downloadAll(t, artifact!.id, { offset: 1_000_000n });
    expect(atEnd.data.length).toBe(0);
    await expectCode(downloadAll(t, artifact!.id, { offset: 1_000_001n }), Code.OutOfRange, /past the end/);
  });

  it("stores and serves empty blobs", async () => {
    const { artifact } = await t.client().upload(uploadStream([{ message: { case: "header", value: { spec: { kind: "empty" }, expectedSize: 0n } } }]));
    expect(artifact!.sizeBytes).toBe(0n);
    expect(artifact!.blake3).toBe(blake3Hex(new Uint8Array(0)));
    const downloaded = await downloadAll(t, artifact!.id);
    expect(downloaded.data.length).toBe(0);
    expect(downloaded.artifact?.id).toBe(artifact!.id);
  });

  it("saves JSON and text inline and returns them byte for byte", async () => {
    const json = '{"records_processed": 1250, "tables": ["orders", "products"]}';
    const saved = await t.client().saveInline({ spec: { kind: "summary", provenance: { runId: "run-1" } }, content: { case: "json", value: json } });
    expect(saved.artifact!.id).toMatch(/^json_/);
    expect(saved.artifact!.storage).toBe(Storage.INLINE);
    expect(saved.artifact!.blake3).toBe(blake3Hex(Buffer.from(json)));
    const got = await t.client().getArtifact({ id: saved.artifact!.id, includeContent: true });
    expect(got.artifact!.inlineContent?.content).toEqual({ case: "json", value: json });
    expect((await downloadAll(t, saved.artifact!.id)).data.toString()).toBe(json);

    const text = await t.client().saveInline({ spec: { kind: "log" }, content: { case: "text", value: "héllo\n" } });
    expect(text.artifact!.id).toMatch(/^txt_/);
    expect((await downloadAll(t, text.artifact!.id)).data.toString()).toBe("héllo\n");
  });

  it("lists with filters and pages", async () => {
    const runId = `run-${Math.random()}`;
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { artifact } = await t.client().saveInline({
        spec: { kind: "metric", name: `m-${i}`, labels: { "weird.key'\"$": i % 2 ? "odd" : "even" }, tags: [`t${i}`], provenance: { runId } },
        content: { case: "text", value: String(i) },
      });
      ids.push(artifact!.id);
    }
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await t.client().listArtifacts({ filter: { provenance: { runId } }, pageSize: 2, pageToken });
      expect(page.artifacts.length).toBeLessThanOrEqual(2);
      seen.push(...page.artifacts.map((a) => a.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([...ids].reverse());

    const odd = await t.client().listArtifacts({ filter: { provenance: { runId }, labels: { "weird.key'\"$": "odd" } } });
    expect(odd.artifacts.map((a) => a.name).sort()).toEqual(["m-1", "m-3"]);
    const tagged = await t.client().listArtifacts({ filter: { provenance: { runId }, tagsAny: ["t0", "t4"] } });
    expect(tagged.artifacts.map((a) => a.name).sort()).toEqual(["m-0", "m-4"]);
    const prefixed = await t.client().listArtifacts({ filter: { provenance: { runId }, namePrefix: "m-2" } });
    expect(prefixed.artifacts.map((a) => a.name)).toEqual(["m-2"]);
    const wildcard = await t.client().listArtifacts({ filter: { provenance: { runId }, namePrefix: "m_%" } });
    expect(wildcard.artifacts).toEqual([]);
    await expectCode(t.client().listArtifacts({ pageToken: "garbage" }), Code.InvalidArgument, /page_token/);
  });

  it("soft-deletes: record kept, content gone, pinned refused", async () => {
    const { artifact } = await t.client().saveInline({ spec: { kind: "note" }, content: { case: "text", value: "bye" } });
    const deleted = await t.client().deleteArtifact({ id: artifact!.id });
    expect(deleted.artifact!.deletedAt).toBeDefined();
    const got = await t.client().getArtifact({ id: artifact!.id });
    expect(got.artifact!.deletedAt).toBeDefined();
    await expectCode(downloadAll(t, artifact!.id), Code.NotFound, /deleted/);
    const listed = await t.client().listArtifacts({ filter: { kind: "note" } });
    expect(listed.artifacts.map((a) => a.id)).not.toContain(artifact!.id);

    const pinned = await t.client().saveInline({ spec: { kind: "note", pinned: true }, content: { case: "text", value: "keep" } });
    await expectCode(t.client().deleteArtifact({ id: pinned.artifact!.id }), Code.FailedPrecondition, /pinned/);
  });

  it("keeps tenants apart: another tenant's id is NOT_FOUND", async () => {
    const { artifact } = await t.client().saveInline({ spec: { kind: "secret" }, content: { case: "text", value: "alpha only" } });
    const beta = t.client(t.tokens.beta);
    await expectCode(beta.getArtifact({ id: artifact!.id }), Code.NotFound);
    await expectCode(downloadAll({ ...t, client: () => beta }, artifact!.id), Code.NotFound);
    await expectCode(beta.deleteArtifact({ id: artifact!.id }), Code.NotFound);
    const listed = await beta.listArtifacts({});
    expect(listed.artifacts.map((a) => a.id)).not.toContain(artifact!.id);
  });

  describe("refuses bad input with a clear error and records nothing", () => {
    it("missing header, chunk before header: an upload refused after its header removes what it began itself", async () => {
      using storage = captureStorageKeys(t);
      await expectCode(t.client().upload(uploadStream([])), Code.InvalidArgument, /empty.*header/);
      await expectCode(
        t.client().upload(uploadStream([{ message: { case: "chunk", value: new Uint8Array(10) } }])),
        Code.InvalidArgument,
        /first upload message was a chunk/,
      );
      await expectCode(
        t
          .client()
          .upload(
            uploadStream([{ message: { case: "header", value: { spec: { kind: "x" } } } }, { message: { case: "header", value: { spec: { kind: "x" } } } }]),
          ),
        Code.InvalidArgument,
        /second header/,
      );
      await expectCode(
        t
          .client()
          .upload(
            uploadStream([
              { message: { case: "header", value: { spec: { kind: "x" } } } },
              { message: { case: "trailer", value: {} } },
              { message: { case: "chunk", value: new Uint8Array(1) } },
            ]),
          ),
        Code.InvalidArgument,
        /after the trailer/,
      );
      await expectCode(t.client().upload(uploadStream([{ message: { case: "header", value: {} } }])), Code.InvalidArgument, /spec is required/);
      // The second header and the chunk after the trailer are refused after a valid header: those two began storing.
      expect(storage.keys).toHaveLength(2);
      await expectNothingStored(t, { keys: storage.keys });
    });

    it("wrong digest, wrong size: the refused upload removes what it stored itself", async () => {
      using storage = captureStorageKeys(t);
      const data = randomBytes(10_000);
      await expectCode(
        t
          .client()
          .upload(uploadStream([{ message: { case: "header", value: { spec: { kind: "x" }, expectedBlake3: "0".repeat(64) } } }, ...chunks(data, 4096)])),
        Code.InvalidArgument,
        /BLAKE3 is [0-9a-f]{64} but the header declared/,
      );
      await expectCode(
        t.client().upload(uploadStream([{ message: { case: "header", value: { spec: { kind: "x" }, expectedSize: 9_999n } } }, ...chunks(data, 4096)])),
        Code.InvalidArgument,
        /more than the declared expected_size/,
      );
      await expectCode(
        t.client().upload(uploadStream([{ message: { case: "header", value: { spec: { kind: "x" }, expectedSize: 10_001n } } }, ...chunks(data, 4096)])),
        Code.InvalidArgument,
        /received 10000 bytes but the header declared expected_size 10001/,
      );
      await expectCode(
        t.client().upload(uploadStream([{ message: { case: "header", value: { spec: { kind: "x" }, expectedBlake3: "XYZ" } } }])),
        Code.InvalidArgument,
        /64 lowercase hex/,
      );
      // The malformed digest is refused before any key: three uploads stored something.
      expect(storage.keys).toHaveLength(3);
      await expectNothingStored(t, { keys: storage.keys });
      expect(await t.app.metadata.findBlob("alpha", blake3Hex(data))).toBeUndefined();
    });

    it("unknown and malformed ids", async () => {
      await expectCode(t.client().getArtifact({ id: "art_00000000000000000000000000" }), Code.NotFound, /does not exist/);
      await expectCode(t.client().getArtifact({ id: "../etc/passwd" }), Code.InvalidArgument, /not an artifact id/);
      await expectCode(t.client().getArtifact({ id: "" }), Code.InvalidArgument, /required/);
      await expectCode(downloadAll(t, "nope"), Code.InvalidArgument, /not an artifact id/);
      await expectCode(t.client().deleteArtifact({ id: "art_zzzzzzzzzzzzzzzzzzzzzzzzzz" }), Code.NotFound);
    });

    it("bad spec fields", async () => {
      await expectCode(t.client().saveInline({ spec: { kind: "" }, content: { case: "text", value: "x" } }), Code.InvalidArgument, /spec.kind is required/);
      await expectCode(t.client().saveInline({ spec: { kind: "a b" }, content: { case: "text", value: "x" } }), Code.InvalidArgument, /spec.kind/);
      await expectCode(
        t.client().saveInline({ spec: { kind: "k", metrics: { loss: Number.NaN } }, content: { case: "text", value: "x" } }),
        Code.InvalidArgument,
        /finite/,
      );
      await expectCode(
        t.client().saveInline({ spec: { kind: "k", mimeType: "not a type" }, content: { case: "text", value: "x" } }),
        Code.InvalidArgument,
        /mime_type/,
      );
      await expectCode(t.client().saveInline({ spec: { kind: "k" }, content: { case: "json", value: "{nope" } }), Code.InvalidArgument, /not a valid JSON/);
      await expectCode(t.client().saveInline({ spec: { kind: "k" } }), Code.InvalidArgument, /content is required/);
      await expectCode(
        t.client().saveInline({ spec: { kind: "k" }, content: { case: "json", value: '{"a": "\\u0000"}' } }),
        Code.InvalidArgument,
        /database refused/,
      );
      await expectCode(
        t.client().saveInline({ spec: { kind: "k", inputs: [{ artifactId: "art_00000000000000000000000000" }] }, content: { case: "text", value: "x" } }),
        Code.NotFound,
        /input artifact/,
      );
    });

    it("oversize inline content", async () => {
      await expectCode(
        t.client().saveInline({ spec: { kind: "k" }, content: { case: "text", value: "x".repeat(256 * 1024 + 1) } }),
        Code.ResourceExhausted,
        /inline limit.*Upload/,
      );
    });

    it("missing or wrong token", async () => {
      await expectCode(t.client(`adt_${"A".repeat(43)}`).listArtifacts({}), Code.Unauthenticated, /unknown or revoked/);
      await expectCode(t.client("nonsense").listArtifacts({}), Code.Unauthenticated, /malformed/);
    });
  });
});
