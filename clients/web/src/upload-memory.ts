/**
 * Which upload session belongs to which file, kept across page reloads so an
 * interrupted upload continues where it stopped. Entries are keyed by the
 * upload's idempotency key and dropped when the upload completes or is
 * cancelled; ones older than a week are pruned (the server has expired
 * their sessions long before).
 */
export interface UploadMemory {
  get(idempotencyKey: string): string | undefined;
  remember(idempotencyKey: string, sessionId: string): void;
  forget(idempotencyKey: string): void;
}

const PREFIX = "artifactd.upload-session.";
const MAX_AGE_MS = 7 * 24 * 3_600_000;

/** localStorage, or nothing where it is unavailable (storage disabled): uploads then resume through the idempotency key alone. */
export function createLocalUploadMemory(storage: Storage | undefined = safeLocalStorage()): UploadMemory {
  if (!storage) return { get: () => undefined, remember() {}, forget() {} };
  return {
    get(key) {
      const raw = storage.getItem(PREFIX + key);
      if (!raw) return undefined;
      try {
        const entry = JSON.parse(raw) as { sessionId?: unknown };
        return typeof entry.sessionId === "string" ? entry.sessionId : undefined;
      } catch {
        return undefined;
      }
    },
    remember(key, sessionId) {
      prune(storage);
      try {
        storage.setItem(PREFIX + key, JSON.stringify({ sessionId, savedAt: Date.now() }));
      } catch {
        // Quota or privacy settings: resuming still works through the idempotency key.
      }
    },
    forget(key) {
      storage.removeItem(PREFIX + key);
    },
  };
}

function prune(storage: Storage): void {
  const now = Date.now();
  for (let i = storage.length - 1; i >= 0; i--) {
    const key = storage.key(i);
    if (!key?.startsWith(PREFIX)) continue;
    try {
      const { savedAt } = JSON.parse(storage.getItem(key) ?? "{}") as { savedAt?: number };
      if (typeof savedAt !== "number" || now - savedAt > MAX_AGE_MS) storage.removeItem(key);
    } catch {
      storage.removeItem(key);
    }
  }
}

function safeLocalStorage(): Storage | undefined {
  try {
    return globalThis.localStorage ?? undefined;
  } catch {
    return undefined;
  }
}
