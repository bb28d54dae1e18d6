import { createBlake3, type Blake3 } from "../blake3.ts";
import type { ByteRange } from "../ports/blob-store.ts";
import type { SessionPart } from "../ports/upload-session-store.ts";

/**
 * The whole-content BLAKE3 of upload sessions, computed while their parts
 * arrive at this server, so a complete need not read the assembled object
 * back from the store.
 *
 * BLAKE3 cannot be combined from per-part digests, so each session keeps one
 * hasher over its contiguous prefix: parts 1..k, fed while their bytes are in
 * memory. A part that arrives ahead of the prefix is held (up to a budget per
 * session and one per server) until the parts before it arrive; beyond the
 * budget the farthest parts, or those of the session least recently active,
 * are let go, and only they are read back when the session completes.
 *
 * This is an optimization of one process, never the truth: parts may arrive
 * at other replicas, this one may have restarted, a part may be sent again
 * with other bytes. Each part hashed or held is remembered with the identity
 * the session record gives it (number, size and the store's etag, which the
 * store checks against the stored part when it assembles); the complete uses
 * only what matches the record and reads everything else back
 * (digestOfAssembled). On S3 that etag is the part's MD5 (unencrypted
 * buckets): a client that crafted two colliding versions of one part could
 * make its own artifact's digest disagree with its bytes, which every full
 * read then reports as DATA_LOSS; it can reach no other tenant's content.
 */
export interface SessionDigests {
  /**
   * A part this server stored and recorded in the session: hashed now if it extends the prefix, else held (a copy)
   * if the budget allows. `data` is read only during the call: its buffer is reused afterwards.
   */
  partStored(session: { readonly id: string; readonly expiresAt: Date }, part: SessionPart, data: Uint8Array): void;
  /** What this server has of a session, handed to its complete: the session is forgotten here. */
  take(sessionId: string): SessionDigestHead | undefined;
  /** Drops what is kept of a session (aborted, expired, completed from what it had assembled before). */
  forget(sessionId: string): void;
  /** Bytes of parts held ahead of their prefix, all sessions together. */
  heldBytes(): number;
}

export interface SessionDigestBudgets {
  /** Most bytes of parts held ahead of one session's prefix. */
  readonly perSessionBytes: number;
  /** Most bytes of parts held ahead of their prefix, all sessions of this server together. */
  readonly perServerBytes: number;
}

export interface SessionDigestHead {
  /** BLAKE3 state over exactly the parts in `hashed`, in order. */
  readonly hasher: Blake3;
  /** Parts 1..k, as they were when hashed. */
  readonly hashed: readonly SessionPart[];
  /** Parts ahead of the prefix, with their bytes. */
  readonly held: ReadonlyMap<number, HeldPart>;
}

interface HeldPart {
  readonly part: SessionPart;
  readonly data: Uint8Array;
}

interface Entry {
  hasher: Blake3;
  hashed: SessionPart[];
  readonly held: Map<number, HeldPart>;
  heldBytes: number;
  expiresAt: number;
  /** When the session last stored a part here, as an ever-growing count: the least recent gives up its held parts first. */
  lastActive: number;
}

/** How often, at most, entries of sessions past their expiry are swept (completed or dropped elsewhere, say). */
const SWEEP_INTERVAL_MS = 10_000;

