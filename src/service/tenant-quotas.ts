import { ArtifactError } from "../artifact-error.ts";
import type { TenantQuotaLimits } from "../config.ts";
import type { TenantQuotaOverrides, TenantQuotaStore, TenantUsage } from "../ports/tenant-quota-store.ts";

/**
 * Per-tenant quotas: stored bytes, concurrent uploads and downloads, open
 * upload sessions, and calls per second (a token bucket with a burst).
 *
 * Where each is counted, and why:
 * - Concurrency and calls per second are counted in this process only: they
 *   protect this server's memory, sockets and CPU, and a shared counter would
 *   cost a database round trip per call. With N replicas behind a balancer a
 *   tenant gets up to N times them.
 * - Stored bytes and open sessions are read from the database (every
 *   replica sees the same), cached for `cacheMs`. So that uploads racing on
 *   one process cannot all pass on the same stale figure, the bytes of
 *   uploads in flight here are added to it, and bytes stored (and sessions
 *   opened) here are added to the cached figure until the next read.
 *   Replicas racing each other can overshoot by what each lets through
 *   within one cache period.
 * - Overrides (`artifactd tenant set-quota`) are cached for `cacheMs` too:
 *   a change takes effect on every server within that time.
 *
 * A refusal is resource_exhausted naming the quota (ArtifactError.quota),
 * with `retryAfterMs` when waiting is expected to help: calls per second
 * (the time until the bucket holds a call again), concurrency (a guess:
 * transfers end), open sessions (the next usage read). Stored bytes carries
 * none: only deleting content, or a higher quota, frees room.
 */
export interface TenantQuotas {
  /** Takes one call from the tenant's bucket. */
  admitCall(tenantId: string): Promise<void>;
  /** A place among the tenant's uploads running at once, held until released. */
  startUpload(tenantId: string): Promise<QuotaSlot>;
  /** A place among the tenant's downloads running at once, held until released. */
  startDownload(tenantId: string): Promise<QuotaSlot>;
  /** Bytes about to be stored for the tenant, checked against its stored-bytes quota as they are added. */
  reserveStorage(tenantId: string): StorageReservation;
  /** Before a new upload session: its open-sessions quota, and the declared size against its stored-bytes quota. */
  checkNewSession(tenantId: string, declaredBytes: number | undefined): Promise<void>;
  /** After a session was created: counted until the next usage read. */
  sessionOpened(tenantId: string): void;
  /** The tenant's limits now: its overrides over the defaults. */
  limitsOf(tenantId: string): Promise<TenantQuotaLimits>;
}

export interface QuotaSlot {
  /** Gives the place back; idempotent, so every way a transfer ends may call it. */
  release(): void;
}

export interface StorageReservation {
  /** Counts `bytes` more; refuses (counting nothing) when they would take the tenant over its quota. */
  add(bytes: number): Promise<void>;
  /**
   * Ends the reservation; `stored`: its bytes are now stored, and count in
   * the cached usage until the next read. Idempotent.
   */
  release(stored: boolean): void;
}

export interface TenantQuotasOptions {
  readonly store: TenantQuotaStore;
  /** Limits of tenants without overrides (ARTIFACTD_QUOTA_*). */
  readonly defaults: TenantQuotaLimits;
  /** How long overrides and usage are kept before reading them again (ARTIFACTD_QUOTA_CACHE_MS). */
  readonly cacheMs: number;
  /** Milliseconds clock; default performance.now. */
  readonly now?: () => number;
}

/** retry-after-ms for a concurrency refusal: transfers take a while; come back in about a second. */
const CONCURRENCY_RETRY_MS = 1_000;
/** Per-tenant state idle for this long is dropped, so a server that saw many tenants does not keep them all. */
const IDLE_FORGET_MS = 60_000;

interface TenantState {
  limits?: { value: TenantQuotaLimits; readAt: number };
  readingLimits?: Promise<TenantQuotaLimits> | undefined;
  usage?: { value: { storedBytes: number; openSessions: number }; readAt: number };
  readingUsage?: Promise<TenantUsage> | undefined;
  tokens: number;
  refilledAt: number;
  uploads: number;
  downloads: number;
  /** Bytes of uploads in flight in this process, not yet stored. */
  reservedBytes: number;
  usedAt: number;
}

