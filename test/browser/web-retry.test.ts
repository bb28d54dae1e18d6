import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { withRetry } from "../../clients/web/src/retry.ts";

/** The browser client's retry rule for quota refusals (RESOURCE_EXHAUSTED), as the server sends them. */
describe("web client retries", () => {
  const policy = { retries: 3, baseDelayMs: 10, maxDelayMs: 20 };
  const quota = (hint?: string) =>
    new ConnectError("over the calls-per-second quota", Code.ResourceExhausted, hint === undefined ? undefined : { "retry-after-ms": hint });

  it("waits out retry-after-ms, then calls again", async () => {
    let calls = 0;
    const started = Date.now();
    const result = await withRetry(
      async () => {
        if (++calls === 1) throw quota("300");
        return "done";
      },
      policy,
      undefined,
    );
    expect(result).toBe("done");
    expect(calls).toBe(2);
    // The hint, not the policy's 10–20 ms backoff.
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });

  it("gives up at once on a quota refusal without a hint (stored bytes: waiting does not help)", async () => {
    let calls = 0;
    await expect(
      withRetry(
        async () => {
          calls++;
          throw quota();
        },
        policy,
        undefined,
      ),
    ).rejects.toMatchObject({ code: Code.ResourceExhausted });
    expect(calls).toBe(1);
  });
});
