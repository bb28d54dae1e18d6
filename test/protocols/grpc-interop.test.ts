import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { captureStorageKeys, expectNothingStored, untilStored } from "../support/nothing-stored.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * The server driven by a client built independently of our generated code:
 * @grpc/grpc-js with the .proto files loaded at run time by
 * @grpc/proto-loader. Also the standard health and reflection services, as
 * grpcurl and load balancers use them.
 */
const PROTO_DIR = path.resolve(import.meta.dirname, "../../proto");
const load = (file: string) =>
  grpc.loadPackageDefinition(
    protoLoader.loadSync(file, { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true }),
  );

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;
type ClientConstructor = new (address: string, credentials: grpc.ChannelCredentials) => AnyClient;
type Callback<T> = (error: grpc.ServiceError | null, value: T) => void;

/** A service constructor by its full name, e.g. "grpc.health.v1.Health". */
function connect(file: string, service: string, address: string): AnyClient {
  const Service = service.split(".").reduce<unknown>((node, name) => (node as Record<string, unknown>)[name], load(file)) as ClientConstructor;
  return new Service(address, grpc.credentials.createInsecure());
}

/** The status name a call ended with, "OK" if it succeeded. */
const statusOf = (p: Promise<unknown>) =>
  p.then(
    () => "OK",
    (e: grpc.ServiceError) => grpc.status[e.code],
  );

interface WireArtifact {
  id: string;
  name: string;
  blake3: string;
  size_bytes: string;
  storage: string;
  labels: Record<string, string>;
  metrics: Record<string, number>;
}

