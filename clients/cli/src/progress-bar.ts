import type { TransferProgress } from "@artifactd/client";
import { formatBytes, formatClock, formatElapsed } from "./human-units.ts";

/**
 * A one-line transfer progress bar for a terminal:
 *
 *   put weights.bin [========>           ]  41%  5.0 MiB / 12.0 MiB  8.1 MiB/s  ETA 0:01
 *   put weights.bin  12.0 MiB in 1.5 s (8.0 MiB/s)
 *
 * or, when the total is unknown (standard input), bytes and rate only.
 *
 * The line is redrawn in place (carriage return, erase to end of line) by a
 * timer, at most once per `intervalMs`, never by the transfer itself: a fast
 * transfer calls `update` thousands of times a second and must not pay for
 * terminal writes. The timer also keeps drawing while no bytes move, so a
 * stall shows as a falling rate and a growing ETA instead of a frozen line.
 *
 * The rate is an exponential moving average with a time constant of
 * `smoothingMs`: steady enough to read, quick to follow a real change. The
 * clock for it starts with the first byte, so connecting and opening the
 * call do not drag the first seconds down. The last line gives the whole
 * time and the mean rate.
 *
 * Whether to show a bar at all (a terminal, no --json, no --quiet) is the
 * caller's decision; SILENT_PROGRESS is the bar that draws nothing.
 */
export interface ProgressBar {
  /** Records how far the transfer is; `totalBytes` (when given) replaces the one the bar was made with. Bytes may go down (a resumed transfer). */
  update(progress: TransferProgress): void;
  /** Draws the last line (total, time, mean rate) and stops. Safe to call more than once. */
  finish(): void;
  /** Erases the line and stops, for a failed transfer: the error message then starts on a clean line. */
  stop(): void;
}

/** The part of a terminal stream the bar uses; process.stderr fits. */
export interface ProgressStream {
  write(text: string): unknown;
  /** Width of the terminal; 80 when unknown. The line is kept shorter so it never wraps. */
  readonly columns?: number | undefined;
}

export interface ProgressBarOptions {
  /** What is moving, shown first: "put weights.bin", "get art_01…". */
  readonly label: string;
  /** Bytes the transfer will move; unset: unknown (standard input), shown as bytes and rate only. */
  readonly totalBytes?: number | undefined;
  readonly stream: ProgressStream;
  /** Time between redraws; default 100 ms (10 a second). */
  readonly intervalMs?: number;
  /** Time constant of the rate's moving average; default 1500 ms. */
  readonly smoothingMs?: number;
  /** Clock in milliseconds; default performance.now. Tests give a fake one. */
  readonly now?: () => number;
}

export const SILENT_PROGRESS: ProgressBar = { update() {}, finish() {}, stop() {} };

const MAX_BAR_WIDTH = 30;
const MIN_BAR_WIDTH = 8;
const MIN_LABEL = 24;
/** "999.9 MiB/s"; a rate is padded to this width. */
const RATE_WIDTH = 11;
const ERASE_TO_END = "\x1b[K";

