import path from "node:path";
import { InvalidUrlSigningKeyFileError, loadOrCreateUrlSigningKeyFile, urlSigningKeyFile } from "./adapters/keys/url-signing-key-file.ts";
import { createFsBlobStore } from "./adapters/blob/fs-blob-store.ts";
import { createS3BlobStore } from "./adapters/blob/s3-blob-store.ts";
import { openMetadataStore, type OpenedMetadataStore } from "./adapters/metadata/open-metadata-store.ts";
import { listenForArtifactEvents } from "./adapters/events/postgres-event-listener.ts";
import { ConfigError, type Config } from "./config.ts";
import type { BlobStore } from "./ports/blob-store.ts";
import type { MetadataStore } from "./ports/metadata-store.ts";
import { ensurePrivateDir, restrictFileToOwner, writePrivateFile } from "./private-files.ts";
import { createApiToken } from "./service/api-tokens.ts";
import { createTokenAuthenticator } from "./service/token-authenticator.ts";
import { startArtifactEventFeed } from "./service/artifact-events.ts";
import { createArtifactService } from "./service/artifact-service.ts";
import { runMaintenancePass, type MaintenanceDeps, type MaintenanceReport } from "./service/maintenance.ts";
import { createTenantQuotas, type TenantQuotas } from "./service/tenant-quotas.ts";
import { createDownloadUrlRoute } from "./transport/download-url-route.ts";
import { createWebPageRoute } from "./transport/web-page-route.ts";
import { startServer, type RunningServer } from "./transport/server.ts";
import { createUrlSigner } from "./service/download-urls.ts";
import type { UrlSigningKey } from "./url-signing-keys.ts";
import type { CallObserver, StoreOperationObserver } from "./observability/calls.ts";
import { createAccessLogObserver } from "./observability/access-log.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { createMetrics, type Metrics } from "./observability/metrics.ts";
import { observeBlobStore } from "./observability/observed-blob-store.ts";
import { answersInternal } from "./transport/connect-error-mapping.ts";
import { createMetricsRoute, startMetricsServer, type MetricsServer } from "./transport/metrics-route.ts";

/** The wired service: stores → use cases → transport. */
export interface App {
  readonly server: RunningServer;
  readonly metadata: MetadataStore;
  readonly blobs: BlobStore;
  /** The tenant quotas this process enforces (its own counts of uploads, downloads and bytes in flight). */
  readonly quotas: TenantQuotas;
  /** The Prometheus metrics, unless ARTIFACTD_METRICS_LISTEN is off. */
  readonly metrics: Metrics | undefined;
  /** Where /metrics is served: the service's URL, a separate address's, or undefined when off. */
  readonly metricsUrl: string | undefined;
  /** Graceful stop of the server, then the stores. */
  close(graceMs?: number): Promise<void>;
}

/** The stores, each statement and blob request reported to `observers` (observability/calls.ts). */
export async function openStores(
  config: Config,
  observers: readonly StoreOperationObserver[] = [],
): Promise<{ metadata: OpenedMetadataStore; blobs: BlobStore }> {
  // The embedded database, local blobs and the bootstrap token live here: owner-only, even if it existed wider.
  if (config.databaseUrl === undefined || config.s3 === undefined) await ensurePrivateDir(config.dataDir);
  const metadata = await openMetadataStore({
    databaseUrl: config.databaseUrl,
    pgliteDir: path.join(config.dataDir, "pglite"),
    poolSize: config.databasePoolSize,
    statementTimeoutMs: config.databaseStatementTimeoutMs,
    migrate: config.migrateOnStart,
    observers,
  });
  try {
    const { s3 } = config;
    const blobs = s3
      ? await createS3BlobStore({
          endpoint: s3.endpoint,
          region: s3.region,
          accessKey: s3.accessKey,
          secretKey: s3.secretKey,
          bucket: s3.bucket,
          partSize: s3.partSize,
          partConcurrency: s3.partConcurrency,
          ...(s3.directDownloadEndpoint ? { directReadEndpoint: s3.directDownloadEndpoint } : {}),
        })
      : await createFsBlobStore(path.join(config.dataDir, "blobs"));
    return { metadata, blobs: observeBlobStore(blobs, s3 ? "s3" : "filesystem", observers) };
  } catch (error) {
    await metadata.close();
    throw error;
  }
}

/**
 * What the app logs through `log(message, error?)`: a notice without an
 * error; with one, a warning (a store down, a refusal: the caller was told)
 * or, when the caller could only be answered INTERNAL, an error marked
 * `internal: true` — a bug, with its stack and causes.
 */
export function logFunctionOf(logger: Logger): (message: string, error?: unknown) => void {
  return (message, error) => {
    if (error === undefined) logger.info(message);
    else if (answersInternal(error)) logger.error({ err: error, internal: true }, message);
    else logger.warn({ err: error }, message);
  };
}

/** Observers beside the app's own (metrics, access log), e.g. tracing; told first, in list order. */
export interface AppObservers {
  readonly calls?: readonly CallObserver[];
  readonly storeOperations?: readonly StoreOperationObserver[];
}

