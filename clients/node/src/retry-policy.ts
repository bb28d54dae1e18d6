import { Code, ConnectError } from "@connectrpc/connect";
import { isTransientFailure, retryAfterMs } from "@artifactd/api";

export { retryAfterMs };

/**
 * When and how the client tries a call again. Which failures are worth
 * another try is @artifactd/api's isTransientFailure, the rule the web
 * client follows too (transport failures, UNAVAILABLE, ABORTED, a quota
 * refusal that says when to come back; see its comment, code by code).
 * When the server said when to come back (a tenant quota's
 * `retry-after-ms`), the wait is that hint plus up to a quarter more, at
 * random, so clients refused together do not return together.
 *
 * Other waits grow exponentially with full jitter (a random wait between 0
 * and the current cap), so many clients cut off together do not return
 * together; an aborted signal ends the wait at once.
 */
export interface RetryOptions {
  /** Tries in all, the first included; default 5. 1 turns retries off. */
  readonly maxAttempts?: number;
  /** Cap of the first wait; default 100 ms. It doubles with each retry. */
  readonly initialDelayMs?: number;
  /** Largest wait; default 5 000 ms. */
  readonly maxDelayMs?: number;
  /** Told about each retry before its wait (logging, tests). */
  readonly onRetry?: (event: { readonly attempt: number; readonly delayMs: number; readonly error: ConnectError }) => void;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  /** True for failures worth another try: @artifactd/api's isTransientFailure. */
  isTransient(error: unknown): boolean;
  /** Waits before retry number `attempt` (1 = the first retry); rejects with CANCELED if `signal` aborts. */
  wait(attempt: number, error: ConnectError, signal?: AbortSignal): Promise<void>;
  /** Runs `call` until it succeeds, fails for good, or the attempts run out. */
  run<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

export function createRetryPolicy(options: RetryOptions | false = {}): RetryPolicy {
  const settings = options === false ? { maxAttempts: 1 } : options;
  const maxAttempts = settings.maxAttempts ?? 5;
  const initialDelayMs = settings.initialDelayMs ?? 100;
  const maxDelayMs = settings.maxDelayMs ?? 5_000;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new TypeError(`retry.maxAttempts must be a whole number >= 1, got ${maxAttempts}`);
  if (!(initialDelayMs >= 0) || !(maxDelayMs >= initialDelayMs)) throw new TypeError("retry delays must satisfy 0 <= initialDelayMs <= maxDelayMs");
  const onRetry = options === false ? undefined : options.onRetry;

  const policy: RetryPolicy = {
    maxAttempts,

    isTransient: isTransientFailure,

    wait(attempt, error, signal) {
      const cap = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
      const hint = retryAfterMs(error);
      const delayMs = hint === undefined ? Math.round(Math.random() * cap) : Math.round(hint * (1 + Math.random() / 4));
      onRetry?.({ attempt, delayMs, error });
      return new Promise<void>((resolve, reject) => {
        if (signal?.aborted) return reject(canceled(signal));
        const timer = setTimeout(() => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        }, delayMs);
        const onAbort = () => {
          clearTimeout(timer);
          reject(canceled(signal!));
        };
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    },

    async run(call, signal) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await call();
        } catch (error) {
          if (attempt >= maxAttempts || signal?.aborted || !policy.isTransient(error)) throw error;
          await policy.wait(attempt, ConnectError.from(error), signal);
        }
      }
    },
  };
  return policy;
}

function canceled(signal: AbortSignal): ConnectError {
  return signal.reason instanceof ConnectError
    ? signal.reason
    : new ConnectError(`the call was aborted: ${String(signal.reason?.message ?? signal.reason)}`, Code.Canceled, undefined, undefined, signal.reason);
}
