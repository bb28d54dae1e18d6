import { ArtifactError } from "../../artifact-error.ts";
import {
  canListBlobs,
  hasDirectReads,
  hasSessions,
  type BlobLister,
  type BlobSessions,
  type BlobStore,
  type BlobWriter,
  type DirectReads,
} from "../../ports/blob-store.ts";

/**
 * The blob store with every failure of every port method — the writers it
 * hands out and the streams it reads included — passed through `translate`
 * (./s3-errors.ts, ./fs-errors.ts): the one place a blob store's driver
 * errors become ArtifactErrors. A decorator rather than code in each method,
 * so a method added later cannot forget it, and the adapter's own checks of
 * its driver's codes (NoSuchKey, ENOENT) still see them untouched.
 *
 * Anything else the store object carries is kept as it is.
 */
export interface BlobStoreErrors {
  /** The ArtifactError a driver error means to a caller, or the error itself. */
  readonly translate: (error: unknown) => unknown;
  /** True for the driver's "nothing under this key", which `read` raises as not_found (the port's contract). */
  readonly isMissing: (error: unknown) => boolean;
}

export function translateBlobStoreErrors<S extends BlobStore>(store: S, errors: BlobStoreErrors): S {
  const { translate } = errors;
  const rethrow = (error: unknown): never => {
    throw translate(error);
  };
  // Called once per chunk on the upload and download paths: one `catch` per promise, no extra async frames.
  const guard = <T>(run: () => Promise<T>): Promise<T> => {
    try {
      return run().catch(rethrow);
    } catch (error) {
      return rethrow(error);
    }
  };
  const stream = <T>(open: () => AsyncIterable<T>, fail: (error: unknown) => never = rethrow): AsyncIterable<T> => ({
    [Symbol.asyncIterator]() {
      let iterator: AsyncIterator<T>;
      try {
        iterator = open()[Symbol.asyncIterator]();
      } catch (error) {
        return fail(error);
      }
      return {
        next: () => iterator.next().catch(fail),
        return: (value?: unknown) => guard(async () => (iterator.return ? iterator.return(value) : { done: true as const, value: undefined })),
      };
    },
  });
  const failRead =
    (key: string) =>
    (error: unknown): never => {
      if (errors.isMissing(error)) throw new ArtifactError("not_found", `no blob is stored under the key ${key}`, { cause: error });
      return rethrow(error);
    };
  const writer = (inner: BlobWriter): BlobWriter => ({
    key: inner.key,
    write: (content) => guard(() => inner.write(content)),
    commit: (digest) => guard(() => inner.commit(digest)),
    abort: () => guard(() => inner.abort()),
  });

  const translated: BlobStore = {
    ...store,
    createWriter: async (tenantId, key, expectedSize) => writer(await guard(() => store.createWriter(tenantId, key, expectedSize))),
    read: (key, range, signal) => stream(() => store.read(key, range, signal), failRead(key)),
    stat: (key) => guard(() => store.stat(key)),
    delete: (key) => guard(() => store.delete(key)),
    discard: (key) => guard(() => store.discard(key)),
    ping: () => guard(() => store.ping()),
    close: () => guard(() => store.close()),
  };
  if (hasSessions(store)) {
    const sessions: BlobSessions = {
      beginSession: (tenantId, key) => guard(() => store.beginSession(tenantId, key)),
      putPart: (key, ref, partNumber, data) => guard(() => store.putPart(key, ref, partNumber, data)),
      completeSession: (tenantId, key, ref, parts) => guard(() => store.completeSession(tenantId, key, ref, parts)),
      abortSession: (key, ref) => guard(() => store.abortSession(key, ref)),
    };
    Object.assign(translated, sessions);
  }
  if (canListBlobs(store)) {
    const lister: BlobLister = {
      listBlobs: () => stream(() => store.listBlobs()),
      listUnfinishedUploads: () => stream(() => store.listUnfinishedUploads()),
    };
    Object.assign(translated, lister);
  }
  if (hasDirectReads(store)) {
    const direct: DirectReads = { presignRead: (key, range, expiresSeconds) => guard(() => store.presignRead(key, range, expiresSeconds)) };
    Object.assign(translated, direct);
  }
  return translated as S;
}
