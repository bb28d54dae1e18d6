import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, createGrpcTransport, createNodeHttpClient } from "@connectrpc/connect-node";
import { ArtifactService } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { createGrpcDownloadReader, type DownloadReader } from "./grpc-download-reader.ts";
import type { WholeUpload } from "./artifact-writer.ts";
import { leanWholeUploads, withLeanUploads } from "./lean-upload-transport.ts";
import { createRetryPolicy, type RetryOptions, type RetryPolicy } from "./retry-policy.ts";
import { WideWindowSessionManager } from "./wide-window-session-manager.ts";

/** How the client connects: the service, the token, deadlines and retries. */
export interface ConnectionOptions {
  /** Where the service listens, e.g. http://127.0.0.1:8080. */
  readonly baseUrl: string;
  /** API token (`adt_…`), sent as `authorization: Bearer`. */
  readonly token: string;
  /**
   * Deadline of each unary call (get, list pages, saveJson, delete, …); unset:
   * none. Transfers (writers, uploads, downloads) do not get it, since their
   * length depends on the content: give each its own `timeoutMs` (or a
   * `signal`).
   */
  readonly timeoutMs?: number;
  /** A transport of your own (tests, proxies): baseUrl and token are then ignored, so it must send the authorization header itself. */
  readonly transport?: Transport;
  /**
   * Retries of transient failures (see retry-policy.ts): unary calls that are
   * safe to repeat, download streams (resumed from the last byte received)
   * and large file uploads (resumed from the last stored part). `false`: none.
   * Default: 5 attempts, waits from 100 ms up to 5 s. Not applied to a
   * `transport` of your own.
   */
  readonly retry?: RetryOptions | false;
}

/**
 * The one HTTP/2 connection a client talks over: the token on every call,
 * unary calls that are safe to repeat retried by the policy, and receive
 * windows wide enough for fast downloads. Streams are not retried here:
 * the transfers resume them, from where they broke off.
 */
export interface ArtifactConnection {
  /** The generated client over this connection. */
  readonly rpc: Client<typeof ArtifactService>;
  /** Download calls read with fewer copies than `rpc.download` (grpc-download-reader.ts); absent over a `transport` of your own. */
  readonly readDownload: DownloadReader | undefined;
  /** A whole small Upload as one lean call (lean-upload-transport.ts), for the writer; absent over a `transport` of your own. */
  readonly uploadWhole: WholeUpload | undefined;
  /** The retry policy, for the transfers that resume streams. */
  readonly retry: RetryPolicy;
  /** Options of every unary call: its deadline, when one is set. */
  readonly unary: { timeoutMs?: number };
  /** Closes the connection this opened (calls still running fail with CANCELED); a `transport` of your own is left alone. */
  close(): void;
}

/**
 * Unary calls that may be sent again after a transient failure: reads, and
 * writes that are idempotent on the server (setting a pin, soft delete,
 * session calls keyed by session and part). SaveInline, SetStatus and
 * CreateUploadSession without a key are not: a repeat could record twice or
 * be refused for the first attempt's effect.
 */
const RETRYABLE_METHODS = new Set([
  "GetArtifact",
  "ListArtifacts",
  "SearchArtifacts",
  "GetBestArtifact",
  "GetLineage",
  "BatchGetArtifacts",
  "ListVersions",
  "ListAliasHistory",
  "SetPinned",
  "DeleteArtifact",
  "ArchiveRun",
  "CreateDownloadUrl",
  "GetUploadSession",
  "UploadPart",
  "CompleteUploadSession",
  "AbortUploadSession",
]);

export function createArtifactConnection(options: ConnectionOptions): ArtifactConnection {
  const auth: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${options.token}`);
    return next(request);
  };
  const retry = createRetryPolicy(options.transport ? false : (options.retry ?? {}));
  const retryUnary: Interceptor = (next) => (request) => {
    if (request.stream) return next(request);
    const keyed = request.method.name === "CreateUploadSession" && (request.message as { idempotencyKey?: string }).idempotencyKey;
    if (!RETRYABLE_METHODS.has(request.method.name) && !keyed) return next(request);
    return retry.run(() => next(request), request.signal);
  };
  // The session manager is ours to close; a transport the caller brought is not.
  const { transport, sessionManager, uploadWhole } = options.transport
    ? { transport: options.transport, sessionManager: undefined, uploadWhole: undefined }
    : grpcConnection(options.baseUrl, auth, retryUnary);
  return {
    rpc: createClient(ArtifactService, transport),
    uploadWhole,
    readDownload: sessionManager ? createGrpcDownloadReader(options.baseUrl, sessionManager, () => ({ authorization: `Bearer ${options.token}` })) : undefined,
    retry,
    unary: options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs },
    close() {
      // Without this the idle connection would linger (unreferenced) until connect-node's 15-minute idle timeout.
      sessionManager?.abort(new ConnectError("the artifactd client was closed", Code.Canceled));
    },
  };
}

/**
 * gRPC over one HTTP/2 connection (the session manager's), uploads framed by
 * hand, unary calls and whole small uploads sent lean (./lean-upload-transport.ts).
 */
function grpcConnection(
  baseUrl: string,
  auth: Interceptor,
  retryUnary: Interceptor,
): { transport: Transport; sessionManager: WideWindowSessionManager; uploadWhole: WholeUpload } {
  const sessionManager = new WideWindowSessionManager(baseUrl);
  // Shared by both, so that a call framed by hand is sent and answered as the generic one would be.
  const common = { baseUrl, interceptors: [auth, retryUnary], acceptCompression: [compressionGzip, compressionBrotli] };
  const transport = withLeanUploads(createGrpcTransport({ ...common, sessionManager }), {
    ...common,
    sessionManager,
    httpClient: createNodeHttpClient({ httpVersion: "2", sessionProvider: () => sessionManager }),
  });
  return { transport, sessionManager, uploadWhole: leanWholeUploads({ baseUrl, interceptors: common.interceptors, sessionManager }) };
}
