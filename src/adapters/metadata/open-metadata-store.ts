import { Kysely, Migrator, PostgresDialect, sql, type Dialect } from "kysely";
import pg from "pg";
import type { MetadataStore } from "../../ports/metadata-store.ts";
import { createKyselyMetadataStore } from "./kysely-metadata-store.ts";
import { migrationProvider } from "./migrations/index.ts";
import { ensurePrivateDir } from "../../private-files.ts";
import { PGliteDialect } from "./pglite-dialect.ts";
import { preparedStatementNamer } from "./prepared-statements.ts";
import { translateDialectErrors } from "./translate-dialect-errors.ts";
import { fromPostgresError, untranslatedPostgresError } from "./postgres-errors.ts";
import type { Database } from "./schema.ts";
import type { StoreOperationObserver } from "../../observability/calls.ts";
import { observeDialect } from "./observed-dialect.ts";

export interface MetadataStoreOptions {
  /** Postgres URL; undefined opens embedded PGlite in `pgliteDir`. */
  readonly databaseUrl: string | undefined;
  readonly pgliteDir: string;
  readonly poolSize: number;
  /**
   * Postgres cancels a statement running longer than this (SQLSTATE 57014,
   * raised as RESOURCE_EXHAUSTED: ./postgres-errors.ts); the connection stays
   * usable. 0 or unset: no limit. Migrations run without it. PGlite cannot
   * cancel a statement and ignores it.
   */
  readonly statementTimeoutMs?: number;
  /** Run pending migrations before returning. */
  readonly migrate: boolean;
  /** Told about every statement (./observed-dialect.ts). */
  readonly observers?: readonly StoreOperationObserver[];
}

/** The Postgres pool's connections now: open, idle, and callers waiting for one. */
export interface PoolConnections {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
}

/** The store, and what its pool holds (undefined on PGlite, which has none). */
export type OpenedMetadataStore = MetadataStore & { readonly poolConnections: (() => PoolConnections) | undefined };

/** Opens the metadata database (Postgres or embedded PGlite) and its store. */
export async function openMetadataStore(options: MetadataStoreOptions): Promise<OpenedMetadataStore> {
  const { db, close, poolConnections } = await openDatabase(options);
  try {
    if (options.migrate) await migrateToLatest(db);
    else await ensureMigrated(db);
  } catch (error) {
    await db.destroy();
    await close();
    throw untranslatedPostgresError(error);
  }
  return Object.assign(createKyselyMetadataStore(db, { onClose: close }), { poolConnections });
}

export async function openDatabase(
  options: MetadataStoreOptions,
): Promise<{ db: Kysely<Database>; close: () => Promise<void>; poolConnections: (() => PoolConnections) | undefined }> {
  let dialect: Dialect;
  let close = async () => {};
  let poolConnections: (() => PoolConnections) | undefined;
  if (options.databaseUrl !== undefined) {
    // A connection that takes longer than this to open counts as Postgres unreachable (UNAVAILABLE), rather
    // than holding the call until the client gives up.
    // statement_timeout is sent when each connection opens, so it holds for every statement on it (0: none).
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize,
      connectionTimeoutMillis: 10_000,
      statement_timeout: options.statementTimeoutMs ?? 0,
    });
    // A connection lost while idle in the pool: the pool drops it and opens another when next needed.
    pool.on("error", () => {});
    // A connection lost while checked out (a backend terminated, Postgres restarting, a cut socket) emits
    // 'error' on the client, which the pool no longer listens to: unheard, it would stop the whole process.
    // The query in flight fails on its own (UNAVAILABLE to its caller), and the client, no longer queryable,
    // is dropped when released.
    const preparedName = preparedStatementNamer();
    pool.on("connect", (client) => {
      client.on("error", () => {});
      sendMarkedAsPrepared(client, preparedName);
      endOnFatalError(client);
    });
    dialect = new PostgresDialect({ pool });
    poolConnections = () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount });
  } else {
    const { PGlite } = await import("@electric-sql/pglite");
    // pg_trgm serves search by name fragments (migration 20261213010000_search_and_json).
    const { pg_trgm } = await import("@electric-sql/pglite/contrib/pg_trgm");
    await ensurePrivateDir(options.pgliteDir);
    const pglite = await PGlite.create(options.pgliteDir, { extensions: { pg_trgm } });
    dialect = new PGliteDialect(pglite);
    close = () => pglite.close();
  }
  // Every statement's failure, on either database, becomes the ArtifactError it means to a caller here (and
  // observers see that error).
  const translated = translateDialectErrors(dialect, fromPostgresError);
  return { db: new Kysely<Database>({ dialect: observeDialect(translated, options.observers ?? []) }), close, poolConnections };
}

export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  // A migration may rewrite or index a large table: it runs on one connection with the statement timeout
  // lifted, restored (to the value the connection opened with) before the connection goes back to the pool.
  const { error, results } = await db.connection().execute(async (connection) => {
    await sql`set statement_timeout = 0`.execute(connection);
    try {
      return await new Migrator({ db: connection, provider: migrationProvider }).migrateToLatest();
    } finally {
      await sql`reset statement_timeout`.execute(connection);
    }
  });
  if (error) {
    const failed = results?.find((r) => r.status === "Error");
    const detail = untranslatedPostgresError(error);
    throw new Error(`database migration ${failed?.migrationName ?? ""} failed: ${(detail as Error).message ?? String(detail)}`, { cause: detail });
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

async function ensureMigrated(db: Kysely<Database>): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  const pending = (await migrator.getMigrations()).filter((m) => m.executedAt === undefined);
  if (pending.length > 0) {
    throw new Error(
      `the database is missing ${pending.length} migration(s) (${pending.map((m) => m.name).join(", ")}): run \`artifactd migrate\` or set ARTIFACTD_MIGRATE_ON_START=true`,
    );
  }
}

/** Queries whose text carries PREPARED_STATEMENT_MARK go as named statements: prepared on first use, then only bound. */
function sendMarkedAsPrepared(client: pg.PoolClient, preparedName: (text: string) => string | undefined): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const [text, values] = args;
    const name = typeof text === "string" ? preparedName(text) : undefined;
    return name === undefined ? query(...args) : query({ name, text, values });
  };
}

/**
 * A query that fails because its connection is going away (the backend was
 * terminated, Postgres is shutting down) reaches its caller before the socket
 * closes; released meanwhile, the client would go back to the pool as if
 * usable, and fail the next call too. Ending it at once marks it, so the pool
 * drops it on release and the next call gets a fresh connection.
 */
function endOnFatalError(client: pg.PoolClient): void {
  const query = client.query.bind(client) as (...args: unknown[]) => unknown;
  (client as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const result = query(...args);
    if (result instanceof Promise) {
      result.catch((error: unknown) => {
        const code = (error as { code?: unknown }).code;
        const lost =
          (typeof code === "string" && (code.startsWith("57P") || code.startsWith("08"))) || /Connection terminated/.test(String((error as Error)?.message));
        if (lost) client.end().catch(() => {});
      });
    }
    return result;
  };
}
