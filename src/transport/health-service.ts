import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@artifactd/api/grpc/health/v1/health_pb.js";

/**
 * grpc.health.v1, so load balancers, Kubernetes probes and grpc_health_probe
 * can ask. "" is the whole server; each served service is known by its full
 * name. `setServing(false)` is called at shutdown so balancers stop sending
 * work before connections close.
 */
export interface HealthState {
  /** false from shutdown on. */
  setServing(serving: boolean): void;
  /** Whether the stores the service needs answer (checked periodically). */
  setStoresReachable(reachable: boolean): void;
  readonly handler: ServiceImpl<typeof Health>;
}

export function createHealthState(serviceNames: readonly string[]): HealthState {
  let serving = true;
  let storesReachable = true;
  const listeners = new Set<() => void>();
  const statusOf = (service: string): ServingStatus => {
    if (service !== "" && !serviceNames.includes(service)) return ServingStatus.SERVICE_UNKNOWN;
    return serving && storesReachable ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  };
  return {
    setServing(value) {
      serving = value;
      for (const notify of listeners) notify();
    },
    setStoresReachable(value) {
      if (value === storesReachable) return;
      storesReachable = value;
      for (const notify of listeners) notify();
    },
    handler: {
      async check(request) {
        const status = statusOf(request.service);
        if (status === ServingStatus.SERVICE_UNKNOWN) throw new ConnectError(`unknown service ${JSON.stringify(request.service)}`, Code.NotFound);
        return { status };
      },
      async list() {
        const statuses: Record<string, { status: ServingStatus }> = { "": { status: statusOf("") } };
        for (const name of serviceNames) statuses[name] = { status: statusOf(name) };
        return { statuses };
      },
      async *watch(request, ctx) {
        let last: ServingStatus | undefined;
        let wake: (() => void) | undefined;
        const notify = () => wake?.();
        listeners.add(notify);
        const onAbort = () => wake?.();
        ctx.signal.addEventListener("abort", onAbort);
        try {
          while (!ctx.signal.aborted) {
            const status = statusOf(request.service);
            if (status !== last) {
              last = status;
              yield { status };
            }
            await new Promise<void>((resolve) => (wake = resolve));
          }
        } finally {
          listeners.delete(notify);
          ctx.signal.removeEventListener("abort", onAbort);
        }
      },
    },
  };
}