export async function startApp(config: Config, logger: Logger = createLogger({ level: "silent" }), observers: AppObservers = {}): Promise<App> {
  const log = logFunctionOf(logger);
  // Metrics read the stores' state at each scrape; the stores report to them as they work.
  let stores: { metadata: OpenedMetadataStore; blobs: BlobStore } | undefined;
  const metrics =
    config.metrics.listen === "off"
      ? undefined
      : createMetrics({
          tenantLabels: config.metrics.tenantLabels,
          databasePool: config.databaseUrl === undefined ? undefined : () => stores?.metadata.poolConnections?.() ?? { total: 0, idle: 0, waiting: 0 },
          openUploadSessions: async () => (stores ? stores.metadata.uploadSessions.countOpen(new Date()) : 0),
        });
  stores = await openStores(config, [...(observers.storeOperations ?? []), ...(metrics ? [metrics.storeObserver] : [])]);
  const { metadata, blobs } = stores;
  // The event log's tailer; with Postgres, woken by other replicas' commits too.
  const events = await startArtifactEventFeed({ eventLog: metadata.eventLog, log });
  const listener = config.databaseUrl ? listenForArtifactEvents(config.databaseUrl, events.wake, { log }) : undefined;
  const closeEvents = async () => {
    await listener?.close();
    await events.close();
  };
  let urlSigner;
  try {
    urlSigner = createUrlSigner(await urlSigningKeys(config, log), { maxTtlSeconds: config.downloadUrlMaxTtlSeconds });
  } catch (error) {
    await closeEvents();
    await metadata.close();
    await blobs.close();
    throw error;
  }
  const quotas = createTenantQuotas({ store: metadata.tenantQuotas, defaults: config.quotaDefaults, cacheMs: config.quotaCacheMs });
  const service = createArtifactService({
    metadata,
    blobs,
    events,
    inlineMaxBytes: config.inlineMaxBytes,
    uploadInlineMaxBytes: config.uploadInlineMaxBytes,
    uploadMaxBytes: config.uploadMaxBytes,
    downloadChunkBytes: config.downloadChunkBytes,
    sessionTtlMs: config.uploadSessionTtlMs,
    sessionHashAhead: config.sessionHashAhead,
    urlSigner,
    downloadUrlMaxTtlSeconds: config.downloadUrlMaxTtlSeconds,
    uploadStaleMs: config.uploadStaleMs,
    limits: config.limits,
    quotas,
    log,
  });
  const tokens = createTokenAuthenticator(metadata, { cacheMs: config.tokenCacheMs, log });
  let server: RunningServer;
  try {
    server = await startServer({
      host: config.listen.host,
      port: config.listen.port,
      service,
      authenticate: (authorization) => tokens.authenticate(authorization),
      watchCaller: (caller) => tokens.watch(caller),
      limits: config.transport,
      publicUrl: config.publicUrl,
      corsAllowedOrigins: config.corsAllowedOrigins,
      // Each for its own paths (httpRouteOf in src/transport/routes.ts): signed downloads, the web page at "/"
      // (clients/web, built by `npm run build:web`), and /metrics when metrics are served on this port.
      httpRoutes: {
        "signed download links": createDownloadUrlRoute({
          service,
          signer: urlSigner,
          isTokenActive: (id) => tokens.isActive(id),
          watchCaller: (caller) => tokens.watch(caller),
        }),
        "web page": createWebPageRoute(),
        ...(metrics && config.metrics.listen === "service" ? { metrics: createMetricsRoute(metrics) } : {}),
      },
      // Metrics count every call; the access log has a line for each (at level info). With neither, calls are not
      // observed at all.
      observers: [
        ...(observers.calls ?? []),
        ...(metrics ? [metrics.callObserver] : []),
        ...(logger.isLevelEnabled("info") ? [createAccessLogObserver(logger)] : []),
      ],
      // Health follows the stores: NOT_SERVING (and /readyz 503) while either is unreachable, or the database
      // lacks a migration this build needs, so balancers route around us.
      readinessChecks: {
        database: async () => {
          const missing = await metadata.missingMigrations();
          if (missing.length === 0) return undefined;
          return `${missing.length} migration(s) not applied (${missing.join(", ")}): run \`artifactd migrate\``;
        },
        "blob store": () => blobs.ping().then(() => undefined),
      },
      log,
    });
  } catch (error) {
    tokens.close();
    await closeEvents();
    await metadata.close();
    await blobs.close();
    throw error;
  }
  let metricsServer: MetricsServer | undefined;
  const { listen } = config.metrics;
  if (metrics && typeof listen === "object") {
    try {
      metricsServer = await startMetricsServer(metrics, listen);
    } catch (error) {
      await server.shutdown(0);
      tokens.close();
      await closeEvents();
      await metadata.close();
      await blobs.close();
      throw new ConfigError(`ARTIFACTD_METRICS_LISTEN: cannot listen on ${listen.host}:${listen.port}: ${(error as Error).message}`);
    }
  }
  const maintenance = startMaintenance(
    config,
    { metadata, blobs, uploadStaleMs: config.uploadStaleMs, log },
    { log, logger, passed: (report) => metrics?.maintenancePassed(report) },
  );
  return {
    server,
    metadata,
    blobs,
    quotas,
    metrics,
    metricsUrl: metricsServer ? `${metricsServer.url}/metrics` : metrics ? `${server.url}/metrics` : undefined,
    async close(graceMs = config.shutdownGraceMs) {
      // The server first: health answers NOT_SERVING at once and new calls are refused, while a running
      // maintenance pass is cancelled rather than waited for.
      const stopping = server.shutdown(graceMs);
      await maintenance.stop();
      await stopping;
      await metricsServer?.close();
      tokens.close();
      await closeEvents();
      await blobs.close();
      await metadata.close();
    },
  };
}

