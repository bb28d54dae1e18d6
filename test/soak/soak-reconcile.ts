import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import type { Client as MinioClient } from "minio";
import pg from "pg";
import { UPLOAD_JOURNAL_PREFIX } from "../../src/adapters/blob/s3-blob-store.ts";
import { verifyDownload, type Ack, type ArtifactClient, type SoakState } from "./soak-workload.ts";

/**
 * The soak's final checks, run once everything is up again and GC has run:
 * what was acknowledged is there and intact, nothing the metadata points at
 * is missing, and nothing is stored that the metadata does not hold.
 *
 * Unfinished multipart uploads are counted in a way that survives a MinIO
 * restart. On the MinIO build the tests use, ListMultipartUploads with an
 * empty (or partial) prefix only answers uploads started since that MinIO
 * process came up; listing by an exact object key still finds older ones.
 * So they are counted twice over and joined: (i) listed per key the service
 * ever knew (blobs, upload_sessions, uploads_in_flight) or the soak saw, and
 * (ii) read from MinIO's disk, where each unfinished upload is a folder
 * `<data>/.minio.sys/multipart/<sha256("<bucket>/<key>")>/<upload>/` — the
 * upload id is base64 of "<deployment id>.<upload folder>" (seen by starting
 * uploads, killing MinIO and looking; an aborted upload's folder goes at once).
 */
export interface Reconciliation {
  lost: number;
  /** Acknowledged artifacts that would not download after retries (also counted in lost). */
  unreadable: number;
  corrupt: number;
  /** Live blob artifacts whose blob row, or that row's object, is missing or of the wrong size. */
  missing_content: number;
  orphan_objects: number;
  unfinished_uploads: number;
  unfinished_uploads_listed: number;
  unfinished_uploads_on_disk: number;
  /** The S3 store's records of uploads it started, naming no unfinished upload: harmless bookkeeping, dropped by the store within an hour. */
  stale_journal_entries: number;
  watch_missed: number;
  watch_duplicates: number;
  /** Whether the uploads_in_flight table exists (the server records uploads before their first byte). */
  uploads_in_flight_table: boolean;
  /** A few examples of each failure, for diagnosis. */
  examples: Record<string, string[]>;
}

export interface ReconcileInputs {
  readonly client: ArtifactClient;
  readonly state: SoakState;
  readonly databaseUrl: string;
  readonly minio: MinioClient;
  readonly bucket: string;
  readonly minioDataDir: string;
  /** Storage keys the soak saw while it ran (./soak-reconcile.ts spotKeys). */
  readonly seenKeys: ReadonlySet<string>;
}

