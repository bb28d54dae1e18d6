import { randomUUID } from "node:crypto";
import type { Artifact, ArtifactSpec, Caller } from "../artifact.ts";
import { ArtifactError, failedPrecondition, invalidArgument, notFound } from "../artifact-error.ts";
import { isArtifactId, newArtifactId } from "../artifact-id.ts";
import { BLAKE3_HEX_PATTERN, blake3Hex } from "../blake3.ts";
import { hasSessions, type BlobSessions, type BlobStore } from "../ports/blob-store.ts";
import type { ArtifactQueries } from "../ports/artifact-queries.ts";
import type { ArtifactRecords } from "../ports/artifact-records.ts";
import { WRITER_LEASE_MS, type SessionPart, type UploadSessionRecord, type UploadSessionStore } from "../ports/upload-session-store.ts";
import { keepAlive } from "./keep-alive.ts";
import { digestOfAssembled, type SessionDigests } from "./session-digests.ts";
import type { TenantQuotas } from "./tenant-quotas.ts";
import { discardReleased, newArtifactRecord, recordArtifact, type ArtifactRecording } from "./record-artifact.ts";
import { checkExpectedBlake3, checkExpectedSize } from "./upload-header.ts";
import type { UploadMetadata } from "./upload-stream-reader.ts";
import { validateSpec, type RawSpec } from "./validate-spec.ts";
import { checkNoNul } from "./field-checks.ts";
import { DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE } from "@artifactd/api";

/**
 * Resumable upload sessions (the pattern of tus, OCI chunked uploads and
 * ByteStream): unary calls that browsers can make, parts by number in any
 * order, each idempotent, then one complete that assembles, verifies,
 * deduplicates and records the artifact.
 *
 * State lives in the metadata database and the blob store's multipart
 * upload, so any replica can take any call of a session.
 */
export interface UploadSessionDeps {
  readonly metadata: ArtifactRecording &
    Pick<ArtifactRecords, "checkInputs"> &
    Pick<ArtifactQueries, "getArtifact"> & { readonly uploadSessions: UploadSessionStore };
  readonly blobs: BlobStore;
  readonly sessionTtlMs: number;
  readonly uploadMaxBytes: number;
  /** A complete renews its claim every third of this; a claim older than it is taken to have died with its replica. */
  readonly uploadStaleMs: number;
  /** Open sessions and stored bytes: checked at create (the declared size) and at every part. */
  readonly quotas: TenantQuotas;
  /** The content digests this server computes as parts arrive, so a complete reads back only what it lacks. */
  readonly digests: SessionDigests;
  readonly log?: (message: string, error?: unknown) => void;
}

export const MAX_PARTS = 10_000;

export interface SessionView {
  readonly session: UploadSessionRecord;
  readonly committedBytes: number;
  readonly resumeOffset: number;
}

export interface CreateSessionRequest {
  readonly spec: RawSpec | undefined;
  readonly expectedSize: number | undefined;
  readonly expectedBlake3: string;
  readonly partSize: number;
  readonly idempotencyKey: string;
}

export function viewOf(session: UploadSessionRecord): SessionView {
  let resumeParts = 0;
  while (session.parts[resumeParts]?.partNumber === resumeParts + 1 && session.parts[resumeParts]!.sizeBytes === session.partSize) resumeParts++;
  return {
    session,
    committedBytes: session.parts.reduce((sum, p) => sum + p.sizeBytes, 0),
    resumeOffset: resumeParts * session.partSize,
  };
}

function sessionBlobs(blobs: BlobStore): BlobStore & BlobSessions {
  if (!hasSessions(blobs)) throw new ArtifactError("unimplemented", "this server's blob store does not support upload sessions");
  return blobs;
}

