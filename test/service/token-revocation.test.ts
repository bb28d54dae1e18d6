import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { startServiceOnTestDatabase, type ServiceProcess } from "../support/service-process.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Revocation the way an operator does it: `artifactd token revoke` run as
 * its own process against the database of a server that is running (a
 * child process too), so the only way the server can learn of it is by
 * looking the token up again. Within ARTIFACTD_TOKEN_CACHE_MS new calls are
 * refused, and calls already open (a Watch, a Download the client is
 * still reading) end with UNAUTHENTICATED "revoked while the call was open".
 * (admission.test.ts checks the same in-process, revoking through the
 * store the server itself holds.)
 */
const MiB = 1024 * 1024;
const TOKEN_CACHE_MS = 1_000;
/** One period for the cached lookup to lapse, one for the sweep of open calls to run, and slack for a loaded machine. */
const REVOCATION_BOUND_MS = 2 * TOKEN_CACHE_MS + 3_000;

describeOn("postgres+minio")("revoking a token on a running server with the CLI", () => {
  let service: ServiceProcess;
  let dataDir: string;
  let dropDatabase = async () => {};
  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(os.tmpdir(), "artifactd-revocation-"));
    ({ service, dropDatabase } = await startServiceOnTestDatabase({
      logFile: path.join(dataDir, "service.log"),
      env: {
        ARTIFACTD_DATA_DIR: path.join(dataDir, "service"),
        ARTIFACTD_TOKEN_CACHE_MS: String(TOKEN_CACHE_MS),
        ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0",
      },
    }));
  });
  afterAll(async () => {
    await service?.stop(5_000);
    await dropDatabase();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const clientWith = (token: string) =>
    createClient(
      ArtifactService,
      createGrpcTransport({
        baseUrl: service.url,
        interceptors: [(next) => (request) => (request.header.set("authorization", `Bearer ${token}`), next(request))],
      }),
    );
  /** Resolves with the error the call ended with, or fails the test if it does not end within `withinMs`. */
  const endsWithin = (what: string, call: Promise<unknown>, withinMs: number) =>
    Promise.race([
      call.then(
        () => new Error(`${what} ended OK`),
        (error: unknown) => error,
      ),
      new Promise<Error>((resolve) => setTimeout(() => resolve(new Error(`${what} was still open ${withinMs} ms after the revocation`)), withinMs).unref()),
    ]);

  it("refuses new calls and ends an open Watch and Download within the cache period", async () => {
    const created = await service.runCommand(["token", "create", "--tenant", "revoked-tenant", "--json"]);
    expect(created.code, created.stderr).toBe(0);
    const { id: tokenId, token } = JSON.parse(created.stdout.trim().split("\n").at(-1)!) as { id: string; token: string };
    const client = clientWith(token);

    // Larger than the client's HTTP/2 receive window, so a reader that stops holds the server mid-stream.
    const content = randomBytes(16 * MiB);
    const { artifact } = await client.upload(
      (async function* () {
        yield { message: { case: "header" as const, value: { spec: { kind: "revocation" } } } };
        for (let at = 0; at < content.length; at += MiB) yield { message: { case: "chunk" as const, value: content.subarray(at, at + MiB) } };
      })(),
    );

    let watchOpen!: () => void;
    const watching = new Promise<void>((r) => (watchOpen = r));
    // The Watch answers nothing until an event: seeing a save of the same tenant shows it is open on the server.
    const watch = (async () => {
      for await (const event of client.watchArtifacts({})) if (event.artifact?.kind === "watch-open") watchOpen();
    })();
    const marker = setInterval(() => void client.saveInline({ spec: { kind: "watch-open" }, content: { case: "text", value: "x" } }).catch(() => {}), 200);
    await watching;
    clearInterval(marker);

    let firstChunk!: () => void;
    const reading = new Promise<void>((r) => (firstChunk = r));
    let resume!: () => void;
    const resumed = new Promise<void>((r) => (resume = r));
    let downloaded = 0;
    const download = (async () => {
      for await (const message of client.download({ id: artifact!.id })) {
        if (message.message.case !== "chunk") continue;
        downloaded += message.message.value.byteLength;
        firstChunk();
        await resumed;
      }
    })();
    await reading;
    // The calls may end (rejected) before endsWithin below looks at them, on a loaded machine while the revoke
    // command is still starting: handled from now on, so that is not an unhandled rejection; endsWithin sees it all the same.
    for (const call of [watch, download]) call.catch(() => {});

    const revoked = await service.runCommand(["token", "revoke", tokenId]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain(`revoked ${tokenId}`);
    const revokedAt = Date.now();

    const watchError = await endsWithin("the Watch", watch, REVOCATION_BOUND_MS);
    // The open calls are swept together: once the Watch has ended, the paused Download has been cut too.
    resume();
    const downloadError = await endsWithin("the Download", download, REVOCATION_BOUND_MS);
    for (const error of [watchError, downloadError]) {
      expect(error, String(error)).toBeInstanceOf(ConnectError);
      expect(Code[(error as ConnectError).code]).toBe(Code[Code.Unauthenticated]);
      expect((error as ConnectError).rawMessage).toMatch(/revoked while the call was open/);
    }
    expect(downloaded, "the revoked download must not have been served whole").toBeLessThan(content.length);

    // New calls: refused once the cached lookup lapses.
    let refusal: unknown;
    while (Date.now() - revokedAt < REVOCATION_BOUND_MS) {
      refusal = await client.getArtifact({ id: artifact!.id }).then(
        () => undefined,
        (error: unknown) => error,
      );
      if (refusal) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(refusal, "a new call still worked after the cache period").toBeInstanceOf(ConnectError);
    expect(Code[(refusal as ConnectError).code]).toBe(Code[Code.Unauthenticated]);
    expect((refusal as ConnectError).rawMessage).toMatch(/unknown or revoked/);
  }, 60_000);
});