export function createTenantQuotas(options: TenantQuotasOptions): TenantQuotas {
  const now = options.now ?? (() => performance.now());
  const tenants = new Map<string, TenantState>();
  let sweptAt = now();

  const stateOf = (tenantId: string): TenantState => {
    const at = now();
    if (at - sweptAt > IDLE_FORGET_MS) {
      sweptAt = at;
      for (const [id, state] of tenants) {
        if (at - state.usedAt > IDLE_FORGET_MS && state.uploads === 0 && state.downloads === 0 && state.reservedBytes === 0) tenants.delete(id);
      }
    }
    let state = tenants.get(tenantId);
    if (!state) {
      state = { tokens: Number.NaN, refilledAt: at, uploads: 0, downloads: 0, reservedBytes: 0, usedAt: at };
      tenants.set(tenantId, state);
    }
    state.usedAt = at;
    return state;
  };

  const fresh = (readAt: number) => now() - readAt < options.cacheMs;

  const limitsOf = async (tenantId: string): Promise<TenantQuotaLimits> => {
    const state = stateOf(tenantId);
    if (state.limits && fresh(state.limits.readAt)) return state.limits.value;
    // One read per tenant at a time; callers meanwhile share it.
    state.readingLimits ??= options.store
      .get(tenantId)
      .then((overrides) => {
        const value = applyOverrides(options.defaults, overrides);
        state.limits = { value, readAt: now() };
        return value;
      })
      // Limits that could not be read again stay as they were: a database that is briefly unreachable should not
      // turn into refusals of calls that need nothing else from it.
      .catch((error: unknown) => {
        if (state.limits) return state.limits.value;
        throw error;
      })
      .finally(() => (state.readingLimits = undefined));
    return state.readingLimits;
  };

  const usageOf = async (state: TenantState, tenantId: string): Promise<{ storedBytes: number; openSessions: number }> => {
    if (state.usage && fresh(state.usage.readAt)) return state.usage.value;
    state.readingUsage ??= options.store
      .usage(tenantId)
      .then((usage) => {
        state.usage = { value: { ...usage }, readAt: now() };
        return usage;
      })
      .finally(() => (state.readingUsage = undefined));
    await state.readingUsage;
    return state.usage!.value;
  };

  /**
   * Refuses `adding` more bytes over the tenant's stored-bytes quota; else
   * calls `admit`, in the same synchronous step as the check: a second caller
   * that awaited the same reads must see these bytes counted, or uploads
   * racing for the last room would both pass.
   */
  const checkStored = async (tenantId: string, state: TenantState, adding: number, what: string, admit: () => void = () => {}) => {
    const limits = await limitsOf(tenantId);
    if (limits.storedBytes === Infinity) return admit();
    const { storedBytes } = await usageOf(state, tenantId);
    const total = storedBytes + state.reservedBytes + adding;
    if (total > limits.storedBytes) {
      throw new ArtifactError(
        "resource_exhausted",
        `${what} would take tenant ${tenantId} to ${total} bytes stored (${storedBytes} stored, ${state.reservedBytes} being uploaded), ` +
          `over its stored-bytes quota of ${limits.storedBytes} bytes: nothing was stored; delete artifacts it no longer needs ` +
          `(their space returns once garbage collection reclaims it) or ask the operator to raise the quota (artifactd tenant set-quota)`,
        { quota: "stored-bytes" },
      );
    }
    admit();
  };

  const concurrencySlot = async (tenantId: string, kind: "uploads" | "downloads"): Promise<QuotaSlot> => {
    const limits = await limitsOf(tenantId);
    const state = stateOf(tenantId);
    const limit = kind === "uploads" ? limits.concurrentUploads : limits.concurrentDownloads;
    if (state[kind] >= limit) {
      throw new ArtifactError(
        "resource_exhausted",
        `tenant ${tenantId} is running ${state[kind]} ${kind} on this server, as many as its concurrent-${kind} quota allows: ` +
          `wait for one to finish and retry (retry-after-ms says when), or ask the operator to raise the quota (artifactd tenant set-quota)`,
        { quota: `concurrent-${kind}`, retryAfterMs: CONCURRENCY_RETRY_MS },
      );
    }
    state[kind]++;
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        state[kind]--;
      },
    };
  };

  return {
    limitsOf,

    async admitCall(tenantId) {
      const limits = await limitsOf(tenantId);
      const state = stateOf(tenantId);
      const at = now();
      // A new bucket starts full; a changed burst caps what it holds.
      state.tokens = Number.isNaN(state.tokens)
        ? limits.burst
        : Math.min(limits.burst, state.tokens + ((at - state.refilledAt) / 1000) * limits.callsPerSecond);
      state.refilledAt = at;
      if (state.tokens >= 1) {
        state.tokens -= 1;
        return;
      }
      const retryAfterMs = Math.ceil(((1 - state.tokens) / limits.callsPerSecond) * 1000);
      throw new ArtifactError(
        "resource_exhausted",
        `tenant ${tenantId} is over its quota of ${limits.callsPerSecond} calls per second (bursts of ${limits.burst}) on this server: ` +
          `slow down and retry after ${retryAfterMs} ms (the retry-after-ms trailer), or ask the operator to raise the quota (artifactd tenant set-quota)`,
        { quota: "calls-per-second", retryAfterMs },
      );
    },

    startUpload: (tenantId) => concurrencySlot(tenantId, "uploads"),
    startDownload: (tenantId) => concurrencySlot(tenantId, "downloads"),

    reserveStorage(tenantId) {
      const state = stateOf(tenantId);
      let reserved = 0;
      let released = false;
      return {
        async add(bytes) {
          if (released) throw new Error("the storage reservation was already released");
          await checkStored(tenantId, state, bytes, reserved === 0 ? `storing ${bytes} bytes` : `storing ${reserved + bytes} bytes`, () => {
            reserved += bytes;
            state.reservedBytes += bytes;
          });
        },
        release(stored) {
          if (released) return;
          released = true;
          state.reservedBytes -= reserved;
          if (stored && state.usage) state.usage.value.storedBytes += reserved;
        },
      };
    },

    async checkNewSession(tenantId, declaredBytes) {
      const limits = await limitsOf(tenantId);
      const state = stateOf(tenantId);
      const { openSessions } = await usageOf(state, tenantId);
      if (openSessions >= limits.openSessions) {
        throw new ArtifactError(
          "resource_exhausted",
          `tenant ${tenantId} has ${openSessions} open upload sessions, its open-sessions quota: complete or abort one (AbortUploadSession) ` +
            `before creating another, or ask the operator to raise the quota (artifactd tenant set-quota)`,
          { quota: "open-sessions", retryAfterMs: options.cacheMs },
        );
      }
      if (declaredBytes !== undefined) await checkStored(tenantId, state, declaredBytes, `an upload session of expected_size ${declaredBytes}`);
    },

    sessionOpened(tenantId) {
      const usage = stateOf(tenantId).usage;
      if (usage) usage.value.openSessions++;
    },
  };
}

/** The tenant's limits: each override in place of its default. */
export function applyOverrides(defaults: TenantQuotaLimits, overrides: TenantQuotaOverrides): TenantQuotaLimits {
  return Object.freeze({ ...defaults, ...overrides });
}
