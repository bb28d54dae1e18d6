import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ArtifactError } from "../../src/artifact-error.ts";
import { classifyFsError, fromFsError } from "../../src/adapters/blob/fs-errors.ts";
import { classifyS3Error, fromS3Error } from "../../src/adapters/blob/s3-errors.ts";
import { classifyPostgresError, fromPostgresError } from "../../src/adapters/metadata/postgres-errors.ts";
import { toConnectError as answerFor } from "../../src/transport/connect-error-mapping.ts";

/**
 * What a client is told when a store fails: retry (UNAVAILABLE), storage full
 * (RESOURCE_EXHAUSTED), or INTERNAL — and never the driver's own words. The
 * errors are shaped as the drivers make them (node-postgres, minio-js' S3Error,
 * Node's system errors); the real-process tests (faults, process-faults, the
 * chaos soak) produce the common ones for real.
 */
// Each driver's error as its adapter raises it (src/adapters/**/*-errors.ts), then as the transport answers it.
const classifyStoreError = (error: unknown) => classifyPostgresError(error) ?? classifyS3Error(error) ?? classifyFsError(error);
const toConnectError = (error: unknown, log?: (error: unknown) => void) => answerFor(fromFsError(fromS3Error(fromPostgresError(error))), log);

const errorWith = (props: Record<string, unknown>, message = "driver detail: secret host db-7.internal") => Object.assign(new Error(message), props);

describe("store error classification", () => {
  it.each([
    ["a refused connection", errorWith({ code: "ECONNREFUSED" })],
    ["a connection reset", errorWith({ code: "ECONNRESET" })],
    ["a terminated Postgres backend", errorWith({ code: "57P01" })],
    ["Postgres starting up", errorWith({ code: "57P03" })],
    ["a Postgres connection exception (class 08)", errorWith({ code: "08006" })],
    ["a serialization failure", errorWith({ code: "40001" })],
    ["node-postgres' lost connection, which has no code", new Error("Connection terminated unexpectedly")],
    ["a pool that cannot connect in time", new Error("timeout exceeded when trying to connect")],
    ["S3 throttling", errorWith({ code: "SlowDown" })],
    ["S3 unavailable", errorWith({ code: "ServiceUnavailable" })],
    ["an S3 internal error", errorWith({ code: "InternalError" })],
    ["a bare 503 from S3", errorWith({ statusCode: 503 })],
    ["a reset wrapped as a cause", new Error("upload failed", { cause: errorWith({ code: "ECONNRESET" }) })],
    ["one of an AggregateError's", new AggregateError([new Error("x"), errorWith({ code: "ECONNREFUSED" })])],
  ])("answers UNAVAILABLE for %s, without the driver's text", (_, error) => {
    expect(classifyStoreError(error)).toBe("unavailable");
    const answer = toConnectError(error);
    expect(answer.code).toBe(Code.Unavailable);
    expect(answer.rawMessage).not.toMatch(/secret|db-7|terminated|ECONN/);
  });

  it.each([
    ["a full file system", errorWith({ code: "ENOSPC" })],
    ["a disk quota", errorWith({ code: "EDQUOT" })],
    ["a full Postgres disk", errorWith({ code: "53100" })],
    ["a full MinIO", errorWith({ code: "XMinioStorageFull" })],
  ])("answers RESOURCE_EXHAUSTED for %s", (_, error) => {
    expect(toConnectError(error).code).toBe(Code.ResourceExhausted);
    expect(toConnectError(error).rawMessage).toMatch(/storage is full/);
  });

  it("answers RESOURCE_EXHAUSTED naming the setting for a statement Postgres cancelled (57014), wrapped or not", () => {
    const cancelled = errorWith({ code: "57014" }, "canceling statement due to statement timeout");
    for (const error of [cancelled, new Error("query failed", { cause: cancelled })]) {
      expect(classifyStoreError(error)).toBe("statement_timeout");
      const answer = toConnectError(error);
      expect(answer.code).toBe(Code.ResourceExhausted);
      expect(answer.rawMessage).toMatch(/ARTIFACTD_DATABASE_STATEMENT_TIMEOUT_MS/);
      expect(answer.rawMessage).not.toMatch(/canceling/);
    }
  });

  it("answers INTERNAL for anything else, and logs the detail instead of sending it", () => {
    const logged: unknown[] = [];
    const error = errorWith({ code: "42P01" }, 'relation "artifacts" does not exist');
    const answer = toConnectError(error, (e) => logged.push(e));
    expect(answer.code).toBe(Code.Internal);
    expect(answer.rawMessage).not.toMatch(/relation|artifacts/);
    expect(logged).toEqual([error]);
  });

  it("keeps an ArtifactError's code and message, and logs it with its cause", () => {
    const logged: unknown[] = [];
    const cause = new Error("invalid byte sequence for encoding UTF8: 0x00");
    const refused = new ArtifactError("invalid_argument", "the database refused a value", { cause });
    const answer = toConnectError(refused, (e) => logged.push(e));
    expect(answer.code).toBe(Code.InvalidArgument);
    expect(answer.rawMessage).toBe("the database refused a value");
    expect(logged).toEqual([refused]);
    expect((logged[0] as Error).cause).toBe(cause);
  });
});