export function createSessionDigests(budgets: SessionDigestBudgets, now: () => number = Date.now): SessionDigests {
  const entries = new Map<string, Entry>();
  let totalHeld = 0;
  let activity = 0;
  let lastSweep = now();

  const sweep = () => {
    const at = now();
    if (at - lastSweep < SWEEP_INTERVAL_MS) return;
    lastSweep = at;
    for (const [id, entry] of entries) if (entry.expiresAt <= at) forget(id);
  };

  const release = (entry: Entry, partNumber: number) => {
    const held = entry.held.get(partNumber);
    if (!held) return;
    entry.held.delete(partNumber);
    entry.heldBytes -= held.data.byteLength;
    totalHeld -= held.data.byteLength;
  };

  const farthestHeld = (entry: Entry) => Math.max(...entry.held.keys());

  /** The held part to let go for room on the server: the farthest of the least recently active other session. */
  const serverVictim = (except: Entry): Entry | undefined => {
    let victim: Entry | undefined;
    for (const entry of entries.values()) {
      if (entry !== except && entry.held.size > 0 && (!victim || entry.lastActive < victim.lastActive)) victim = entry;
    }
    return victim;
  };

  const hold = (entry: Entry, part: SessionPart, data: Uint8Array) => {
    const size = data.byteLength;
    if (size > budgets.perSessionBytes || size > budgets.perServerBytes) return;
    // Parts nearer the prefix are worth more: they are hashed sooner, and their release frees the ones behind them.
    while (entry.heldBytes + size > budgets.perSessionBytes) {
      const farthest = farthestHeld(entry);
      if (farthest < part.partNumber) return;
      release(entry, farthest);
    }
    while (totalHeld + size > budgets.perServerBytes) {
      const victim = serverVictim(entry);
      if (victim) {
        release(victim, farthestHeld(victim));
        continue;
      }
      const farthest = entry.held.size > 0 ? farthestHeld(entry) : 0;
      if (farthest < part.partNumber) return;
      release(entry, farthest);
    }
    // A copy: the part's bytes are a view of its request's body, which is reused for the next call's once this one
    // has settled (transport/request-body-pool.ts). Held parts are the rare ones, out of order.
    entry.held.set(part.partNumber, { part, data: new Uint8Array(data) });
    entry.heldBytes += size;
    totalHeld += size;
  };

  const extend = (entry: Entry, part: SessionPart, data: Uint8Array) => {
    entry.hasher.update(data);
    entry.hashed.push(part);
    for (let next = entry.hashed.length + 1; ; next++) {
      const held = entry.held.get(next);
      if (!held) return;
      entry.hasher.update(held.data);
      entry.hashed.push(held.part);
      release(entry, next);
    }
  };

  function forget(sessionId: string): void {
    const entry = entries.get(sessionId);
    if (!entry) return;
    totalHeld -= entry.heldBytes;
    entries.delete(sessionId);
  }

  return {
    partStored(session, part, data) {
      sweep();
      let entry = entries.get(session.id);
      if (!entry) {
        entry = { hasher: createBlake3(), hashed: [], held: new Map(), heldBytes: 0, expiresAt: 0, lastActive: 0 };
        entries.set(session.id, entry);
      }
      entry.expiresAt = session.expiresAt.getTime();
      entry.lastActive = ++activity;
      const hashedAs = entry.hashed[part.partNumber - 1];
      if (hashedAs) {
        if (samePart(hashedAs, part)) return;
        // Sent again with other bytes: the prefix was hashed from bytes the store no longer holds, and a hash cannot
        // be rewound. Start over from part 1; the parts held stay (each is checked against the record at the end).
        entry.hasher = createBlake3();
        entry.hashed = [];
      }
      release(entry, part.partNumber);
      if (part.partNumber === entry.hashed.length + 1) extend(entry, part, data);
      else hold(entry, part, data);
    },

    take(sessionId) {
      const entry = entries.get(sessionId);
      if (!entry) return undefined;
      forget(sessionId);
      return { hasher: entry.hasher, hashed: entry.hashed, held: entry.held };
    },

    forget,

    heldBytes: () => totalHeld,
  };
}

function samePart(a: SessionPart, b: SessionPart): boolean {
  return a.partNumber === b.partNumber && a.sizeBytes === b.sizeBytes && a.etag === b.etag;
}

/**
 * The BLAKE3 of a session's assembled content, parts 1..N as the session
 * record has them: from what this server hashed and held where it matches
 * the record, the rest read back from the assembled object (runs of
 * consecutive parts in one ranged read each). Returns how many bytes were
 * read back.
 */
export async function digestOfAssembled(
  head: SessionDigestHead | undefined,
  parts: readonly SessionPart[],
  partSize: number,
  readBack: (range: ByteRange) => AsyncIterable<Uint8Array>,
): Promise<{ digest: string; size: number; readBackBytes: number }> {
  const prefixHolds = head !== undefined && head.hashed.length <= parts.length && head.hashed.every((p, i) => samePart(p, parts[i]!));
  const hasher = prefixHolds ? head.hasher : createBlake3();
  let index = prefixHolds ? head.hashed.length : 0;
  let size = parts.slice(0, index).reduce((sum, p) => sum + p.sizeBytes, 0);
  let readBackBytes = 0;
  const heldFor = (part: SessionPart) => {
    const held = head?.held.get(part.partNumber);
    return held && samePart(held.part, part) ? held.data : undefined;
  };
  while (index < parts.length) {
    const held = heldFor(parts[index]!);
    if (held) {
      hasher.update(held);
      size += held.byteLength;
      index++;
      continue;
    }
    // Every part but the last has partSize bytes (checked before assembling): part n starts at (n - 1) × partSize.
    const offset = index * partSize;
    let length = 0;
    while (index < parts.length && !heldFor(parts[index]!)) length += parts[index++]!.sizeBytes;
    let read = 0;
    for await (const chunk of readBack({ offset, length })) {
      hasher.update(chunk);
      read += chunk.byteLength;
    }
    if (read !== length) throw new Error(`reading back bytes ${offset}–${offset + length} of an assembled upload gave ${read} bytes, not ${length}`);
    size += read;
    readBackBytes += read;
  }
  return { digest: hasher.digestHex(), size, readBackBytes };
}
