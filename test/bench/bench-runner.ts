/**
 * Runs benchmark cases in interleaved rounds (round 1: A B C …, round 2:
 * A B C …) so that drift on a shared machine (other load, page cache, CPU
 * frequency) spreads over every case instead of favouring whichever ran
 * first, and sums each case up as the median of its rounds with the spread.
 *
 * Transfer cases report MiB/s and the CPU-seconds per GiB of each process on
 * the path (throughput of a transfer on two cores tracks the total CPU spent
 * per byte); small-artifact cases report calls per second, CPU milliseconds
 * per call, and optionally the latency of single calls.
 */
import { spawnSync } from "node:child_process";
import { cpuSeconds, rssMiB } from "./bench-processes.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** The processes on a case's path besides the bench itself (the client): name → pid. */
export type PathProcesses = Record<string, number | undefined>;

export interface TransferCase {
  /** JSON key, e.g. "service_upload". */
  readonly key: string;
  readonly label: string;
  readonly processes: () => PathProcesses;
  /** A process whose resident memory is sampled every 50 ms during each run (growth over its RSS at the start). */
  readonly sampleRssOf?: () => number;
  /** Once before the first round (e.g. the object a download reads). */
  readonly prepare?: () => Promise<void>;
  /** One run; answers the bytes moved. `round` counts from 1 (uploads use it to send different content each time). */
  readonly run: (round: number) => Promise<number>;
  /** After each run, not measured (e.g. removing what it stored, so disk use stays bounded at 2 GiB × rounds). */
  readonly afterRun?: (round: number) => Promise<void>;
}

export interface SmallCase {
  readonly key: string;
  readonly label: string;
  readonly concurrency: number;
  readonly processes: () => PathProcesses;
  readonly prepare?: () => Promise<void>;
  /** One call; `n` is unique within the benchmark (for names and distinct content). */
  readonly call: (n: number) => Promise<void>;
  /** Also report the median latency of single calls. */
  readonly latency?: boolean;
}

interface TransferSample {
  readonly mibS: number;
  readonly cpuSPerGiB: Record<string, number>;
  readonly cpuPct: Record<string, number>;
  readonly rss?: { readonly baseline: number; readonly peak: number };
}

interface SmallSample {
  readonly perS: number;
  readonly calls: number;
  readonly cpuMsPerCall: Record<string, number>;
  readonly p50Ms?: number;
  /** The 99th percentile and the slowest call, for the latency case. */
  readonly p99Ms?: number;
  readonly maxMs?: number;
}

export interface TransferFigures {
  readonly label: string;
  readonly median_mib_s: number;
  readonly min_mib_s: number;
  readonly max_mib_s: number;
  readonly runs_mib_s: number[];
  /** Median over the rounds, per process (client = the bench process). */
  readonly cpu_s_per_gib: Record<string, number>;
  readonly cpu_pct: Record<string, number>;
  readonly rss_growth_mib?: number;
  /** Per round; the first is from a server that had done nothing else yet, the later ones start from memory earlier cases grew. */
  readonly rss_growth_runs_mib?: number[];
  readonly rss_baseline_mib?: number;
  readonly rss_peak_mib?: number;
}

export interface SmallFigures {
  readonly label: string;
  readonly concurrency: number;
  readonly median_per_s: number;
  readonly min_per_s: number;
  readonly max_per_s: number;
  readonly runs_per_s: number[];
  readonly cpu_ms_per_call: Record<string, number>;
  readonly p50_ms?: number;
}

export interface SmallRunLimits {
  /** Measured calls stop after this long… */
  readonly seconds: number;
  /** …or this many calls, whichever comes first. */
  readonly maxCalls: number;
  /** Unmeasured calls first, at the same concurrency (connections opened, statements prepared, code warm). */
  readonly warmupSeconds: number;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The value below which `share` of the values lie (nearest rank). */
function percentile(values: number[], share: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(share * sorted.length) - 1)]!;
}

export function round(value: number, digits = 1): number {
  return Number(value.toFixed(digits));
}

/** CPU seconds used so far by the bench process and each process on the path. */
function cpuNow(processes: PathProcesses): Record<string, number> {
  const usage = process.cpuUsage();
  const now: Record<string, number> = { client: (usage.user + usage.system) / 1e6 };
  for (const [name, pid] of Object.entries(processes)) if (pid !== undefined) now[name] = cpuSeconds(pid);
  return now;
}

