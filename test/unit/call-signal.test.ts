import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { openCallSignal } from "../../src/transport/grpc-response-framing.ts";

/** A response whose stream closing the test decides. */
function fakeFraming() {
  const listeners: (() => void)[] = [];
  return {
    onClose: (listener: () => void) => void listeners.push(listener),
    close: () => {
      for (const listener of listeners) listener();
    },
  };
}

describe("a fast route's call signal", () => {
  it("takes the stream closing before the call ended for the client going away: CANCELED", () => {
    const framing = fakeFraming();
    const call = openCallSignal({ shutdownSignal: new AbortController().signal, revocation: undefined, framing, timeoutMs: undefined, what: "upload" });
    framing.close();
    expect(call.signal.aborted).toBe(true);
    expect((call.signal.reason as ConnectError).code).toBe(Code.Canceled);
    expect((call.signal.reason as ConnectError).rawMessage).toBe("the client cancelled the upload");
  });

  it("leaves the signal alone when the stream closes after the call ended (its status going out), and lets go once", () => {
    const framing = fakeFraming();
    const shutdown = new AbortController();
    let releases = 0;
    const revocation = { signal: new AbortController().signal, release: () => void releases++ };
    const call = openCallSignal({ shutdownSignal: shutdown.signal, revocation, framing, timeoutMs: 60_000, what: "download" });
    call.end();
    framing.close();
    call.end();
    shutdown.abort(new ConnectError("shutting down", Code.Unavailable));
    expect(call.signal.aborted).toBe(false);
    expect(releases).toBe(1);
  });
});
