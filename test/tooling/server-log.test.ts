import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { fromPostgresError } from "../../src/adapters/metadata/postgres-errors.ts";
import { expectCode } from "../support/expect-code.ts";
import { describeEntry, unexpectedServerErrors } from "../support/server-log.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/** A well-formed id no artifact has. */
const MISSING_ID = "art_01m924avw0xnt9skm3tzvy7ra8";

/**
 * The in-process test server's log is collected, and an error it could only
 * answer INTERNAL is what fails a test (./support/fail-on-server-errors.ts
 * reads the same `unexpectedServerErrors`): errors a test causes on purpose,
 * like a refused call or a store taken down, do not.
 */
describeOn("pglite+fs")("the test server's log", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp("pglite+fs");
  });
  afterAll(async () => {
    await t?.close();
  });
  /** A GetArtifact call during which the metadata store fails with `error`. */
  const getArtifactFailingWith = async (error: Error) => {
    const metadata = t.app.metadata;
    const getArtifact = metadata.getArtifact;
    metadata.getArtifact = async () => {
      throw error;
    };
    try {
      return await t.client().getArtifact({ id: MISSING_ID });
    } finally {
      metadata.getArtifact = getArtifact;
    }
  };

  it("reports a bug's INTERNAL answer as unexpected, once, and no longer when the test allows it", async () => {
    await expectCode(getArtifactFailingWith(new TypeError("a bug in the metadata store")), Code.Internal);
    expect(t.serverLog.entries.at(-1)).toMatchObject({ message: "GetArtifact failed", internal: true });
    const found = unexpectedServerErrors();
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/GetArtifact failed: TypeError: a bug in the metadata store/);
    expect(unexpectedServerErrors(), "each error is reported once").toEqual([]);

    // The same bug again, this time declared by the test: not reported, so not a failure.
    t.serverLog.allowInternal(/a bug in the metadata store/);
    await expectCode(getArtifactFailingWith(new TypeError("a bug in the metadata store")), Code.Internal);
    expect(t.serverLog.entries.at(-1)?.internal).toBe(true);
    expect(unexpectedServerErrors()).toEqual([]);
  });

  it("does not count refusals and unreachable stores, which are answered with their own codes", async () => {
    const before = t.serverLog.entries.length;
    await expectCode(t.client("not-a-token").getArtifact({ id: MISSING_ID }), Code.Unauthenticated);
    await expectCode(t.client().getArtifact({ id: MISSING_ID }), Code.NotFound);
    await expectCode(
      getArtifactFailingWith(fromPostgresError(Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" })) as Error),
      Code.Unavailable,
    );
    const logged = t.serverLog.entries.slice(before);
    expect(logged.map((entry) => entry.message)).toEqual(["GetArtifact failed"]);
    expect(logged[0]!.internal).toBe(false);
    expect(unexpectedServerErrors()).toEqual([]);
  });

  it("does not count a store too slow to answer the health probe, which is unavailable, not a bug", async () => {
    const metadata = t.app.metadata;
    // The database's readiness check reads which migrations are missing (src/app.ts).
    const missingMigrations = metadata.missingMigrations;
    let answer = () => {};
    metadata.missingMigrations = () => new Promise<string[]>((resolve) => (answer = () => resolve([])));
    try {
      // The checks run every 2 s and wait 2 s for an answer.
      await vi.waitFor(
        () =>
          expect(t.serverLog.entries.map((entry) => entry.message)).toContain(
            "readiness: the database is unreachable or not answering: health is NOT_SERVING and /readyz 503 until it answers",
          ),
        {
          timeout: 10_000,
          interval: 100,
        },
      );
    } finally {
      metadata.missingMigrations = missingMigrations;
      answer();
    }
    const unreachable = t.serverLog.entries.find((entry) => entry.message.startsWith("readiness: the database is unreachable"))!;
    // The line carries the error as logged, its cause with it.
    const cause = (unreachable.error as { cause?: unknown }).cause ?? unreachable.error;
    expect(describeEntry({ ...unreachable, error: cause })).toMatch(/no answer within 2000 ms/);
    expect(unreachable.internal).toBe(false);
    expect(unexpectedServerErrors()).toEqual([]);
  });
});
