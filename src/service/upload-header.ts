import type { ArtifactSpec } from "../artifact.ts";
import { ArtifactError, invalidArgument } from "../artifact-error.ts";
import { BLAKE3_HEX_PATTERN } from "../blake3.ts";
import { validateSpec, type RawSpec } from "./validate-spec.ts";

/**
 * The first message of an upload stream, checked before anything is stored:
 * what it may hold, and what it asks for. Kept apart from the reader
 * (./upload-stream-reader.ts) because these checks are pure, so mutation
 * testing mutates this whole file.
 */

/** One message of an upload stream, as the transport hands it over. */
export type UploadMessage =
  | {
      readonly type: "header";
      readonly spec: RawSpec | undefined;
      readonly expectedSize: number | undefined;
      readonly expectedBlake3: string;
      /** Non-empty: the stream continues an upload session (./session-parts-sink.ts). */
      readonly sessionId: string;
      readonly offset: number;
      /** The content is one the tenant already has, named by expectedBlake3 and expectedSize: no chunk follows. */
      readonly contentByDigest: boolean;
    }
  /**
   * Content bytes: the pieces of one chunk message in order, as the transport
   * received them (joined, they are the message's bytes). Passed on as they
   * came, so no layer copies a message just to make it one buffer.
   */
  | { readonly type: "chunk"; readonly pieces: readonly Uint8Array[]; readonly byteLength: number }
  | {
      readonly type: "trailer";
      readonly labels: Readonly<Record<string, string>>;
      readonly tags: readonly string[];
      readonly metrics: Readonly<Record<string, number>>;
    }
  | { readonly type: "empty" };

/** What a checked header asks for: a new artifact with the content it declares, or more bytes for a session. */
export type UploadTarget =
  | {
      readonly type: "artifact";
      readonly spec: ArtifactSpec;
      readonly expectedSize: number | undefined;
      /** 64 lowercase hex characters, or undefined. */
      readonly expectedBlake3: string | undefined;
    }
  | { readonly type: "session"; readonly sessionId: string; readonly offset: number }
  | {
      /** A new artifact of content the tenant already has (./content-by-digest.ts): no bytes are sent. */
      readonly type: "by digest";
      readonly spec: ArtifactSpec;
      readonly expectedSize: number;
      readonly expectedBlake3: string;
    };

/** Checks the stream's first message; touches no storage. */
export function checkUploadHeader(header: UploadMessage | undefined, uploadMaxBytes: number): UploadTarget {
  if (header === undefined) throw invalidArgument("the upload stream was empty: send a header message first, then chunks");
  if (header.type !== "header") {
    throw invalidArgument(`the first upload message was a ${header.type}: send the header first, then chunks`);
  }
  if (header.sessionId !== "") {
    if (header.contentByDigest) {
      throw invalidArgument("header.content_by_digest cannot continue an upload session: leave session_id unset to record content the tenant has");
    }
    if (header.spec !== undefined || header.expectedSize !== undefined || header.expectedBlake3 !== "") {
      throw invalidArgument("with header.session_id, the spec, expected_size and expected_blake3 come from the session: leave them unset");
    }
    return { type: "session", sessionId: header.sessionId, offset: header.offset };
  }
  if (header.offset !== 0) throw invalidArgument("header.offset is only meaningful with header.session_id");
  const spec = validateSpec(header.spec, new Date());
  const expectedSize = checkExpectedSize("header.expected_size", header.expectedSize, uploadMaxBytes);
  const expectedBlake3 = checkExpectedBlake3("header.expected_blake3", header.expectedBlake3);
  if (header.contentByDigest) {
    if (expectedBlake3 === undefined || expectedSize === undefined) {
      throw invalidArgument(
        "with header.content_by_digest, expected_blake3 and expected_size are required: they name the content to record (see FindMissingContent)",
      );
    }
    return { type: "by digest", spec, expectedSize, expectedBlake3 };
  }
  return { type: "artifact", spec, expectedSize, expectedBlake3 };
}

/** A declared content length (a header's, or a session's): whole bytes, within the server's upload limit. */
export function checkExpectedSize(field: string, expectedSize: number | undefined, uploadMaxBytes: number): number | undefined {
  if (expectedSize === undefined) return undefined;
  if (!Number.isSafeInteger(expectedSize) || expectedSize < 0) {
    throw invalidArgument(`${field} ${expectedSize} is not valid: give the content length in bytes (>= 0)`);
  }
  if (expectedSize > uploadMaxBytes) {
    throw new ArtifactError("resource_exhausted", `${field} ${expectedSize} exceeds this server's upload limit of ${uploadMaxBytes} bytes`);
  }
  return expectedSize;
}

/** A declared content digest (a header's, or a session's): empty for none, else a BLAKE3-256 in lowercase hex. */
export function checkExpectedBlake3(field: string, expectedBlake3: string): string | undefined {
  if (expectedBlake3 === "") return undefined;
  if (!BLAKE3_HEX_PATTERN.test(expectedBlake3)) throw invalidArgument(`${field} must be 64 lowercase hex characters (a BLAKE3-256 digest)`);
  return expectedBlake3;
}
