import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@artifactd/api/grpc/health/v1/health_pb.js";

/**
 * grpc.health.v1, so load balancers, Kubernetes probes and grpc_health_probe
 * can ask, and the state the HTTP probes read (./health-probe-route.ts). ""
 * is the whole server; each served service is known by its full name.
 * `setServing(false)` is called at shutdown so balancers stop sending work
 * before connections close.
 */
export interface HealthState {
  /** false from shutdown on. */
  setServing(serving: boolean): void;
  /** What the server needs and lacks now (./readiness-checks.ts), by name with a short reason; {} when nothing. */
  setUnready(unready: Readonly<Record<string, string>>): void;
  /** Why the server should get no work now, by what is missing ("shutting down" among them); {} when it is ready. */
  readonly unready: Readonly<Record<string, string>>;
  readonly handler: ServiceImpl<typeof Health>;
}

export function createHealthState(serviceNames: readonly string[]): HealthState {
  let serving = true;
  let unready: Readonly<Record<string, string>> = {};
  const listeners = new Set<() => void>();
  const statusOf = (service: string): ServingStatus => {
    if (service !== "" && !serviceNames.includes(service)) return ServingStatus.SERVICE_UNKNOWN;
    return serving && Object.keys(unready).length === 0 ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  };
  return {
    setServing(value) {
      serving = value;
      for (const notify of listeners) notify();
    },
    setUnready(value) {
      unready = Object.freeze({ ...value });
      for (const notify of listeners) notify();
    },
    get unready() {
      return serving ? unready : Object.freeze({ ...unready, server: "shutting down" });
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
