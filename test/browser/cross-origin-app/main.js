// A web app of someone else's, on an origin of its own, bundled by Vite with the browser client as any app would
// be. JavaScript rather than TypeScript: the root's tsconfig checks test/ with Node's types, not the DOM's.
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createWebArtifactClient } from "@artifactd/web-client";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

/** What the test drives through page.evaluate. */
window.crossOrigin = {
  createWebArtifactClient,
  /** The generated client over gRPC-Web (the web client itself speaks Connect). */
  grpcWebClient(baseUrl, token) {
    const transport = createGrpcWebTransport({
      baseUrl,
      interceptors: [
        (next) => (request) => {
          request.header.set("authorization", `Bearer ${token}`);
          return next(request);
        },
      ],
    });
    return createClient(ArtifactService, transport);
  },
};
document.body.dataset.ready = "true";
