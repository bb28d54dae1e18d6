/**
 * Small-artifact cases: many short calls at a fixed concurrency, through the
 * service and straight to its stores.
 * - SaveInline of a ~200-byte text, against a direct Postgres insert of the
 *   equivalent row: one prepared single-row INSERT … RETURNING into the real
 *   `artifacts` table (every migration applied, so every index the service
 *   maintains) in a scratch database, a pg Pool sized to the concurrency;
 *   and against the same insert behind a lean Node service (the inline relay
 *   in plain-relay.ts: HTTP/1.1 POST, BLAKE3, a pg Pool of 10 as the
 *   service's), driven from an undici Pool of one connection per call in
 *   flight.
 * - A 4 KiB Upload, against minio-js putObject of 4 KiB: with its size
 *   declared (kept in the artifact's row, ARTIFACTD_UPLOAD_INLINE_MAX_BYTES),
 *   and without (the blob store).
 * Every call stores different content under a different name.
 */
import { randomBytes } from "node:crypto";
import { Kysely, PostgresDialect } from "kysely";
import type { Client } from "minio";
import pg from "pg";
import { Pool } from "undici";
import { Storage, type ArtifactClient } from "../../clients/node/src/index.ts";
import { migrateToLatest } from "../../src/adapters/metadata/open-metadata-store.ts";
import type { Database } from "../../src/adapters/metadata/schema.ts";
import type { SmallCase } from "./bench-runner.ts";
import { inlineText, insertInlineArtifact } from "./inline-row.ts";

export interface SmallContext {
  readonly bucket: string;
  readonly client: ArtifactClient;
  readonly minioClient: () => Client;
  readonly serverPid: number;
  readonly minioPid: () => number | undefined;
  /** A scratch database of its own (not the service's); the inline relay inserts into it too. */
  readonly scratchDatabaseUrl: string;
  /** Starts the plain relay (plain-relay.ts) on first use; answers its base URL. */
  readonly relay: () => Promise<{ url: string; pid: number }>;
  /** Registers what to close when the bench ends. */
  readonly onClose: (close: () => Promise<unknown>) => void;
}

const SMALL_BYTES = 4096;
const smallPool = randomBytes(64 * 1024);

/** 4 KiB, different for every n (a window into random bytes with n written over its start). */
function smallContent(n: number): Buffer {
  const content = Buffer.from(smallPool.subarray((n * 61) % (smallPool.length - SMALL_BYTES), ((n * 61) % (smallPool.length - SMALL_BYTES)) + SMALL_BYTES));
  content.writeDoubleLE(n, 0);
  return content;
}

export function smallCases(context: SmallContext): SmallCase[] {
  const service = () => ({ server: context.serverPid, minio: context.minioPid() });
  const direct = () => ({ minio: context.minioPid() });
  let migrated: Promise<unknown> | undefined;
  const migrate = () =>
    (migrated ??= (async () => {
      const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: context.scratchDatabaseUrl, max: 1 }) }) });
      try {
        await migrateToLatest(db);
      } finally {
        await db.destroy();
      }
    })());

  const inline = (concurrency: number): SmallCase => ({
    key: `inline_save_c${concurrency}`,
    label: `SaveInline, ${concurrency} concurrent`,
    concurrency,
    processes: service,
    latency: concurrency === 1,
    call: async (n) => {
      await context.client.rpc.saveInline({ spec: { kind: "bench-inline", name: `inline-${n}` }, content: { case: "text", value: inlineText(n) } });
    },
  });

  const pgInsert = (concurrency: number): SmallCase => {
    const pool = new pg.Pool({ connectionString: context.scratchDatabaseUrl, max: concurrency });
    context.onClose(() => pool.end());
    return {
      key: `direct_pg_insert_c${concurrency}`,
      label: `direct Postgres insert, ${concurrency} concurrent`,
      concurrency,
      processes: () => ({}),
      prepare: async () => void (await migrate()),
      call: async (n) => {
        await insertInlineArtifact(pool, { id: `art_bench${n.toString(36).padStart(12, "0")}`, name: `inline-${n}`, content: Buffer.from(inlineText(n)) });
      },
    };
  };

  const relayInline = (concurrency: number): SmallCase => {
    let relayPid: number | undefined;
    let relay: Pool | undefined;
    return {
      key: `relay_inline_c${concurrency}`,
      label: `inline relay (HTTP/1.1 → pg insert), ${concurrency} concurrent`,
      concurrency,
      processes: () => ({ relay: relayPid }),
      prepare: async () => {
        await migrate();
        const { url, pid } = await context.relay();
        relayPid = pid;
        relay = new Pool(url, { connections: concurrency });
        context.onClose(() => relay!.close());
      },
      call: async (n) => {
        const response = await relay!.request({
          method: "POST",
          path: `/inline?name=inline-${n}`,
          headers: { "content-type": "text/plain; charset=utf-8" },
          body: inlineText(n),
        });
        const answer = await response.body.text();
        if (response.statusCode !== 200) throw new Error(`inline relay: ${response.statusCode} ${answer}`);
      },
    };
  };

  // Each service case next to its baselines, so that drift within a round touches them alike.
  return [
    inline(1),
    pgInsert(1),
    inline(8),
    pgInsert(8),
    relayInline(8),
    inline(32),
    pgInsert(32),
    relayInline(32),
    {
      // Declared 4 KiB, within ARTIFACTD_UPLOAD_INLINE_MAX_BYTES: kept in the artifact's row.
      key: "small_upload_c8",
      label: "4 KiB Upload, 8 concurrent (size declared: kept in the database)",
      concurrency: 8,
      processes: service,
      call: async (n) => {
        const { artifact } = await context.client.uploadStream([smallContent(n)], { kind: "bench-small", name: `small-${n}` }, { expectedSize: SMALL_BYTES });
        if (artifact?.storage !== Storage.INLINE) throw new Error("a declared 4 KiB upload was not kept in the database");
      },
    },
    {
      // The same without a declared size: the blob store, as every upload was before small ones were kept inline.
      key: "small_upload_blob_c8",
      label: "4 KiB Upload, 8 concurrent (size undeclared: blob store)",
      concurrency: 8,
      processes: service,
      call: async (n) => {
        const { artifact } = await context.client.uploadStream([smallContent(n)], { kind: "bench-small", name: `small-blob-${n}` });
        if (artifact?.storage !== Storage.BLOB) throw new Error("an undeclared 4 KiB upload was not stored as a blob");
      },
    },
    {
      key: "direct_small_put_c8",
      label: "direct putObject 4 KiB, 8 concurrent",
      concurrency: 8,
      processes: direct,
      call: async (n) => {
        await context.minioClient().putObject(context.bucket, `small-${n}`, smallContent(n), SMALL_BYTES);
      },
    },
  ];
}
