import { ArtifactError } from "../artifact-error.ts";

/**
 * A client stream whose reads fail with deadline_exceeded once the client
 * has sent nothing for `idleMs`. Only the time spent waiting for the client
 * counts: while the consumer is busy (storing a part, awaiting backpressure)
 * no timer runs.
 *
 * Why: an upload holds a storage key, an open multipart upload (or a file)
 * and a heartbeat for as long as its stream is open. A client that stops
 * sending without closing would keep them, and its slot, until its own
 * deadline, if it has one. Failing the read instead makes the upload's own
 * failure path run: the writer is aborted, the key forgotten, nothing
 * recorded.
 *
 * After a timeout the source's pending read is abandoned, not awaited (the
 * transport ends the call, which settles it); `return()` then does not wait
 * for it either, since an async generator queues `return()` behind a pending
 * `next()`.
 */
export function withIdleTimeout<T>(source: AsyncIterable<T>, idleMs: number, what: string): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const iterator = source[Symbol.asyncIterator]();
      let abandoned = false;
      return {
        async next() {
          let timer: NodeJS.Timeout | undefined;
          const idle = new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              abandoned = true;
              reject(
                new ArtifactError(
                  "deadline_exceeded",
                  `${what} received no message for ${idleMs} ms (ARTIFACTD_UPLOAD_IDLE_TIMEOUT_MS) and was stopped; nothing was recorded: keep sending, or close the stream when done`,
                ),
              );
            }, idleMs);
          });
          try {
            return await Promise.race([iterator.next(), idle]);
          } finally {
            clearTimeout(timer);
          }
        },
        async return(value?: unknown) {
          if (abandoned) {
            iterator.return?.(value).catch(() => {});
            return { done: true, value: undefined };
          }
          return (await iterator.return?.(value)) ?? { done: true, value: undefined };
        },
      };
    },
  };
}
