import type { CallObserver } from "./calls.ts";
import { grpcCodeName } from "./grpc-code-names.ts";
import type { Logger } from "./logger.ts";

/**
 * One access line per call or plain HTTP request, when it has finished:
 * what was called and how it ended, never what was sent. The request's
 * headers, its path (a signed link's query is its credential), the
 * caller's token and the content stay out; the tenant is named, the
 * peer's address given. A failure's cause is logged where it is decided
 * (an internal error with its stack), not repeated here.
 */
export function createAccessLogObserver(logger: Logger): CallObserver {
  return {
    finished(call) {
      if (!logger.isLevelEnabled("info")) return;
      const rpc = call.protocol !== "http";
      logger.info(
        {
          rpc: { service: call.service, method: call.method },
          protocol: call.protocol,
          tenant: call.tenantId,
          ...(rpc ? { code: grpcCodeName(call.code) } : { status: call.httpStatus }),
          bytesIn: call.bytesReceived,
          bytesOut: call.bytesSent,
          durationMs: Math.round(Number(process.hrtime.bigint() - call.startedAt) / 1e3) / 1e3,
          traceId: call.traceId,
          peer: call.peer,
        },
        "call",
      );
    },
  };
}
