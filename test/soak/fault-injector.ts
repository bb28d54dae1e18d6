import { randomInt } from "node:crypto";

/**
 * Kills the soak's processes at random moments, one at a time: at most one
 * fault in flight, a quiet gap of `gapMs` between faults, each process down
 * for `downMs` before it is started again. Targets come round in a shuffled
 * cycle, so a run of a few cycles hits each of them.
 */
export interface FaultTarget {
  readonly name: "service" | "minio" | "postgres";
  /** Takes the process down; returns how (for the log). */
  down(): Promise<string>;
  /** Brings it back; may throw (the injector retries until `signal` aborts). */
  up(): Promise<void>;
}

export interface FaultInjectorOptions {
  /** No fault starts after this moment (ms since epoch). */
  readonly until: number;
  /** Gap between the end of one fault and the start of the next. Default 2–5 s. */
  readonly gapMs?: readonly [number, number];
  /** How long a process stays down. Default 0.5–3 s. */
  readonly downMs?: readonly [number, number];
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
}

export async function injectFaults(targets: readonly FaultTarget[], options: FaultInjectorOptions, kills: Record<string, number>): Promise<void> {
  const [gapMin, gapMax] = options.gapMs ?? [2_000, 5_000];
  const [downMin, downMax] = options.downMs ?? [500, 3_000];
  let cycle: FaultTarget[] = [];
  for (;;) {
    await sleep(randomInt(gapMin, gapMax + 1), options.signal);
    if (options.signal.aborted || Date.now() + downMax > options.until) return;
    if (cycle.length === 0) cycle = [...targets].sort(() => Math.random() - 0.5);
    const target = cycle.pop()!;
    const how = await target.down();
    kills[target.name] = (kills[target.name] ?? 0) + 1;
    const downFor = randomInt(downMin, downMax + 1);
    options.log(`fault: ${target.name} ${how}, down for ${downFor} ms`);
    await sleep(downFor, options.signal);
    await bringUp(target, options.log);
  }
}

/** Starts a target again, retrying every half second: it must come back even while another process is still recovering. */
export async function bringUp(target: FaultTarget, log: (line: string) => void, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await target.up();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      log(`${target.name} did not come back yet: ${(error as Error).message.split("\n")[0]}`);
      await sleep(500);
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
