import { createRegistry, toBinary, type DescFile, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { ServerReflection, ServerReflectionRequest, ServerReflectionResponseSchema } from "@artifactd/api/grpc/reflection/v1/reflection_pb.js";

/**
 * gRPC server reflection (grpc.reflection.v1, and the same messages under
 * v1alpha for older tools), so grpcurl, `buf curl` and Postman can call the
 * server without the .proto files. Answers come from the descriptors
 * embedded in the generated code: the served files and every file they
 * import, found by file name or by any symbol they define.
 */
export function createReflectionHandler(files: readonly DescFile[], serviceNames: readonly string[]): ServiceImpl<typeof ServerReflection> {
  const allFiles = new Map<string, DescFile>();
  const collect = (file: DescFile) => {
    if (allFiles.has(`${file.name}.proto`)) return;
    allFiles.set(`${file.name}.proto`, file);
    file.dependencies.forEach(collect);
  };
  files.forEach(collect);
  // Every file the served ones import, not only those: a client describing a request's field type
  // (artifacts.v1.Artifact, google.protobuf.Timestamp) asks for its symbol by name.
  const registry = createRegistry(...allFiles.values());

  const fileWithDependencies = (file: DescFile): Uint8Array[] => {
    const seen = new Set<string>();
    const out: Uint8Array[] = [];
    const visit = (f: DescFile) => {
      if (seen.has(f.name)) return;
      seen.add(f.name);
      out.push(toBinary(FileDescriptorProtoSchema, f.proto));
      f.dependencies.forEach(visit);
    };
    visit(file);
    return out;
  };

  const fileOfSymbol = (symbol: string): DescFile | undefined => {
    const type = registry.get(symbol);
    if (type) return type.file;
    // A method: "package.Service.Method".
    const service = registry.getService(symbol.slice(0, symbol.lastIndexOf(".")));
    return service?.file;
  };

  const answer = (request: ServerReflectionRequest): NonNullable<MessageInitShape<typeof ServerReflectionResponseSchema>["messageResponse"]> => {
    const notFound = (what: string) => ({ case: "errorResponse" as const, value: { errorCode: 5, errorMessage: `${what} not found` } });
    switch (request.messageRequest.case) {
      case "listServices":
        return { case: "listServicesResponse", value: { service: serviceNames.map((name) => ({ name })) } };
      case "fileByFilename": {
        const file = allFiles.get(request.messageRequest.value);
        return file
          ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: fileWithDependencies(file) } }
          : notFound(`file ${request.messageRequest.value}`);
      }
      case "fileContainingSymbol": {
        const file = fileOfSymbol(request.messageRequest.value);
        return file
          ? { case: "fileDescriptorResponse", value: { fileDescriptorProto: fileWithDependencies(file) } }
          : notFound(`symbol ${request.messageRequest.value}`);
      }
      case "fileContainingExtension":
        return notFound(`extension ${request.messageRequest.value.containingType}(${request.messageRequest.value.extensionNumber})`);
      case "allExtensionNumbersOfType": {
        const message = registry.getMessage(request.messageRequest.value);
        return message
          ? { case: "allExtensionNumbersResponse", value: { baseTypeName: message.typeName, extensionNumber: [] } }
          : notFound(`type ${request.messageRequest.value}`);
      }
      default:
        return { case: "errorResponse", value: { errorCode: 3, errorMessage: "unsupported reflection request" } };
    }
  };

  return {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield { validHost: request.host, originalRequest: request, messageResponse: answer(request) };
      }
    },
  };
}