function cpuSince(start: Record<string, number>, processes: PathProcesses): Record<string, number> {
  const end = cpuNow(processes);
  return Object.fromEntries(Object.keys(start).map((name) => [name, end[name]! - start[name]!]));
}

/** Between runs, so one run's garbage is not collected (and charged) during the next (`node --expose-gc`). */
const collectGarbage = () => (globalThis as { gc?: () => void }).gc?.();

async function runTransfer(benchCase: TransferCase, roundNumber: number): Promise<TransferSample> {
  collectGarbage();
  const processes = benchCase.processes();
  const rssPid = benchCase.sampleRssOf?.();
  const baseline = rssPid === undefined ? 0 : rssMiB(rssPid);
  let peak = baseline;
  const sampler = rssPid === undefined ? undefined : setInterval(() => (peak = Math.max(peak, rssMiB(rssPid))), 50);
  const cpuStart = cpuNow(processes);
  const started = performance.now();
  let bytes: number;
  try {
    bytes = await benchCase.run(roundNumber);
  } finally {
    clearInterval(sampler);
  }
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSince(cpuStart, processes);
  if (rssPid !== undefined) peak = Math.max(peak, rssMiB(rssPid));
  await benchCase.afterRun?.(roundNumber);
  return {
    mibS: bytes / MiB / seconds,
    cpuSPerGiB: Object.fromEntries(Object.entries(cpu).map(([name, s]) => [name, s / (bytes / GiB)])),
    cpuPct: Object.fromEntries(Object.entries(cpu).map(([name, s]) => [name, (100 * s) / seconds])),
    ...(rssPid === undefined ? {} : { rss: { baseline, peak } }),
  };
}

let callNumber = 0;

async function runSmall(benchCase: SmallCase, limits: SmallRunLimits): Promise<SmallSample> {
  const drive = async (seconds: number, maxCalls: number, latencies?: number[]) => {
    const stopAt = performance.now() + seconds * 1000;
    let issued = 0;
    await Promise.all(
      Array.from({ length: benchCase.concurrency }, async () => {
        while (issued < maxCalls && performance.now() < stopAt) {
          issued++;
          const started = performance.now();
          await benchCase.call(callNumber++);
          latencies?.push(performance.now() - started);
        }
      }),
    );
    return issued;
  };
  await drive(limits.warmupSeconds, Number.POSITIVE_INFINITY);
  collectGarbage();
  const processes = benchCase.processes();
  const latencies: number[] = [];
  const cpuStart = cpuNow(processes);
  const started = performance.now();
  const calls = await drive(limits.seconds, limits.maxCalls, benchCase.latency ? latencies : undefined);
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSince(cpuStart, processes);
  return {
    perS: calls / seconds,
    calls,
    cpuMsPerCall: Object.fromEntries(Object.entries(cpu).map(([name, s]) => [name, (1000 * s) / calls])),
    ...(benchCase.latency ? { p50Ms: median(latencies), p99Ms: percentile(latencies, 0.99), maxMs: Math.max(...latencies) } : {}),
  };
}

function medianPerKey(samples: Record<string, number>[], digits: number): Record<string, number> {
  const keys = [...new Set(samples.flatMap((s) => Object.keys(s)))];
  return Object.fromEntries(keys.map((key) => [key, round(median(samples.flatMap((s) => (key in s ? [s[key]!] : []))), digits)]));
}

function summarizeTransfer(benchCase: TransferCase, samples: TransferSample[]): TransferFigures {
  const rates = samples.map((s) => s.mibS);
  const withRss = samples.filter((s) => s.rss);
  // The RSS figures of the round whose growth is the median one.
  const rss = withRss.length
    ? [...withRss].sort((a, b) => a.rss!.peak - a.rss!.baseline - (b.rss!.peak - b.rss!.baseline))[Math.floor((withRss.length - 1) / 2)]!.rss!
    : undefined;
  return {
    label: benchCase.label,
    median_mib_s: round(median(rates)),
    min_mib_s: round(Math.min(...rates)),
    max_mib_s: round(Math.max(...rates)),
    runs_mib_s: rates.map((r) => round(r)),
    cpu_s_per_gib: medianPerKey(
      samples.map((s) => s.cpuSPerGiB),
      2,
    ),
    cpu_pct: medianPerKey(
      samples.map((s) => s.cpuPct),
      0,
    ),
    ...(rss
      ? {
          rss_growth_mib: round(median(withRss.map((s) => s.rss!.peak - s.rss!.baseline))),
          rss_growth_runs_mib: withRss.map((s) => round(s.rss!.peak - s.rss!.baseline)),
          rss_baseline_mib: round(rss.baseline),
          rss_peak_mib: round(rss.peak),
        }
      : {}),
  };
}

