import { loadOrCreateUrlSigningKeyFile, readUrlSigningKeyFile, urlSigningKeyFile, writeUrlSigningKeyFile } from "../adapters/keys/url-signing-key-file.ts";
import { asConfigError, ensureBootstrapToken, logFunctionOf, openStores, startApp } from "../app.ts";
import { ArtifactError } from "../artifact-error.ts";
import { TOKEN_SCOPES, type TokenScope } from "../artifact.ts";
import { createApiToken } from "../service/api-tokens.ts";
import { runMaintenancePass } from "../service/maintenance.ts";
import { createLogger } from "../observability/logger.ts";
import { startTracing } from "../observability/tracing.ts";
import { UsageError } from "@artifactd/cli";
import { newUrlSigningKey } from "../url-signing-keys.ts";
import { parseServerArgs } from "./server-settings.ts";
import { tenantCommand } from "./tenant-command.ts";

/**
 * The server half of the `artifactd` command: serve, migrate, token, tenant, gc, url-keys.
 * These work on the stores directly, configured by flags, the environment
 * and the server config file (./server-settings.ts).
 */
export async function runServerCommand(command: string, rest: string[]): Promise<number> {
  switch (command) {
    case "serve": {
      const { config, positionals } = parseServerArgs("serve", rest, {});
      if (positionals.length) throw new UsageError(`serve takes no arguments, only flags (got ${positionals.join(" ")})`);
      // The server's log: JSON lines on stdout (or readable ones), ARTIFACTD_LOG_LEVEL and ARTIFACTD_LOG_FORMAT.
      const logger = createLogger(config.log);
      // A crash is a bug like any internal error: its line in the log, redacted like every other (Node's own print of
      // it is not), and the exit status Node gives an uncaught exception.
      process.on("uncaughtException", (error, origin) => {
        logger.fatal({ err: error, internal: true, origin }, "crashed: the process stops");
        process.exit(1);
      });
      // Traces when the OTEL_* variables ask for them (observability/tracing-settings.ts): told about calls and store
      // operations before the app's own observers, so the access log has the trace id.
      const tracing = config.tracing && startTracing(config.tracing, { warn: (message) => logger.warn({ component: "tracing" }, message) });
      const app = await startApp(config, logger, tracing ? { calls: [tracing.calls], storeOperations: [tracing.stores] } : {}).catch(async (error: unknown) => {
        await tracing?.shutdown();
        throw error;
      });
      const embedded = config.databaseUrl === undefined;
      if (embedded) {
        const tokenFile = await ensureBootstrapToken(app, config.dataDir);
        if (tokenFile) logger.info({ tokenFile }, `first run: an API token for tenant "default" is in ${tokenFile}`);
      }
      logger.info(
        {
          url: app.server.url,
          metrics: app.metricsUrl ?? "off",
          tracing: config.tracing ? config.tracing.exporters.join(",") : "off",
          metadata: embedded ? "pglite" : "postgres",
          blobs: config.s3 ? "s3" : "filesystem",
        },
        `serving gRPC, gRPC-Web and Connect on ${app.server.url} ` +
          `(metadata: ${embedded ? `embedded PGlite in ${config.dataDir}` : "Postgres"}, ` +
          `blobs: ${config.s3 ? `S3 ${config.s3.endpoint.origin}/${config.s3.bucket}` : `local folder in ${config.dataDir}`})`,
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ signal, graceMs: config.shutdownGraceMs }, `${signal}: finishing calls in flight (up to ${config.shutdownGraceMs} ms)`);
          resolve();
        };
        process.once("SIGTERM", () => stop("SIGTERM"));
        process.once("SIGINT", () => stop("SIGINT"));
      });
      await app.close();
      // The last spans (the shutdown's calls) are sent before the process ends.
      await tracing?.shutdown();
      logger.info("stopped");
      return 0;
    }
    case "migrate": {
      const { config, positionals } = parseServerArgs("migrate", rest, {});
      if (positionals.length) throw new UsageError(`migrate takes no arguments, only flags (got ${positionals.join(" ")})`);
      const { metadata, blobs } = await openStores({ ...config, migrateOnStart: true });
      await blobs.close();
      await metadata.close();
      console.log("artifactd: the database schema is up to date");
      return 0;
    }
    case "token":
      return tokenCommand(rest);
    case "tenant":
      return tenantCommand(rest);
    case "gc":
      return gcCommand(rest);
    case "url-keys":
      return urlKeysCommand(rest);
    default:
      throw new ArtifactError("invalid_argument", `unknown command ${JSON.stringify(command)}`);
  }
}

