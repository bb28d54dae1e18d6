import { Code, ConnectError } from "@connectrpc/connect";
import { getEventListeners } from "node:events";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DEFAULT_RETRY, isTransient, retryAfterMs, sleep, withRetry } from "../../clients/web/src/retry.ts";

const POLICY = { retries: 4, baseDelayMs: 100, maxDelayMs: 300 };
const quota = (hint?: string) => new ConnectError("over quota", Code.ResourceExhausted, hint === undefined ? undefined : { "retry-after-ms": hint });

/** Runs withRetry on fake timers against calls that fail with `errors` in turn, then succeed; the waits between calls. */
async function waitsBetweenCalls(errors: unknown[], policy = POLICY): Promise<number[]> {
  vi.useFakeTimers();
  const times: number[] = [];
  const result = withRetry(
    async () => {
      times.push(Date.now());
      if (times.length <= errors.length) throw errors[times.length - 1];
      return "done";
    },
    policy,
    undefined,
  );
  await vi.runAllTimersAsync();
  await expect(result).resolves.toBe("done");
  return times.slice(1).map((time, i) => time - times[i]!);
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("the web client's retries", () => {
  it("treat dropped connections, restarts, concurrent completes and hinted quota refusals as transient", () => {
    for (const code of [Code.Unavailable, Code.Aborted]) expect(isTransient(new ConnectError("x", code)), Code[code]).toBe(true);
    // One rule for both clients (@artifactd/api isTransientFailure): UNKNOWN and INTERNAL pass only as a failed fetch or a
    // dropped connection, never as the service's own answer; DEADLINE_EXCEEDED is the caller's spent budget.
    for (const message of ["Failed to fetch", "NetworkError when attempting to fetch resource.", "Load failed", "read ECONNRESET"]) {
      for (const code of [Code.Unknown, Code.Internal]) expect(isTransient(new ConnectError(message, code)), `${Code[code]} ${message}`).toBe(true);
    }
    for (const code of [Code.Unknown, Code.Internal, Code.DeadlineExceeded]) expect(isTransient(new ConnectError("x", code)), Code[code]).toBe(false);
    expect(isTransient(quota("10"))).toBe(true);
    for (const code of [Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.PermissionDenied, Code.Canceled]) {
      expect(isTransient(new ConnectError("x", code)), Code[code]).toBe(false);
    }
    expect(isTransient(quota())).toBe(false);
    expect(isTransient(quota("-1"))).toBe(false);
    expect(retryAfterMs(quota("0"))).toBe(0);
    expect(retryAfterMs(quota("x"))).toBeUndefined();
    expect(retryAfterMs(quota("Infinity"))).toBeUndefined();
  });

  it("retry four times by default, waiting 300 ms doubling to 5 s", () => {
    expect(DEFAULT_RETRY).toStrictEqual({ retries: 4, baseDelayMs: 300, maxDelayMs: 5_000 });
  });

  it("back off exponentially up to the cap, with jitter in the upper half of each wait", async () => {
    const down = new ConnectError("down", Code.Unavailable);
    vi.spyOn(Math, "random").mockReturnValue(1);
    expect(await waitsBetweenCalls([down, down, down, down])).toStrictEqual([100, 200, 300, 300]);
    vi.spyOn(Math, "random").mockReturnValue(0);
    expect(await waitsBetweenCalls([down, down])).toStrictEqual([50, 100]);
  });

  it("wait the server's hint plus up to a quarter more", async () => {
    vi.spyOn(Math, "random").mockReturnValue(1);
    expect(await waitsBetweenCalls([quota("1000"), quota("40")])).toStrictEqual([1250, 50]);
    vi.spyOn(Math, "random").mockReturnValue(0);
    expect(await waitsBetweenCalls([quota("1000")])).toStrictEqual([1000]);
  });

  it("give up after the retries, at once on what is not transient, and tell onRetry of each retry", async () => {
    const seen: [string, number][] = [];
    const down = new ConnectError("down", Code.Unavailable);
    let calls = 0;
    await expect(
      withRetry(
        async () => (calls++, Promise.reject(down)),
        { retries: 2, baseDelayMs: 0, maxDelayMs: 0 },
        undefined,
        (e, n) => seen.push([(e as ConnectError).rawMessage, n]),
      ),
    ).rejects.toBe(down);
    expect(calls).toBe(3);
    expect(seen).toStrictEqual([
      ["down", 1],
      ["down", 2],
    ]);
    calls = 0;
    const bad = new ConnectError("bad", Code.InvalidArgument);
    await expect(
      withRetry(
        async () => (calls++, Promise.reject(bad)),
        POLICY,
        undefined,
        () => seen.push(["bad", 0]),
      ),
    ).rejects.toBe(bad);
    expect(calls).toBe(1);
    expect(seen).toHaveLength(2);
  });

  it("stop on an aborted signal: before calling, after a failure, and during a wait", async () => {
    let calls = 0;
    const reason = new Error("stopped");
    await expect(withRetry(async () => ++calls, POLICY, AbortSignal.abort(reason))).rejects.toBe(reason);
    expect(calls).toBe(0);
    const controller = new AbortController();
    await expect(
      withRetry(async () => (calls++, controller.abort(reason), Promise.reject(new ConnectError("down", Code.Unavailable))), POLICY, controller.signal),
    ).rejects.toBe(reason);
    expect(calls).toBe(1);

    vi.useFakeTimers();
    const waiting = new AbortController();
    const sleeping = sleep(1000, waiting.signal);
    await vi.advanceTimersByTimeAsync(999);
    waiting.abort(reason);
    await expect(sleeping).rejects.toBe(reason);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("sleep the time asked", async () => {
    await expect(sleep(1)).resolves.toBeUndefined();
    vi.useFakeTimers();
    const controller = new AbortController();
    let done = false;
    const sleeping = sleep(100, controller.signal).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(99);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(done).toBe(true);
    await sleeping;
  });

  it("leave no listener on the caller's signal, whether a sleep ends or is aborted", async () => {
    vi.useFakeTimers();
    const controller = new AbortController();
    for (let i = 0; i < 3; i++) {
      const sleeping = sleep(10, controller.signal);
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(10);
      await sleeping;
      expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
    }
    const sleeping = sleep(10, controller.signal);
    controller.abort(new Error("stop"));
    await expect(sleeping).rejects.toThrow("stop");
    expect(getEventListeners(controller.signal, "abort")).toHaveLength(0);
  });
});
