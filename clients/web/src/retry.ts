import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Retries a call that failed for a reason that may pass (the connection
 * dropped, the server restarted, a complete is still running elsewhere),
 * with exponential backoff and jitter. Anything else — bad input, a session
 * that is gone — fails at once, as does an aborted signal.
 */
export interface RetryPolicy {
  /** Retries after the first try. */
  readonly retries: number;
  /** Delay before the first retry; doubled for each next one. */
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { retries: 4, baseDelayMs: 300, maxDelayMs: 5_000 };

/**
 * Codes worth another try. Unknown is what a fetch that failed on the
 * network becomes; Aborted is a concurrent CompleteUploadSession.
 */
const TRANSIENT = new Set<Code>([Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Aborted]);

export function isTransient(error: unknown): boolean {
  return TRANSIENT.has(ConnectError.from(error).code);
}

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
      const delay = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
      await sleep(delay / 2 + Math.random() * (delay / 2), signal);
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
