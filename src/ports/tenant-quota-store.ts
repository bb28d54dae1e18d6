/**
 * What one tenant may use. Concurrency and calls per second are counted per
 * server process; stored bytes and open sessions in the database.
 */
export interface TenantQuotaLimits {
  /** Blobs, inline content and parts of unfinished upload sessions; Infinity: unlimited. */
  readonly storedBytes: number;
  readonly concurrentUploads: number;
  readonly concurrentDownloads: number;
  /** Upload sessions neither completed nor expired. */
  readonly openSessions: number;
  /** Token bucket: refilled at this rate, holding at most `burst` calls. */
  readonly callsPerSecond: number;
  readonly burst: number;
}

/**
 * A tenant's quota overrides: only the quotas set for it; the others keep the
 * server's configured defaults.
 */
export type TenantQuotaOverrides = { readonly [K in keyof TenantQuotaLimits]?: number };

/** What a tenant holds in the database, as the stored-bytes and open-sessions quotas count it. */
export interface TenantUsage {
  /** Its blobs, its live inline content, and the parts of its unfinished upload sessions. */
  readonly storedBytes: number;
  /** Upload sessions neither completed nor expired. */
  readonly openSessions: number;
}

/**
 * Per-tenant quota overrides and the usage they are checked against, in the
 * metadata database (reached as MetadataStore.tenantQuotas), so every
 * replica enforces the same limits.
 */
export interface TenantQuotaStore {
  /** The tenant's overrides; an empty object when it has none. */
  get(tenantId: string): Promise<TenantQuotaOverrides>;
  /**
   * Sets the given overrides, keeping the ones not mentioned; `null` clears
   * one back to the default. Returns the overrides now stored.
   */
  set(tenantId: string, changes: { readonly [K in keyof TenantQuotaLimits]?: number | null }): Promise<TenantQuotaOverrides>;
  /** Removes every override of the tenant; false when it had none. */
  clear(tenantId: string): Promise<boolean>;
  usage(tenantId: string): Promise<TenantUsage>;
}