export async function reconcile(inputs: ReconcileInputs): Promise<Reconciliation> {
  const examples: Record<string, string[]> = {};
  const note = (kind: string, what: string) => {
    const list = (examples[kind] ??= []);
    if (list.length < 8) list.push(what);
  };
  const result: Reconciliation = {
    lost: 0,
    unreadable: 0,
    corrupt: 0,
    missing_content: 0,
    orphan_objects: 0,
    unfinished_uploads: 0,
    unfinished_uploads_listed: 0,
    unfinished_uploads_on_disk: 0,
    stale_journal_entries: 0,
    watch_missed: 0,
    watch_duplicates: 0,
    uploads_in_flight_table: false,
    examples,
  };

  // 1. Every acknowledged artifact is listed and downloads intact.
  const listed = await listAllIds(inputs.client);
  const acks = [...new Map(inputs.state.acks.map((a) => [a.id, a])).values()];
  let next = 0;
  const check = async () => {
    for (let i = next++; i < acks.length; i = next++) {
      const ack = acks[i]!;
      const outcome = listed.has(ack.id) ? await downloadWithRetries(inputs.client, ack) : "not_listed";
      if (outcome === "ok") continue;
      if (outcome === "corrupt") {
        result.corrupt++;
        note("corrupt", `${ack.id} (${ack.via}, ${ack.size} B)`);
      } else {
        result.lost++;
        if (outcome === "unreadable") result.unreadable++;
        note("lost", `${ack.id} (${ack.via}, ${ack.size} B): ${outcome}`);
      }
    }
  };
  await Promise.all([check(), check()]);

  // 2–4. The metadata against the bucket.
  const db = new pg.Client({ connectionString: inputs.databaseUrl });
  await db.connect();
  try {
    const blobRows = (await db.query<{ storage_key: string; size_bytes: string }>("select storage_key, size_bytes from blobs")).rows;
    const blobKeys = new Map(blobRows.map((r) => [r.storage_key, Number(r.size_bytes)]));
    const missingRows = await db.query<{ id: string }>(
      `select a.id from artifacts a left join blobs b on b.tenant_id = a.tenant_id and b.digest = a.blob_digest
       where a.storage = 'blob' and a.deleted_at is null and b.digest is null`,
    );
    for (const row of missingRows.rows) {
      result.missing_content++;
      note("missing_content", `${row.id}: no blob row`);
    }
    const objects = new Map<string, number>();
    const modified = new Map<string, Date>();
    for await (const item of inputs.minio.listObjectsV2(inputs.bucket, "", true) as AsyncIterable<{ name?: string; size: number; lastModified?: Date }>) {
      if (!item.name) continue;
      objects.set(item.name, item.size);
      if (item.lastModified) modified.set(item.name, item.lastModified);
    }
    const heldKeys = await db.query<{ storage_key: string }>(
      `select distinct b.storage_key from blobs b join artifacts a on a.tenant_id = b.tenant_id and a.blob_digest = b.digest
       where a.storage = 'blob' and a.deleted_at is null`,
    );
    for (const { storage_key: key } of heldKeys.rows) {
      const size = objects.get(key);
      if (size === undefined || size !== blobKeys.get(key)) {
        result.missing_content++;
        note("missing_content", `${key}: ${size === undefined ? "no object" : `object of ${size} B, row says ${blobKeys.get(key)}`}`);
      }
    }
    const journalKeys: string[] = [];
    for (const [key, size] of objects) {
      if (blobKeys.has(key)) continue;
      // The S3 store's own record of an upload it started (see UPLOAD_JOURNAL_PREFIX), checked below.
      if (key.startsWith(UPLOAD_JOURNAL_PREFIX)) {
        journalKeys.push(key.slice(UPLOAD_JOURNAL_PREFIX.length));
        continue;
      }
      result.orphan_objects++;
      note("orphan_objects", `${key} (${size} B, stored ${modified.get(key)?.toISOString() ?? "?"})`);
    }

    const sessionKeys = (await db.query<{ storage_key: string }>("select storage_key from upload_sessions")).rows.map((r) => r.storage_key);
    const inFlight = await uploadsInFlightKeys(db);
    result.uploads_in_flight_table = inFlight !== undefined;
    const keys = new Set([...blobKeys.keys(), ...sessionKeys, ...(inFlight ?? []), ...inputs.seenKeys]);
    const listedUploads = new Map<string, string>();
    for (const key of keys) {
      for await (const upload of inputs.minio.listIncompleteUploads(inputs.bucket, key, true) as AsyncIterable<{ key: string; uploadId: string }>) {
        if (upload.key === key) listedUploads.set(uploadFolder(upload.uploadId), key);
      }
    }
    const onDisk = uploadsOnDisk(inputs.minioDataDir);
    const keyByHash = new Map([...keys].map((key) => [sha256(`${inputs.bucket}/${key}`), key]));
    result.unfinished_uploads_listed = listedUploads.size;
    result.unfinished_uploads_on_disk = onDisk.length;
    const all = new Map(listedUploads);
    for (const { objectHash, upload } of onDisk)
      if (!all.has(upload)) all.set(upload, keyByHash.get(objectHash) ?? `unknown key (object hash ${objectHash.slice(0, 12)}…)`);
    result.unfinished_uploads = all.size;
    for (const [upload, key] of all) note("unfinished_uploads", `${key} upload ${upload}${startedAt(upload)}`);
    // An entry left by a kill between an upload's end and the entry's removal holds no storage, and the
    // store drops it within the hour: counted apart, not as a leak.
    const unfinishedKeys = new Set(all.values());
    for (const key of journalKeys) {
      if (unfinishedKeys.has(key)) continue;
      result.stale_journal_entries++;
      note("stale_journal_entries", key);
    }
  } finally {
    await db.end();
  }

  // 5. The watcher saw each acknowledged artifact's creation exactly once.
  const created = new Map<string, number>();
  for (const event of inputs.state.events) if (event.type === "CREATED") created.set(event.id, (created.get(event.id) ?? 0) + 1);
  for (const ack of acks) {
    const seen = created.get(ack.id) ?? 0;
    if (seen === 0) {
      result.watch_missed++;
      note("watch_missed", ack.id);
    } else if (seen > 1) {
      result.watch_duplicates += seen - 1;
      note("watch_duplicates", `${ack.id} ×${seen}`);
    }
  }
  return result;
}

