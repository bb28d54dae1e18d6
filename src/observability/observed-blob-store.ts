import {
  canListBlobs,
  hasDirectReads,
  hasSessions,
  type BlobLister,
  type BlobSessions,
  type BlobStore,
  type BlobWriter,
  type DirectReads,
} from "../ports/blob-store.ts";
import type { StoreOperation, StoreOperationObserver } from "./calls.ts";

/**
 * The blob store with each of its requests reported to the observers
 * (./calls.ts): started in the caller's async context, ended with its
 * failure if it failed. A decorator over the port, as the error
 * translation is (adapters/blob/translate-blob-store-errors.ts), so every
 * adapter is observed alike and a method added later is seen here.
 *
 * The operation is the port method's name. A read counts from its call to
 * its last byte (or its failure, or the reader stopping). A writer's
 * `write` is not an operation of its own: it is called once per chunk on
 * the upload path, and what it costs is in the upload's `commit` (the last
 * part and the multipart completion) and in the call's duration.
 *
 * With no observer the store is returned as it is.
 */
export function observeBlobStore<S extends BlobStore>(store: S, system: StoreOperation["system"], observers: readonly StoreOperationObserver[]): S {
  if (observers.length === 0) return store;
  const operations = new Map<string, StoreOperation>();
  const operationOf = (name: string): StoreOperation => {
    let operation = operations.get(name);
    if (operation === undefined) {
      operation = Object.freeze({ system, operation: name, collection: undefined });
      operations.set(name, operation);
    }
    return operation;
  };
  const start = (name: string): ((error?: unknown) => void) => {
    const operation = operationOf(name);
    if (observers.length === 1) return observers[0]!.started(operation);
    const ends = observers.map((observer) => observer.started(operation));
    return (error) => {
      for (const end of ends) end(error);
    };
  };
  const observe = <T>(name: string, run: () => Promise<T>): Promise<T> => {
    const end = start(name);
    let result: Promise<T>;
    try {
      result = run();
    } catch (error) {
      end(error);
      throw error;
    }
    return result.then(
      (value) => {
        end();
        return value;
      },
      (error: unknown) => {
        end(error);
        throw error;
      },
    );
  };
  const stream = <T>(name: string, open: () => AsyncIterable<T>): AsyncIterable<T> => ({
    [Symbol.asyncIterator]() {
      const end = start(name);
      let ended = false;
      const finish = (error?: unknown) => {
        if (ended) return;
        ended = true;
        end(error);
      };
      let iterator: AsyncIterator<T>;
      try {
        iterator = open()[Symbol.asyncIterator]();
      } catch (error) {
        finish(error);
        throw error;
      }
      return {
        next: () =>
          iterator.next().then(
            (result) => {
              if (result.done) finish();
              return result;
            },
            (error: unknown) => {
              finish(error);
              throw error;
            },
          ),
        return: async (value?: unknown) => {
          finish();
          return iterator.return ? iterator.return(value) : { done: true as const, value: undefined };
        },
      };
    },
  });
  const writer = (inner: BlobWriter): BlobWriter => ({
    key: inner.key,
    write: (content) => inner.write(content),
    commit: (digest) => observe("commit", () => inner.commit(digest)),
    abort: () => observe("abort", () => inner.abort()),
  });

  const observed: BlobStore = {
    ...store,
    createWriter: async (tenantId, key, expectedSize) => writer(await observe("createWriter", () => store.createWriter(tenantId, key, expectedSize))),
    read: (key, range, signal) => stream("read", () => store.read(key, range, signal)),
    stat: (key) => observe("stat", () => store.stat(key)),
    delete: (key) => observe("delete", () => store.delete(key)),
    discard: (key) => observe("discard", () => store.discard(key)),
    ping: () => observe("ping", () => store.ping()),
    close: () => store.close(),
  };
  if (hasSessions(store)) {
    const sessions: BlobSessions = {
      beginSession: (tenantId, key) => observe("beginSession", () => store.beginSession(tenantId, key)),
      putPart: (key, ref, partNumber, data) => observe("putPart", () => store.putPart(key, ref, partNumber, data)),
      completeSession: (tenantId, key, ref, parts) => observe("completeSession", () => store.completeSession(tenantId, key, ref, parts)),
      abortSession: (key, ref) => observe("abortSession", () => store.abortSession(key, ref)),
    };
    Object.assign(observed, sessions);
  }
  if (canListBlobs(store)) {
    const lister: BlobLister = {
      listBlobs: () => stream("listBlobs", () => store.listBlobs()),
      listUnfinishedUploads: () => stream("listUnfinishedUploads", () => store.listUnfinishedUploads()),
    };
    Object.assign(observed, lister);
  }
  if (hasDirectReads(store)) {
    const direct: DirectReads = { presignRead: (key, range, expiresSeconds) => observe("presignRead", () => store.presignRead(key, range, expiresSeconds)) };
    Object.assign(observed, direct);
  }
  return observed as S;
}
