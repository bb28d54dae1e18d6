import type { Client as MinioClient } from "minio";
import { readdirSync, statSync, type Dirent } from "node:fs";
import path from "node:path";
import pg from "pg";
import { UPLOAD_JOURNAL_PREFIX } from "../../src/adapters/blob/s3-blob-store.ts";
import { unfinishedUploadsOf } from "./blob-store-state.ts";
import { minioClient } from "./minio-client.ts";
import type { TestApp } from "./test-app.ts";

/**
 * "Nothing recorded, nothing stored" for one failed upload, checked by what
 * the upload used — its storage keys, its artifact and session ids — in the
 * metadata database and in the blob store itself, never by counting rows or
 * by listing the whole bucket (MinIO answers such listings incompletely after
 * a restart).
 */
export interface UploadTrail {
  /** Storage keys the blob store handed out for the upload (see captureStorageKeys). */
  readonly keys: readonly string[];
  /** Artifact ids the upload could have recorded (a session's artifact_id, an id a client saw). */
  readonly artifactIds?: readonly string[];
  readonly sessionIds?: readonly string[];
  /** The tenant the upload ran as; the embedded database is read through the store, which asks per tenant. */
  readonly tenantId?: string;
}

/**
 * Records every storage key the app's blob store hands out until disposed:
 * the keys an upload stores under, known before its first byte.
 */
export function captureStorageKeys(t: TestApp): { readonly keys: readonly string[] } & Disposable {
  const blobs = t.app.blobs;
  const original = blobs.newKey;
  const keys: string[] = [];
  blobs.newKey = (tenantId) => {
    const key = original.call(blobs, tenantId);
    keys.push(key);
    return key;
  };
  return {
    keys,
    [Symbol.dispose]: () => {
      blobs.newKey = original;
    },
  };
}

/**
 * Polls until nothing of the upload is left, failing at the deadline with
 * what still was. `deadlineMs: 0` looks once (for a moment by which the
 * clean-up must already be done, such as the end of a shutdown).
 *
 * A clean look while a handler is still running proves little: it could
 * store or record after the look. So the look that passes is one taken after
 * the server was seen with no call in flight (every handler, clean-up
 * included, had returned): nothing can change what it sees afterwards.
 */
