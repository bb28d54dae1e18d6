import { create, type DescMessage, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import {
  type ArtifactService,
  GetArtifactRequestSchema,
  GetArtifactResponseSchema,
  SaveInlineRequestSchema,
  SaveInlineResponseSchema,
} from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { clientWithAuthorization } from "../support/raw-credential-client.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** A message in a gRPC envelope, encoded by the generated schema. */
function frameOf<S extends DescMessage>(schema: S, init: MessageInitShape<S>): Buffer {
  const message = toBinary(schema, create(schema, init));
  return Buffer.concat([envelope(message.byteLength), message]);
}
function envelope(length: number, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(length, 1);
  return head;
}

/**
 * The plain-gRPC route of unary calls (src/transport/grpc-unary-route.ts),
 * driven by a bare node:http2 client, so what goes back is read off the
 * wire, and compared with connect-node's answer to the same request over
 * the Connect protocol (the route takes plain gRPC only).
 */
describe.each(BACKENDS)("gRPC unary calls on the wire on %s", (backend) => {
  let t: TestApp;
  let session: http2.ClientHttp2Session;
  let overConnect: Client<typeof ArtifactService>;
  beforeAll(async () => {
    t = await startTestApp(backend);
    session = http2.connect(t.url);
    overConnect = clientWithAuthorization(t.url, `Bearer ${t.tokens.alpha}`, "connect");
  });
  afterAll(async () => {
    session?.close();
    await t?.close();
  });

  const call = (method: string, body: Buffer | undefined, headers: Record<string, string> = {}) => {
    const stream = session.request({
      ":method": "POST",
      ":path": `/artifacts.v1.ArtifactService/${method}`,
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${t.tokens.alpha}`,
      ...headers,
    });
    const answer = new Promise<RawAnswer>((resolve, reject) => {
      const raw: RawAnswer = { headers: {}, trailers: {}, body: Buffer.alloc(0) };
      const pieces: Buffer[] = [];
      stream.on("response", (h) => (raw.headers = h));
      stream.on("trailers", (h) => (raw.trailers = h));
      stream.on("data", (d: Buffer) => pieces.push(d));
      stream.on("close", () => resolve({ ...raw, body: Buffer.concat(pieces) }));
      stream.on("error", reject);
    });
    if (body !== undefined) stream.end(body);
    return { stream, answer };
  };
  const statusOf = (answer: RawAnswer) => ({
    code: Number(answer.trailers["grpc-status"] ?? answer.headers["grpc-status"]),
    message: decodeURIComponent(String(answer.trailers["grpc-message"] ?? answer.headers["grpc-message"] ?? "")),
  });
  const messageOf = <S extends DescMessage>(schema: S, answer: RawAnswer) => {
    // connect-node would answer application/grpc+proto: this is the route's answer.
    expect(answer.headers["content-type"]).toBe("application/grpc");
    expect(statusOf(answer)).toEqual({ code: 0, message: "" });
    expect(answer.body[0], "compressed flag").toBe(0);
    expect(answer.body.readUInt32BE(1)).toBe(answer.body.length - 5);
    return fromBinary(schema, answer.body.subarray(5));
  };
  const connectStatusOf = (call: Promise<unknown>) =>
    call.then(
      () => ({ code: 0, message: "" }),
      (error: unknown) => ({ code: ConnectError.from(error).code as number, message: ConnectError.from(error).rawMessage }),
    );

  it("saves and reads back as connect-node does", async () => {
    const spec = (name: string) => ({ kind: "unary-route", name, labels: { route: "any" } });
    const content = { case: "json" as const, value: '{"a":1}' };
    const fast = messageOf(SaveInlineResponseSchema, await call("SaveInline", frameOf(SaveInlineRequestSchema, { spec: spec("fast"), content })).answer)
      .artifact!;
    const generic = (await overConnect.saveInline({ spec: spec("generic"), content })).artifact!;
    const comparable = (a: typeof fast) => ({ ...a, id: "", name: "", createdAt: undefined });
    expect(comparable(fast)).toEqual(comparable(generic));
    expect(fast).toMatchObject({ kind: "unary-route", name: "fast", labels: { route: "any" }, sizeBytes: 7n });

    const read = messageOf(
      GetArtifactResponseSchema,
      await call("GetArtifact", frameOf(GetArtifactRequestSchema, { id: fast.id, includeContent: true })).answer,
    );
    expect(read).toEqual(await overConnect.getArtifact({ id: fast.id, includeContent: true }));
    expect(read.artifact?.id).toBe(fast.id);
    expect(read.artifact?.inlineContent?.content).toMatchObject({ case: "json", value: '{"a":1}' });
  });

  it("refuses what the use case refuses, with connect-node's status and words", async () => {
    const cases = [
      {
        method: "GetArtifact",
        schema: GetArtifactRequestSchema,
        init: { id: "art_00000000000000000000000000" },
        generic: () => overConnect.getArtifact({ id: "art_00000000000000000000000000" }),
      },
      { method: "GetArtifact", schema: GetArtifactRequestSchema, init: { id: "not an id" }, generic: () => overConnect.getArtifact({ id: "not an id" }) },
      {
        method: "SaveInline",
        schema: SaveInlineRequestSchema,
        init: { spec: { kind: "bad kind!" }, content: { case: "text", value: "x" } },
        generic: () => overConnect.saveInline({ spec: { kind: "bad kind!" }, content: { case: "text", value: "x" } }),
      },
      {
        method: "SaveInline",
        schema: SaveInlineRequestSchema,
        init: { spec: { kind: "ok" }, content: { case: "json", value: "{not json" } },
        generic: () => overConnect.saveInline({ spec: { kind: "ok" }, content: { case: "json", value: "{not json" } }),
      },
    ] as const;
    for (const { method, schema, init, generic } of cases) {
      const fast = statusOf(await call(method, frameOf(schema as DescMessage, init as never)).answer);
      expect(fast.code, `${method}: ${fast.message}`).not.toBe(0);
      expect(fast).toEqual(await connectStatusOf(generic()));
    }
  });

  it("refuses a request body that is not exactly one message, as connect-node does", async () => {
    const one = frameOf(GetArtifactRequestSchema, { id: "art_00000000000000000000000000" });
    // connect's own words and codes for these (its envelope reader and unary invoker).
    const cases: [string, Buffer, { code: Code; message: string | RegExp }][] = [
      ["no message", Buffer.alloc(0), { code: Code.Unimplemented, message: "protocol error: missing input message for unary method" }],
      ["two messages", Buffer.concat([one, one]), { code: Code.Unimplemented, message: "protocol error: received extra input message for unary method" }],
      ["a message cut short", one.subarray(0, one.length - 3), { code: Code.InvalidArgument, message: "protocol error: incomplete envelope" }],
      ["half an envelope head", one.subarray(0, 3), { code: Code.InvalidArgument, message: "protocol error: incomplete envelope" }],
      ["a compressed flag", Buffer.concat([envelope(one.length - 5, 1), one.subarray(5)]), { code: Code.Internal, message: /compressed envelope/ }],
      ["bytes the schema cannot read", Buffer.concat([envelope(3), Buffer.from([0x0a, 0x05, 0x61])]), { code: Code.Internal, message: /^parse binary: / }],
    ];
    for (const [name, body, expected] of cases) {
      const status = statusOf(await call("GetArtifact", body).answer);
      expect(status.code, name).toBe(expected.code);
      expect(status.message, name).toMatch(expected.message);
    }
  });

  it("refuses a message declared larger than the server reads as soon as its head arrives", async () => {
    // The body never ends: only the declared length can decide.
    const { stream, answer } = call("GetArtifact", undefined);
    stream.write(envelope(1024 * 1024 * 1024));
    const raw = await answer;
    expect(raw.headers["content-type"]).toBe("application/grpc");
    expect(statusOf(raw)).toEqual({
      code: Code.ResourceExhausted,
      message: expect.stringMatching(/^message size 1073741824 is larger than configured readMaxBytes \d+$/),
    });
  });

  it("ends a call whose request never completes with DEADLINE_EXCEEDED at its deadline", async () => {
    const one = frameOf(GetArtifactRequestSchema, { id: "art_00000000000000000000000000" });
    const { stream, answer } = call("GetArtifact", undefined, { "grpc-timeout": "300m" });
    stream.write(one.subarray(0, 4));
    const started = Date.now();
    expect(statusOf(await answer)).toEqual({ code: Code.DeadlineExceeded, message: "the operation timed out" });
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});
