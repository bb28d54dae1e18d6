import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

const MiB = 1024 * 1024;
const PART = 5 * MiB;
/** Two parts ahead of the prefix per session: small enough to go past with a few parts. */
const HASH_AHEAD = 2 * PART;

/**
 * CompleteUploadSession computes the content's BLAKE3 from the parts its
 * server hashed and held as they arrived (src/service/session-digests.ts),
 * reading back from the store only what it lacks: read_back_bytes says how
 * much. Whatever happened, the digest is that of the assembled bytes (every
 * session here declares expected_blake3, so a wrong one fails the complete,
 * and the download is compared byte for byte).
 */
describe.each(BACKENDS)("session digests computed as parts arrive, on %s", (backend) => {
  const env = { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_SESSION_HASH_AHEAD_BYTES: String(HASH_AHEAD) };
  let t: TestApp;
  const extraApps: TestApp[] = [];
  beforeAll(async () => {
    t = await startTestApp(backend, env);
  });
  afterAll(async () => {
    for (const app of extraApps.reverse()) await app.close();
    await t?.close();
  });

  /** Another server on the same stores: a second replica, or (once `t`-like apps are closed) the same one restarted. */
  const sameStores = (of: TestApp) => ({
    ...env,
    ARTIFACTD_DATA_DIR: of.dataDir,
    ...(of.databaseUrl ? { DATABASE_URL: of.databaseUrl, ARTIFACTD_S3_BUCKET: of.bucket! } : {}),
  });
  const partsOf = (data: Buffer) => Array.from({ length: Math.ceil(data.length / PART) }, (_, i) => data.subarray(i * PART, (i + 1) * PART));
  const download = async (app: TestApp, id: string) => {
    const chunks: Uint8Array[] = [];
    for await (const r of app.client().download({ id })) if (r.message.case === "chunk") chunks.push(r.message.value);
    return Buffer.concat(chunks);
  };
  const open = async (app: TestApp, data: Buffer) => {
    const { session } = await app.client().createUploadSession({
      spec: { kind: "dataset", name: `read-back-${Math.random()}` },
      expectedSize: BigInt(data.length),
      expectedBlake3: blake3Hex(data),
      partSize: BigInt(PART),
    });
    return session!.sessionId;
  };
  const send = (app: TestApp, sessionId: string, partNumber: number, data: Uint8Array) => app.client().uploadPart({ sessionId, partNumber, data });
  /** Completes the session and checks the artifact holds exactly `data`; answers the bytes read back. */
  const complete = async (app: TestApp, sessionId: string, data: Buffer) => {
    const done = await app.client().completeUploadSession({ sessionId });
    expect(done.artifact!.blake3).toBe(blake3Hex(data));
    expect(done.artifact!.sizeBytes).toBe(BigInt(data.length));
    expect((await download(app, done.artifact!.id)).equals(data)).toBe(true);
    return Number(done.readBackBytes);
  };

  it("reads nothing back for parts sent in order, and logs the figure with the session id", async () => {
    const data = randomBytes(3 * PART + 4321);
    const id = await open(t, data);
    for (const [i, part] of partsOf(data).entries()) await send(t, id, i + 1, part);
    expect(await complete(t, id, data)).toBe(0);
    expect(t.serverLog.entries.map((e) => e.message)).toContain(
      `upload session ${id} assembled: ${data.length} bytes, 0 of them read back from the store for its BLAKE3`,
    );
  });

  it("reads nothing back for parts out of order within the budget, sent in parallel", async () => {
    const data = randomBytes(3 * PART + 10);
    const parts = partsOf(data);
    const id = await open(t, data);
    // At most two parts (the budget) can arrive ahead of part 1 or of each other.
    await Promise.all([1, 2, 3].map((n) => send(t, id, n, parts[n - 1]!)));
    await send(t, id, 4, parts[3]!);
    expect(await complete(t, id, data)).toBe(0);
  });

  it("keeps the bytes of a part held out of order while later calls reuse its request's buffer", async () => {
    const data = randomBytes(3 * PART + 99);
    const parts = partsOf(data);
    const id = await open(t, data);
    // One after another, so each call's body buffer is given back before the next call takes one of the same size:
    // parts 3 and 2 are held while their buffers carry the next parts' bytes.
    for (const n of [3, 2, 1, 4]) await send(t, id, n, parts[n - 1]!);
    expect(await complete(t, id, data)).toBe(0);
  });

  it("reads nothing back for a streaming upload bound to the session", async () => {
    const data = randomBytes(2 * PART + 99);
    const id = await open(t, data);
    const done = await t.client().upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { sessionId: id } } };
        for (let i = 0; i < data.length; i += MiB) yield { message: { case: "chunk" as const, value: data.subarray(i, i + MiB) } };
      })(),
    );
    expect(done.artifact!.blake3).toBe(blake3Hex(data));
    expect(t.serverLog.entries.map((e) => e.message)).toContain(
      `upload session ${id} assembled: ${data.length} bytes, 0 of them read back from the store for its BLAKE3`,
    );
  });

  it("reads back only the parts that arrived too far ahead to be held", async () => {
    const data = randomBytes(4 * PART + 1000);
    const parts = partsOf(data);
    const id = await open(t, data);
    // Backwards: the budget keeps the two parts nearest the prefix, letting go of 5 for 3 and of 4 for 2.
    for (const n of [5, 4, 3, 2, 1]) await send(t, id, n, parts[n - 1]!);
    expect(await complete(t, id, data)).toBe(parts[3]!.length + parts[4]!.length);
  });

  it("reads back what follows a part sent again with other bytes after it was hashed", async () => {
    const data = randomBytes(3 * PART + 500);
    const parts = partsOf(data);
    const id = await open(t, data);
    await send(t, id, 1, randomBytes(PART));
    for (const n of [2, 3, 4]) await send(t, id, n, parts[n - 1]!);
    // The prefix 1..4 was hashed from the wrong part 1: it starts over with the right one, and 2..4 must be read back.
    await send(t, id, 1, parts[0]!);
    expect(await complete(t, id, data)).toBe(data.length - PART);
  });

  it("reads everything back when the server that completes saw none of the parts: stored through another, which restarted", async () => {
    const first = await startTestApp(backend, env);
    extraApps.push(first);
    const data = randomBytes(2 * PART + 7);
    const id = await open(first, data);
    for (const [i, part] of partsOf(data).entries()) await send(first, id, i + 1, part);
    await first.closeApp();
    const restarted = await startTestApp(backend, sameStores(first));
    extraApps.push(restarted);
    expect(await complete(restarted, id, data)).toBe(data.length);
  });

  it.runIf(backend === "postgres+minio")("on two replicas: reads back all the parts the completing one lacks or hashed from other bytes", async () => {
    const other = await startTestApp(backend, sameStores(t));
    extraApps.push(other);

    // Parts went elsewhere: everything is read back.
    const elsewhere = randomBytes(2 * PART + 3);
    const id = await open(t, elsewhere);
    for (const [i, part] of partsOf(elsewhere).entries()) await send(other, id, i + 1, part);
    expect(await complete(t, id, elsewhere)).toBe(elsewhere.length);

    // Part 2 was sent again, with other bytes, to the other replica after this one had hashed the first version:
    // its prefix no longer matches the session's record, so nothing of it is used.
    const data = randomBytes(3 * PART + 11);
    const parts = partsOf(data);
    const resent = await open(t, data);
    await send(t, resent, 1, parts[0]!);
    await send(t, resent, 2, randomBytes(PART));
    await send(t, resent, 3, parts[2]!);
    await send(t, resent, 4, parts[3]!);
    await send(other, resent, 2, parts[1]!);
    expect(await complete(t, resent, data)).toBe(data.length);
  });
});
