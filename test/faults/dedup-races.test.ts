import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { App } from "../../src/app.ts";
import { blake3Hex } from "../../src/blake3.ts";
import type { ArtifactService, UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { collectGarbage } from "../../src/service/maintenance.ts";
import { gate, interpose } from "../support/interpose.ts";
import { storedObjects } from "../support/stored-objects.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

/**
 * Content is stored once per tenant even when uploads of it race to be
 * recorded: every racer is held until all of them have looked for the
 * digest and found nothing, so each stores its own copy and the commits
 * decide. Checked in the store itself (the bucket, the data folder), where a
 * surplus copy that was not removed would show.
 */
describe.each(BACKENDS)("deduplication races on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const upload = (client: Client<typeof ArtifactService>, data: Uint8Array) =>
    client.upload(
      (async function* (): AsyncIterable<UploadInit> {
        yield { message: { case: "header", value: { spec: { kind: "raced" } } } };
        yield { message: { case: "chunk", value: data } };
      })(),
    );
  const download = async (client: Client<typeof ArtifactService>, id: string) => {
    const parts: Uint8Array[] = [];
    for await (const r of client.download({ id })) if (r.message.case === "chunk") parts.push(r.message.value);
    return Buffer.concat(parts);
  };

  /**
   * Holds every lookup of `digest` until `racers` of them have found nothing:
   * then no racer can deduplicate up front, and all of them store a copy.
   */
  const raceToRecord = (app: App, digest: string, racers: number) => {
    const allLooked = gate(racers);
    void allLooked.reached.then(() => allLooked.open());
    const found: boolean[] = [];
    const restore = interpose(app.metadata, "findBlob", async (findBlob, tenantId, blobDigest) => {
      const blob = await findBlob(tenantId, blobDigest);
      if (blobDigest !== digest) return blob;
      found.push(blob !== undefined);
      await allLooked.wait();
      return blob;
    });
    return { found, restore };
  };

  it("stores the content of 8 uploads racing through the server once: one object, one blob row, every artifact intact", async () => {
    const objects = storedObjects(t);
    const before = await objects.keys();
    const data = randomBytes(200_000);
    const digest = blake3Hex(data);
    const race = raceToRecord(t.app, digest, 8);
    const keys: string[] = [];
    const restoreBegin = interpose(t.app.metadata.uploadsInFlight, "begin", (begin, tenantId, storageKey) => {
      keys.push(storageKey);
      return begin(tenantId, storageKey);
    });
    try {
      const done = await Promise.all(Array.from({ length: 8 }, () => upload(t.client(), data)));
      expect(race.found, "every racer looked before any was recorded").toEqual(Array(8).fill(false));
      expect(new Set(keys).size, "every racer stored under a key of its own").toBe(8);
      expect(
        done.filter((d) => !d.deduplicated),
        "one upload recorded the blob, the others lost the race to it",
      ).toHaveLength(1);
      const blob = await t.app.metadata.findBlob("alpha", digest);
      expect(blob).toBeDefined();
      expect(await objects.keysSince(before), "one object in the store: the recorded blob's").toEqual([blob!.storageKey]);
      expect([...(await t.app.metadata.knownStorageKeys(keys))], "the losers' keys are forgotten").toEqual([blob!.storageKey]);
      for (const d of done) {
        expect(d.artifact!.blake3).toBe(digest);
        expect((await download(t.client(), d.artifact!.id)).equals(data)).toBe(true);
      }
    } finally {
      restoreBegin();
      race.restore();
    }
  });

  it("logs a surplus copy it could not remove and leaves it to garbage collection, which reclaims it", async () => {
    const { app } = t;
    const client = t.client();
    // The refusal below is made on purpose: its internal error is the one this test looks for.
    t.serverLog.allowInternal(/the blob store refused the delete/);
    const objects = storedObjects(t);
    const before = await objects.keys();
    const data = randomBytes(100_000);
    const digest = blake3Hex(data);
    const race = raceToRecord(app, digest, 2);
    // The store refuses the first removal: the loser's attempt to drop its surplus copy.
    const refusedKeys: string[] = [];
    const restoreDiscard = interpose(app.blobs, "discard", async (discard, key) => {
      if (refusedKeys.length === 0) {
        refusedKeys.push(key);
        throw new Error("the blob store refused the delete");
      }
      return discard(key);
    });
    try {
      const done = await Promise.all([upload(client, data), upload(client, data)]);
      expect(race.found).toEqual([false, false]);
      const blob = (await app.metadata.findBlob("alpha", digest))!;
      expect(refusedKeys, "the surplus copy's removal was the one refused").toHaveLength(1);
      const [surplus] = refusedKeys;
      expect(surplus).not.toBe(blob.storageKey);
      expect(await objects.keysSince(before), "the surplus copy is still stored").toEqual([blob.storageKey, surplus].sort());
      expect(
        t.serverLog.entries.filter((line) => line.message.includes(surplus!) && /failed/.test(line.message)).map((line) => (line.error as Error).message),
        "the failure is in the server's log, naming the key",
      ).toEqual(["the blob store refused the delete"]);

      const report = await collectGarbage(
        { metadata: app.metadata, blobs: app.blobs, uploadStaleMs: 300_000 },
        { graceMs: 0, dryRun: false, now: new Date(Date.now() + 60_000) },
      );
      expect(report.releasedKeys).toBeGreaterThanOrEqual(1);
      expect(await objects.keysSince(before), "garbage collection removed the surplus copy, and only it").toEqual([blob.storageKey]);
      expect([...(await app.metadata.knownStorageKeys([surplus!]))], "and forgot its key").toEqual([]);
      for (const d of done) expect((await download(client, d.artifact!.id)).equals(data)).toBe(true);
    } finally {
      restoreDiscard();
      race.restore();
    }
  });

  it("logs a failure to forget the key of an upload that deduplicated, and garbage collection forgets it", async () => {
    const { app } = t;
    const client = t.client();
    t.serverLog.allowInternal(/the database refused the delete/);
    const data = randomBytes(50_000);
    await upload(client, data);
    const keys: string[] = [];
    const restoreBegin = interpose(app.metadata.uploadsInFlight, "begin", (begin, tenantId, storageKey) => {
      keys.push(storageKey);
      return begin(tenantId, storageKey);
    });
    const restoreForget = interpose(app.metadata.uploadsInFlight, "forget", async (forget, storageKey) => {
      if (keys.includes(storageKey)) throw new Error("the database refused the delete");
      return forget(storageKey);
    });
    try {
      const again = await upload(client, data);
      expect(again.deduplicated).toBe(true);
      expect(keys).toHaveLength(1);
      const [key] = keys;
      expect(
        t.serverLog.entries.filter((line) => line.message.includes(key!)).map((line) => (line.error as Error).message),
        "the failure is in the server's log, naming the key",
      ).toEqual(["the database refused the delete"]);
      expect([...(await app.metadata.knownStorageKeys([key!]))], "the key's record is left").toEqual([key]);
      restoreForget();
      const report = await collectGarbage(
        { metadata: app.metadata, blobs: app.blobs, uploadStaleMs: 300_000 },
        { graceMs: 0, dryRun: false, now: new Date(Date.now() + 60_000) },
      );
      expect(report.releasedKeys).toBeGreaterThanOrEqual(1);
      expect([...(await app.metadata.knownStorageKeys([key!]))], "garbage collection forgot it").toEqual([]);
      expect((await download(client, again.artifact!.id)).equals(data)).toBe(true);
    } finally {
      restoreForget();
      restoreBegin();
    }
  });
});
