import type http2 from "node:http2";
import { Http2SessionManager } from "@connectrpc/connect-node";

const MiB = 1024 * 1024;

/**
 * HTTP/2 receive windows start at 64 KiB, which caps a download at one
 * window per round trip. Streams get 8 MiB through SETTINGS; the connection
 * window can only be raised once the session exists, so it is raised on the
 * first request of each session.
 */
export class WideWindowSessionManager extends Http2SessionManager {
  readonly #widened = new WeakSet<http2.Http2Session>();

  constructor(url: string) {
    // maxSessionMemory: parallel session parts (UploadPart) are tens of MiB in flight; Node refuses past 10 MiB by default.
    super(url, {}, { settings: { initialWindowSize: 8 * MiB, maxFrameSize: 1024 * 1024 }, maxSessionMemory: 256 });
  }

  override async request(...args: Parameters<Http2SessionManager["request"]>): Promise<http2.ClientHttp2Stream> {
    const stream = await super.request(...args);
    const session = stream.session;
    if (session && !this.#widened.has(session)) {
      this.#widened.add(session);
      session.setLocalWindowSize(32 * MiB);
    }
    return stream;
  }
}