async function listAllIds(client: ArtifactClient): Promise<Set<string>> {
  const ids = new Set<string>();
  let pageToken = "";
  for (;;) {
    const page = await client.listArtifacts({ pageSize: 500, pageToken }, { timeoutMs: 30_000 });
    for (const artifact of page.artifacts) ids.add(artifact.id);
    if (!page.nextPageToken) return ids;
    pageToken = page.nextPageToken;
  }
}

async function downloadWithRetries(client: ArtifactClient, ack: Ack): Promise<"ok" | "corrupt" | "not_found" | "unreadable"> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await verifyDownload(client, ack, AbortSignal.timeout(120_000));
    } catch (error) {
      lastError = error;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  void lastError;
  return "unreadable";
}

/** Storage keys in uploads_in_flight (its layout is the server's: any column holding a key counts); undefined when the table does not exist. */
export async function uploadsInFlightKeys(db: pg.Client): Promise<string[] | undefined> {
  try {
    const rows = (await db.query<{ row: Record<string, unknown> }>("select to_jsonb(u) as row from uploads_in_flight u")).rows;
    return rows.flatMap(({ row }) =>
      typeof row.storage_key === "string" ? [row.storage_key] : Object.values(row).filter((v): v is string => typeof v === "string" && STORAGE_KEY.test(v)),
    );
  } catch (error) {
    if ((error as { code?: string }).code === "42P01") return undefined;
    throw error;
  }
}

/** `<tenant>/<uuid>`, the S3 store's layout. */
const STORAGE_KEY = /^[^/]+\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function uploadsOnDisk(dataDir: string): Array<{ objectHash: string; upload: string }> {
  const root = path.join(dataDir, ".minio.sys", "multipart");
  if (!existsSync(root)) return [];
  return readdirSync(root).flatMap((objectHash) => readdirSync(path.join(root, objectHash)).map((upload) => ({ objectHash, upload })));
}

/** The folder name MinIO keeps an upload in: the part of its decoded id after the deployment id. */
function uploadFolder(uploadId: string): string {
  const decoded = Buffer.from(uploadId, "base64").toString("utf8");
  const dot = decoded.indexOf(".");
  return dot >= 0 ? decoded.slice(dot + 1) : uploadId;
}

/** MinIO's upload folder ends in "x<start time in ns>": when the upload began, to line up with the logs. */
function startedAt(upload: string): string {
  const match = /x(\d{16,})$/.exec(upload);
  return match ? ` (begun ${new Date(Number(BigInt(match[1]!) / 1_000_000n)).toISOString()})` : "";
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Notes storage keys while the soak runs, every `intervalMs`: upload
 * sessions' and uploads in flight from Postgres, and MinIO's listing of
 * unfinished uploads (complete only for uploads since its last start). Any
 * of them may be down: a failed look is skipped.
 */
export function spotKeys(
  databaseUrl: string,
  minio: MinioClient,
  bucket: string,
  signal: AbortSignal,
  intervalMs = 1_000,
): { keys: Set<string>; done: Promise<void> } {
  const keys = new Set<string>();
  const look = async () => {
    const db = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 1_000, query_timeout: 2_000 });
    db.on("error", () => {});
    try {
      await db.connect();
      for (const row of (await db.query<{ storage_key: string }>("select storage_key from upload_sessions")).rows) keys.add(row.storage_key);
      for (const key of (await uploadsInFlightKeys(db)) ?? []) keys.add(key);
    } catch {
      // Postgres is down: the next look.
    } finally {
      await db.end().catch(() => {});
    }
    try {
      for await (const upload of minio.listIncompleteUploads(bucket, "", true) as AsyncIterable<{ key: string }>) keys.add(upload.key);
    } catch {
      // MinIO is down: the next look.
    }
  };
  const done = (async () => {
    while (!signal.aborted) {
      await look();
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return { keys, done };
}
