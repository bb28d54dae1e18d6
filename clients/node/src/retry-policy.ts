import { Code, ConnectError } from "@connectrpc/connect";

/**
 * When and how the client tries a call again. Only failures that say
 * nothing about the request itself are retried: UNAVAILABLE (the server
 * could not be reached, restarted, or the connection dropped) and a stream
 * that broke off in transit (connect-node reports an HTTP/2 stream or
 * socket reset as INTERNAL / UNKNOWN / ABORTED with the transport's error
 * text, e.g. "read ECONNRESET"; the server's own ABORTED never carries it), and
 * a connection that died under a stream as CANCELED "http/2 stream closed
 * with error code CANCEL" — retried only while the caller's own signal has
 * not aborted, which every caller here checks first), and the server's
 * ABORTED for an upload session that is busy for a moment — still held by
 * the stream a dropped connection left (its server lets go once that
 * stream's last part has landed), or being completed by another call.
 * RESOURCE_EXHAUSTED is retried only when the server said when to come
 * back (a tenant quota's `retry-after-ms`: calls per second, concurrent
 * transfers, open sessions), which it says only for refusals made before
 * anything was done; the wait is then that hint plus up to a quarter more,
 * at random, so clients refused together do not return together.
 * Everything else the server decided — INVALID_ARGUMENT, NOT_FOUND,
 * FAILED_PRECONDITION, RESOURCE_EXHAUSTED without a hint (stored bytes, the
 * upload limit), … — is final, and so are CANCELED and DEADLINE_EXCEEDED,
 * which are the caller's own limits.
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
  /** True for failures worth another try (see the module comment). */
  isTransient(error: unknown): boolean;
  /** Waits before retry number `attempt` (1 = the first retry); rejects with CANCELED if `signal` aborts. */
  wait(attempt: number, error: ConnectError, signal?: AbortSignal): Promise<void>;
  /** Runs `call` until it succeeds, fails for good, or the attempts run out. */
  run<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T>;
}

const TRANSPORT_FAILURE = /RST_STREAM|ECONNRESET|EPIPE|ECONNREFUSED|socket hang up|stream closed|session closed|GOAWAY|ERR_HTTP2|premature close|other side closed/i;
/** The server's ABORTED for a session busy for a moment (see the module comment). */
const SESSION_BUSY = /is held by a streaming upload bound to it|is being completed by another call/;

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

    isTransient(error) {
      const connectError = ConnectError.from(error);
      if (connectError.code === Code.Unavailable) return true;
      if (connectError.code === Code.ResourceExhausted) return retryAfterMs(connectError) !== undefined;
      if (connectError.code === Code.Canceled) return /stream closed with error code/.test(connectError.rawMessage);
      if (connectError.code === Code.Aborted && SESSION_BUSY.test(connectError.rawMessage)) return true;
      if (connectError.code === Code.Internal || connectError.code === Code.Unknown || connectError.code === Code.Aborted) {
        return TRANSPORT_FAILURE.test(connectError.rawMessage) || TRANSPORT_FAILURE.test(String((connectError.cause as Error | undefined)?.message ?? ""));
      }
      return false;
    },

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

/** The server's `retry-after-ms` (a response trailer or header), when it sent one. */
export function retryAfterMs(error: ConnectError): number | undefined {
  const raw = error.metadata.get("retry-after-ms");
  const ms = raw === null ? Number.NaN : Number(raw);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

function canceled(signal: AbortSignal): ConnectError {
  return signal.reason instanceof ConnectError ? signal.reason : new ConnectError(`the call was aborted: ${String(signal.reason?.message ?? signal.reason)}`, Code.Canceled, undefined, undefined, signal.reason);
}
