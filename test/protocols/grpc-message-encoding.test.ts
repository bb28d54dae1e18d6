import { createClient, type Client, ConnectError } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Health } from "@artifactd/api/grpc/health/v1/health_pb.js";
import { encodeGrpcMessage } from "../../src/transport/grpc-message-encoding.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * grpc-message reaches a grpc-js caller exactly as the server wrote it, on
 * every route that answers plain gRPC: the fast unary, upload and download
 * routes, and connect-node (server streaming, and the public Health
 * service), which percent-encodes more than the gRPC spec asks. gRPC-Web's
 * trailer message carries it encoded the same way. The messages hold a ':',
 * a '%' and non-ASCII, each of which a client sees differently if the
 * encoding is wrong. What the server wrote is read over Connect, whose JSON
 * errors need no header encoding.
 */
const PROTO_DIR = path.resolve(import.meta.dirname, "../../proto");
/** An input the server echoes in its error message: ':' '%' and non-ASCII (two- and four-byte UTF-8). */
const ECHOED = "ké%:y 🦀";

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

function grpcJsClient(file: string, service: string, address: string): AnyClient {
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync(file, { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
  );
  const Service = service.split(".").reduce<unknown>((node, name) => (node as Record<string, unknown>)[name], loaded) as new (
    address: string,
    credentials: grpc.ChannelCredentials,
  ) => AnyClient;
  return new Service(address, grpc.credentials.createInsecure());
}

/** The message of the error a grpc-js call ended with. */
async function grpcJsMessage(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    return (error as grpc.ServiceError).details;
  }
  throw new Error("the call succeeded; it was meant to fail");
}

/** The message of the error a Connect call ended with: what the server wrote. */
async function connectMessage(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    return ConnectError.from(error).rawMessage;
  }
  throw new Error("the call succeeded; it was meant to fail");
}