export async function createUploadSession(deps: UploadSessionDeps, caller: Caller, request: CreateSessionRequest): Promise<SessionView> {
  if (request.idempotencyKey.length > 128) throw invalidArgument("idempotency_key is longer than 128 characters");
  checkNoNul("idempotency_key", request.idempotencyKey);
  // A retry first: the session it created stands whatever the rest of the
  // request says now (an input deleted, spec.expires_at passed meanwhile).
  if (request.idempotencyKey) {
    const existing = await findByIdempotencyKey(deps, caller, request.idempotencyKey);
    if (existing) return existing;
  }
  const now = new Date();
  const spec = validateSpec(request.spec, now);
  const partSize = request.partSize || DEFAULT_PART_SIZE;
  if (!Number.isSafeInteger(partSize) || partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE) {
    throw invalidArgument(`part_size ${request.partSize} is not valid: give ${MIN_PART_SIZE}–${MAX_PART_SIZE} bytes (5–64 MiB), or 0 for ${DEFAULT_PART_SIZE}`);
  }
  const expectedSize = checkExpectedSize("expected_size", request.expectedSize, deps.uploadMaxBytes);
  if (expectedSize !== undefined && Math.ceil(expectedSize / partSize) > MAX_PARTS) {
    throw invalidArgument(`expected_size ${expectedSize} needs more than ${MAX_PARTS} parts of ${partSize} bytes: choose a larger part_size`);
  }
  const expectedBlake3 = checkExpectedBlake3("expected_blake3", request.expectedBlake3);
  await deps.metadata.checkInputs(caller.tenantId, spec.inputs);
  await deps.quotas.checkNewSession(caller.tenantId, expectedSize);

  const blobs = sessionBlobs(deps.blobs);
  // Known before S3 knows it: a crash from here on leaves a record garbage collection follows.
  const key = blobs.newKey(caller.tenantId);
  await deps.metadata.uploadsInFlight.begin(caller.tenantId, key);
  let ref: string;
  try {
    ({ ref } = await blobs.beginSession(caller.tenantId, key));
  } catch (error) {
    await releaseAndDiscard(deps, key);
    throw error;
  }
  const { session, created } = await deps.metadata.uploadSessions
    .create({
      id: newArtifactId("ups"),
      tenantId: caller.tenantId,
      idempotencyKey: request.idempotencyKey || undefined,
      spec,
      expectedSize,
      expectedBlake3,
      partSize,
      storageKey: key,
      multipartId: ref,
      createdBy: caller.principal,
      expiresAt: new Date(now.getTime() + deps.sessionTtlMs),
    })
    .catch(async (error: unknown) => {
      // The session may or may not have been recorded. Releasing is safe either way (a recorded session removed the
      // in-flight row in its own transaction); garbage collection then takes the upload only if it was not.
      await deps.metadata.uploadsInFlight.release(key).catch(() => {});
      throw error;
    });
  // A concurrent create with the same key won: drop ours.
  if (!created) await releaseAndDiscard(deps, key);
  else deps.quotas.sessionOpened(caller.tenantId);
  return viewOf(session);
}

/** What dropping a session's storage touches (the maintenance pass has no more): the session records, the keys in flight and the blob index that may hold a key. */
interface SessionCleanupDeps extends Pick<UploadSessionDeps, "blobs" | "log"> {
  readonly metadata: Pick<UploadSessionDeps["metadata"], "uploadSessions" | "uploadsInFlight" | "blobHoldsKey">;
}

async function releaseAndDiscard(deps: SessionCleanupDeps, key: string): Promise<void> {
  try {
    await deps.metadata.uploadsInFlight.release(key);
  } catch (error) {
    // The key stays in flight without a heartbeat: garbage collection takes it once stale.
    deps.log?.(`releasing upload key ${key} failed`, error);
    return;
  }
  await discardReleased(deps, key);
}

async function findByIdempotencyKey(deps: UploadSessionDeps, caller: Caller, key: string): Promise<SessionView | undefined> {
  const existing = await deps.metadata.uploadSessions.findByIdempotencyKey(caller.tenantId, key);
  if (!existing) return undefined;
  if (existing.expiresAt.getTime() > Date.now()) return viewOf(existing);
  // The key's earlier session has expired: clear it so the key can be reused.
  await dropSession(deps, existing);
  return undefined;
}

/**
 * Drops an expired session: open or completed ones at once, one being
 * completed only once its claim is stale (its replica died) and taken over.
 * Its storage key is released in the same transaction, then discarded.
 */
