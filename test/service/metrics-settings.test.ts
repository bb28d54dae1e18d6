import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Where /metrics is served and what it may name, as ARTIFACTD_METRICS_LISTEN
 * and ARTIFACTD_METRICS_TENANT_LABELS say (a real Prometheus scrapes it in
 * test/protocols/prometheus-metrics.test.ts).
 */
describeOn("pglite+fs")("metrics settings", () => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  const scrape = async (url: string) => {
    const response = await fetch(url);
    return { status: response.status, type: response.headers.get("content-type"), body: await response.text() };
  };

  it("serves /metrics on the service's port by default, without a token and without tenants", async () => {
    t = await startTestApp("pglite+fs");
    expect(t.app.metricsUrl).toBe(`${t.url}/metrics`);
    await t.client().saveInline({ spec: { kind: "m" }, content: { case: "text", value: "x" } });
    const { status, type, body } = await scrape(`${t.url}/metrics`);
    expect(status).toBe(200);
    expect(type).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(body).toMatch(/^artifactd_rpc_calls_total\{service="artifacts\.v1\.ArtifactService",method="SaveInline",code="OK"\} 1$/m);
    expect(body).toMatch(/^process_cpu_user_seconds_total /m);
    // PGlite has no pool to report.
    expect(body).not.toContain("artifactd_db_pool_connections");
    expect(body).not.toContain("alpha");

    // Methods the server does not serve are one label value, whatever they are called.
    for (const name of ["NoSuchMethod", "AnotherOne"]) {
      await fetch(`${t.url}/artifacts.v1.ArtifactService/${name}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${t.tokens.alpha}` },
        body: "{}",
      });
    }
    await fetch(`${t.url}/some.other.Service/Method`, { method: "POST", headers: { "content-type": "application/connect+json" }, body: "" });
    const after = (await scrape(`${t.url}/metrics`)).body;
    expect(after).toMatch(/^artifactd_rpc_calls_total\{service="artifacts\.v1\.ArtifactService",method="unknown",code="[A-Z_]+"\} 2$/m);
    expect(after).toMatch(/^artifactd_rpc_calls_total\{service="unknown",method="unknown",code="[A-Z_]+"\} 1$/m);
    expect(after).not.toMatch(/NoSuchMethod|AnotherOne|some\.other/);
  });

  it("counts a blob-store request that failed, by store and operation", async () => {
    t = await startTestApp("pglite+fs");
    const client = t.client();
    const { artifact } = await client.upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "m" } } } };
        yield { message: { case: "chunk" as const, value: randomBytes(100_000) } };
      })(),
    );
    const failedReads = async () =>
      Number(/^artifactd_blob_request_errors_total\{system="filesystem",operation="read"\} (\d+)$/m.exec((await scrape(`${t!.url}/metrics`)).body)?.[1] ?? 0);
    expect(await failedReads()).toBe(0);
    // The content taken from under the service: its read fails.
    rmSync(path.join(t.dataDir, "blobs"), { recursive: true, force: true });
    t.serverLog.allowInternal(/./);
    await expect(
      (async () => {
        for await (const _ of client.download({ id: artifact!.id }));
      })(),
    ).rejects.toThrow();
    expect(await failedReads()).toBeGreaterThanOrEqual(1);
  });

  it("labels call series by tenant only when allowed", async () => {
    t = await startTestApp("pglite+fs", { ARTIFACTD_METRICS_TENANT_LABELS: "true" });
    await t.client().saveInline({ spec: { kind: "m" }, content: { case: "text", value: "x" } });
    const { body } = await scrape(`${t.url}/metrics`);
    expect(body).toMatch(/^artifactd_rpc_calls_total\{service="artifacts\.v1\.ArtifactService",method="SaveInline",tenant="alpha",code="OK"\} 1$/m);
  });

  it("serves nothing when off, and only metrics on an address of their own", async () => {
    t = await startTestApp("pglite+fs", { ARTIFACTD_METRICS_LISTEN: "off" });
    expect(t.app.metricsUrl).toBeUndefined();
    expect((await scrape(`${t.url}/metrics`)).status).toBe(404);
    await t.close();

    t = await startTestApp("pglite+fs", { ARTIFACTD_METRICS_LISTEN: "127.0.0.1:0" });
    const separate = new URL(t.app.metricsUrl!);
    expect(separate.port).not.toBe(new URL(t.url).port);
    expect((await scrape(`${t.url}/metrics`)).status).toBe(404);
    expect((await scrape(separate.href)).body).toContain("artifactd_rpc_calls_total");
    expect((await scrape(new URL("/", separate).href)).status).toBe(404);
  });
});
