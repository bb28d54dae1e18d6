import { Code } from "@connectrpc/connect";

/** gRPC's own names for its codes, as grpc-go and the gRPC docs spell them (connect's enum has no OK, and says Canceled). */
const NAMES: Readonly<Record<number, string>> = {
  0: "OK",
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

/** "OK", "NOT_FOUND", …; a number outside gRPC's codes is UNKNOWN, so labels stay bounded. */
export function grpcCodeName(code: number | undefined): string {
  return (code !== undefined && NAMES[code]) || "UNKNOWN";
}