async function dropSession(deps: SessionCleanupDeps & Pick<UploadSessionDeps, "uploadStaleMs">, session: UploadSessionRecord): Promise<boolean> {
  let claim: string | undefined;
  if (session.state === "completing") {
    claim = randomUUID();
    const taken = await deps.metadata.uploadSessions.beginCompleting(session.tenantId, session.id, claim, deps.uploadStaleMs);
    if (!taken?.acquired) return false;
  }
  const result = await deps.metadata.uploadSessions.abandon(session.tenantId, session.id, {
    states: claim ? ["completing"] : ["open", "completed"],
    ...(claim ? { claim } : {}),
  });
  if (!("deleted" in result)) return false;
  if (result.deleted.state !== "completed") await discardReleased(deps, result.deleted.storageKey);
  return true;
}

export async function getUploadSession(deps: UploadSessionDeps, caller: Caller, id: string): Promise<SessionView> {
  return viewOf(await liveSession(deps, caller, id));
}

/** The caller's session, unless it does not exist or has expired (the sweeper may not have removed it yet). */
export async function liveSession(deps: Pick<UploadSessionDeps, "metadata">, caller: Caller, id: string): Promise<UploadSessionRecord> {
  if (!id) throw invalidArgument("session_id is required");
  if (!isArtifactId(id) || !id.startsWith("ups_")) throw invalidArgument(`session_id ${JSON.stringify(id.slice(0, 80))} is not an upload session id (ups_…)`);
  const session = await deps.metadata.uploadSessions.get(caller.tenantId, id);
  if (!session) throw gone(id);
  checkNotExpired(session);
  return session;
}

/** Expiry is decided on each call against the session's expires_at; the sweeper only reclaims space. */
export function checkNotExpired(session: UploadSessionRecord): void {
  if (session.expiresAt.getTime() <= Date.now()) throw gone(session.id);
}

function gone(id: string): ArtifactError {
  return notFound(`upload session ${id} does not exist or has expired: create a new one`);
}

export async function uploadSessionPart(
  deps: UploadSessionDeps,
  caller: Caller,
  request: { sessionId: string; partNumber: number; data: Uint8Array; partBlake3: string },
): Promise<SessionView> {
  const session = await liveSession(deps, caller, request.sessionId);
  const { partNumber, data } = request;
  checkPart(deps, session, partNumber, data.byteLength);
  if (request.partBlake3 !== "") {
    if (!BLAKE3_HEX_PATTERN.test(request.partBlake3)) throw invalidArgument("part_blake3 must be 64 lowercase hex characters");
    const actual = blake3Hex(data);
    if (actual !== request.partBlake3)
      throw invalidArgument(`part ${partNumber}'s BLAKE3 is ${actual}, not the declared ${request.partBlake3}: send the part again`);
  }
  if (session.state !== "open") throw failedPrecondition(`upload session ${session.id} is ${session.state} and takes no more parts`);
  if (session.assembled) throw assembledAlready(session.id);
  if (session.writerId !== undefined) throw heldByWriter(session.id);
  await storePart(deps, caller, session, partNumber, data, undefined);
  const now = await deps.metadata.uploadSessions.get(caller.tenantId, session.id);
  if (!now) throw notFound(`upload session ${session.id} was aborted while part ${partNumber} arrived`);
  return viewOf(now);
}

/**
 * Checks a part before anything of it is stored: its number, its size for
 * the session's part size and declared size, and that it ends within the
 * server's upload limit.
 */
export function checkPart(deps: Pick<UploadSessionDeps, "uploadMaxBytes">, session: UploadSessionRecord, partNumber: number, size: number): void {
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
    throw invalidArgument(`part_number ${partNumber} is out of range: parts are numbered 1–${MAX_PARTS}`);
  }
  checkPartSize(session, partNumber, size);
  // Undeclared sizes too: no part may reach past the server's upload limit (the declared size was checked at create).
  const partEnd = (partNumber - 1) * session.partSize + size;
  if (partEnd > deps.uploadMaxBytes) {
    throw new ArtifactError(
      "resource_exhausted",
      `part ${partNumber} ends at byte ${partEnd}, past this server's upload limit of ${deps.uploadMaxBytes} bytes (ARTIFACTD_UPLOAD_MAX_BYTES): nothing was stored`,
    );
  }
}