describeOn("pglite+fs")("grpc-message as the gRPC spec encodes it", () => {
  let t: TestApp;
  let artifacts: AnyClient;
  let health: AnyClient;
  let metadata: grpc.Metadata;
  let overConnect: Client<typeof ArtifactService>;
  beforeAll(async () => {
    t = await startTestApp("pglite+fs");
    const address = t.url.replace("http://", "");
    artifacts = grpcJsClient("artifacts/v1/artifact_service.proto", "artifacts.v1.ArtifactService", address);
    health = grpcJsClient("grpc/health/v1/health.proto", "grpc.health.v1.Health", address);
    metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${t.tokens.alpha}`);
    overConnect = createClient(
      ArtifactService,
      createConnectTransport({
        baseUrl: t.url,
        httpVersion: "1.1",
        interceptors: [
          (next) => (request) => {
            request.header.set("authorization", `Bearer ${t.tokens.alpha}`);
            return next(request);
          },
        ],
      }),
    );
  });
  afterAll(async () => {
    artifacts?.close();
    health?.close();
    await t?.close();
  });

  const unary = (method: string, request: object) =>
    new Promise((resolve, reject) =>
      (artifacts[method] as (r: object, m: grpc.Metadata, cb: (e: unknown, v: unknown) => void) => void).call(artifacts, request, metadata, (error, value) =>
        error ? reject(error) : resolve(value),
      ),
    );
  const serverStream = (method: string, request: object) =>
    new Promise((resolve, reject) => {
      const call = (artifacts[method] as (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<unknown>).call(artifacts, request, metadata);
      call.on("data", () => {});
      call.on("end", resolve);
      call.on("error", reject);
    });
  const badSpec = { kind: ECHOED };
  const badMetricRange = { metric_ranges: [{ name: ECHOED, min: 2, max: 1 }] };

  const expectEchoing = (message: string) => {
    expect(message).toContain(ECHOED);
    expect(message).toContain(": ");
  };

  it("the fast unary route (SaveInline over plain gRPC)", async () => {
    const written = await connectMessage(overConnect.saveInline({ spec: badSpec, content: { case: "text", value: "x" } }));
    expectEchoing(written);
    expect(await grpcJsMessage(unary("SaveInline", { spec: badSpec, text: "x" }))).toBe(written);
  });

  it("the fast upload route (a refused Upload header)", async () => {
    const written = await connectMessage(
      overConnect.upload(
        (async function* () {
          yield { message: { case: "header" as const, value: { spec: badSpec } } };
        })(),
      ),
    );
    expectEchoing(written);
    const refused = new Promise((resolve, reject) => {
      const call = (artifacts.Upload as (m: grpc.Metadata, cb: (e: unknown, v: unknown) => void) => grpc.ClientWritableStream<object>).call(
        artifacts,
        metadata,
        (error, value) => (error ? reject(error) : resolve(value)),
      );
      call.write({ header: { spec: badSpec } });
      call.end();
    });
    expect(await grpcJsMessage(refused)).toBe(written);
  });

  it("the fast download route (a malformed id)", async () => {
    const written = await connectMessage(
      (async () => {
        for await (const _ of overConnect.download({ id: ECHOED }));
      })(),
    );
    expectEchoing(written);
    expect(await grpcJsMessage(serverStream("Download", { id: ECHOED }))).toBe(written);
  });

  it("connect-node's gRPC (WatchArtifacts with a filter it refuses)", async () => {
    const written = await connectMessage(
      (async () => {
        for await (const _ of overConnect.watchArtifacts({ filter: { metricRanges: [{ name: ECHOED, min: 2, max: 1 }] } }));
      })(),
    );
    expectEchoing(written);
    expect(await grpcJsMessage(serverStream("WatchArtifacts", { filter: badMetricRange }))).toBe(written);
  });

  it("connect-node's gRPC on the public services (Health.Check of an unknown service)", async () => {
    const written = await connectMessage(createClient(Health, createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" })).check({ service: ECHOED }));
    expect(written).toContain(ECHOED);
    const check = new Promise((resolve, reject) =>
      (health.Check as (r: object, cb: (e: unknown, v: unknown) => void) => void).call(health, { service: ECHOED }, (error, value) =>
        error ? reject(error) : resolve(value),
      ),
    );
    expect(await grpcJsMessage(check)).toBe(written);
  });

  it("connect-node's gRPC-Web: the trailer message holds grpc-message encoded as the spec asks", async () => {
    const written = await connectMessage(overConnect.saveInline({ spec: badSpec, content: { case: "text", value: "x" } }));
    // SaveInline's request, by hand: field 1 (spec) holding field 1 (kind); field 2 (text).
    const kind = Buffer.from(ECHOED, "utf8");
    const spec = Buffer.concat([Buffer.from([0x0a, kind.byteLength]), kind]);
    const message = Buffer.concat([Buffer.from([0x0a, spec.byteLength]), spec, Buffer.from([0x12, 1]), Buffer.from("x")]);
    const head = Buffer.alloc(5);
    head.writeUInt32BE(message.byteLength, 1);
    const response = await fetch(`${t.url}/artifacts.v1.ArtifactService/SaveInline`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${t.tokens.alpha}` },
      body: Buffer.concat([head, message]),
    });
    const body = Buffer.from(await response.arrayBuffer());
    expect(body[0]).toBe(0x80);
    const trailer = body.toString("utf8", 5, 5 + body.readUInt32BE(1));
    expect(trailer).toContain("grpc-status: 3\r\n");
    expect(trailer).toContain(`grpc-message: ${encodeGrpcMessage(written)}\r\n`);
  });
});

describe("encodeGrpcMessage", () => {
  it("encodes only what the spec asks, and a space at either end, which HTTP/2 would drop the field for", () => {
    expect(encodeGrpcMessage('is pinned: unpin it (100 %) – "x"')).toBe('is pinned: unpin it (100 %25) %E2%80%93 "x"');
    expect(encodeGrpcMessage('unknown compression "gzip": supported encodings are ')).toBe('unknown compression "gzip": supported encodings are%20');
    expect(encodeGrpcMessage("  both ends  ")).toBe("%20%20both ends%20%20");
    expect(decodeURIComponent(encodeGrpcMessage("  both ends  "))).toBe("  both ends  ");
  });
});
