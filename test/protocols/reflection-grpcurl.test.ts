import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ServerReflection, type ServerReflectionRequest } from "@artifactd/api/grpc/reflection/v1/reflection_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServerReflectionRequestSchema } from "@artifactd/api/grpc/reflection/v1/reflection_pb.js";
import { ensureGrpcurlBinary, grpcurl } from "../support/grpcurl.ts";
import { startTestApp, type TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";

/**
 * Server reflection as grpcurl uses it, with nothing but the server to go
 * on: every type a request or answer holds can be described, those of the
 * files the contract imports (artifacts/v1/artifact.proto,
 * google/protobuf/timestamp.proto) included, by symbol and by file name.
 */
describeOn("pglite+fs")("server reflection, asked by grpcurl", () => {
  let t: TestApp;
  let address: string;
  let bin: string;
  beforeAll(async () => {
    bin = ensureGrpcurlBinary();
    t = await startTestApp("pglite+fs");
    address = t.url.replace("http://", "");
  }, 20 * 60_000);
  afterAll(async () => {
    await t?.close();
  });

  it("describes a message of artifacts.v1 from an imported file, and google.protobuf.Timestamp", async () => {
    const artifact = await grpcurl(bin, address, ["describe", "artifacts.v1.Artifact"]);
    expect(artifact).toContain("artifacts.v1.Artifact is a message:");
    expect(artifact).toContain(".google.protobuf.Timestamp created_at");
    const timestamp = await grpcurl(bin, address, ["describe", "google.protobuf.Timestamp"]);
    expect(timestamp).toContain("google.protobuf.Timestamp is a message:");
    expect(timestamp).toContain("int64 seconds = 1;");
    // A method, by its full name.
    expect(await grpcurl(bin, address, ["describe", "artifacts.v1.ArtifactService.GetArtifact"])).toContain(
      "rpc GetArtifact ( .artifacts.v1.GetArtifactRequest ) returns ( .artifacts.v1.GetArtifactResponse );",
    );
  });

  it("calls a method whose answer holds imported types (Artifact, Timestamp) from reflection alone", async () => {
    const answer = await grpcurl(
      bin,
      address,
      ["artifacts.v1.ArtifactService/SaveInline"],
      ["-H", `authorization: Bearer ${t.tokens.alpha}`, "-d", JSON.stringify({ spec: { kind: "note", name: "from grpcurl" }, text: "hello" })],
    );
    const saved = JSON.parse(answer) as { artifact: { name: string; createdAt: string } };
    expect(saved.artifact.name).toBe("from grpcurl");
    expect(new Date(saved.artifact.createdAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
  });

  it("answers file_containing_symbol and file_by_filename for the imported files", async () => {
    const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl: t.url }));
    const ask = async (request: MessageInitShape<typeof ServerReflectionRequestSchema>["messageRequest"]) => {
      async function* one() {
        yield { messageRequest: request } as MessageInitShape<typeof ServerReflectionRequestSchema> & Partial<ServerReflectionRequest>;
      }
      for await (const answer of reflection.serverReflectionInfo(one())) {
        if (answer.messageResponse.case !== "fileDescriptorResponse")
          throw new Error(`no descriptor for ${JSON.stringify(request)}: ${answer.messageResponse.case}`);
        return answer.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
      }
      throw new Error("no answer");
    };
    expect((await ask({ case: "fileContainingSymbol", value: "artifacts.v1.Artifact" }))[0]).toBe("artifacts/v1/artifact.proto");
    expect(await ask({ case: "fileContainingSymbol", value: "google.protobuf.Timestamp" })).toEqual(["google/protobuf/timestamp.proto"]);
    expect(await ask({ case: "fileByFilename", value: "google/protobuf/timestamp.proto" })).toEqual(["google/protobuf/timestamp.proto"]);
    expect(await ask({ case: "fileByFilename", value: "artifacts/v1/artifact.proto" })).toEqual(
      expect.arrayContaining(["artifacts/v1/artifact.proto", "google/protobuf/timestamp.proto"]),
    );
  });
});