export function createProgressBar(options: ProgressBarOptions): ProgressBar {
  const intervalMs = options.intervalMs ?? 100;
  const smoothingMs = options.smoothingMs ?? 1500;
  const now = options.now ?? (() => performance.now());
  const started = now();
  let total = options.totalBytes;
  let bytes = 0;
  /** Bytes per second, smoothed; undefined until two samples with bytes moving exist. */
  let rate: number | undefined;
  /** The last rate sample; undefined until the first byte has arrived. */
  let sample: { at: number; bytes: number } | undefined;
  let drawn = false;
  let closed = false;

  const takeSample = () => {
    const at = now();
    if (!sample || bytes < sample.bytes) {
      // The first bytes (or a transfer that restarted lower): the rate clock starts here.
      if (bytes > 0) sample = { at, bytes };
      return;
    }
    const elapsed = at - sample.at;
    if (elapsed <= 0) return;
    const instant = ((bytes - sample.bytes) * 1000) / elapsed;
    rate = rate === undefined ? instant : rate + (1 - Math.exp(-elapsed / smoothingMs)) * (instant - rate);
    sample = { at, bytes };
  };

  const render = (): string => {
    const columns = Math.max(20, (options.stream.columns || 80) - 1);
    // Fields keep their width from frame to frame, so the line does not jitter and the layout below stays put.
    const rateText = `${rate === undefined ? "--" : formatBytes(rate)}/s`.padStart(RATE_WIDTH);
    if (total === undefined) {
      const tail = `${formatBytes(bytes)}  ${rateText}`;
      return fit(`${shorten(options.label, columns - tail.length - 2)}  ${tail}`, columns);
    }
    const fraction = total > 0 ? Math.min(1, bytes / total) : 1;
    const eta = rate === undefined || rate <= 0 ? "--:--" : formatClock(Math.max(0, total - bytes) / rate);
    const percent = `${String(Math.floor(fraction * 100)).padStart(3)}%`;
    const totalText = formatBytes(total);
    const tail = `${percent}  ${formatBytes(bytes).padStart(totalText.length)} / ${totalText}  ${rateText}  ETA ${eta.padEnd(5)}`;
    // Room for the label and the bar: a long label (a deep path) is shortened, keeping its end, down to
    // MIN_LABEL characters; past that the bar goes, since the name says more than the bar.
    const room = columns - tail.length - 1;
    const labelRoom = room - MIN_BAR_WIDTH - 3;
    if (labelRoom < Math.min(options.label.length, MIN_LABEL)) return fit(`${shorten(options.label, room)} ${tail}`, columns);
    const label = shorten(options.label, labelRoom);
    const barWidth = Math.min(MAX_BAR_WIDTH, room - label.length - 3);
    const filled = Math.floor(fraction * barWidth);
    const bar = filled >= barWidth ? "=".repeat(barWidth) : `${"=".repeat(filled)}>${" ".repeat(barWidth - filled - 1)}`;
    return `${label} [${bar}] ${tail}`;
  };

  const draw = () => {
    takeSample();
    options.stream.write(`\r${render()}${ERASE_TO_END}`);
    drawn = true;
  };

  const timer = setInterval(draw, intervalMs);
  // The bar never keeps the process alive: a finished command exits even if finish() was missed.
  timer.unref();

  const close = () => {
    if (closed) return false;
    closed = true;
    clearInterval(timer);
    return true;
  };

  return {
    update(progress) {
      if (closed) return;
      bytes = progress.bytes;
      if (progress.totalBytes !== undefined) total = progress.totalBytes;
    },
    finish() {
      if (!close()) return;
      const seconds = (now() - started) / 1000;
      const done = total === undefined ? bytes : Math.max(bytes, total);
      const mean = done / Math.max(seconds, 0.001);
      const columns = Math.max(20, (options.stream.columns || 80) - 1);
      const tail = `${formatBytes(done)} in ${formatElapsed(seconds)} (${formatBytes(mean)}/s)`;
      options.stream.write(`\r${fit(`${shorten(options.label, columns - tail.length - 2)}  ${tail}`, columns)}${ERASE_TO_END}\n`);
    },
    stop() {
      if (close() && drawn) options.stream.write(`\r${ERASE_TO_END}`);
    },
  };
}

/** Keeps the end of a label (a file name is at the end of its path), with at least 12 characters. */
function shorten(label: string, room: number): string {
  const max = Math.max(12, room);
  return label.length <= max ? label : `…${label.slice(label.length - max + 1)}`;
}

/** Cuts a line to `columns`, marking the cut, so it never wraps (a wrapped line cannot be redrawn in place). */
function fit(text: string, columns: number): string {
  return text.length <= columns ? text : `${text.slice(0, columns - 1)}…`;
}
