import { Blake3Hasher } from "@napi-rs/blake-hash";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCuttingProxy, type CuttingProxy } from "../../../test/support/cutting-proxy.ts";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { createArtifactClient, type ArtifactClient } from "../src/index.ts";

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Backpressure end to end: the real service behind a relay that stops
 * reading from the client, as a stalled server or a saturated link would.
 * A writer's `write` resolves only once the connection has taken the bytes,
 * so the producer must stall after the HTTP/2 window and the socket buffers
 * (a few MiB), not after handing the client the whole content.
 */
describe.each(BACKENDS)("backpressure through a real connection on %s", (backend) => {
  let t: TestApp;
  let proxy: CuttingProxy;
  let client: ArtifactClient;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_S3_PART_SIZE: "5MiB" });
    proxy = await startCuttingProxy(t.url);
    client = createArtifactClient({ baseUrl: proxy.url, token: t.tokens.alpha, timeoutMs: 30_000 });
    await client.listPage({}, { pageSize: 1 }); // the connection exists before the relay stalls
  });
  afterAll(async () => {
    await client?.close();
    await proxy?.close();
    await t?.close();
  });

  it("a server that stops reading holds the writer back; nothing piles up in the client", async () => {
    const chunk = randomBytes(MiB);
    const chunks = 128;
    const hasher = new Blake3Hasher();
    for (let i = 0; i < chunks; i++) hasher.update(chunk);

    await using writer = client.openWriter({ kind: "backpressure" });
    proxy.pauseUp();
    let accepted = 0;
    const writing = (async () => {
      for (let i = 0; i < chunks; i++) {
        await writer.write(chunk);
        accepted += chunk.byteLength;
      }
    })();
    await sleep(1_500);
    const stalledAt = accepted;
    await sleep(500);
    // Stalled, and far below the 128 MiB the producer wanted to hand over.
    expect(accepted).toBe(stalledAt);
    expect(stalledAt).toBeLessThan(40 * MiB);

    proxy.resumeUp();
    await writing;
    const { artifact } = await writer.commit();
    expect(Number(artifact!.sizeBytes)).toBe(chunks * MiB);
    expect(artifact!.blake3).toBe(hasher.digest("hex"));
  });
});
