import { describe, expect, it } from "vitest";
import type { Caller } from "../../src/artifact.ts";
import { newArtifactId } from "../../src/artifact-id.ts";
import { uploadArtifact, type UploadDeps } from "../../src/service/artifact-service.ts";
import type { UploadMessage } from "../../src/service/upload-header.ts";
import { expectArtifactErrorAsync } from "../support/expect-artifact-error.ts";
import { EMPTY_RAW_SPEC } from "../support/raw-spec.ts";

/**
 * The checks uploadArtifact makes on the stream's first message, before it
 * touches the metadata store, the blob store or the quotas. Those are
 * stand-ins that throw StorageReached on first use: a header that passes
 * every check reaches them, one that fails any never does.
 */
class StorageReached extends Error {}
const untouchable = (name: string) =>
  new Proxy(
    {},
    {
      get: (_, property) => {
        throw new StorageReached(`${name}.${String(property)}`);
      },
    },
  );
const UPLOAD_MAX_BYTES = 100;
const deps = {
  metadata: untouchable("metadata"),
  blobs: untouchable("blobs"),
  quotas: untouchable("quotas"),
  uploadMaxBytes: UPLOAD_MAX_BYTES,
  sessionTtlMs: 60_000,
  uploadStaleMs: 60_000,
} as unknown as UploadDeps;
const CALLER: Caller = { tenantId: "alpha", principal: "ci", tokenId: "", scope: "read-write" };
const SPEC = EMPTY_RAW_SPEC;
const DIGEST = "0123456789abcdef".repeat(4);
const SESSION = newArtifactId("ups");

type Header = Extract<UploadMessage, { type: "header" }>;
const header = (changes: Partial<Header> = {}): Header => ({
  type: "header",
  spec: SPEC,
  expectedSize: undefined,
  expectedBlake3: "",
  sessionId: "",
  offset: 0,
  contentByDigest: false,
  ...changes,
});
const upload = (...messages: UploadMessage[]) =>
  uploadArtifact(
    deps,
    CALLER,
    (async function* () {
      yield* messages;
    })(),
    new AbortController().signal,
  );
const reachesStorage = (...messages: UploadMessage[]) => expect(upload(...messages)).rejects.toBeInstanceOf(StorageReached);

describe("an upload stream's header", () => {
  it("must come first, in a stream that is not empty", async () => {
    await expectArtifactErrorAsync(upload(), "invalid_argument", /^the upload stream was empty: send a header message first, then chunks$/);
    await expectArtifactErrorAsync(
      upload({ type: "chunk", pieces: [new Uint8Array(1)], byteLength: 1 }, header()),
      "invalid_argument",
      /^the first upload message was a chunk: send the header first, then chunks$/,
    );
    await expectArtifactErrorAsync(upload({ type: "empty" }), "invalid_argument", /^the first upload message was a empty/);
  });

  it("continues a session only with nothing but the session and offset set", async () => {
    const leaveUnset = /^with header\.session_id, the spec, expected_size and expected_blake3 come from the session: leave them unset$/;
    await expectArtifactErrorAsync(upload(header({ sessionId: SESSION })), "invalid_argument", leaveUnset);
    await expectArtifactErrorAsync(upload(header({ sessionId: SESSION, spec: undefined, expectedSize: 0 })), "invalid_argument", leaveUnset);
    await expectArtifactErrorAsync(upload(header({ sessionId: SESSION, spec: undefined, expectedBlake3: DIGEST })), "invalid_argument", leaveUnset);
    await reachesStorage(header({ sessionId: SESSION, spec: undefined, offset: 8 }));
  });

  it("takes an offset only with a session", async () => {
    await expectArtifactErrorAsync(upload(header({ offset: 8 })), "invalid_argument", /^header\.offset is only meaningful with header\.session_id$/);
  });

  it("needs a valid spec", async () => {
    await expectArtifactErrorAsync(upload(header({ spec: undefined })), "invalid_argument", /^spec is required/);
  });

  it("takes an expected size from 0 bytes up to the server's upload limit", async () => {
    await reachesStorage(header({ expectedSize: 0 }));
    await reachesStorage(header({ expectedSize: UPLOAD_MAX_BYTES }));
    await reachesStorage(header());
    for (const bad of [-1, 1.5]) {
      await expectArtifactErrorAsync(
        upload(header({ expectedSize: bad })),
        "invalid_argument",
        new RegExp(`^header\\.expected_size ${bad} is not valid: give the content length in bytes \\(>= 0\\)$`),
      );
    }
    await expectArtifactErrorAsync(
      upload(header({ expectedSize: UPLOAD_MAX_BYTES + 1 })),
      "resource_exhausted",
      /^header\.expected_size 101 exceeds this server's upload limit of 100 bytes$/,
    );
  });

  it("takes an expected digest of 64 lowercase hex characters", async () => {
    await reachesStorage(header({ expectedBlake3: DIGEST }));
    for (const bad of [DIGEST.toUpperCase(), DIGEST.slice(1), `${DIGEST}0`]) {
      await expectArtifactErrorAsync(
        upload(header({ expectedBlake3: bad })),
        "invalid_argument",
        /^header\.expected_blake3 must be 64 lowercase hex characters \(a BLAKE3-256 digest\)$/,
      );
    }
  });

  it("records content by digest only with its digest and size declared, and not for a session", async () => {
    const required =
      /^with header\.content_by_digest, expected_blake3 and expected_size are required: they name the content to record \(see FindMissingContent\)$/;
    await expectArtifactErrorAsync(upload(header({ contentByDigest: true })), "invalid_argument", required);
    await expectArtifactErrorAsync(upload(header({ contentByDigest: true, expectedSize: 10 })), "invalid_argument", required);
    await expectArtifactErrorAsync(upload(header({ contentByDigest: true, expectedBlake3: DIGEST })), "invalid_argument", required);
    await expectArtifactErrorAsync(
      upload(header({ contentByDigest: true, expectedBlake3: DIGEST.toUpperCase(), expectedSize: 10 })),
      "invalid_argument",
      /^header\.expected_blake3 must be 64 lowercase hex/,
    );
    await expectArtifactErrorAsync(
      upload(header({ contentByDigest: true, sessionId: SESSION, spec: undefined })),
      "invalid_argument",
      /^header\.content_by_digest cannot continue an upload session: leave session_id unset to record content the tenant has$/,
    );
    await reachesStorage(header({ contentByDigest: true, expectedBlake3: DIGEST, expectedSize: 0 }));
    await reachesStorage(header({ contentByDigest: true, expectedBlake3: DIGEST, expectedSize: 10 }));
  });
});
