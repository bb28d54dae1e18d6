/**
 * Reads a byte stream ahead of its consumer, up to `maxBytes`.
 *
 * A download is a relay: blob store → this process → client. Pulled lazily,
 * the relay runs one hop at a time — nothing is read from the store while a
 * message waits for the client's connection to drain, and nothing is sent
 * while the next piece is fetched. Reading ahead into a small bounded buffer
 * lets both hops work at once; memory stays at most `maxBytes` per download.
 */
export async function* readAhead(source: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  const iterator = source[Symbol.asyncIterator]();
  const queue: Uint8Array[] = [];
  let queued = 0;
  let done = false;
  let failure: { error: unknown } | undefined;
  let wakeConsumer: (() => void) | undefined;
  let wakeProducer: (() => void) | undefined;
  let stopped = false;

  const pump = (async () => {
    try {
      while (!stopped) {
        if (queued >= maxBytes) {
          await new Promise<void>((resolve) => (wakeProducer = resolve));
          wakeProducer = undefined;
          continue;
        }
        const next = await iterator.next();
        if (next.done) break;
        queue.push(next.value);
        queued += next.value.byteLength;
        wakeConsumer?.();
      }
    } catch (error) {
      failure = { error };
    } finally {
      done = true;
      wakeConsumer?.();
    }
  })();

  try {
    for (;;) {
      const chunk = queue.shift();
      if (chunk) {
        queued -= chunk.byteLength;
        wakeProducer?.();
        yield chunk;
        continue;
      }
      if (failure) throw failure.error;
      if (done) return;
      await new Promise<void>((resolve) => (wakeConsumer = resolve));
      wakeConsumer = undefined;
    }
  } finally {
    stopped = true;
    wakeProducer?.();
    await iterator.return?.();
    await pump;
  }
}
