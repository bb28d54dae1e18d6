import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import type { UploadRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { expectCode } from "../support/expect-code.ts";
import { gate, interpose } from "../support/interpose.ts";
import { captureStorageKeys, expectNothingStored } from "../support/nothing-stored.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

type UploadInit = MessageInitShape<typeof UploadRequestSchema>;

const KiB = 1024;

/**
 * Two uploads of one tenant racing for the last room of its stored-bytes
 * quota, forced rather than hoped for: each upload's storage reservation is
 * held at the step that counts its bytes until both uploads stand there, then
 * both are let through at once. At most one may be admitted; the refused one
 * leaves nothing recorded or stored, and the quota counts exactly what was
 * stored afterwards (the winner's bytes, none of the loser's).
 */
describe.each(BACKENDS)("uploads racing for a tenant's last stored bytes on %s", (backend) => {
  let t: TestApp;
  beforeAll(async () => {
    // Usage is read once and then kept: what the race leaves in the process's own counts is what later calls are checked against.
    t = await startTestApp(backend, { ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0", ARTIFACTD_QUOTA_CACHE_MS: "300000" });
  });
  afterAll(async () => {
    await t?.close();
  });

  const tenantWithRoom = async (tenant: string, storedBytes: number) => {
    await t.app.metadata.tenantQuotas.set(tenant, { storedBytes });
    return (await createApiToken(t.app.metadata, tenant, "quota-race", { scope: "read-write" })).token;
  };
  const upload = (token: string, chunks: readonly Buffer[], expectedSize?: number) =>
    t.client(token).upload(
      (async function* (): AsyncIterable<UploadInit> {
        const header = expectedSize === undefined ? {} : { expectedSize: BigInt(expectedSize) };
        yield { message: { case: "header", value: { spec: { kind: "quota-race" }, ...header } } };
        for (const chunk of chunks) yield { message: { case: "chunk", value: chunk } };
      })(),
    );

  /**
   * Holds the `nth` count of bytes (1-based) of every storage reservation of
   * `tenant` until two reservations stand there, then lets both count at once.
   */
  const holdBothAtCount = (tenant: string, nth: number) => {
    const bothThere = gate(2);
    void bothThere.reached.then(() => bothThere.open());
    const restore = interpose(t.app.quotas, "reserveStorage", (reserveStorage, tenantId) => {
      const reservation = reserveStorage(tenantId);
      if (tenantId !== tenant) return reservation;
      let counts = 0;
      return {
        ...reservation,
        async add(bytes) {
          if (++counts === nth) await bothThere.wait();
          return reservation.add(bytes);
        },
      };
    });
    return {
      bothThere,
      restore: () => {
        restore();
        bothThere.open();
      },
    };
  };

  it.each([
    {
      // Both declare their size: each is at its one reservation, before its first byte, when the other is.
      name: "declared sizes, both at the reservation of their whole size",
      chunks: [96 * KiB],
      declared: true,
      heldCount: 1,
      // Room for one upload and a bit, never for two.
      room: 96 * KiB + 10 * KiB,
      admits: 1,
    },
    {
      // Neither declares a size: each has passed the check of its first chunk and stands at that of its second.
      name: "undeclared sizes, both past their first chunk's check and at their second's",
      chunks: [64 * KiB, 64 * KiB],
      declared: false,
      heldCount: 2,
      // Both first chunks and one second chunk fit, not two.
      room: 3 * 64 * KiB + 10 * KiB,
      admits: 1,
    },
    {
      // As above, but both first chunks leave room for neither second one: both are refused, as the README allows.
      name: "undeclared sizes, where the first chunks leave too little room for either",
      chunks: [64 * KiB, 64 * KiB],
      declared: false,
      heldCount: 2,
      room: 2 * 64 * KiB + 10 * KiB,
      admits: 0,
    },
  ])("admits at most one: $name", async ({ name, chunks, declared, heldCount, room, admits }) => {
    const tenant = `race-${randomBytes(4).toString("hex")}`;
    const size = chunks.reduce((sum, bytes) => sum + bytes, 0);
    const token = await tenantWithRoom(tenant, room);
    const usedBefore = (await t.app.metadata.tenantQuotas.usage(tenant)).storedBytes;
    expect(usedBefore, `${name}: a new tenant stores nothing`).toBe(0);

    const contents = [0, 1].map(() => chunks.map((bytes) => randomBytes(bytes)));
    const race = holdBothAtCount(tenant, heldCount);
    const captured = captureStorageKeys(t);
    let outcomes: PromiseSettledResult<Awaited<ReturnType<typeof upload>>>[];
    try {
      outcomes = await Promise.allSettled(contents.map((content) => upload(token, content, declared ? size : undefined)));
      expect(race.bothThere.waiting, "both uploads stood at the held count at once").toBe(2);
    } finally {
      race.restore();
      captured[Symbol.dispose]();
    }

    const admitted = outcomes.flatMap((o, i) => (o.status === "fulfilled" ? [{ index: i, artifact: o.value.artifact! }] : []));
    expect(admitted.length, "never both admitted").toBeLessThanOrEqual(1);
    expect(admitted, admits === 1 ? "one upload admitted: the other found the room taken" : "both refused: neither found room").toHaveLength(admits);
    for (const [index, outcome] of outcomes.entries()) {
      if (outcome.status === "fulfilled") continue;
      const refusal = await expectCode(Promise.reject(outcome.reason), Code.ResourceExhausted, /over its stored-bytes quota/);
      expect(refusal.metadata.get("quota-exceeded"), `upload ${index}`).toBe("stored-bytes");
    }

    // The winner is stored whole; a refused upload left no artifact, and none of its bytes.
    const { artifacts } = await t.client(token).listArtifacts({});
    expect(
      artifacts.map((a) => a.id),
      "the tenant's artifacts: the winner's alone",
    ).toEqual(admitted.map((a) => a.artifact.id));
    const keptKeys: string[] = [];
    for (const { index, artifact } of admitted) {
      expect(artifact.blake3).toBe(blake3Hex(Buffer.concat(contents[index]!)));
      keptKeys.push((await t.app.metadata.findBlob(tenant, artifact.blake3))!.storageKey);
    }
    const refusedKeys = captured.keys.filter((key) => !keptKeys.includes(key));
    if (declared) {
      expect(captured.keys, "refused at its reservation, the loser never took a storage key").toEqual(keptKeys);
    } else {
      expect(refusedKeys, "each refused upload stored its first chunk under a key of its own").toHaveLength(2 - admits);
      await expectNothingStored(t, { keys: refusedKeys, tenantId: tenant });
    }

    // The quota's accounting: the database counts the winner's bytes and nothing of a refused upload's ...
    const stored = admits * size;
    expect((await t.app.metadata.tenantQuotas.usage(tenant)).storedBytes).toBe(stored);
    // ... and so does this process: the rest of the room is still there (a refused upload's reservation was given back),
    // and not a byte more (the winner's bytes count as stored).
    const rest = room - stored;
    const fill = await upload(token, [randomBytes(rest)], rest);
    expect(fill.artifact!.sizeBytes).toBe(BigInt(rest));
    await expectCode(upload(token, [randomBytes(1)], 1), Code.ResourceExhausted, /over its stored-bytes quota/);
  });
});
