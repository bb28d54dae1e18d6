import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Health } from "@artifactd/api/grpc/health/v1/health_pb.js";
import { createArtifactClient } from "../../clients/node/src/index.ts";
import { createLogger, redactSecrets } from "../../src/observability/logger.ts";
import { expectCode } from "../support/expect-code.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The server's logs, as it writes them (JSON lines, src/observability/):
 * one access line per call on every route and protocol, with the call's
 * code, bytes and tenant; and no token, link signature or content in any
 * line, whatever the calls were. (Every test server's lines are checked for
 * tokens and signatures too, in every test file: test/support/server-log.ts.)
 */
const MISSING_ID = "art_01m924avw0xnt9skm3tzvy7ra8";

interface AccessLine {
  readonly rpc: { readonly service: string; readonly method: string };
  readonly protocol: string;
  readonly tenant?: string;
  readonly code?: string;
  readonly status?: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly durationMs: number;
  readonly peer?: string;
}

const bearer =
  (token: string): Interceptor =>
  (next) =>
  (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };

describeOn("pglite+fs")("the server's logs", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp("pglite+fs");
  });
  afterAll(async () => {
    await t?.close();
  });

  const accessLines = () => t.serverLog.calls.map((entry) => JSON.parse(entry.line!) as AccessLine);
  const allLines = () => [...t.serverLog.entries, ...t.serverLog.calls].map((entry) => entry.line ?? "").join("\n");
  /** Waits for the access lines of calls whose responses are still closing, then those matching. */
  const linesWhere = async (match: (line: AccessLine) => boolean, count: number) => {
    await vi.waitFor(() => expect(accessLines().filter(match).length).toBeGreaterThanOrEqual(count), { timeout: 5_000 });
    return accessLines().filter(match);
  };

  it("has one access line per call, on every route and protocol, with its code, bytes and tenant; no secret or content in any line", async () => {
    const content = `secret-content-${randomBytes(12).toString("hex")}`;
    const data = Buffer.from(content.repeat(4096));
    const badToken = `adt_${randomBytes(32).toString("base64url")}`;
    const sdk = createArtifactClient({ baseUrl: t.url, token: t.tokens.alpha });
    try {
      // The Node SDK: an Upload and a Download over plain gRPC (the fast routes), a unary call refused NOT_FOUND.
      const { artifact } = await sdk.uploadStream([data], { kind: "log-test", name: "logged" });
      if (!artifact) throw new Error("the upload answered no artifact");
      const read = await sdk.download(artifact.id);
      const chunks: Uint8Array[] = [];
      for await (const chunk of read.content) chunks.push(chunk);
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
      await expectCode(sdk.get(MISSING_ID), Code.NotFound);
      await sdk.saveText(content, { kind: "log-test", name: "inline" });

      // Connect with JSON over HTTP/1.1 (connect-node): three refusals, each its own line.
      const connect = createClient(
        ArtifactService,
        createConnectTransport({ baseUrl: t.url, httpVersion: "1.1", useBinaryFormat: false, interceptors: [bearer(t.tokens.beta)] }),
      );
      for (let i = 0; i < 3; i++) await expectCode(connect.getArtifact({ id: MISSING_ID }), Code.NotFound);
      // gRPC-Web over HTTP/1.1: a Download (its fast route) of another tenant's artifact is NOT_FOUND too.
      const grpcWeb = createClient(ArtifactService, createGrpcWebTransport({ baseUrl: t.url, interceptors: [bearer(t.tokens.beta)] }));
      await expectCode(
        (async () => {
          for await (const _ of grpcWeb.download({ id: artifact.id }));
        })(),
        Code.NotFound,
      );
      // Connect with the binary format over HTTP/2: a Download (its fast route) and a unary call (connect-node).
      const connectH2 = createClient(
        ArtifactService,
        createConnectTransport({ baseUrl: t.url, httpVersion: "2", useBinaryFormat: true, interceptors: [bearer(t.tokens.alpha)] }),
      );
      let downloaded = 0;
      for await (const message of connectH2.download({ id: artifact.id })) if (message.message.case === "chunk") downloaded += message.message.value.byteLength;
      expect(downloaded).toBe(data.length);
      await connectH2.getArtifact({ id: artifact.id });
      // A token nobody issued, refused at admission.
      await expectCode(t.client(badToken).getArtifact({ id: MISSING_ID }), Code.Unauthenticated);
      // Health, which needs no token.
      await createClient(Health, createGrpcTransport({ baseUrl: t.url })).check({});
      // A Watch the client walks away from.
      const watching = new AbortController();
      const watch = (async () => {
        for await (const _ of t.client().watchArtifacts({ filter: { kind: "nothing-comes" } }, { signal: watching.signal }));
      })();
      await new Promise((resolve) => setTimeout(resolve, 300));
      watching.abort();
      await expectCode(watch, Code.Canceled);
      // An Upload the client cuts after its first chunk.
      const cutting = new AbortController();
      const cutUpload = t.client(t.tokens.beta).upload(
        (async function* () {
          yield { message: { case: "header" as const, value: { spec: { kind: "log-test" } } } };
          yield { message: { case: "chunk" as const, value: new Uint8Array(64 * 1024) } };
          await new Promise((resolve) => setTimeout(resolve, 300));
          cutting.abort();
          await new Promise(() => {});
        })(),
        { signal: cutting.signal },
      );
      await expectCode(cutUpload, Code.Canceled);
      // A signed link, used, and tampered with.
      const { url } = await sdk.rpc.createDownloadUrl({ id: artifact.id, ttlSeconds: 600 });
      const signature = new URL(url).searchParams.get("sig")!;
      expect(signature.length).toBeGreaterThan(10);
      const linked = await fetch(url);
      expect(Buffer.from(await linked.arrayBuffer()).equals(data)).toBe(true);
      // Another first character (one in 64 signatures already starts with any given one).
      const tampered = await fetch(url.replace(/sig=./, signature.startsWith("A") ? "sig=B" : "sig=A"));
      expect(tampered.status).toBe(403);
      await tampered.arrayBuffer();

      const service = ArtifactService.typeName;
      const [upload] = await linesWhere((l) => l.rpc.method === "Upload" && l.protocol === "grpc", 1);
      expect(upload).toMatchObject({ rpc: { service }, tenant: "alpha", code: "OK" });
      expect(upload!.bytesIn).toBeGreaterThanOrEqual(data.length);
      expect(upload!.peer).toMatch(/^127\.0\.0\.1:\d+$/);
      const [download] = await linesWhere((l) => l.rpc.method === "Download" && l.protocol === "grpc", 1);
      expect(download).toMatchObject({ tenant: "alpha", code: "OK" });
      expect(download!.bytesOut).toBeGreaterThanOrEqual(data.length);
      expect(download!.bytesIn).toBeGreaterThan(0);
      await linesWhere((l) => l.rpc.method === "GetArtifact" && l.protocol === "grpc" && l.code === "NOT_FOUND" && l.tenant === "alpha", 1);
      await linesWhere((l) => l.rpc.method === "SaveInline" && l.code === "OK", 1);
      const refusals = await linesWhere((l) => l.rpc.method === "GetArtifact" && l.protocol === "connect" && l.tenant === "beta", 3);
      expect(refusals.map((l) => [l.code, l.tenant])).toEqual([
        ["NOT_FOUND", "beta"],
        ["NOT_FOUND", "beta"],
        ["NOT_FOUND", "beta"],
      ]);
      await linesWhere((l) => l.rpc.method === "Download" && l.protocol === "grpc-web" && l.code === "NOT_FOUND" && l.tenant === "beta", 1);
      const [connectDownload] = await linesWhere((l) => l.rpc.method === "Download" && l.protocol === "connect", 1);
      expect(connectDownload).toMatchObject({ tenant: "alpha", code: "OK" });
      expect(connectDownload!.bytesOut).toBeGreaterThanOrEqual(data.length);
      await linesWhere((l) => l.rpc.method === "GetArtifact" && l.protocol === "connect" && l.code === "OK" && l.tenant === "alpha", 1);
      const [refused] = await linesWhere((l) => l.code === "UNAUTHENTICATED", 1);
      expect(refused).toMatchObject({ rpc: { service, method: "GetArtifact" }, protocol: "grpc" });
      expect(refused!.tenant).toBeUndefined();
      await linesWhere((l) => l.rpc.service === Health.typeName && l.rpc.method === "Check" && l.code === "OK", 1);
      await linesWhere((l) => l.rpc.method === "WatchArtifacts" && l.code === "CANCELLED" && l.tenant === "alpha", 1);
      const [cut] = await linesWhere((l) => l.rpc.method === "Upload" && l.tenant === "beta", 1);
      expect(cut).toMatchObject({ protocol: "grpc", code: "CANCELLED" });
      expect(cut!.bytesIn).toBeGreaterThanOrEqual(64 * 1024);
      const links = await linesWhere((l) => l.rpc.service === "http" && l.rpc.method === "signed download links", 2);
      expect(links.map((l) => [l.protocol, l.status]).sort()).toEqual([
        ["http", 200],
        ["http", 403],
      ]);
      expect(links.find((l) => l.status === 200)).toMatchObject({ bytesOut: data.length, tenant: "alpha" });
      // A link that does not check out is nobody's.
      expect(links.find((l) => l.status === 403)!.tenant).toBeUndefined();

      // Each call had its one line (finished once), a cut one included.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(accessLines().filter((l) => l.rpc.method === "Upload" && l.tenant === "beta")).toHaveLength(1);
      expect(accessLines().filter((l) => l.rpc.method === "WatchArtifacts")).toHaveLength(1);
      expect(accessLines().filter((l) => l.code === "UNAUTHENTICATED")).toHaveLength(1);

      // Nothing secret, in any line the server wrote: the tokens, the link's signature, the content.
      const text = allLines();
      expect(text).toContain('"msg":"call"');
      for (const secret of [t.tokens.alpha, t.tokens.beta, badToken, signature, content]) expect(text).not.toContain(secret);
    } finally {
      await sdk.close();
    }
  });

  it("blanks a token and a link's signature that an error carries into the log", async () => {
    const { url } = await t
      .client()
      .createDownloadUrl({ id: (await t.client().saveInline({ spec: { kind: "log-test" }, content: { case: "text", value: "x" } })).artifact!.id });
    const signature = new URL(url).searchParams.get("sig")!;
    const metadata = t.app.metadata;
    const getArtifact = metadata.getArtifact;
    metadata.getArtifact = async () => {
      throw new TypeError(`a bug that prints Bearer ${t.tokens.alpha} and ${url}`);
    };
    t.serverLog.allowInternal(/a bug that prints/);
    try {
      await expectCode(t.client().getArtifact({ id: MISSING_ID }), Code.Internal);
    } finally {
      metadata.getArtifact = getArtifact;
    }
    const logged = t.serverLog.entries.find((entry) => entry.internal && entry.line!.includes("a bug that prints"))!;
    expect(logged.line).toContain("Bearer [redacted]");
    expect(logged.line).toContain("sig=[redacted]");
    expect(logged.line).not.toContain(t.tokens.alpha);
    expect(logged.line).not.toContain(signature);
  });
});

