import { Code, ConnectError, createContextKey, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import type http from "node:http";
import type http2 from "node:http2";
import { setImmediate as nextTurn } from "node:timers/promises";

/**
 * Tells a client that finished its request stream from one that went away.
 *
 * Node's HTTP/2 compatibility layer ends the request body normally when the
 * client resets the stream (RST_STREAM: a cancelled call), and connect then
 * sees a clean end at a message boundary. Node's own HTTP/2 client even
 * sends END_STREAM right before RST_STREAM when a call is cancelled. So
 * without these checks a cancelled upload could look complete and be
 * recorded. After the body ends we let the connection read once more, to
 * deliver a reset sent right behind END_STREAM, then require the stream to
 * be half-closed by the client (END_STREAM seen) and neither reset nor
 * aborted. Reading once more takes two immediates: the body's end is read in
 * a poll phase, and an immediate queued then runs before the next poll, so
 * with one the reset (read one poll later: measured with both Node's and
 * grpc-js's cancel) was never seen here and the upload went on to store its
 * truncated blob. The use case checks the call's signal once more right
 * before it records anything.
 * (HTTP/1.1 request bodies that break off already fail while being read.)
 */
type NodeServerRequest = http.IncomingMessage | http2.Http2ServerRequest;

const nodeRequestKey = createContextKey<NodeServerRequest | undefined>(undefined, { description: "node request" });

/** For connectNodeAdapter's `contextValues` option. */
export function requestContextValues(request: NodeServerRequest): ContextValues {
  return createContextValues().set(nodeRequestKey, request);
}

/** The node request of a call, from its context values (requestContextValues). */
export function nodeRequestOf(values: ContextValues): NodeServerRequest | undefined {
  return values.get(nodeRequestKey);
}

/** Throws CANCELLED unless the client finished the request stream itself. */
export async function assertRequestCompleted(ctx: HandlerContext): Promise<void> {
  await assertNodeRequestCompleted(ctx.values.get(nodeRequestKey), ctx.signal);
}

/** The same, for a route that reads the request itself (./grpc-upload-route.ts). */
export async function assertNodeRequestCompleted(request: NodeServerRequest | undefined, signal: AbortSignal): Promise<void> {
  await nextTurn();
  await nextTurn();
  let cancelled = signal.aborted || (request as { aborted?: boolean } | undefined)?.aborted === true;
  if (request && "stream" in request) {
    const stream = request.stream;
    cancelled ||= stream.destroyed ? stream.rstCode !== 0 : stream.state.remoteClose !== 1;
  }
  if (cancelled) throw new ConnectError("the client cancelled the request before finishing it; nothing was recorded", Code.Canceled);
}

/**
 * Whether the call's request broke off: the HTTP/2 stream was reset or
 * closed with an error code (by the client, or by this server's own idle and
 * body timeouts), or the HTTP/1.1 request was aborted before it was complete.
 * A handler then fails wherever it was reading, often as "Premature close".
 */
export function requestBrokeOff(values: ContextValues): boolean {
  const request = values.get(nodeRequestKey);
  if (!request) return false;
  if ((request as { aborted?: boolean }).aborted === true) return true;
  if ("stream" in request) return request.stream.destroyed && request.stream.rstCode !== undefined && request.stream.rstCode !== 0;
  return request.destroyed && !request.complete;
}
