import { Code, ConnectError } from "@connectrpc/connect";
import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createRetryPolicy, retryAfterMs } from "../../clients/node/src/retry-policy.ts";

const withHint = (code: Code, hint: string) => new ConnectError("refused", code, { "retry-after-ms": hint });
const delays = (options: Parameters<typeof createRetryPolicy>[0], attempts: number[], error = new ConnectError("down", Code.Unavailable)) => {
  const seen: number[] = [];
  const policy = createRetryPolicy({ ...(options || {}), onRetry: (event) => seen.push(event.delayMs) });
  for (const attempt of attempts) void policy.wait(attempt, error);
  return seen;
};

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("the Node client's retry policy", () => {
  it("retries transport failures and a busy session, and nothing the server decided", () => {
    const policy = createRetryPolicy();
    const transient = [
      new ConnectError("no connection", Code.Unavailable),
      new ConnectError("read ECONNRESET", Code.Internal),
      new ConnectError("Received RST_STREAM with code 2", Code.Unknown),
      new ConnectError("socket hang up", Code.Aborted),
      new ConnectError("wrapped", Code.Internal, undefined, undefined, new Error("write EPIPE")),
      new ConnectError("http/2 stream closed with error code CANCEL", Code.Canceled),
      new ConnectError("session x is held by a streaming upload bound to it", Code.Aborted),
      new ConnectError("session x is being completed by another call", Code.Aborted),
      // One rule for both clients (@artifactd/api isTransientFailure): every ABORTED the service sends asks for the call again.
      new ConnectError("conflict", Code.Aborted),
      withHint(Code.ResourceExhausted, "250"),
      new Error("Premature close"),
    ];
    for (const error of transient) expect(policy.isTransient(error), String(error)).toBe(true);
    const final = [
      new ConnectError("bad", Code.InvalidArgument),
      new ConnectError("read ECONNRESET", Code.InvalidArgument),
      new ConnectError("gone", Code.NotFound),
      new ConnectError("stored bytes", Code.ResourceExhausted),
      withHint(Code.ResourceExhausted, "soon"),
      withHint(Code.ResourceExhausted, "-1"),
      new ConnectError("the caller gave up", Code.Canceled),
      // A CANCELED is retried only as a connection that died under its stream, not for any transport text.
      new ConnectError("read ECONNRESET", Code.Canceled),
      new ConnectError("too slow", Code.DeadlineExceeded),
      new ConnectError("session x is being completed by another call", Code.FailedPrecondition),
      new ConnectError("a bug", Code.Internal),
      new ConnectError("a bug", Code.Unknown, undefined, undefined, "not an error"),
    ];
    for (const error of final) expect(policy.isTransient(error), String(error)).toBe(false);
  });

  it("reads the server's retry-after-ms as a number >= 0", () => {
    expect(retryAfterMs(withHint(Code.ResourceExhausted, "0"))).toBe(0);
    expect(retryAfterMs(withHint(Code.ResourceExhausted, "1500"))).toBe(1500);
    for (const bad of ["x", "-5", "Infinity"]) expect(retryAfterMs(withHint(Code.ResourceExhausted, bad)), bad).toBeUndefined();
    expect(retryAfterMs(new ConnectError("no hint", Code.ResourceExhausted))).toBeUndefined();
  });

  it("waits a random time up to a cap that starts at initialDelayMs and doubles up to maxDelayMs", () => {
    vi.useFakeTimers();
    vi.spyOn(Math, "random").mockReturnValue(1);
    expect(delays({}, [1, 2, 3, 7, 8])).toStrictEqual([100, 200, 400, 5000, 5000]);
    expect(delays({ initialDelayMs: 10, maxDelayMs: 50 }, [1, 2, 3, 4])).toStrictEqual([10, 20, 40, 50]);
    vi.spyOn(Math, "random").mockReturnValue(0.5);
    expect(delays({}, [1, 2])).toStrictEqual([50, 100]);
    vi.spyOn(Math, "random").mockReturnValue(0);
    expect(delays({}, [1, 5])).toStrictEqual([0, 0]);
  });

  it("waits the server's hint plus up to a quarter more", () => {
    vi.useFakeTimers();
    vi.spyOn(Math, "random").mockReturnValue(1);
    expect(delays({}, [1, 9], withHint(Code.ResourceExhausted, "1000"))).toStrictEqual([1250, 1250]);
    vi.spyOn(Math, "random").mockReturnValue(0);
    expect(delays({}, [1], withHint(Code.ResourceExhausted, "1000"))).toStrictEqual([1000]);
  });

  it("resolves after the wait, tells onRetry first, and ends the wait at once when the signal aborts", async () => {
    vi.useFakeTimers();
    vi.spyOn(Math, "random").mockReturnValue(1);
    const events: unknown[] = [];
    const error = new ConnectError("down", Code.Unavailable);
    const policy = createRetryPolicy({ onRetry: (event) => events.push(event) });
    let done = false;
    const waited = policy.wait(2, error).then(() => (done = true));
    expect(events).toStrictEqual([{ attempt: 2, delayMs: 200, error }]);
    await vi.advanceTimersByTimeAsync(199);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await waited;
    expect(done).toBe(true);

    const controller = new AbortController();
    const aborted = policy.wait(1, error, controller.signal);
    controller.abort(new Error("stop"));
    await expect(aborted).rejects.toMatchObject({ code: Code.Canceled, rawMessage: "the call was aborted: stop" });
    const reason = new ConnectError("mine", Code.DeadlineExceeded);
    await expect(createRetryPolicy().wait(1, error, AbortSignal.abort(reason))).rejects.toBe(reason);
    await expect(createRetryPolicy().wait(1, error, AbortSignal.abort("plain"))).rejects.toMatchObject({
      code: Code.Canceled,
      rawMessage: "the call was aborted: plain",
    });
    const nullReason = new AbortController();
    const waitingOnNull = createRetryPolicy().wait(1, error, nullReason.signal);
    nullReason.abort(null);
    await expect(waitingOnNull).rejects.toMatchObject({ code: Code.Canceled, rawMessage: "the call was aborted: null" });
    expect(vi.getTimerCount()).toBe(0);
  });

  it("leaves no listener on the caller's signal, whether the wait ends or is aborted", async () => {
    vi.useFakeTimers();
    const error = new ConnectError("down", Code.Unavailable);
    const controller = new AbortController();
    const policy = createRetryPolicy({ initialDelayMs: 10 });
    for (let attempt = 1; attempt <= 3; attempt++) {
      const waited = policy.wait(1, error, controller.signal);
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(10);
      await waited;
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    }
    const aborted = policy.wait(1, error, controller.signal);
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: Code.Canceled });
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });

  it("runs a call until it succeeds, for at most maxAttempts tries, only while failures are transient", async () => {
    const policy = createRetryPolicy({ maxAttempts: 3, initialDelayMs: 0, maxDelayMs: 0 });
    let calls = 0;
    await expect(policy.run(async () => (++calls < 3 ? Promise.reject(new ConnectError("down", Code.Unavailable)) : "ok"))).resolves.toBe("ok");
    expect(calls).toBe(3);
    calls = 0;
    const down = new ConnectError("down", Code.Unavailable);
    await expect(policy.run(async () => (calls++, Promise.reject(down)))).rejects.toBe(down);
    expect(calls).toBe(3);
    calls = 0;
    const bad = new ConnectError("bad", Code.InvalidArgument);
    await expect(policy.run(async () => (calls++, Promise.reject(bad)))).rejects.toBe(bad);
    expect(calls).toBe(1);
    calls = 0;
    const controller = new AbortController();
    await expect(policy.run(async () => (calls++, controller.abort(), Promise.reject(down)), controller.signal)).rejects.toBe(down);
    expect(calls).toBe(1);
    expect(policy.maxAttempts).toBe(3);
  });

  it("takes five tries by default, one when turned off, and refuses settings that make no sense", async () => {
    expect(createRetryPolicy().maxAttempts).toBe(5);
    expect(createRetryPolicy({}).maxAttempts).toBe(5);
    const off = createRetryPolicy(false);
    expect(off.maxAttempts).toBe(1);
    let calls = 0;
    await expect(off.run(async () => (calls++, Promise.reject(new ConnectError("down", Code.Unavailable))))).rejects.toThrow("down");
    expect(calls).toBe(1);
    for (const maxAttempts of [0, 1.5])
      expect(() => createRetryPolicy({ maxAttempts })).toThrow(new TypeError(`retry.maxAttempts must be a whole number >= 1, got ${maxAttempts}`));
    const delaysMessage = "retry delays must satisfy 0 <= initialDelayMs <= maxDelayMs";
    expect(() => createRetryPolicy({ initialDelayMs: -1 })).toThrow(new TypeError(delaysMessage));
    expect(() => createRetryPolicy({ initialDelayMs: Number.NaN })).toThrow(delaysMessage);
    expect(() => createRetryPolicy({ initialDelayMs: 10, maxDelayMs: 9 })).toThrow(delaysMessage);
    expect(() => createRetryPolicy({ initialDelayMs: 0, maxDelayMs: 0 })).not.toThrow();
    expect(() => createRetryPolicy({ initialDelayMs: 5000 })).not.toThrow();
    expect(() => createRetryPolicy({ maxAttempts: 1 })).not.toThrow();
  });
});
