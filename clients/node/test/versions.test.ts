import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { Code, ConnectError, createArtifactClient, type ArtifactClient, type ArtifactLocator, type JsonRef } from "../src/index.ts";

/** The Node client with versions and aliases: loaders taking references, and the alias and version calls. */
describe.each(BACKENDS)("versions and aliases through the Node client on %s", (backend) => {
  let t: TestApp;
  let client: ArtifactClient;
  let work: string;
  beforeAll(async () => {
    t = await startTestApp(backend);
    work = mkdtempSync(path.join(os.tmpdir(), "artifactd-versions-sdk-"));
    client = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha, timeoutMs: 30_000, cacheDir: path.join(work, "cache") });
  });
  afterAll(async () => {
    await client?.close();
    await t?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("loads by name:alias, name@v3 and artifact:// references, resolved by the server", async () => {
    const name = `config-${Math.random().toString(36).slice(2, 8)}`;
    const v1 = await client.saveJson({ threshold: 0.5 }, { kind: "config", name, versioned: true });
    const v2 = await client.saveJson({ threshold: 0.7 }, { kind: "config", name, versioned: true, project: "" });
    expect([v1.version, v2.version]).toEqual([1n, 2n]);
    expectTypeOf(v1.id).toEqualTypeOf<JsonRef>();
    expect(await client.loadJson(`${name}:latest`)).toEqual({ threshold: 0.7 });
    expect(await client.loadJson(`artifact://${name}@v1`)).toEqual({ threshold: 0.5 });
    expect((await client.get(`${name}@1`)).id).toBe(v1.id);
    // A blob, by reference, into the local cache.
    const file = path.join(work, "weights.bin");
    const bytes = Buffer.from("x".repeat(400_000));
    writeFileSync(file, bytes);
    const blob = await client.saveFile(file, { kind: "model", name: `${name}-weights`, versioned: true });
    const local = await client.asLocalFile(`${name}-weights:latest`);
    expect(readFileSync(local).equals(bytes)).toBe(true);
    expect((await client.get(`${name}-weights:latest`)).id).toBe(blob.id);
    // Malformed references are refused before any call.
    await expect(client.loadJson(`${name}@v0`)).rejects.toThrow(/is not an artifact id or reference: version "v0"/);
    await expect(client.get(`${name}:nope`)).rejects.toMatchObject({ code: Code.NotFound });
    // References are locators by type too; typed ids keep their prefix.
    expectTypeOf<"orders:production">().toMatchTypeOf<ArtifactLocator>();
    expectTypeOf<"artifact://team/orders@v3">().toMatchTypeOf<ArtifactLocator>();
    expectTypeOf<JsonRef>().toMatchTypeOf<ArtifactLocator<"json">>();
  });

  it("moves aliases, lists versions page by page, reads the alias history and gets many at once", async () => {
    const name = `model-${Math.random().toString(36).slice(2, 8)}`;
    const saved = [];
    for (let i = 0; i < 5; i++) saved.push(await client.saveText(`v${i + 1}`, { kind: "model", name, versioned: true, project: "vision" }));
    const set = await client.setAlias(`vision/${name}@v2`, "production", { reason: "passed eval" });
    expect([set.artifact.id, set.move.toVersion, set.move.movedBy]).toEqual([saved[1]!.id, 2n, "alpha-ci"]);
    const refused = await client.setAlias(saved[3]!.id, "production", { expectedArtifactId: saved[0]!.id }).catch((e: unknown) => e);
    expect(ConnectError.from(refused).code).toBe(Code.Aborted);
    await client.setAlias(saved[3]!.id, "production", { expectedArtifactId: saved[1]!.id });
    expect(await client.loadText(`vision/${name}:production`)).toBe("v4");

    const pages = [];
    for await (const page of client.listVersions({ project: "vision", name }, { pageSize: 2 })) pages.push(page.map((a) => [a.version, a.aliases]));
    expect(pages).toEqual([
      [
        [5n, ["latest"]],
        [4n, ["production"]],
      ],
      [
        [3n, []],
        [2n, []],
      ],
      [[1n, []]],
    ]);
    const moves = [];
    for await (const move of client.aliasHistory(`vision/${name}`, { pageSize: 1 })) moves.push([move.fromVersion, move.toVersion, move.reason]);
    expect(moves).toEqual([
      [2n, 4n, ""],
      [0n, 2n, "passed eval"],
    ]);
    const removed = await client.deleteAlias(`vision/${name}`, "production", { reason: "rollback" });
    expect([removed.fromVersion, removed.toVersion]).toEqual([4n, 0n]);

    const lookups = await client.batchGet([`artifact://vision/${name}:latest`, `vision/${name}@v9`, saved[0]!.id], { includeContent: true });
    expect(lookups.map((l) => ("artifact" in l ? l.artifact.id : l.notFound))).toEqual([
      saved[4]!.id,
      `"vision/${name}" has no version 9 (its versions are 1–5)`,
      saved[0]!.id,
    ]);
    expect(lookups[0]!.requested).toBe(`artifact://vision/${name}:latest`);
  });
});