/**
 * Stores a checked part and records it in the session, counted against the
 * tenant's stored-bytes quota. `writerId`: the streaming writer holding the
 * session; undefined for an UploadPart call, which lands only while no
 * writer holds it. The record is a compare-and-set: a session no longer
 * open, or held by another writer, refuses it.
 */
export async function storePart(
  deps: UploadSessionDeps,
  caller: Caller,
  session: UploadSessionRecord,
  partNumber: number,
  data: Uint8Array,
  writerId: string | undefined,
): Promise<void> {
  const storage = deps.quotas.reserveStorage(caller.tenantId);
  let recorded: "recorded" | "closed" | "held" | undefined;
  let part: SessionPart | undefined;
  try {
    await storage.add(data.byteLength);
    const { etag } = await sessionBlobs(deps.blobs).putPart(session.storageKey, session.multipartId, partNumber, data);
    part = { partNumber, sizeBytes: data.byteLength, etag };
    recorded = await deps.metadata.uploadSessions.recordPart(session.id, part, writerId);
  } finally {
    storage.release(recorded === "recorded");
  }
  // Its bytes are in memory now: towards the content's digest, so the complete need not read them back.
  if (recorded === "recorded") deps.digests.partStored(session, part!, data);
  // A part refused here may have replaced the stored one; the recorded etag still names the accepted bytes, and
  // assembling checks every part against it, so refused bytes never reach the blob.
  if (recorded === "held") throw heldByWriter(session.id);
  if (recorded === "closed")
    throw failedPrecondition(`upload session ${session.id} began completing (or was aborted) while part ${partNumber} arrived; the part was not added`);
}

export function heldByWriter(id: string): ArtifactError {
  return new ArtifactError(
    "aborted",
    `upload session ${id} is held by a streaming upload bound to it (its one writer): wait for it to end, or for its lease to lapse (${WRITER_LEASE_MS / 1000} s after its server stopped renewing it), then resume`,
  );
}

function assembledAlready(id: string): ArtifactError {
  return failedPrecondition(`upload session ${id} was already assembled by an earlier complete: call CompleteUploadSession again to record it`);
}

function checkPartSize(session: UploadSessionRecord, partNumber: number, size: number): void {
  if (size > session.partSize) throw invalidArgument(`part ${partNumber} has ${size} bytes, more than the session's part_size of ${session.partSize}`);
  if (session.expectedSize === undefined) {
    if (size === 0) throw invalidArgument(`part ${partNumber} is empty: parts carry 1 – part_size bytes (an empty upload has no parts)`);
    return;
  }
  const lastPart = Math.ceil(session.expectedSize / session.partSize);
  if (partNumber > lastPart) {
    throw invalidArgument(`part ${partNumber} is past the end: expected_size ${session.expectedSize} makes ${lastPart} part(s) of ${session.partSize} bytes`);
  }
  const wanted = partNumber < lastPart ? session.partSize : session.expectedSize - (lastPart - 1) * session.partSize;
  if (size !== wanted) {
    throw invalidArgument(`part ${partNumber} has ${size} bytes but must have ${wanted}: every part but the last has part_size (${session.partSize}) bytes`);
  }
}

/**
 * Completes a session. The session is claimed first (one compare-and-set): a
 * concurrent Abort answers ABORTED, a concurrent Complete ABORTED. The claim
 * is renewed while the content is assembled and its digest finished (from
 * the parts this server hashed or holds; the rest read back from the
 * assembled object: `readBackBytes`, logged with the session), and the artifact
 * row commits together with the session's completion (createArtifact with a
 * session hold): either both are recorded or neither. On a failure the claim
 * is given back (state open; an assembly that finished is remembered), so a
 * retry records the same content; after an unknown commit outcome, a retry
 * finds the session completed and returns its artifact. Nothing here deletes
 * stored content: a session dropped for a wrong digest releases its key to
 * garbage collection in the same transaction.
 */