async function tokenCommand(args: string[]): Promise<number> {
  const { config, positionals, values } = parseServerArgs("token", args, {
    tenant: { type: "string" },
    name: { type: "string" },
    scope: { type: "string" },
    "expires-in": { type: "string" },
    json: { type: "boolean" },
  });
  const [action, id] = positionals;
  const tenant = typeof values.tenant === "string" ? values.tenant : undefined;
  // Checked before any store is opened: a typo never creates a database.
  const scope = values.scope ?? "read-write";
  if (!TOKEN_SCOPES.includes(scope as TokenScope)) throw new UsageError(`--scope must be one of ${TOKEN_SCOPES.join(", ")} (got ${JSON.stringify(scope)})`);
  const expiresIn = typeof values["expires-in"] === "string" ? parseDuration("--expires-in", values["expires-in"]) : undefined;
  const { metadata, blobs } = await openStores(config);
  try {
    switch (action) {
      case "create": {
        if (!tenant) throw new ArtifactError("invalid_argument", "token create needs --tenant <tenant-id>");
        const created = await createApiToken(metadata, tenant, typeof values.name === "string" ? values.name : "default", {
          scope: scope as TokenScope,
          expiresAt: expiresIn === undefined ? undefined : new Date(Date.now() + expiresIn),
        });
        const expires = created.expiresAt?.toISOString();
        if (values.json) console.log(JSON.stringify({ id: created.id, tenant, token: created.token, scope: created.scope, expiresAt: expires ?? null }));
        else
          console.log(
            `${created.token}\n(id ${created.id}, tenant ${tenant}, ${created.scope}${expires ? `, expires ${expires}` : ""}; shown once, store it now)`,
          );
        return 0;
      }
      case "list": {
        const tokens = await metadata.listTokens(tenant);
        if (values.json) console.log(JSON.stringify(tokens));
        else {
          for (const t of tokens) {
            const state = t.revokedAt ? "\trevoked" : t.expiresAt && t.expiresAt.getTime() <= Date.now() ? "\texpired" : "";
            console.log(
              `${t.id}\t${t.tenantId}\t${t.name}\t${t.scope}\t${t.createdAt.toISOString()}\t${t.expiresAt ? `expires ${t.expiresAt.toISOString()}` : "no expiry"}${state}`,
            );
          }
        }
        return 0;
      }
      case "revoke": {
        if (!id) throw new ArtifactError("invalid_argument", "token revoke needs the token id (see `artifactd token list`)");
        if (!(await metadata.revokeToken(id, new Date()))) throw new ArtifactError("not_found", `no active token with id ${id}`);
        console.log(`revoked ${id}`);
        return 0;
      }
      default:
        throw new ArtifactError("invalid_argument", "token needs an action: create, list or revoke");
    }
  } finally {
    await blobs.close();
    await metadata.close();
  }
}

