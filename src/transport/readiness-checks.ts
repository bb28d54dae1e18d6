import { storeUnavailable } from "../artifact-error.ts";

/**
 * One thing the server needs to do its work (the database, the blob store,
 * the schema): resolves undefined when it has it, or a short reason a
 * client may read (shown by /readyz); a rejection counts as unreachable, and
 * its error, which may hold a driver's words, is only logged.
 */
export type ReadinessCheck = () => Promise<string | undefined>;

export interface ReadinessCheckOptions {
  readonly checks: Readonly<Record<string, ReadinessCheck>>;
  /** How often the checks run, and how long each may take before it counts as unreachable. */
  readonly intervalMs: number;
  /** Called after every round with what is lacking ({} when nothing). */
  readonly onResult: (unready: Readonly<Record<string, string>>) => void;
  readonly log: (message: string, error?: unknown) => void;
}

/** What /readyz says of a check that failed or did not answer in time (its error is logged, never sent). */
export const UNREACHABLE = "unreachable or not answering";

/**
 * Runs the checks together every intervalMs, one round at a time, each
 * bounded by the same time: probes read the last round's result, so a
 * probe costs no round trip and a flood of them none either. A store too
 * busy to answer in time is unready, as one that refuses is. Changes are
 * logged once, not every round.
 */
export function startReadinessChecks(options: ReadinessCheckOptions): { stop(): void } {
  const { checks, intervalMs, log } = options;
  let running = false;
  let last: Readonly<Record<string, string>> = {};
  const round = async () => {
    const entries = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(storeUnavailable(new Error(`no answer within ${intervalMs} ms`))), intervalMs);
        });
        try {
          return [name, await Promise.race([check(), timeout])] as const;
        } catch (error) {
          if (last[name] === undefined) log(`readiness: the ${name} is ${UNREACHABLE}: health is NOT_SERVING and /readyz 503 until it answers`, error);
          return [name, UNREACHABLE] as const;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    const unready: Record<string, string> = {};
    for (const [name, reason] of entries) if (reason !== undefined) unready[name] = reason;
    for (const [name, reason] of Object.entries(unready)) if (last[name] === undefined && reason !== UNREACHABLE) log(`readiness: ${name}: ${reason}`);
    for (const name of Object.keys(last)) if (unready[name] === undefined) log(`readiness: the ${name} is back`);
    last = unready;
    options.onResult(unready);
  };
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    round().finally(() => {
      running = false;
    });
  }, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
