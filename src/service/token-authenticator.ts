import type { Caller } from "../artifact.ts";
import { ArtifactError } from "../artifact-error.ts";
import type { ApiToken, TokenStore } from "../ports/token-store.ts";
import { callerOf, tokenIsActive, tokenSha256 } from "./api-tokens.ts";

/**
 * Token checks at the rate of calls, not of database round trips: every call
 * authenticates, so lookups are cached for `cacheMs`, and that is also the
 * bound on how long a revoked token keeps working. Calls that outlive the
 * cache (Watch streams, long transfers, signed links) are checked again at
 * the same pace, so revocation reaches them within the same bound.
 *
 * Unknown tokens are cached too (a client retrying with a stale token costs
 * one lookup per period), in a bounded map: random well-formed tokens can
 * each cost one lookup, never memory without end.
 */
export interface TokenAuthenticator {
  /** The caller a `Bearer <token>` header names; throws unauthenticated for anything else. */
  authenticate(authorization: string | null | undefined): Promise<Caller>;
  /** True while the token with this id may be used (not revoked, not expired), as of at most `cacheMs` ago. */
  isActive(tokenId: string): Promise<boolean>;
  /**
   * For a call that stays open: a signal that aborts, with an unauthenticated
   * ArtifactError as its reason, once the caller's token is revoked or
   * expires. `release` when the call ends.
   */
  watch(caller: Caller): { readonly signal: AbortSignal; release(): void };
  close(): void;
}

export interface TokenAuthenticatorOptions {
  /** How long a lookup is trusted; the bound on how late revocation takes effect. */
  readonly cacheMs: number;
  /** Most cached lookups kept (oldest dropped first). */
  readonly maxEntries?: number;
  readonly log?: (message: string, error?: unknown) => void;
}

interface CacheEntry {
  readonly loadedAt: number;
  readonly token: Promise<ApiToken | undefined>;
}

export function createTokenAuthenticator(metadata: TokenStore, options: TokenAuthenticatorOptions): TokenAuthenticator {
  const maxEntries = options.maxEntries ?? 10_000;
  const bySha256 = new Map<string, CacheEntry>();
  const byId = new Map<string, CacheEntry>();
  const openCalls = new Map<string, Set<AbortController>>();
  let sweep: NodeJS.Timeout | undefined;

  // Concurrent calls with one token share one lookup; a failed lookup is not cached (the next call tries again).
  function cached(map: Map<string, CacheEntry>, key: string, load: () => Promise<ApiToken | undefined>): Promise<ApiToken | undefined> {
    const now = Date.now();
    const hit = map.get(key);
    if (hit && now - hit.loadedAt < options.cacheMs) return hit.token;
    map.delete(key);
    if (map.size >= maxEntries) map.delete(map.keys().next().value!);
    const token = load();
    map.set(key, { loadedAt: now, token });
    token.catch(() => map.get(key)?.token === token && map.delete(key));
    return token;
  }
  const findById = (id: string, fresh = false) => {
    if (fresh) byId.delete(id);
    return cached(byId, id, () => metadata.findTokenById(id));
  };

  function revocationReason(token: ApiToken | undefined): ArtifactError {
    return token?.revokedAt === undefined && token?.expiresAt
      ? new ArtifactError(
          "unauthenticated",
          `the API token expired at ${token.expiresAt.toISOString()} while the call was open: create a new token and call again`,
        )
      : new ArtifactError("unauthenticated", "the API token was revoked while the call was open");
  }

  async function checkOpenCalls(): Promise<void> {
    for (const [tokenId, controllers] of openCalls) {
      let token: ApiToken | undefined;
      try {
        token = await findById(tokenId, true);
      } catch (error) {
        // The store is unreachable: keep the calls (they fail by themselves if they need it) and ask again next time.
        options.log?.("could not check the tokens of open calls", error);
        return;
      }
      if (tokenIsActive(token)) continue;
      const reason = revocationReason(token);
      for (const controller of controllers) controller.abort(reason);
      openCalls.delete(tokenId);
    }
  }

  function startSweep(): void {
    if (sweep) return;
    let running = false;
    sweep = setInterval(() => {
      if (running) return;
      if (openCalls.size === 0) {
        clearInterval(sweep);
        sweep = undefined;
        return;
      }
      running = true;
      void checkOpenCalls().finally(() => (running = false));
    }, options.cacheMs);
    sweep.unref();
  }

  return {
    async authenticate(authorization) {
      const sha256 = tokenSha256(authorization);
      return callerOf(await cached(bySha256, sha256, () => metadata.findTokenBySha256(sha256)));
    },
    async isActive(tokenId) {
      return tokenIsActive(await findById(tokenId));
    },
    watch(caller) {
      const controller = new AbortController();
      let calls = openCalls.get(caller.tokenId);
      if (!calls) {
        calls = new Set();
        openCalls.set(caller.tokenId, calls);
      }
      calls.add(controller);
      startSweep();
      return {
        signal: controller.signal,
        release() {
          calls.delete(controller);
          if (calls.size === 0 && openCalls.get(caller.tokenId) === calls) openCalls.delete(caller.tokenId);
        },
      };
    },
    close() {
      clearInterval(sweep);
      sweep = undefined;
    },
  };
}