export async function expectNothingStored(t: TestApp, trail: UploadTrail, options: { deadlineMs?: number } = {}): Promise<void> {
  if (trail.keys.length === 0 && (trail.sessionIds ?? []).length === 0 && (trail.artifactIds ?? []).length === 0) {
    throw new Error("expectNothingStored was given no storage key, session or artifact id: it would check nothing");
  }
  const waitMs = options.deadlineMs ?? 10_000;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const callsInFlight = t.app.server.callsInFlight;
    const left = [...(await recordsLeft(t, trail)), ...(await storageLeft(t, trail.keys))];
    if (left.length === 0 && callsInFlight === 0) return;
    if (Date.now() >= deadline) {
      throw new Error(
        left.length > 0
          ? `the failed upload left behind, after ${waitMs} ms:\n  ${left.join("\n  ")}`
          : `nothing was left, but ${callsInFlight} call(s) were still running on the server after ${waitMs} ms, so that could still change`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** What the blob store holds under one key: the object, unfinished multipart uploads (or the incoming file and session folder). */
export async function storedUnder(t: TestApp, key: string): Promise<{ readonly what: string; readonly bytes: number }[]> {
  if (t.bucket) return s3StoredUnder(t, key);
  const root = path.join(t.dataDir, "blobs");
  const uuid = key.slice(-36);
  const found: { what: string; bytes: number }[] = [];
  for (const [what, file] of [
    ["object", path.join(root, key)],
    ["incoming file", path.join(root, "incoming", uuid)],
  ] as const) {
    const info = statSync(file, { throwIfNoEntry: false });
    if (info) found.push({ what: `${what} ${path.relative(root, file)} (${info.size} bytes)`, bytes: info.size });
  }
  const session = path.join(root, "sessions", uuid);
  const entries = readdirSyncIfAny(session);
  if (entries) {
    // Parts are `<number>.<etag>` (older ones `<number>`), written as `<number>.<uuid>.tmp` first: every file is stored bytes.
    const files = entries.filter((e) => e.isFile());
    const bytes = files.reduce((sum, e) => sum + (statSync(path.join(session, e.name), { throwIfNoEntry: false })?.size ?? 0), 0);
    found.push({ what: `session folder ${path.relative(root, session)} (${files.length} part files, ${bytes} bytes)`, bytes });
  }
  return found;
}

/**
 * Waits until the store holds at least `bytes` of an upload under its one
 * key (the failure then has something to undo); fails if it never does.
 */
export async function untilStored(t: TestApp, keys: readonly string[], bytes: number, deadlineMs = 10_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const held = keys.length === 1 ? (await storedUnder(t, keys[0]!)).reduce((sum, s) => sum + s.bytes, 0) : 0;
    if (held >= bytes) return;
    if (Date.now() > deadline) throw new Error(`the server never held ${bytes} bytes of the upload (keys ${JSON.stringify(keys)}, held ${held})`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function readdirSyncIfAny(dir: string): Dirent[] | undefined {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
}

async function storageLeft(t: TestApp, keys: readonly string[]): Promise<string[]> {
  const left: string[] = [];
  for (const key of keys) for (const { what } of await storedUnder(t, key)) left.push(`stored: ${what}`);
  return left;
}

let minio: MinioClient | undefined;
/** One client of the run's MinIO for the whole file. */
const bucketClient = (): MinioClient => (minio ??= minioClient());

async function s3StoredUnder(t: TestApp, key: string): Promise<{ what: string; bytes: number }[]> {
  const client = bucketClient();
  const found: { what: string; bytes: number }[] = [];
  const sizeOf = (name: string) =>
    client.statObject(t.bucket!, name).then(
      ({ size }) => size,
      (error: { code?: string }) => (error.code === "NotFound" ? undefined : Promise.reject(error)),
    );
  const size = await sizeOf(key);
  if (size !== undefined) found.push({ what: `object ${key} (${size} bytes)`, bytes: size });
  // The S3 store's journal entry for the key goes with its upload (see UploadJournal in the S3 adapter).
  if ((await sizeOf(UPLOAD_JOURNAL_PREFIX + key)) !== undefined) found.push({ what: `upload journal entry ${UPLOAD_JOURNAL_PREFIX}${key}`, bytes: 0 });
  for (const { uploadId, bytes } of await unfinishedUploadsOf(client, t.bucket!, key)) {
    found.push({ what: `unfinished multipart upload ${key} ${uploadId} (${bytes} bytes in parts)`, bytes });
  }
  return found;
}

async function recordsLeft(t: TestApp, trail: UploadTrail): Promise<string[]> {
  return t.databaseUrl ? postgresRecordsLeft(t.databaseUrl, trail) : embeddedRecordsLeft(t, trail);
}

/** Read with SQL of its own, beside the service's store: what the tables hold, not what the store's queries make of them. */
async function postgresRecordsLeft(databaseUrl: string, trail: UploadTrail): Promise<string[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const keys = [...trail.keys];
    const sessionIds = [...(trail.sessionIds ?? [])];
    const artifactIds = [...(trail.artifactIds ?? [])];
    const rows = async (what: string, query: string, values: unknown[]) =>
      (await client.query<{ row: string }>(query, values)).rows.map((r) => `recorded: ${what} ${r.row}`);
    return [
      ...(await rows(
        "artifact",
        `select a.id || ' (kind ' || a.kind || ')' as row from artifacts a
           left join blobs b on b.tenant_id = a.tenant_id and b.digest = a.blob_digest
          where a.id = any($1) or b.storage_key = any($2)
             or a.id in (select artifact_id from upload_sessions where id = any($3))`,
        [artifactIds, keys, sessionIds],
      )),
      ...(await rows("blob", "select storage_key || ' (digest ' || digest || ')' as row from blobs where storage_key = any($1)", [keys])),
      ...(await rows(
        "upload in flight",
        "select storage_key || case when released_at is null then ' (held)' else ' (released)' end as row from uploads_in_flight where storage_key = any($1)",
        [keys],
      )),
      ...(await rows(
        "upload session",
        "select id || ' (' || state || ', key ' || storage_key || ')' as row from upload_sessions where id = any($1) or storage_key = any($2)",
        [sessionIds, keys],
      )),
      ...(await rows("upload session part", "select session_id || ' part ' || part_number as row from upload_session_parts where session_id = any($1)", [
        sessionIds,
      ])),
    ];
  } finally {
    await client.end();
  }
}

/**
 * Embedded PGlite has one owner, the running app: it is read through the
 * app's store, by id and by key.
 */
async function embeddedRecordsLeft(t: TestApp, trail: UploadTrail): Promise<string[]> {
  const { metadata } = t.app;
  const tenantId = trail.tenantId ?? "alpha";
  const left: string[] = [];
  const artifactIds = new Set(trail.artifactIds ?? []);
  for (const id of trail.sessionIds ?? []) {
    const session = await metadata.uploadSessions.get(tenantId, id);
    if (!session) continue;
    left.push(`recorded: upload session ${id} (${session.state}, ${session.parts.length} parts, key ${session.storageKey})`);
    if (session.artifactId) artifactIds.add(session.artifactId);
  }
  for (const id of artifactIds) {
    const artifact = await metadata.getArtifact(tenantId, id);
    if (artifact) left.push(`recorded: artifact ${id} (kind ${artifact.kind})`);
  }
  // An artifact of the upload's own content needs a blob row naming its key (a foreign key), so no such row, no such artifact.
  const known = await metadata.knownStorageKeys(trail.keys);
  for (const key of trail.keys) {
    if (await metadata.blobHoldsKey(key)) left.push(`recorded: blob ${key}`);
    else if (known.has(key)) left.push(`recorded: upload in flight or open upload session ${key}`);
  }
  return left;
}
