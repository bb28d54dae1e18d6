/**
 * Buffers for large unary request bodies (UploadPart's parts, 5 MiB and up),
 * taken for one call and given back when its handler has settled.
 *
 * Why: a part arrives as hundreds of HTTP/2 pieces and has to become one
 * buffer to be decoded. A fresh 8 MiB buffer per part costs the kernel's
 * page faults and zeroing on first touch and, once dropped, external-memory
 * garbage collections: measured on the session upload path as about a fifth
 * of the server's CPU per GiB. Reused buffers cost only the copy.
 *
 * Capacities are rounded up to a whole MiB, so the parts of one session
 * (all part_size but the last) share buffers. At most `maxIdleBytes` are
 * kept while unused, and none longer than IDLE_MS: an idle server gives the
 * memory back.
 */
export interface RequestBodyPool {
  /** A buffer of exactly `size` bytes (a view of a pooled one), its contents undefined. */
  take(size: number): Buffer;
  /** Gives back a buffer from take(); nothing may read or write it afterwards. */
  give(buffer: Buffer): void;
  /** Bytes kept for reuse now (not counting buffers taken). */
  idleBytes(): number;
}

/** Bodies below this are joined as before: small calls are not worth a pool. */
export const POOLED_BODY_MIN_BYTES = 1024 * 1024;
const ROUND_TO = 1024 * 1024;
const IDLE_MS = 10_000;

export function createRequestBodyPool(maxIdleBytes: number): RequestBodyPool {
  const idle: { buffer: Buffer; since: number }[] = [];
  let idleBytes = 0;
  let trimTimer: NodeJS.Timeout | undefined;

  const trim = (now: number) => {
    for (let i = idle.length - 1; i >= 0; i--) {
      if (now - idle[i]!.since < IDLE_MS) continue;
      idleBytes -= idle[i]!.buffer.byteLength;
      idle.splice(i, 1);
    }
  };
  const scheduleTrim = () => {
    if (trimTimer !== undefined || idle.length === 0) return;
    trimTimer = setTimeout(() => {
      trimTimer = undefined;
      trim(Date.now());
      scheduleTrim();
    }, IDLE_MS);
    trimTimer.unref();
  };

  return {
    take(size) {
      const capacity = Math.ceil(size / ROUND_TO) * ROUND_TO;
      const at = idle.findIndex((entry) => entry.buffer.byteLength === capacity);
      if (at < 0) return Buffer.allocUnsafeSlow(capacity).subarray(0, size);
      const { buffer } = idle.splice(at, 1)[0]!;
      idleBytes -= buffer.byteLength;
      return buffer.subarray(0, size);
    },
    give(view) {
      // take() hands out views from the start of buffers of their own (allocUnsafeSlow: never the shared pool).
      const whole = Buffer.from(view.buffer, 0, view.buffer.byteLength);
      if (view.byteOffset !== 0 || whole.byteLength % ROUND_TO !== 0) return; // not one of ours
      const now = Date.now();
      trim(now);
      if (idleBytes + whole.byteLength > maxIdleBytes) return;
      idle.push({ buffer: whole, since: now });
      idleBytes += whole.byteLength;
      scheduleTrim();
    },
    idleBytes: () => idleBytes,
  };
}