/**
 * The download-link keys: configured, or else those of the key file in the
 * data folder (made on first start). The file is this machine's own, so
 * replicas sharing a Postgres database would each sign with a different key
 * and refuse one another's links: they must configure the same keys.
 */
async function urlSigningKeys(config: Config, log: (message: string) => void): Promise<readonly UrlSigningKey[]> {
  if (config.urlSigningKeys) return config.urlSigningKeys;
  // The folder then holds a secret whatever the stores are: owner-only, as with the embedded default.
  await ensurePrivateDir(config.dataDir);
  const file = urlSigningKeyFile(config.dataDir);
  const { keys, created } = await loadOrCreateUrlSigningKeyFile(file).catch(asConfigError);
  if (created) log(`made a download-link signing key in ${file}`);
  if (config.databaseUrl !== undefined) {
    log(
      `download links are signed with the keys in ${file}, which only this machine has: if other replicas share this database, ` +
        "set ARTIFACTD_URL_SIGNING_KEYS to the same keys on every one, or their links fail on each other",
    );
  }
  return keys;
}

/**
 * A key file that cannot be read is configuration gone wrong to the
 * operator: rethrown as a ConfigError, it is reported in one line with exit
 * status 2, like a bad environment variable. Other errors pass unchanged.
 */
export function asConfigError(error: unknown): never {
  if (error instanceof InvalidUrlSigningKeyFileError) throw new ConfigError(error.message, { cause: error });
  throw error;
}

/**
 * The embedded default cannot be reached by a second process while it runs
 * (PGlite is single-process), so a first run makes a token itself: tenant
 * "default", written to <data>/bootstrap-token with owner-only permissions.
 * A token file left from before (say, 0644 from an older version) is made
 * 0600 on every start, whether or not a new token is written.
 */
export async function ensureBootstrapToken(app: App, dataDir: string): Promise<string | undefined> {
  const file = path.join(dataDir, "bootstrap-token");
  await ensurePrivateDir(dataDir);
  if ((await app.metadata.listTokens()).length > 0) {
    await restrictFileToOwner(file);
    return undefined;
  }
  const { token } = await createApiToken(app.metadata, "default", "bootstrap", { scope: "admin" });
  await writePrivateFile(file, `${token}\n`);
  return file;
}

/**
 * The maintenance pass (expiry, garbage collection, event pruning) on a
 * timer. Runs one pass at a time; a pass that fails is logged and retried at
 * the next tick.
 */
function startMaintenance(
  config: Config,
  deps: MaintenanceDeps & { readonly metadata: MetadataStore },
  report: {
    readonly log: (message: string, error?: unknown) => void;
    readonly logger: Logger;
    /** Each pass that ran to its end, with what it did. */
    readonly passed: (report: MaintenanceReport) => void;
  },
): { stop(): Promise<void> } {
  const { log, logger } = report;
  if (config.maintenanceIntervalMs === 0) return { stop: async () => {} };
  let running: Promise<void> | undefined;
  const stopped = new AbortController();
  const tick = () => {
    running ??= (async () => {
      try {
        const started = performance.now();
        const done = await runMaintenancePass(deps, { graceMs: config.gcGraceMs, eventRetentionMs: config.eventRetentionMs, signal: stopped.signal });
        report.passed(done);
        const { garbage } = done;
        logger.info(
          {
            maintenance: {
              expired: done.expired,
              expiredSessions: done.expiredSessions,
              prunedEvents: done.prunedEvents,
              reclaimedBlobs: garbage.blobs,
              reclaimedBytes: garbage.bytes + garbage.orphanBytes,
              orphans: garbage.orphans,
              abandonedUploads: garbage.abandonedUploads,
              corruptBlobs: garbage.corruptBlobs.length,
            },
            durationMs: Math.round(performance.now() - started),
          },
          "maintenance pass",
        );
      } catch (error) {
        if (!stopped.signal.aborted) log("maintenance pass failed", error);
      } finally {
        running = undefined;
      }
    })();
  };
  const timer = setInterval(tick, config.maintenanceIntervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      // A pass in progress stops at its next step; what it did is consistent at every step.
      stopped.abort(new Error("the server is stopping"));
      await running;
    },
  };
}
