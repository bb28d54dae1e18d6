import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type http from "node:http";
import { endStreamFlag, endStreamToJson } from "@connectrpc/connect/protocol-connect";
import type { Caller } from "../artifact.ts";
import { chunkFrameHead } from "@artifactd/api";
import { DownloadRequestSchema, DownloadResponseSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { ArtifactService } from "../service/artifact-service.ts";
import { parseGrpcTimeout } from "./admission.ts";
import { observedCall, reportCallCode } from "./call-observation.ts";
import { toConnectError } from "./connect-error-mapping.ts";
import {
  envelopeHead,
  grpcStatusHeaders,
  isPlainGrpc,
  type NodeRequest,
  type NodeResponse,
  openCallSignal,
  openGrpcResponse,
  type ResponseFraming,
  uncompressed,
  validGrpcTimeout,
  type Writable,
  writeCorked,
} from "./grpc-response-framing.ts";
import { artifactToProto, int64FromProto } from "./proto-conversion.ts";

/**
 * Download written without the generic RPC machinery, for the binary,
 * uncompressed protocols: plain gRPC over HTTP/2 (what Node and grpc-js
 * clients take), and Connect and gRPC-Web over HTTP/1.1 or HTTP/2 (what
 * browsers take). Each content message goes out as a 7–10 byte frame head
 * (the envelope + the protobuf tag and length of DownloadResponse.chunk)
 * followed by the pieces the blob store read it in
 * (service/download-artifact.ts, ContentMessage), all in one corked write,
 * so the bytes are never copied by the server. The benchmark showed the
 * server bound by CPU on downloads, a quarter of it spent encoding and
 * re-framing chunks and collecting the garbage that made. The protocols
 * differ only in how the call ends: gRPC's trailers (or trailers-only),
 * gRPC-Web's trailer frame (flag 0x80), Connect's end-of-stream JSON frame
 * (flag 0x02, written by connect's own endStreamToJson).
 *
 * Same use case, same validation, same errors as every other path
 * (service.download, toConnectError); the wire format is the one protoc-gen-es
 * would produce, which the interop and protocol tests read with independent
 * clients. Everything else — JSON, gRPC-Web text, compressed requests,
 * timeout headers that are not valid — falls through to connect-node
 * (`handle` answers false).
 */
export const DOWNLOAD_PATH = "/artifacts.v1.ArtifactService/Download";

/** The largest DownloadRequest accepted: an id, two integers and a flag. */
const MAX_REQUEST_BYTES = 64 * 1024;

export interface GrpcDownloadRouteOptions {
  readonly service: ArtifactService;
  /** Ends the download when the caller's token is revoked or expires (see ./admission.ts for how callers are admitted). */
  readonly watchCaller?: ((caller: Caller) => { readonly signal: AbortSignal; release(): void }) | undefined;
  /** Aborts every download in progress (server shutdown); the reason is the error they end with. */
  readonly shutdownSignal: AbortSignal;
  /** Called when a download starts; the function it returns when it ends (graceful shutdown waits for these). */
  readonly track: () => () => void;
  readonly log: (message: string, error?: unknown) => void;
}

export function createGrpcDownloadRoute(options: GrpcDownloadRouteOptions) {
  /**
   * Serves the request if it is a Download this route takes (answering true): plain gRPC over HTTP/2, or binary
   * Connect or gRPC-Web over either HTTP version, uncompressed both ways. `caller` was admitted from its headers.
   */
  return function handle(request: NodeRequest, response: NodeResponse, caller: Caller): boolean {
    if (request.method !== "POST" || request.url !== DOWNLOAD_PATH) return false;
    const protocol = protocolOf(request);
    if (!protocol) return false;
    const done = options.track();
    serve(options, request, protocol.open(response), protocol.timeoutMs(request), caller).then(done, (error: unknown) => {
      options.log("Download failed", error);
      done();
    });
    return true;
  };
}

/** How one protocol frames a Download response. */
interface DownloadProtocol {
  /** The call's deadline from its headers (the header itself was checked by protocolOf). */
  timeoutMs(request: NodeRequest): number | undefined;
  open(response: NodeResponse): ResponseFraming;
}

/**
 * The protocol of a request this route serves, or undefined for connect-node: JSON and gRPC-Web text, compressed
 * requests, and timeout headers that are not valid (connect-node answers them as the protocol says).
 */
function protocolOf(request: NodeRequest): DownloadProtocol | undefined {
  if (isPlainGrpc(request)) return GRPC;
  const contentType = (request.headers["content-type"] ?? "").toLowerCase();
  if (/^application\/grpc-web(\+proto)?(;|$)/.test(contentType)) {
    if (!uncompressed(request, "grpc-encoding") || !validGrpcTimeout(request)) return undefined;
    return GRPC_WEB;
  }
  if (/^application\/connect\+proto(;|$)/.test(contentType)) {
    if (!uncompressed(request, "connect-content-encoding")) return undefined;
    const timeout = request.headers["connect-timeout-ms"];
    if (timeout !== undefined && !/^\d{1,10}$/.test(String(timeout))) return undefined;
    return CONNECT;
  }
  return undefined;
}

/** Plain gRPC: HTTP/2 only, the status in trailers (./grpc-response-framing.ts). */
const GRPC: DownloadProtocol = {
  timeoutMs: (request) => parseGrpcTimeout(request.headers["grpc-timeout"]),
  open: openGrpcResponse,
};

/** gRPC-Web: the status in a last message flagged 0x80 that holds the trailers as HTTP/1 header lines. */
const GRPC_WEB: DownloadProtocol = {
  timeoutMs: GRPC.timeoutMs,
  open: (response) =>
    bodyFraming(response, "application/grpc-web+proto", (status) => {
      const lines = Object.entries(grpcStatusHeaders(status))
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("");
      return envelope(0x80, Buffer.from(lines, "utf8"));
    }),
};

/** Connect streaming: the status in a last message flagged 0x02 that holds JSON (the error, and metadata). */
const CONNECT: DownloadProtocol = {
  timeoutMs(request) {
    const value = request.headers["connect-timeout-ms"];
    return typeof value === "string" ? Number(value) : undefined;
  },
  open: (response) =>
    bodyFraming(response, "application/connect+proto", (status) => {
      const json = endStreamToJson(new Headers(), status, undefined);
      return envelope(endStreamFlag, Buffer.from(JSON.stringify(json), "utf8"));
    }),
};

/** The protocols that end the body with a status message, over HTTP/1.1 or HTTP/2: headers first, always 200. */
function bodyFraming(response: NodeResponse, contentType: string, endMessage: (status: ConnectError | undefined) => Uint8Array): ResponseFraming {
  // Writes go through the response (it frames HTTP/1.1 chunks); corking is on what it writes to.
  const corkable: { cork(): void; uncork(): void } = "stream" in response ? response.stream : response;
  const writable = response as unknown as Writable;
  let started = false;
  let closed = false;
  response.once("close", () => {
    closed = true;
  });
  return {
    start() {
      (response as http.ServerResponse).writeHead(200, { "content-type": contentType });
      started = true;
    },
    get started() {
      return started;
    },
    get closed() {
      return closed || response.destroyed;
    },
    onClose: (listener) => response.once("close", listener),
    write: (pieces, signal) => writeCorked(corkable, writable, pieces, signal),
    finish(status) {
      if (closed || response.destroyed) return Promise.resolve();
      if (!started) this.start();
      return new Promise<void>((resolve) => {
        response.once("close", () => resolve());
        response.end(endMessage(status), () => resolve());
      });
    },
  };
}

function envelope(flags: number, data: Uint8Array): Uint8Array {
  const bytes = Buffer.allocUnsafe(5 + data.byteLength);
  bytes[0] = flags;
  bytes.writeUInt32BE(data.byteLength, 1);
  bytes.set(data, 5);
  return bytes;
}

async function serve(
  options: GrpcDownloadRouteOptions,
  request: NodeRequest,
  framing: ResponseFraming,
  timeoutMs: number | undefined,
  caller: Caller,
): Promise<void> {
  const call = openCallSignal({
    shutdownSignal: options.shutdownSignal,
    revocation: options.watchCaller?.(caller),
    framing,
    timeoutMs,
    what: "download",
  });
  const { signal } = call;
  try {
    const message = fromBinary(DownloadRequestSchema, await readSingleMessage(request));
    const { artifact, content } = await options.service.download(
      caller,
      {
        id: message.id,
        offset: int64FromProto("offset", message.offset),
        length: message.length === undefined ? undefined : int64FromProto("length", message.length),
        clientVerifies: message.clientVerifies,
      },
      signal,
    );
    if (signal.aborted) throw signal.reason;
    framing.start();
    const first = toBinary(DownloadResponseSchema, create(DownloadResponseSchema, { message: { case: "artifact", value: artifactToProto(artifact) } }));
    await framing.write([envelopeHead(first.byteLength), first], signal);
    for await (const message of content) {
      if (signal.aborted) throw signal.reason;
      let bytes = 0;
      for (const piece of message) bytes += piece.byteLength;
      await framing.write([chunkFrameHead(bytes), ...message], signal);
    }
    if (signal.aborted) throw signal.reason;
    call.end();
    await framing.finish(undefined);
  } catch (error) {
    const status = toConnectError(signal.aborted ? signal.reason : error, (e) => options.log("Download failed", e));
    reportCallCode(observedCall(request), status.code, error);
    call.end();
    if (!framing.closed) await framing.finish(status);
  } finally {
    call.end();
  }
}

/** Reads the request body: exactly one uncompressed gRPC message. */
async function readSingleMessage(request: NodeRequest): Promise<Uint8Array> {
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of request as AsyncIterable<Buffer>) {
    size += piece.byteLength;
    if (size > MAX_REQUEST_BYTES + 5) throw new ConnectError(`a DownloadRequest must be under ${MAX_REQUEST_BYTES} bytes`, Code.ResourceExhausted);
    pieces.push(piece);
  }
  const body = Buffer.concat(pieces, size);
  if (body.byteLength < 5) throw new ConnectError("the request holds no DownloadRequest message", Code.InvalidArgument);
  if ((body[0]! & 1) === 1) throw new ConnectError("a compressed request needs grpc-encoding; send it uncompressed", Code.Internal);
  const length = body.readUInt32BE(1);
  if (body.byteLength !== 5 + length) throw new ConnectError("a Download call takes exactly one DownloadRequest message", Code.InvalidArgument);
  return body.subarray(5);
}