describeOn("postgres+minio")("interop with grpc-js + proto-loader", () => {
  let t: TestApp;
  let address: string;
  let artifacts: AnyClient;
  let health: AnyClient;
  let metadata: grpc.Metadata;
  beforeAll(async () => {
    // 5 MiB parts, so an interrupted upload has one in MinIO; no maintenance, so only the upload itself removes it.
    t = await startTestApp("postgres+minio", { ARTIFACTD_S3_PART_SIZE: "5MiB", ARTIFACTD_MAINTENANCE_INTERVAL_MS: "0" });
    address = t.url.replace("http://", "");
    artifacts = connect("artifacts/v1/artifact_service.proto", "artifacts.v1.ArtifactService", address);
    health = connect("grpc/health/v1/health.proto", "grpc.health.v1.Health", address);
    metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${t.tokens.alpha}`);
  });
  afterAll(async () => {
    artifacts?.close();
    health?.close();
    await t?.close();
  });

  const unary = <T>(method: string, request: object, md = metadata): Promise<T> =>
    new Promise((resolve, reject) =>
      (artifacts[method] as (r: object, m: grpc.Metadata, cb: Callback<T>) => void).call(artifacts, request, md, (error, value) =>
        error ? reject(error) : resolve(value),
      ),
    );

  /** A client-streaming Upload call; the caller writes, ends or cancels it. */
  const startUpload = (md: grpc.Metadata, options: grpc.CallOptions = {}) => {
    let call!: grpc.ClientWritableStream<object>;
    const response = new Promise<{ artifact: WireArtifact; deduplicated: boolean }>((resolve, reject) => {
      call = (artifacts.Upload as (m: grpc.Metadata, o: grpc.CallOptions, cb: Callback<never>) => grpc.ClientWritableStream<object>).call(
        artifacts,
        md,
        options,
        (error, value) => (error ? reject(error) : resolve(value)),
      );
    });
    response.catch(() => {}); // awaited by the caller; never an unhandled rejection meanwhile
    return { call, response };
  };
  const upload = (messages: object[], md = metadata) => {
    const { call, response } = startUpload(md);
    for (const message of messages) call.write(message);
    call.end();
    return response;
  };

  const download = (request: object) =>
    new Promise<{ header: WireArtifact | undefined; bytes: Buffer; messages: number }>((resolve, reject) => {
      const call = (artifacts.Download as (r: object, m: grpc.Metadata) => grpc.ClientReadableStream<{ artifact?: WireArtifact; chunk?: Buffer }>).call(
        artifacts,
        request,
        metadata,
      );
      const received: Buffer[] = [];
      let header: WireArtifact | undefined;
      call.on("data", (message) => {
        if (message.artifact) header = message.artifact;
        if (message.chunk) received.push(message.chunk);
      });
      call.on("end", () => resolve({ header, bytes: Buffer.concat(received), messages: received.length }));
      call.on("error", reject);
    });

  const countOfKind = async (kind: string) =>
    (await unary<{ total_count: string }>("ListArtifacts", { filter: { kind, include_deleted: true }, include_total_count: true })).total_count;

  it("uploads a stream, downloads it whole and in part, gets, lists, searches and saves inline", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const digest = blake3Hex(data);
    const chunks = Array.from({ length: Math.ceil(data.length / 262_144) }, (_, i) => ({ chunk: data.subarray(i * 262_144, (i + 1) * 262_144) }));
    const { artifact, deduplicated } = await upload([
      { header: { spec: { kind: "interop", name: "from-grpc-js", labels: { via: "grpc-js" } }, expected_blake3: digest, expected_size: String(data.length) } },
      ...chunks,
      { trailer: { metrics: { ok: 1 } } },
    ]);
    expect(artifact.blake3).toBe(digest);
    expect(artifact.size_bytes).toBe(String(data.length));
    expect(artifact.storage).toBe("STORAGE_BLOB");
    expect(deduplicated).toBe(false);

    const whole = await download({ id: artifact.id });
    expect(whole.header?.id).toBe(artifact.id);
    expect(whole.header?.blake3).toBe(digest);
    expect(whole.messages).toBeGreaterThan(1);
    expect(whole.bytes.equals(data)).toBe(true);
    expect(blake3Hex(whole.bytes)).toBe(digest);
    // int64 fields as decimal strings (longs: String) on the way in.
    const part = await download({ id: artifact.id, offset: "1000000", length: "2500000" });
    expect(part.bytes.equals(data.subarray(1_000_000, 3_500_000))).toBe(true);

    const got = await unary<{ artifact: WireArtifact }>("GetArtifact", { id: artifact.id });
    expect(got.artifact).toMatchObject({ name: "from-grpc-js", labels: { via: "grpc-js" }, metrics: { ok: 1 }, size_bytes: String(data.length) });
    const listed = await unary<{ artifacts: WireArtifact[] }>("ListArtifacts", { filter: { labels: { via: "grpc-js" } } });
    expect(listed.artifacts.map((a) => a.id)).toEqual([artifact.id]);
    expect(await countOfKind("interop")).toBe("1"); // the count the failure tests below rely on
    const found = await unary<{ artifacts: WireArtifact[] }>("SearchArtifacts", { query: "grpc-js" });
    expect(found.artifacts.map((a) => a.id)).toContain(artifact.id);
    const saved = await unary<{ artifact: WireArtifact }>("SaveInline", { spec: { kind: "note" }, json: '{"a": 1}' });
    expect(saved.artifact.storage).toBe("STORAGE_INLINE");
    expect((await unary<{ artifact: WireArtifact }>("GetArtifact", { id: saved.artifact.id })).artifact.id).toBe(saved.artifact.id);
  });

  it("sees the gRPC status codes a grpc-js client expects", async () => {
    // A declared digest that the content does not have, found after the last of 2 MiB.
    const bytes = randomBytes(2 * 1024 * 1024);
    const wrongDigest = upload([
      { header: { spec: { kind: "wrong-digest" }, expected_blake3: "0".repeat(64) } },
      { chunk: bytes.subarray(0, 1 << 20) },
      { chunk: bytes.subarray(1 << 20) },
    ]);
    expect(await statusOf(wrongDigest)).toBe("INVALID_ARGUMENT");
    expect(await countOfKind("wrong-digest")).toBe("0");
    expect(await statusOf(upload([{ chunk: Buffer.from("no header") }]))).toBe("INVALID_ARGUMENT");
    expect(await statusOf(unary("GetArtifact", { id: "art_00000000000000000000000000" }))).toBe("NOT_FOUND");
    expect(await statusOf(unary("GetArtifact", { id: "art_00000000000000000000000000" }, new grpc.Metadata()))).toBe("UNAUTHENTICATED");
    expect(await statusOf(upload([{ header: { spec: { kind: "x" } } }], new grpc.Metadata()))).toBe("UNAUTHENTICATED");
    const other = new grpc.Metadata();
    other.set("authorization", `Bearer ${t.tokens.beta}`);
    const { artifact } = await unary<{ artifact: WireArtifact }>("SaveInline", { spec: { kind: "secret" }, text: "alpha only" });
    expect(await statusOf(unary("GetArtifact", { id: artifact.id }, other))).toBe("NOT_FOUND");
    // A method this server does not know (grpcurl against a newer contract).
    const unknown = new Promise((resolve, reject) =>
      artifacts.makeUnaryRequest(
        "/artifacts.v1.ArtifactService/NoSuchMethod",
        (value: Buffer) => value,
        (value: Buffer) => value,
        Buffer.alloc(0),
        metadata,
        (error, value) => (error ? reject(error) : resolve(value)),
      ),
    );
    expect(await statusOf(unknown)).toBe("UNIMPLEMENTED");
  });

  it("records and stores nothing for an upload that grpc-js cancels or lets run past its deadline", async () => {
    const header = { header: { spec: { kind: "grpc-js-interrupted" } } };
    const chunk = { chunk: randomBytes(1024 * 1024) };
    /** Until the server has taken on the `n`th upload (it asks the store for a key after the header). */
    const untilBegun = async (keys: readonly string[], n: number) => {
      for (const deadline = Date.now() + 10_000; keys.length < n && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
      expect(keys, "the upload never reached the server").toHaveLength(n);
    };

    // A cancel sends RST_STREAM(CANCEL): the server must not take it for the end of the stream.
    using cancelledStorage = captureStorageKeys(t);
    const cancelled = startUpload(metadata);
    cancelled.call.write(header);
    for (let i = 0; i < 6; i++) cancelled.call.write(chunk);
    // A 5 MiB part is in MinIO: the cancel has a multipart upload to abort.
    await untilStored(t, cancelledStorage.keys, 5 * 1024 * 1024);
    cancelled.call.cancel();
    expect(await statusOf(cancelled.response)).toBe("CANCELLED");
    await expectNothingStored(t, { keys: cancelledStorage.keys });

    // grpc-timeout: the server ends the call itself, with DEADLINE_EXCEEDED.
    using lateStorage = captureStorageKeys(t);
    const late = startUpload(metadata, { deadline: Date.now() + 2_000 });
    late.call.write(header);
    for (let i = 0; i < 4; i++) late.call.write(chunk);
    await untilBegun(lateStorage.keys, 1);
    expect(await statusOf(late.response)).toBe("DEADLINE_EXCEEDED");
    await expectNothingStored(t, { keys: lateStorage.keys });
    expect(await countOfKind("grpc-js-interrupted")).toBe("0");
  });

  it("answers health checks", async () => {
    const check = (service: string) =>
      new Promise<{ status: string }>((resolve, reject) =>
        (health.Check as (r: object, cb: Callback<{ status: string }>) => void).call(health, { service }, (e, v) => (e ? reject(e) : resolve(v))),
      );
    expect((await check("")).status).toBe("SERVING");
    expect((await check("artifacts.v1.ArtifactService")).status).toBe("SERVING");
    expect(await statusOf(check("no.such.Service"))).toBe("NOT_FOUND");
  });

  describe.each(["v1", "v1alpha"])("server reflection %s", (version) => {
    type ReflectionAnswer = {
      list_services_response?: { service: { name: string }[] };
      file_descriptor_response?: { file_descriptor_proto: Buffer[] };
      error_response?: { error_code: number };
    };
    const ask = (requests: object[]) =>
      new Promise<ReflectionAnswer[]>((resolve, reject) => {
        const reflection = connect(`grpc/reflection/${version}/reflection.proto`, `grpc.reflection.${version}.ServerReflection`, address);
        const call = (reflection.ServerReflectionInfo as () => grpc.ClientDuplexStream<object, ReflectionAnswer>).call(reflection);
        const answers: ReflectionAnswer[] = [];
        call.on("data", (answer: ReflectionAnswer) => answers.push(answer));
        call.on("end", () => {
          reflection.close();
          resolve(answers);
        });
        call.on("error", (error) => {
          reflection.close();
          reject(error);
        });
        for (const request of requests) call.write(request);
        call.end();
      });
    const decode = (answer: ReflectionAnswer | undefined): FileDescriptorProto[] =>
      answer!.file_descriptor_response!.file_descriptor_proto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    /** Every file a descriptor set imports is in the set: a client can build the types from it alone. */
    const expectSelfContained = (files: FileDescriptorProto[]) => {
      const names = files.map((f) => f.name);
      for (const file of files) expect(names, `imports of ${file.name}`).toEqual(expect.arrayContaining(file.dependency));
    };

    it("lists services and answers descriptors with their imports", async () => {
      const [list, bySymbol, byMethod, byFile, missing] = await ask([
        { list_services: "" },
        { file_containing_symbol: "artifacts.v1.ArtifactService" },
        { file_containing_symbol: "artifacts.v1.ArtifactService.Upload" },
        { file_by_filename: "artifacts/v1/artifact.proto" },
        { file_containing_symbol: "no.such.Thing" },
      ]);
      expect(list!.list_services_response!.service.map((s) => s.name)).toEqual(
        expect.arrayContaining(["artifacts.v1.ArtifactService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]),
      );

      const files = decode(bySymbol);
      expect(files.map((f) => f.name)).toEqual(
        expect.arrayContaining(["artifacts/v1/artifact_service.proto", "artifacts/v1/artifact.proto", "google/protobuf/timestamp.proto"]),
      );
      expectSelfContained(files);
      const serviceFile = files.find((f) => f.name === "artifacts/v1/artifact_service.proto")!;
      expect(serviceFile.package).toBe("artifacts.v1");
      expect(serviceFile.dependency).toEqual(expect.arrayContaining(["artifacts/v1/artifact.proto", "google/protobuf/timestamp.proto"]));
      const methods = serviceFile.service.find((s) => s.name === "ArtifactService")!.method;
      expect(methods.find((m) => m.name === "Upload")).toMatchObject({ clientStreaming: true, inputType: ".artifacts.v1.UploadRequest" });
      expect(methods.find((m) => m.name === "Download")).toMatchObject({ serverStreaming: true, outputType: ".artifacts.v1.DownloadResponse" });

      expect(decode(byMethod)[0]!.name).toBe("artifacts/v1/artifact_service.proto");
      const artifactFiles = decode(byFile);
      expect(artifactFiles[0]!.name).toBe("artifacts/v1/artifact.proto");
      expect(artifactFiles[0]!.messageType.map((m) => m.name)).toContain("Artifact");
      expectSelfContained(artifactFiles);
      expect(missing!.error_response!.error_code).toBe(grpc.status.NOT_FOUND);
    });
  });
});
