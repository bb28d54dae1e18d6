import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { StringValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { compressionBrotli, compressionGzip, createGrpcTransport, createNodeHttpClient } from "@connectrpc/connect-node";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import zlib from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { BACKENDS, startTestApp, type TestApp } from "../../../test/support/test-app.ts";
import { ArtifactSchema, Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import {
  ArtifactService,
  CreateUploadSessionResponseSchema,
  GetArtifactResponseSchema,
  SaveInlineResponseSchema,
  UploadSessionSchema,
} from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createArtifactConnection } from "../src/artifact-connection.ts";
import { failureOf } from "./connect-failure.ts";
import { withLeanUploads } from "../src/lean-upload-transport.ts";
import { WideWindowSessionManager } from "../src/wide-window-session-manager.ts";

const TOKEN = "adt_lean_unary_test";

/** What the scripted server saw of one request. */
interface SeenRequest {
  readonly path: string;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Buffer;
  /** Resolves with the stream's RST_STREAM code once it closes (0: closed cleanly). */
  readonly closed: Promise<number>;
}

type Answer = (stream: http2.ServerHttp2Stream, seen: SeenRequest, attempt: number) => void;

/** The gRPC frame of a message, optionally compressed (flag 1). */
function frameOf<S extends DescMessage>(schema: S, init: MessageInitShape<S>, compress?: (bytes: Uint8Array) => Uint8Array): Buffer {
  const encoded = toBinary(schema, create(schema, init));
  const payload = compress ? compress(encoded) : encoded;
  const head = Buffer.alloc(5);
  head[0] = compress ? 1 : 0;
  head.writeUInt32BE(payload.byteLength, 1);
  return Buffer.concat([head, payload]);
}

/** grpc-status, grpc-message and grpc-status-details-bin of an error, as a server writes them (connect's own encoder). */
function statusOf(error: ConnectError): http2.OutgoingHttpHeaders {
  const headers: http2.OutgoingHttpHeaders = {};
  setTrailerStatus(new Headers(), error).forEach((value, key) => {
    headers[key] = value;
  });
  return headers;
}

const grpcHeaders = { ":status": 200, "content-type": "application/grpc" };

/** A well-formed answer: one message, then grpc-status 0 in the trailers. */
const answerWith =
  (frame: Buffer, extraHeaders: http2.OutgoingHttpHeaders = {}): Answer =>
  (stream) => {
    stream.respond({ ...grpcHeaders, ...extraHeaders }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(frame);
  };

/** A trailers-only answer: the status in the only HEADERS frame. */
const trailersOnly =
  (error: ConnectError, extra: http2.OutgoingHttpHeaders = {}): Answer =>
  (stream) =>
    stream.respond({ ...grpcHeaders, ...statusOf(error), ...extra }, { endStream: true });

const artifactFrame = frameOf(GetArtifactResponseSchema, { artifact: { id: "txt_0123", kind: "note", name: "n" } });

/**
 * A minimal HTTP/2 gRPC server whose answer each test scripts, so the lean
 * path can be held against connect's generic transport on the same bytes.
 */
function scriptedServer() {
  const server = http2.createServer();
  const seen: SeenRequest[] = [];
  let answer: Answer = answerWith(artifactFrame);
  server.on("stream", (stream, headers) => {
    const chunks: Buffer[] = [];
    const closed = new Promise<number>((resolve) => stream.on("close", () => resolve(stream.rstCode ?? 0)));
    stream.on("error", () => {});
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      const request: SeenRequest = { path: String(headers[":path"]), headers, body: Buffer.concat(chunks), closed };
      seen.push(request);
      answer(stream, request, seen.length);
    });
  });
  return {
    seen,
    answer(next: Answer) {
      answer = next;
    },
    async listen(): Promise<string> {
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** What a caller can read of an error (the date header aside, which differs between two answers). */
function readable(error: ConnectError) {
  return {
    code: error.code,
    message: error.rawMessage,
    details: error.details,
    metadata: [...error.metadata].filter(([key]) => key !== "date"),
  };
}

describe("lean unary calls against a scripted gRPC server", () => {
  const server = scriptedServer();
  let baseUrl: string;
  const connections: { close(): void }[] = [];
  const connect = (options: Partial<Parameters<typeof createArtifactConnection>[0]> = {}) => {
    const connection = createArtifactConnection({ baseUrl, token: TOKEN, retry: false, ...options });
    connections.push(connection);
    return connection.rpc;
  };
  /** connect's own gRPC transport, as the SDK configured it before unary calls were lean: the yardstick. */
  const generic = () => {
    const auth: Interceptor = (next) => (request) => {
      request.header.set("authorization", `Bearer ${TOKEN}`);
      return next(request);
    };
    return createClient(ArtifactService, createGrpcTransport({ baseUrl, interceptors: [auth], acceptCompression: [compressionGzip, compressionBrotli] }));
  };

  beforeAll(async () => {
    baseUrl = await server.listen();
  });
  beforeEach(() => {
    server.seen.length = 0;
    server.answer(answerWith(artifactFrame));
  });
  afterAll(async () => {
    for (const connection of connections) connection.close();
    await server.close();
  });

  it("never hands a unary call to the generic transport, and decodes the answer", async () => {
    const sessionManager = new WideWindowSessionManager(baseUrl);
    const refusing: Transport = {
      unary: () => Promise.reject(new Error("the generic unary path was taken")),
      stream: () => Promise.reject(new Error("the generic stream path was taken")),
    };
    const options = { baseUrl, interceptors: [], acceptCompression: [compressionGzip], sessionManager };
    const rpc = createClient(
      ArtifactService,
      withLeanUploads(refusing, { ...options, httpClient: createNodeHttpClient({ httpVersion: "2", sessionProvider: () => sessionManager }) }),
    );
    try {
      const { artifact } = await rpc.getArtifact({ id: "txt_0123" });
      expect(artifact?.id).toBe("txt_0123");
      server.answer(answerWith(frameOf(SaveInlineResponseSchema, { artifact: { id: "txt_0456" } })));
      expect((await rpc.saveInline({ spec: { kind: "note" }, content: { case: "text", value: "hi" } })).artifact?.id).toBe("txt_0456");
      expect(server.seen.map((request) => request.path)).toEqual(["/artifacts.v1.ArtifactService/GetArtifact", "/artifacts.v1.ArtifactService/SaveInline"]);
    } finally {
      sessionManager.abort();
    }
  });

  it("leaves a transport of the caller's own alone: its unary calls go through it, without the SDK's token", async () => {
    const own = createGrpcTransport({ baseUrl });
    const unaryCalls: string[] = [];
    const counting: Transport = {
      unary: (method, ...rest) => {
        unaryCalls.push(method.name);
        return own.unary(method, ...rest);
      },
      stream: (...args) => own.stream(...args),
    };
    const connection = createArtifactConnection({ baseUrl: "http://127.0.0.1:9", token: TOKEN, transport: counting });
    connections.push(connection);
    expect((await connection.rpc.getArtifact({ id: "txt_0123" })).artifact?.id).toBe("txt_0123");
    expect(unaryCalls).toEqual(["GetArtifact"]);
    expect(server.seen[0]!.headers.authorization).toBeUndefined();
  });

  it("sends the request as protobuf-es encodes it, with the token, the deadline and the accepted encodings", async () => {
    const rpc = connect();
    const { artifact } = await rpc.getArtifact({ id: "txt_0123", includeContent: true }, { timeoutMs: 4_000 });
    expect(artifact?.name).toBe("n");
    const [request] = server.seen;
    expect(request!.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(request!.headers["grpc-timeout"]).toBe("4000m");
    expect(request!.headers["content-type"]).toBe("application/grpc+proto");
    expect(request!.headers.te).toBe("trailers");
    expect(request!.headers["grpc-accept-encoding"]).toBe("gzip,br");
    expect(request!.body.equals(frameOf(ArtifactService.method.getArtifact.input, { id: "txt_0123", includeContent: true }))).toBe(true);
  });

  it("gives a caller's onHeader and onTrailer the answer's headers and trailers", async () => {
    server.answer((stream) => {
      stream.respond({ ...grpcHeaders, "x-served-by": "scripted" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "x-cost": "3" }));
      stream.end(artifactFrame);
    });
    let header: Headers | undefined;
    let trailer: Headers | undefined;
    await connect().getArtifact({ id: "txt_0123" }, { onHeader: (h) => (header = h), onTrailer: (t) => (trailer = t) });
    expect(header?.get("x-served-by")).toBe("scripted");
    expect(trailer?.get("x-cost")).toBe("3");
    expect(trailer?.get("grpc-status")).toBe("0");
  });

  it("decodes gzip and brotli compressed answers", async () => {
    server.answer(answerWith(frameOf(GetArtifactResponseSchema, { artifact: { id: "txt_gzip" } }, zlib.gzipSync), { "grpc-encoding": "gzip" }));
    expect((await connect().getArtifact({ id: "txt_gzip" })).artifact?.id).toBe("txt_gzip");
    server.answer(answerWith(frameOf(GetArtifactResponseSchema, { artifact: { id: "txt_br" } }, zlib.brotliCompressSync), { "grpc-encoding": "br" }));
    expect((await connect().getArtifact({ id: "txt_br" })).artifact?.id).toBe("txt_br");
  });

  const detailed = new ConnectError("tenant quota reached", Code.ResourceExhausted, undefined, [
    { desc: StringValueSchema, value: { value: "stored bytes: 10 GiB of 10 GiB" } },
  ]);
  /** Answers the lean path must read exactly as connect's generic transport does. */
  const answers: [string, Answer, Code][] = [
    ["NOT_FOUND with a message, trailers-only", trailersOnly(new ConnectError("artifact txt_0123 does not exist — ünïcode", Code.NotFound)), Code.NotFound],
    [
      "NOT_FOUND in the trailers after headers",
      (stream) => {
        stream.respond(grpcHeaders, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers(statusOf(new ConnectError("artifact txt_0123 does not exist", Code.NotFound))));
        stream.end();
      },
      Code.NotFound,
    ],
    ["status details and metadata", trailersOnly(detailed, { "retry-after-ms": "250" }), Code.ResourceExhausted],
    ["HTTP 503", (stream) => stream.respond({ ":status": 503 }, { endStream: true }), Code.Unavailable],
    ["not gRPC", (stream) => stream.respond({ ":status": 200, "content-type": "text/html" }, { endStream: true }), Code.Unknown],
    [
      "no status",
      (stream) => {
        stream.respond(grpcHeaders);
        stream.end(artifactFrame);
      },
      Code.Internal,
    ],
    ["an unknown encoding", answerWith(artifactFrame, { "grpc-encoding": "snappy" }), Code.Internal],
    ["two messages", answerWith(Buffer.concat([artifactFrame, artifactFrame])), Code.Unimplemented],
    ["grpc-status 0 without a message", answerWith(Buffer.alloc(0)), Code.Unimplemented],
    ["a cut frame", answerWith(artifactFrame.subarray(0, 9)), Code.InvalidArgument],
    ["a message that does not parse", answerWith(Buffer.from([0, 0, 0, 0, 2, 0xff, 0xff])), Code.Internal],
    ["a stream reset with INTERNAL_ERROR", (stream) => stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR), Code.Internal],
    ["a stream reset with REFUSED_STREAM", (stream) => stream.close(http2.constants.NGHTTP2_REFUSED_STREAM), Code.Internal],
    ["the connection dropped before an answer", (stream) => stream.session?.socket.destroy(), Code.Canceled],
    [
      "the connection dropped after the headers",
      (stream) => {
        stream.respond(grpcHeaders);
        setTimeout(() => stream.session?.socket.destroy(), 20);
      },
      Code.Canceled,
    ],
  ];
  it.each(answers)("fails on %s exactly as the generic transport does", async (_, answer, code) => {
    server.answer(answer);
    const lean = await failureOf(connect().getArtifact({ id: "txt_0123" }));
    const yardstick = await failureOf(generic().getArtifact({ id: "txt_0123" }));
    expect(lean.code).toBe(code);
    expect(readable(lean)).toEqual(readable(yardstick));
  });

  it("reads status details as the server wrote them", async () => {
    server.answer(trailersOnly(detailed, { "retry-after-ms": "250" }));
    const error = await failureOf(connect().getArtifact({ id: "txt_0123" }));
    expect(error.rawMessage).toBe("tenant quota reached");
    expect(error.findDetails(StringValueSchema).map((detail) => detail.value)).toEqual(["stored bytes: 10 GiB of 10 GiB"]);
    expect(error.metadata.get("retry-after-ms")).toBe("250");
  });

  it("fails a server that cannot be reached with UNAVAILABLE, as the generic transport does", async () => {
    const closed = scriptedServer();
    const closedUrl = await closed.listen();
    await closed.close();
    const lean = await failureOf(createArtifactConnection({ baseUrl: closedUrl, token: TOKEN, retry: false }).rpc.getArtifact({ id: "txt_0123" }));
    const yardstick = await failureOf(createClient(ArtifactService, createGrpcTransport({ baseUrl: closedUrl })).getArtifact({ id: "txt_0123" }));
    expect(lean.code).toBe(Code.Unavailable);
    expect(readable(lean)).toEqual(readable(yardstick));
  });

  it("ends a call at its deadline with DEADLINE_EXCEEDED and resets its stream", async () => {
    server.answer(() => {});
    const started = Date.now();
    const error = await failureOf(connect().getArtifact({ id: "txt_0123" }, { timeoutMs: 150 }));
    expect(error.code).toBe(Code.DeadlineExceeded);
    expect(readable(error)).toEqual(readable(await failureOf(generic().getArtifact({ id: "txt_0123" }, { timeoutMs: 150 }))));
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(server.seen[0]!.headers["grpc-timeout"]).toBe("150m");
    expect(await server.seen[0]!.closed).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
  });

  it("cancels a call when the caller's signal aborts: CANCELED, and the stream reset with CANCEL", async () => {
    server.answer(() => {});
    const controller = new AbortController();
    const call = connect().getArtifact({ id: "txt_0123" }, { signal: controller.signal });
    for (const until = Date.now() + 5_000; server.seen.length === 0 && Date.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 5));
    controller.abort();
    const error = await failureOf(call);
    expect(error.code).toBe(Code.Canceled);
    expect(await server.seen[0]!.closed).toBe(http2.constants.NGHTTP2_CANCEL);

    const yardstickController = new AbortController();
    const yardstick = generic().getArtifact({ id: "txt_0123" }, { signal: yardstickController.signal });
    for (const until = Date.now() + 5_000; server.seen.length === 1 && Date.now() < until; ) await new Promise((resolve) => setTimeout(resolve, 5));
    yardstickController.abort();
    expect(readable(error)).toEqual(readable(await failureOf(yardstick)));
  });

  it("sends nothing for a signal aborted before the call", async () => {
    const error = await failureOf(connect().getArtifact({ id: "txt_0123" }, { signal: AbortSignal.abort(new Error("not wanted any more")) }));
    expect(error.code).toBe(Code.Canceled);
    expect(error.rawMessage).toContain("not wanted any more");
    expect(server.seen).toHaveLength(0);
  });

  it("retries a retryable call on UNAVAILABLE, and a keyed CreateUploadSession, but not SaveInline or an unkeyed create", async () => {
    const unavailable = trailersOnly(new ConnectError("the store is restarting", Code.Unavailable));
    const retries: number[] = [];
    const rpc = connect({ retry: { maxAttempts: 4, initialDelayMs: 1, maxDelayMs: 2, onRetry: ({ attempt }) => retries.push(attempt) } });
    const thirdTime =
      (frame: Buffer): Answer =>
      (stream, seen, attempt) =>
        attempt < 3 ? unavailable(stream, seen, attempt) : answerWith(frame)(stream, seen, attempt);

    server.answer(thirdTime(artifactFrame));
    expect((await rpc.getArtifact({ id: "txt_0123" })).artifact?.id).toBe("txt_0123");
    expect(server.seen).toHaveLength(3);
    expect(retries).toEqual([1, 2]);
    // Every attempt carries the token and the same request.
    expect(new Set(server.seen.map((request) => request.headers.authorization))).toEqual(new Set([`Bearer ${TOKEN}`]));
    expect(server.seen[2]!.body.equals(server.seen[0]!.body)).toBe(true);

    server.seen.length = 0;
    const sessionFrame = frameOf(CreateUploadSessionResponseSchema, { session: create(UploadSessionSchema, { sessionId: "ses_1" }) });
    server.answer(thirdTime(sessionFrame));
    expect((await rpc.createUploadSession({ spec: { kind: "model" }, idempotencyKey: "key-1" })).session?.sessionId).toBe("ses_1");
    expect(server.seen).toHaveLength(3);

    for (const call of [
      () => rpc.saveInline({ spec: { kind: "note" }, content: { case: "text", value: "once" } }),
      () => rpc.createUploadSession({ spec: { kind: "model" } }),
    ]) {
      server.seen.length = 0;
      server.answer(unavailable);
      expect((await failureOf(call())).code).toBe(Code.Unavailable);
      expect(server.seen).toHaveLength(1);
    }
  });

  it("stops retrying at the call's deadline", async () => {
    server.answer(trailersOnly(new ConnectError("down", Code.Unavailable)));
    const rpc = connect({ retry: { maxAttempts: 1000, initialDelayMs: 20, maxDelayMs: 20 } });
    const started = Date.now();
    const error = await failureOf(rpc.getArtifact({ id: "txt_0123" }, { timeoutMs: 200 }));
    expect(error.code).toBe(Code.DeadlineExceeded);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(server.seen.length).toBeGreaterThan(1);
  });
});

describe.each(BACKENDS)("every unary ArtifactService call, lean, on %s", (backend) => {
  let t: TestApp;
  let connection: ReturnType<typeof createArtifactConnection>;
  beforeAll(async () => {
    t = await startTestApp(backend);
    connection = createArtifactConnection({ baseUrl: t.url, token: t.tokens.alpha, timeoutMs: 30_000 });
  });
  afterAll(async () => {
    connection?.close();
    await t?.close();
  });

  it("saves, reads, lists, searches, ranks, pins, reviews, links, uploads, deletes and archives", async () => {
    const { rpc } = connection;
    const kind = `lean-${backend.replace(/\W/g, "")}`;
    const saved = (
      await rpc.saveInline({
        spec: { kind, name: "lean-note", metrics: { loss: 0.5 }, provenance: { runId: "run-lean" } },
        content: { case: "text", value: "lean unary" },
      })
    ).artifact!;
    const better = (await rpc.saveInline({ spec: { kind, name: "lean-better", metrics: { loss: 0.1 } }, content: { case: "json", value: '{"a":1}' } }))
      .artifact!;
    expect(saved.kind).toBe(kind);

    const got = await rpc.getArtifact({ id: saved.id, includeContent: true });
    expect(got.artifact?.inlineContent?.content).toEqual({ case: "text", value: "lean unary" });
    expect((await rpc.listArtifacts({ filter: { kind } })).artifacts.map((artifact) => artifact.id).sort()).toEqual([saved.id, better.id].sort());
    expect((await rpc.searchArtifacts({ query: "lean-note", filter: { kind } })).artifacts.map((artifact) => artifact.id)).toContain(saved.id);
    expect((await rpc.getBestArtifact({ kind, metric: "loss", minimize: true })).artifact?.id).toBe(better.id);
    expect((await rpc.getLineage({ id: saved.id, depth: 1 })).ancestors).toEqual([]);
    expect((await rpc.setPinned({ id: saved.id, pinned: true })).artifact?.pinned).toBe(true);
    expect((await rpc.setPinned({ id: saved.id, pinned: false })).artifact?.pinned).toBe(false);
    expect((await rpc.setStatus({ id: saved.id, status: Status.REVIEW })).artifact?.status).toBe(Status.REVIEW);
    expect((await rpc.createDownloadUrl({ id: saved.id, ttlSeconds: 60 })).url).toMatch(/^http/);

    const content = Buffer.from("uploaded through a session, part by part");
    const { session } = await rpc.createUploadSession({ spec: { kind, name: "lean-session" }, expectedSize: BigInt(content.length) });
    await rpc.uploadPart({ sessionId: session!.sessionId, partNumber: 1, data: content });
    expect((await rpc.getUploadSession({ sessionId: session!.sessionId })).session?.committedParts).toEqual([1]);
    const completed = await rpc.completeUploadSession({ sessionId: session!.sessionId });
    expect(completed.artifact?.sizeBytes).toBe(BigInt(content.length));
    const abandoned = (await rpc.createUploadSession({ spec: { kind } })).session!;
    await rpc.abortUploadSession({ sessionId: abandoned.sessionId });
    expect((await failureOf(rpc.getUploadSession({ sessionId: abandoned.sessionId }))).code).toBe(Code.NotFound);

    expect((await rpc.deleteArtifact({ id: better.id })).artifact?.deletedAt).toBeDefined();
    expect((await rpc.archiveRun({ runId: "run-lean" })).deletedCount).toBe(1n);
    expect(ArtifactSchema.typeName).toBe(saved.$typeName);
  });

  it("passes the service's refusals through with their code and message", async () => {
    const missing = await failureOf(connection.rpc.getArtifact({ id: "txt_00000000000000000000000000" }));
    expect(missing.code).toBe(Code.NotFound);
    expect(missing.rawMessage).toMatch(/txt_00000000000000000000000000/);
    const invalid = await failureOf(connection.rpc.saveInline({ spec: { kind: "" }, content: { case: "text", value: "x" } }));
    expect(invalid.code).toBe(Code.InvalidArgument);
    const unauthenticated = createArtifactConnection({ baseUrl: t.url, token: "adt_not_a_token", retry: false });
    try {
      expect((await failureOf(unauthenticated.rpc.getArtifact({ id: "txt_00000000000000000000000000" }))).code).toBe(Code.Unauthenticated);
    } finally {
      unauthenticated.close();
    }
  });
});