export async function completeUploadSession(
  deps: UploadSessionDeps,
  caller: Caller,
  id: string,
  /** A session stream's labels, tags and metrics: the spec's with its trailer merged in, checked (./upload-stream-reader.ts). */
  metadata?: UploadMetadata,
): Promise<{ artifact: Artifact; deduplicated: boolean; readBackBytes: number }> {
  let session = await liveSession(deps, caller, id);
  const store = deps.metadata.uploadSessions;
  // A retry after a lost response: the same artifact again.
  if (session.state === "completed") return { artifact: await completedArtifact(deps, caller, session), deduplicated: false, readBackBytes: 0 };
  const claim = randomUUID();
  const begun = await store.beginCompleting(caller.tenantId, id, claim, deps.uploadStaleMs);
  if (!begun) throw notFound(`upload session ${id} does not exist or has expired: create a new one`);
  if (!begun.acquired) {
    if (begun.session.state === "completed") return { artifact: await completedArtifact(deps, caller, begun.session), deduplicated: false, readBackBytes: 0 };
    throw new ArtifactError("aborted", `upload session ${id} is being completed by another call: retry in a moment to get its artifact`);
  }
  session = begun.session;
  const claimed = session;
  const blobs = sessionBlobs(deps.blobs);
  const heartbeat = keepAlive(() => store.renewClaim(id, claim), deps.uploadStaleMs / 3);
  let dropped = false;
  try {
    checkComplete(claimed);
    let readBackBytes = 0;
    let stored: { key: string; size: number; digest: string };
    if (claimed.assembled) {
      deps.digests.forget(id);
      stored = { key: claimed.storageKey, ...claimed.assembled };
    } else {
      const assembled = await blobs.completeSession(caller.tenantId, claimed.storageKey, claimed.multipartId, claimed.parts);
      const hashed = await digestOfAssembled(deps.digests.take(id), claimed.parts, claimed.partSize, (range) => blobs.read(assembled.key, range));
      if (hashed.size !== assembled.size) {
        throw new Error(`upload session ${id} was assembled into ${assembled.size} bytes, but its parts hold ${hashed.size}`);
      }
      stored = { key: assembled.key, size: assembled.size, digest: hashed.digest };
      readBackBytes = hashed.readBackBytes;
      deps.log?.(`upload session ${id} assembled: ${stored.size} bytes, ${readBackBytes} of them read back from the store for its BLAKE3`);
      await store.markAssembled(id, claim, stored.size, stored.digest);
    }

    if (claimed.expectedBlake3 !== undefined && stored.digest !== claimed.expectedBlake3) {
      // The content is wrong for good: drop the session, releasing its storage to garbage collection.
      const result = await store.abandon(caller.tenantId, id, { states: ["completing"], claim });
      dropped = "deleted" in result;
      if (dropped) await discardReleased(deps, claimed.storageKey);
      throw invalidArgument(
        `the uploaded content's BLAKE3 is ${stored.digest} but the session declared ${claimed.expectedBlake3}: nothing was stored; create a new session`,
      );
    }
    const spec: ArtifactSpec = metadata ? { ...claimed.spec, ...metadata } : claimed.spec;
    if (heartbeat.lost) throw new ArtifactError("aborted", `upload session ${id} was taken over by another complete: complete it again to get its artifact`);
    const result = await recordArtifact(
      deps,
      newArtifactRecord({ tenantId: caller.tenantId, spec, sizeBytes: stored.size, blake3: stored.digest, createdBy: claimed.createdBy }),
      {
        hold: { session: { id, claim, storageKey: claimed.storageKey } },
        store: async () => {},
        discard: async () => {},
      },
    );
    return { ...result, readBackBytes };
  } catch (error) {
    // Give the claim back: the session stays usable (its parts, or its assembled object) for a retry. If the
    // artifact's commit did happen after all, the session is completed and this changes nothing.
    if (!dropped) await store.reopen(id, claim).catch((e: unknown) => deps.log?.(`reopening upload session ${id} failed (its claim lapses instead)`, e));
    throw error;
  } finally {
    heartbeat.stop();
  }
}