function summarizeSmall(benchCase: SmallCase, samples: SmallSample[]): SmallFigures {
  const rates = samples.map((s) => s.perS);
  return {
    label: benchCase.label,
    concurrency: benchCase.concurrency,
    median_per_s: round(median(rates), 0),
    min_per_s: round(Math.min(...rates), 0),
    max_per_s: round(Math.max(...rates), 0),
    runs_per_s: rates.map((r) => round(r, 0)),
    cpu_ms_per_call: medianPerKey(
      samples.map((s) => s.cpuMsPerCall),
      3,
    ),
    ...(benchCase.latency ? { p50_ms: round(median(samples.map((s) => s.p50Ms!)), 2) } : {}),
  };
}

/**
 * `rounds` rounds; each runs every transfer case, then every small case, in
 * the order given. Progress goes to `log` as runs finish.
 */
/**
 * Before each case, unmeasured: the dirty pages earlier cases left (an
 * upload writes 2 GiB to MinIO's disk) are written out, so their writeback
 * does not slow the next case's disk work (Postgres commits, MinIO writes).
 */
function flushWrites(): void {
  spawnSync("sync");
}

export async function runRounds(
  transfers: TransferCase[],
  small: SmallCase[],
  options: { rounds: number; limits: SmallRunLimits; log: (line: string) => void },
): Promise<{ transfers: Record<string, TransferFigures>; small: Record<string, SmallFigures> }> {
  for (const benchCase of [...transfers, ...small]) await benchCase.prepare?.();
  const transferSamples = new Map<TransferCase, TransferSample[]>(transfers.map((c) => [c, []]));
  const smallSamples = new Map<SmallCase, SmallSample[]>(small.map((c) => [c, []]));
  for (let roundNumber = 1; roundNumber <= options.rounds; roundNumber++) {
    options.log(`round ${roundNumber} of ${options.rounds}`);
    for (const benchCase of transfers) {
      flushWrites();
      const sample = await runTransfer(benchCase, roundNumber);
      transferSamples.get(benchCase)!.push(sample);
      const cpu = Object.entries(sample.cpuSPerGiB)
        .map(([name, s]) => `${name} ${s.toFixed(2)}`)
        .join(", ");
      const rss = sample.rss ? `, RSS +${(sample.rss.peak - sample.rss.baseline).toFixed(0)} MiB` : "";
      options.log(`  ${benchCase.label}: ${sample.mibS.toFixed(0)} MiB/s (CPU s/GiB: ${cpu}${rss})`);
    }
    for (const benchCase of small) {
      flushWrites();
      const sample = await runSmall(benchCase, options.limits);
      smallSamples.get(benchCase)!.push(sample);
      const latency =
        sample.p50Ms === undefined ? "" : `, p50 ${sample.p50Ms.toFixed(2)} ms, p99 ${sample.p99Ms!.toFixed(2)} ms, slowest ${sample.maxMs!.toFixed(1)} ms`;
      const cpu = Object.entries(sample.cpuMsPerCall)
        .map(([name, ms]) => `${name} ${ms.toFixed(2)}`)
        .join(", ");
      options.log(`  ${benchCase.label}: ${sample.perS.toFixed(0)}/s over ${sample.calls} calls${latency} (CPU ms/call: ${cpu})`);
    }
  }
  return {
    transfers: Object.fromEntries(transfers.map((c) => [c.key, summarizeTransfer(c, transferSamples.get(c)!)])),
    small: Object.fromEntries(small.map((c) => [c.key, summarizeSmall(c, smallSamples.get(c)!)])),
  };
}
