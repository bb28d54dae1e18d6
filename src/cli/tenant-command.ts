import { openStores } from "../app.ts";
import { ArtifactError } from "../artifact-error.ts";
import { parseSize, type TenantQuotaLimits } from "../config.ts";
import { applyOverrides } from "../service/tenant-quotas.ts";
import { UsageError } from "@artifactd/cli";
import { parseServerArgs } from "./server-settings.ts";

/** The quota flags of `tenant set-quota`, by the limit each sets. */
const QUOTA_FLAGS = {
  "stored-bytes": "storedBytes",
  "concurrent-uploads": "concurrentUploads",
  "concurrent-downloads": "concurrentDownloads",
  "open-sessions": "openSessions",
  "calls-per-second": "callsPerSecond",
  burst: "burst",
} as const satisfies Record<string, keyof TenantQuotaLimits>;

/** The largest stored-bytes quota, which `unlimited` stands for in an override. */
const UNLIMITED_BYTES = Number.MAX_SAFE_INTEGER;

/**
 * `artifactd tenant set-quota <tenant> [--stored-bytes 10GiB] [--concurrent-uploads N] …`,
 * `tenant set-quota <tenant> --clear`, `tenant show-quota <tenant>`.
 *
 * Overrides live in the database; running servers pick them up within
 * ARTIFACTD_QUOTA_CACHE_MS. A flag given `default` removes that one
 * override; `--clear` removes them all.
 */
export async function tenantCommand(args: string[]): Promise<number> {
  const own = {
    clear: { type: "boolean" },
    json: { type: "boolean" },
    ...Object.fromEntries(Object.keys(QUOTA_FLAGS).map((flag) => [flag, { type: "string" }])),
  } as const;
  const { config, positionals, values } = parseServerArgs("tenant", args, own);
  const [action, tenant, ...extra] = positionals;
  if (action !== "set-quota" && action !== "show-quota") throw new UsageError("tenant needs an action: set-quota or show-quota");
  if (!tenant) throw new UsageError(`tenant ${action} needs the tenant id, e.g. artifactd tenant ${action} acme`);
  if (extra.length) throw new UsageError(`tenant ${action} takes one tenant id (got ${positionals.slice(1).join(" ")})`);
  const changes: { -readonly [K in keyof TenantQuotaLimits]?: number | null } = {};
  for (const [flag, limit] of Object.entries(QUOTA_FLAGS)) {
    const raw = values[flag];
    if (typeof raw !== "string") continue;
    if (action === "show-quota") throw new UsageError(`tenant show-quota takes no --${flag}: use tenant set-quota`);
    changes[limit] = quotaValue(flag, raw);
  }
  const clear = values.clear === true;
  if (action === "set-quota" && clear === Object.keys(changes).length > 0) {
    throw new UsageError(`tenant set-quota needs either quota flags (--${Object.keys(QUOTA_FLAGS).join(", --")}) or --clear, not both or neither`);
  }

  const { metadata, blobs } = await openStores(config);
  try {
    const quotas = metadata.tenantQuotas;
    if (action === "set-quota") {
      if (clear) await quotas.clear(tenant);
      else await quotas.set(tenant, changes);
    }
    const overrides = await quotas.get(tenant);
    const limits = applyOverrides(config.quotaDefaults, overrides);
    const usage = await quotas.usage(tenant);
    if (values.json) {
      // JSON has no Infinity: an unlimited stored-bytes quota is null.
      const shown = { ...limits, storedBytes: limits.storedBytes >= UNLIMITED_BYTES ? null : limits.storedBytes };
      console.log(JSON.stringify({ tenant, limits: shown, overrides, usage }));
    } else {
      console.log(`tenant ${tenant}${action === "set-quota" ? (clear ? ": overrides cleared" : ": quotas set") : ""}`);
      for (const [flag, limit] of Object.entries(QUOTA_FLAGS)) {
        const value = limits[limit];
        const shown = limit === "storedBytes" && value >= UNLIMITED_BYTES ? "unlimited" : String(value);
        console.log(`  ${flag.padEnd(22)}${shown.padEnd(22)}${overrides[limit] === undefined ? "(default)" : "(override)"}`);
      }
      console.log(`  usage: ${usage.storedBytes} bytes stored, ${usage.openSessions} open upload session(s)`);
      console.log(`  (running servers apply changes within ARTIFACTD_QUOTA_CACHE_MS, ${config.quotaCacheMs} ms)`);
    }
    return 0;
  } finally {
    await blobs.close();
    await metadata.close();
  }
}

/** A flag's value: `default` (drop the override), a size for stored bytes (or `unlimited`), else a whole number ≥ 1. */
function quotaValue(flag: string, raw: string): number | null {
  if (raw === "default") return null;
  if (flag === "stored-bytes") {
    if (raw === "unlimited") return UNLIMITED_BYTES;
    const bytes = parseSize(raw);
    if (bytes === undefined || !Number.isSafeInteger(bytes)) {
      throw new ArtifactError(
        "invalid_argument",
        `--stored-bytes ${JSON.stringify(raw)} is not valid: give bytes with an optional KiB, MiB or GiB suffix (e.g. 10GiB), unlimited, or default`,
      );
    }
    return bytes;
  }
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1 || value > 2_147_483_647) {
    throw new ArtifactError("invalid_argument", `--${flag} ${JSON.stringify(raw)} is not valid: give a whole number of at least 1, or default`);
  }
  return value;
}
