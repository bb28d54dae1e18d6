/**
 * Sizes and durations as people read them, for listings and progress bars.
 * Binary units (KiB = 1024 bytes), as `ls -h` and most transfer tools show.
 */
const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** `512 B`, `1.5 KiB`, `12.0 MiB`: whole bytes below 1 KiB, one decimal above. */
export function formatBytes(bytes: number): string {
  let value = Math.max(0, bytes);
  let unit = 0;
  // Compared as shown, so 1023.97 KiB reads 1.0 MiB rather than 1024.0 KiB.
  while (Number(value.toFixed(unit === 0 ? 0 : 1)) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** A clock reading for an ETA: `0:07`, `12:30`, `1:02:03`. */
export function formatClock(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** An elapsed time: `0.4 s`, `12.3 s`, then the clock form from a minute on. */
export function formatElapsed(seconds: number): string {
  return seconds < 60 ? `${seconds.toFixed(1)} s` : formatClock(seconds);
}