it("redactSecrets blanks tokens, bearer credentials and link signatures, and nothing else", () => {
  const token = `adt_${"a".repeat(43)}`;
  expect(redactSecrets(`token ${token} in a message`)).toBe("token adt_[redacted] in a message");
  expect(redactSecrets('"authorization":"Bearer xyz.abc"')).toBe('"authorization":"Bearer [redacted]"');
  expect(redactSecrets("/download/v1/t/art_1?expires=1&token_id=tok_1&key_id=k&sig=AbC-_9")).toBe(
    "/download/v1/t/art_1?expires=1&token_id=tok_1&key_id=k&sig=[redacted]",
  );
  expect(redactSecrets("https://s3/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=deadbeef")).toBe(
    "https://s3/b/k?X-Amz-Credential=[redacted]&X-Amz-Signature=[redacted]",
  );
  expect(redactSecrets('{"msg":"call","tenant":"alpha","bytesIn":12}')).toBe('{"msg":"call","tenant":"alpha","bytesIn":12}');
});

it("writes one readable line per entry in the pretty format, its error's stack below", () => {
  const lines: string[] = [];
  const logger = createLogger({ format: "pretty", destination: { write: (line: string) => lines.push(line) } });
  logger.info({ tenant: "alpha", bytesIn: 12 }, "call");
  logger.error({ err: new TypeError("a bug"), internal: true }, "GetArtifact failed");
  expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z INFO {2}call tenant=alpha bytesIn=12\n$/);
  expect(lines[1]).toMatch(/^\S+ ERROR GetArtifact failed internal=true\n {4}TypeError: a bug\n {5,}at /);
});
