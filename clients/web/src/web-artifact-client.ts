import type { ArtifactFilterInit } from "@artifactd/api";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { ArtifactService, type GetLineageResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { uploadFile, type ArtifactSpecInit, type UploadFileOptions, type UploadFileResult } from "./upload-file.ts";

export type { ArtifactFilterInit };

export interface WebArtifactClientOptions {
  /** Where the service listens; `location.origin` for the page the service serves. */
  readonly baseUrl: string;
  /** API token (`adt_…`), sent as `authorization: Bearer`; a function is asked before every call. */
  readonly token: string | (() => string);
  /** The fetch to use (tests, proxies); the global one by default. */
  readonly fetch?: typeof globalThis.fetch;
}

export interface ListPage {
  readonly artifacts: Artifact[];
  /** Empty on the last page. */
  readonly nextPageToken: string;
}

export interface ContentOptions {
  /** First byte; 0 by default. */
  readonly offset?: number;
  /** Bytes from offset; unset: to the end. */
  readonly length?: number;
  readonly signal?: AbortSignal;
}

/**
 * The browser client: Connect (binary protobuf over fetch, HTTP/1.1 or
 * HTTP/2), so no proxy is needed in front of the service. Errors from the
 * service are ConnectErrors with the gRPC code and the server's message.
 */
export interface WebArtifactClient {
  /** The generated client, for calls this wrapper does not cover. */
  readonly rpc: Client<typeof ArtifactService>;
  /** One page of artifacts matching a filter, newest first. */
  list(filter?: ArtifactFilterInit, page?: { readonly pageSize?: number; readonly pageToken?: string }): Promise<ListPage>;
  get(id: string): Promise<Artifact>;
  /** Ancestors, descendants and the edges between them, `depth` levels each way (1 by default). */
  lineage(id: string, depth?: number): Promise<GetLineageResponse>;
  /** A signed plain-HTTP URL for the content (CreateDownloadUrl): for links, <img>, fetch. 15 minutes by default. */
  downloadUrl(id: string, ttlSeconds?: number): Promise<{ url: string; expiresAt: Date }>;
  /** Fetches the content (or a byte range of it) through a signed URL; the Response streams. */
  download(id: string, options?: ContentOptions): Promise<Response>;
  /** A resumable upload; see uploadFile in upload-file.ts. */
  uploadFile(file: Blob, spec: ArtifactSpecInit, options?: UploadFileOptions): Promise<UploadFileResult>;
}

export function createWebArtifactClient(options: WebArtifactClientOptions): WebArtifactClient {
  const token = typeof options.token === "function" ? options.token : () => options.token as string;
  const auth: Interceptor = (next) => (request) => {
    const value = token();
    if (value) request.header.set("authorization", `Bearer ${value}`);
    return next(request);
  };
  const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
  const transport = createConnectTransport({
    baseUrl: options.baseUrl,
    // Parts are bytes: binary avoids base64's third more on the wire.
    useBinaryFormat: true,
    interceptors: [auth],
    fetch: fetchImpl,
  });
  const rpc = createClient(ArtifactService, transport);

  const downloadUrl = async (id: string, ttlSeconds = 0) => {
    const response = await rpc.createDownloadUrl({ id, ttlSeconds });
    const url = new URL(response.url, options.baseUrl);
    // Only ever hand web URLs to links and fetch.
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error(`the server returned a download URL that is not http(s): ${url.protocol}`);
    return { url: url.href, expiresAt: new Date(Number(response.expiresAt?.seconds ?? 0n) * 1000) };
  };

  return {
    rpc,
    async list(filter = {}, page = {}) {
      const response = await rpc.listArtifacts({ filter, pageSize: page.pageSize ?? 0, pageToken: page.pageToken ?? "" });
      return { artifacts: response.artifacts, nextPageToken: response.nextPageToken };
    },
    async get(id) {
      const { artifact } = await rpc.getArtifact({ id });
      if (!artifact) throw new Error(`the server returned no artifact for ${id}`);
      return artifact;
    },
    lineage(id, depth = 1) {
      return rpc.getLineage({ id, depth });
    },
    downloadUrl,
    async download(id, content = {}) {
      const { url } = await downloadUrl(id);
      const headers = new Headers();
      const offset = content.offset ?? 0;
      if (offset > 0 || content.length !== undefined) {
        headers.set("Range", `bytes=${offset}-${content.length === undefined ? "" : offset + content.length - 1}`);
      }
      const init: RequestInit = { headers, credentials: "omit" };
      if (content.signal) init.signal = content.signal;
      const response = await fetchImpl(url, init);
      if (!response.ok) {
        await response.body?.cancel();
        throw new Error(`downloading ${id} failed: HTTP ${response.status} ${response.statusText}`.trim());
      }
      return response;
    },
    uploadFile(file, spec, uploadOptions) {
      return uploadFile(rpc, file, spec, uploadOptions);
    },
  };
}