/** "90s", "30m", "12h", "30d": a positive duration in milliseconds. */
function parseDuration(flag: string, raw: string): number {
  const match = /^(\d+)(s|m|h|d)$/.exec(raw.trim());
  const value = match ? Number(match[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as "s" | "m" | "h" | "d"] : NaN;
  if (!Number.isSafeInteger(value) || value <= 0) throw new UsageError(`${flag} takes a duration such as 90s, 30m, 12h or 30d (got ${JSON.stringify(raw)})`);
  return value;
}

async function gcCommand(args: string[]): Promise<number> {
  const { config, values } = parseServerArgs("gc", args, { "dry-run": { type: "boolean" }, "grace-seconds": { type: "string" }, json: { type: "boolean" } });
  const graceSeconds = values["grace-seconds"] === undefined ? config.gcGraceMs / 1000 : Number(values["grace-seconds"]);
  if (!Number.isFinite(graceSeconds) || graceSeconds < 0) throw new ArtifactError("invalid_argument", "--grace-seconds must be a number of seconds >= 0");
  const { metadata, blobs } = await openStores(config);
  try {
    // gc prints its report on stdout: what it logs on the way (a failed delete) goes to stderr, as JSON lines.
    const deps = { metadata, blobs, uploadStaleMs: config.uploadStaleMs, log: logFunctionOf(createLogger({ ...config.log, destination: process.stderr })) };
    const dryRun = values["dry-run"] === true;
    const { expired, garbage: report } = await runMaintenancePass(deps, { graceMs: graceSeconds * 1000, eventRetentionMs: config.eventRetentionMs, dryRun });
    if (values.json) console.log(JSON.stringify({ expired, ...report }));
    else {
      const verb = dryRun ? "would reclaim" : "reclaimed";
      console.log(
        `${dryRun ? "dry run: " : ""}expired ${expired} artifact(s); ${verb} ${report.blobs} blob(s), ${report.bytes} bytes; ` +
          `${verb} the storage of ${report.releasedKeys} released key(s) (dead or failed uploads, reclaimed blobs, dropped sessions); ${verb} ${report.orphans} orphaned object(s), ${report.orphanBytes} bytes; ` +
          `${dryRun ? "would abort" : "aborted"} ${report.abandonedUploads} abandoned upload(s)`,
      );
      for (const blob of report.corruptBlobs) {
        console.log(
          `corrupt: tenant ${blob.tenantId} blob ${blob.digest} (${blob.storageKey}) since ${blob.corruptAt.toISOString()}: upload the content again to heal it`,
        );
      }
    }
    return 0;
  } finally {
    await blobs.close();
    await metadata.close();
  }
}

/**
 * The download-link keys of the key file in the data folder: list (ids only,
 * never secrets), rotate (a new signing key first; the others keep verifying)
 * and retire <id> (links signed with it stop working). A server reads its
 * keys at start-up, so it signs and verifies by the new list once restarted.
 * Keys set in ARTIFACTD_URL_SIGNING_KEYS are the configuration's to change.
 */
async function urlKeysCommand(args: string[]): Promise<number> {
  const { config, positionals, values } = parseServerArgs("url-keys", args, { json: { type: "boolean" } });
  const [action, id, ...extra] = positionals;
  if (extra.length) throw new UsageError(`url-keys takes at most an action and a key id (got ${positionals.join(" ")})`);
  const file = urlSigningKeyFile(config.dataDir);
  if (action === "list") {
    const configured = config.urlSigningKeys !== undefined;
    const keys = config.urlSigningKeys ?? (await readUrlSigningKeyFile(file).catch(asConfigError)) ?? [];
    const source = configured ? "configuration (ARTIFACTD_URL_SIGNING_KEYS or ARTIFACTD_URL_SIGNING_KEY)" : file;
    if (values.json) console.log(JSON.stringify({ source, keys: keys.map((key, index) => ({ id: key.id, signs: index === 0 })) }));
    else if (keys.length === 0) console.log(`no keys yet: the server makes ${file} on its first start (or run \`artifactd url-keys rotate\`)`);
    else {
      console.log(`keys from ${source}, newest first:`);
      for (const [index, key] of keys.entries()) console.log(`${key.id}\t${index === 0 ? "signs and verifies" : "verifies"}`);
    }
    return 0;
  }
  if (action !== "rotate" && action !== "retire") throw new ArtifactError("invalid_argument", "url-keys needs an action: list, rotate or retire <key-id>");
  if (config.urlSigningKeys !== undefined) {
    throw new ArtifactError(
      "failed_precondition",
      "the keys come from ARTIFACTD_URL_SIGNING_KEYS (or ARTIFACTD_URL_SIGNING_KEY), not the key file: change them there, on every replica",
    );
  }
  if (action === "rotate") {
    if (id !== undefined) throw new UsageError("url-keys rotate takes no arguments: it names the new key itself");
    const { keys, created } = await loadOrCreateUrlSigningKeyFile(file).catch(asConfigError);
    if (created) {
      // The file's first key is as new as one rotated in.
      if (values.json) console.log(JSON.stringify({ id: keys[0]!.id }));
      else console.log(`made ${file} with the key ${keys[0]!.id}`);
      return 0;
    }
    const added = newUrlSigningKey(keys.map((key) => key.id));
    await writeUrlSigningKeyFile(file, [added, ...keys]);
    if (values.json) console.log(JSON.stringify({ id: added.id }));
    else console.log(`added ${added.id}, which signs once the server restarts; ${keys.map((key) => key.id).join(", ")} still verify until retired`);
    return 0;
  }
  if (!id) throw new ArtifactError("invalid_argument", "url-keys retire needs the key id (see `artifactd url-keys list`)");
  const keys = (await readUrlSigningKeyFile(file).catch(asConfigError)) ?? [];
  const index = keys.findIndex((key) => key.id === id);
  if (index < 0) throw new ArtifactError("not_found", `no key ${id} in ${file}`);
  if (index === 0) throw new ArtifactError("failed_precondition", `${id} is the key that signs: rotate in a new one first, then retire ${id}`);
  await writeUrlSigningKeyFile(
    file,
    keys.filter((key) => key.id !== id),
  );
  if (values.json) console.log(JSON.stringify({ id }));
  else console.log(`retired ${id}: links signed with it stop working once the server restarts`);
  return 0;
}
