import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";

/**
 * gRPC is what Node clients speak. A binary Download, over gRPC or Connect,
 * takes the server's fast route (src/transport/grpc-download-route.ts);
 * Connect with JSON goes through the generic connect-node handlers for
 * every method, Download included.
 */
export type WireProtocol = "grpc" | "connect" | "connect-json";

/**
 * An ArtifactService client that sends exactly this `authorization` header,
 * or none when it is undefined: for calls with missing, malformed or
 * refused credentials, which test-app's client (always `Bearer <token>`)
 * cannot make. Each client has its own connection, so refused calls count
 * toward no other client's connection.
 */
export function clientWithAuthorization(baseUrl: string, authorization: string | undefined, protocol: WireProtocol = "grpc"): Client<typeof ArtifactService> {
  const setAuthorization: Interceptor = (next) => (request) => {
    if (authorization === undefined) request.header.delete("authorization");
    else request.header.set("authorization", authorization);
    return next(request);
  };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl, interceptors: [setAuthorization] })
      : createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: protocol === "connect", interceptors: [setAuthorization] });
  return createClient(ArtifactService, transport);
}
