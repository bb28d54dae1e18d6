import { ConnectError } from "@connectrpc/connect";
import { isTransientFailure as isTransient, retryAfterMs } from "@artifactd/api";

/** The rule for which failures pass is @artifactd/api's, shared with the Node SDK. */
export { isTransient, retryAfterMs };

/**
 * Retries a call that failed for a reason that may pass (@artifactd/api's
 * isTransientFailure: the connection dropped, the server restarted, a
 * complete is still running elsewhere, a tenant quota that says when to come
 * back), with exponential backoff and jitter, or after the server's
 * `retry-after-ms`. Anything else — bad input, a session that is gone, a
 * quota without a hint — fails at once, as does an aborted signal.
 */
export interface RetryPolicy {
  /** Retries after the first try. */
  readonly retries: number;
  /** Delay before the first retry; doubled for each next one. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 4, baseDelayMs: 300, maxDelayMs: 5_000 };

export async function withRetry<T>(
  call: () => Promise<T>,
  policy: RetryPolicy,
  signal: AbortSignal | undefined,
  onRetry?: (error: unknown, attempt: number) => void,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    signal?.throwIfAborted();
    try {
      return await call();
    } catch (error) {
      signal?.throwIfAborted();
      if (attempt >= policy.retries || !isTransient(error)) throw error;
      onRetry?.(error, attempt + 1);
      const hint = retryAfterMs(ConnectError.from(error));
      const delay = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
      // The server's hint, plus up to a quarter more so refused callers do not all come back at once.
      await sleep(hint === undefined ? delay / 2 + Math.random() * (delay / 2) : hint * (1 + Math.random() / 4), signal);
    }
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