/** Checks that leave the session usable: the client can add parts and retry. */
function checkComplete(session: UploadSessionRecord): void {
  if (session.assembled) return;
  const { id } = session;
  const missing: number[] = [];
  const last = session.parts.at(-1)?.partNumber ?? 0;
  const present = new Set(session.parts.map((p) => p.partNumber));
  for (let n = 1; n <= last; n++) if (!present.has(n)) missing.push(n);
  if (missing.length > 0) {
    throw failedPrecondition(
      `upload session ${id} is missing part(s) ${missing.slice(0, 20).join(", ")}${missing.length > 20 ? ", …" : ""}: upload them, then complete again`,
    );
  }
  const short = session.parts.find((p, i) => i < session.parts.length - 1 && p.sizeBytes !== session.partSize);
  if (short) {
    throw failedPrecondition(
      `part ${short.partNumber} has ${short.sizeBytes} bytes; every part but the last must have part_size (${session.partSize}) bytes: upload it again`,
    );
  }
  const total = session.parts.reduce((sum, p) => sum + p.sizeBytes, 0);
  if (session.expectedSize !== undefined && total !== session.expectedSize) {
    throw failedPrecondition(
      `upload session ${id} holds ${total} bytes but expected_size is ${session.expectedSize}: upload the missing parts, then complete again`,
    );
  }
}

async function completedArtifact(deps: UploadSessionDeps, caller: Caller, session: UploadSessionRecord): Promise<Artifact> {
  const artifact = session.artifactId ? await deps.metadata.getArtifact(caller.tenantId, session.artifactId) : undefined;
  if (!artifact) throw notFound(`the artifact of upload session ${session.id} no longer exists`);
  return artifact;
}

/**
 * Abandons an open session, in one compare-and-set with its storage key
 * released in the same transaction; then the key's storage is discarded (or,
 * should that fail, garbage collection takes it). A session being completed
 * answers ABORTED, a completed one FAILED_PRECONDITION: an abort never
 * succeeds alongside a complete.
 */
export async function abortUploadSession(deps: UploadSessionDeps, caller: Caller, id: string): Promise<void> {
  await liveSession(deps, caller, id);
  let result = await deps.metadata.uploadSessions.abandon(caller.tenantId, id, { states: ["open"] });
  if ("kept" in result && result.kept === "completing") {
    // A complete whose claim went stale died with its replica: the abort takes the session over and drops it.
    const claim = randomUUID();
    const taken = await deps.metadata.uploadSessions.beginCompleting(caller.tenantId, id, claim, deps.uploadStaleMs);
    if (taken?.acquired) result = await deps.metadata.uploadSessions.abandon(caller.tenantId, id, { states: ["completing"], claim });
  }
  if ("deleted" in result) {
    deps.digests.forget(id);
    await discardReleased(deps, result.deleted.storageKey);
    return;
  }
  switch (result.kept) {
    case "completing":
      throw new ArtifactError("aborted", `upload session ${id} is being completed and cannot be aborted now: ask again shortly (it may become an artifact)`);
    case "completed":
      throw failedPrecondition(`upload session ${id} is already completed: delete its artifact instead`);
    default:
      throw notFound(`upload session ${id} does not exist or has expired`);
  }
}

/** Removes expired sessions and their stored parts. Returns how many. */
export async function expireUploadSessions(deps: SessionCleanupDeps & Pick<UploadSessionDeps, "uploadStaleMs">, now = new Date()): Promise<number> {
  if (!hasSessions(deps.blobs)) return 0;
  let count = 0;
  for (;;) {
    const expired = await deps.metadata.uploadSessions.listExpired(now, 100);
    let dropped = 0;
    for (const session of expired) if (await dropSession(deps, session)) dropped++;
    count += dropped;
    // A batch that dropped nothing holds only sessions still being completed: the next pass looks again.
    if (expired.length < 100 || dropped === 0) return count;
  }
}
