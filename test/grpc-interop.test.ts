import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../src/blake3.ts";
import { startTestApp, type TestApp } from "./support/test-app.ts";

/**
 * The server driven by a client built independently of our generated code:
 * @grpc/grpc-js with the .proto files loaded at run time by
 * @grpc/proto-loader. Also the standard health and reflection services, as
 * grpcurl and load balancers use them.
 */
const PROTO_DIR = path.resolve(import.meta.dirname, "../proto");
const load = (file: string) =>
  grpc.loadPackageDefinition(
    protoLoader.loadSync(file, { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
  );

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
type ClientConstructor = new (address: string, credentials: grpc.ChannelCredentials) => AnyClient;

/** A service constructor by its full name, e.g. "grpc.health.v1.Health". */
function connect(file: string, service: string, address: string): AnyClient {
  const Service = service.split(".").reduce<unknown>((node, name) => (node as Record<string, unknown>)[name], load(file)) as ClientConstructor;
  return new Service(address, grpc.credentials.createInsecure());
}

describe("interop with grpc-js + proto-loader", () => {
  let t: TestApp;
  let artifacts: AnyClient;
  let health: AnyClient;
  let reflection: AnyClient;
  let metadata: grpc.Metadata;
  beforeAll(async () => {
    t = await startTestApp("postgres+minio");
    const address = t.url.replace("http://", "");
    artifacts = connect("artifacts/v1/artifact_service.proto", "artifacts.v1.ArtifactService", address);
    health = connect("grpc/health/v1/health.proto", "grpc.health.v1.Health", address);
    reflection = connect("grpc/reflection/v1/reflection.proto", "grpc.reflection.v1.ServerReflection", address);
    metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${t.tokens.alpha}`);
  });
  afterAll(async () => {
    artifacts?.close();
    health?.close();
    reflection?.close();
    await t?.close();
  });

  const unary = <T>(method: string, request: object, md = metadata): Promise<T> =>
    new Promise((resolve, reject) =>
      (artifacts[method] as (r: object, m: grpc.Metadata, cb: (e: grpc.ServiceError | null, v: T) => void) => void).call(artifacts, request, md, (error, value) =>
        error ? reject(error) : resolve(value),
      ),
    );

  const upload = (messages: object[], md = metadata) =>
    new Promise<{ artifact: { id: string; blake3: string; size_bytes: string } }>((resolve, reject) => {
      const call = (artifacts.Upload as (m: grpc.Metadata, cb: (e: grpc.ServiceError | null, v: never) => void) => grpc.ClientWritableStream<object>).call(
        artifacts,
        md,
        (error, value) => (error ? reject(error) : resolve(value)),
      );
      for (const message of messages) call.write(message);
      call.end();
    });

  it("uploads a stream, downloads it, gets and lists it", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const chunks = Array.from({ length: Math.ceil(data.length / 262_144) }, (_, i) => ({ chunk: data.subarray(i * 262_144, (i + 1) * 262_144) }));
    const { artifact } = await upload([{ header: { spec: { kind: "interop", name: "from-grpc-js", labels: { via: "grpc-js" } }, expected_blake3: blake3Hex(data) } }, ...chunks, { trailer: { metrics: { ok: 1 } } }]);
    expect(artifact.blake3).toBe(blake3Hex(data));
    expect(artifact.size_bytes).toBe(String(data.length));

    const received: Buffer[] = [];
    let header: { id: string } | undefined;
    await new Promise<void>((resolve, reject) => {
      const call = (artifacts.Download as (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<{ artifact?: { id: string }; chunk?: Buffer }>).call(artifacts, { id: artifact.id }, metadata);
      call.on("data", (message) => {
        if (message.artifact) header = message.artifact;
        if (message.chunk) received.push(message.chunk);
      });
      call.on("end", resolve);
      call.on("error", reject);
    });
    expect(header?.id).toBe(artifact.id);
    expect(blake3Hex(Buffer.concat(received))).toBe(blake3Hex(data));

    const got = await unary<{ artifact: { name: string; labels: Record<string, string>; metrics: Record<string, number> } }>("GetArtifact", { id: artifact.id });
    expect(got.artifact.name).toBe("from-grpc-js");
    expect(got.artifact.labels).toEqual({ via: "grpc-js" });
    expect(got.artifact.metrics).toEqual({ ok: 1 });
    const listed = await unary<{ artifacts: { id: string }[] }>("ListArtifacts", { filter: { labels: { via: "grpc-js" } } });
    expect(listed.artifacts.map((a) => a.id)).toContain(artifact.id);
    const saved = await unary<{ artifact: { id: string; storage: string } }>("SaveInline", { spec: { kind: "note" }, json: '{"a": 1}' });
    expect(saved.artifact.storage).toBe("STORAGE_INLINE");
  });

  it("sees the gRPC status codes a grpc-js client expects", async () => {
    const code = (p: Promise<unknown>) => p.then(() => "OK", (e: grpc.ServiceError) => grpc.status[e.code]);
    expect(await code(upload([{ header: { spec: { kind: "x" }, expected_blake3: "0".repeat(64) } }, { chunk: Buffer.from("abc") }]))).toBe("INVALID_ARGUMENT");
    expect(await code(upload([{ chunk: Buffer.from("no header") }]))).toBe("INVALID_ARGUMENT");
    expect(await code(unary("GetArtifact", { id: "art_00000000000000000000000000" }))).toBe("NOT_FOUND");
    expect(await code(unary("GetArtifact", { id: "art_00000000000000000000000000" }, new grpc.Metadata()))).toBe("UNAUTHENTICATED");
    const other = new grpc.Metadata();
    other.set("authorization", `Bearer ${t.tokens.beta}`);
    const { artifact } = await unary<{ artifact: { id: string } }>("SaveInline", { spec: { kind: "secret" }, text: "alpha only" });
    expect(await code(unary("GetArtifact", { id: artifact.id }, other))).toBe("NOT_FOUND");
  });

  it("answers health checks", async () => {
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) =>
        (health.Check as (r: object, cb: (e: grpc.ServiceError | null, v: { status: string }) => void) => void).call(health, { service }, (e, v) => (e ? reject(e) : resolve(v))),
      );
    expect((await check("")).status).toBe("SERVING");
    expect((await check("artifacts.v1.ArtifactService")).status).toBe("SERVING");
    await expect(check("no.such.Service")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it("serves reflection: services and their descriptors, with imports", async () => {
    const ask = (requests: object[]) =>
      new Promise<{ list_services_response?: { service: { name: string }[] }; file_descriptor_response?: { file_descriptor_proto: Buffer[] }; error_response?: { error_code: number } }[]>(
        (resolve, reject) => {
          const call = (reflection.ServerReflectionInfo as () => grpc.ClientDuplexStream<object, never>).call(reflection);
          const answers: never[] = [];
          call.on("data", (answer: never) => answers.push(answer));
          call.on("end", () => resolve(answers));
          call.on("error", reject);
          for (const request of requests) call.write(request);
          call.end();
        },
      );
    const [list, file, missing] = await ask([{ list_services: "" }, { file_containing_symbol: "artifacts.v1.ArtifactService" }, { file_containing_symbol: "no.such.Thing" }]);
    expect(list!.list_services_response!.service.map((s) => s.name)).toEqual(expect.arrayContaining(["artifacts.v1.ArtifactService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]));
    const files = file!.file_descriptor_response!.file_descriptor_proto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    expect(files.map((f) => f.name)).toEqual(expect.arrayContaining(["artifacts/v1/artifact_service.proto", "artifacts/v1/artifact.proto", "google/protobuf/timestamp.proto"]));
    const service = files.find((f) => f.name === "artifacts/v1/artifact_service.proto")!.service.find((s) => s.name === "ArtifactService")!;
    expect(service.method.map((m) => m.name)).toEqual(expect.arrayContaining(["Upload", "Download", "ListArtifacts"]));
    expect(missing!.error_response!.error_code).toBe(grpc.status.NOT_FOUND);
  });
});
