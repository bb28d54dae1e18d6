/**
 * Bytes per Upload message: the service is fastest with 256 KiB–1 MiB
 * messages; 256 KiB amortises framing and hashing calls while keeping what
 * one write holds in flight small.
 */
export const MESSAGE_BYTES = 256 * 1024;

/**
 * Regroups a byte source into pieces of exactly `size` bytes (the last may be
 * shorter), so a source of small reads (a pipe gives 64 KiB, a socket less)
 * does not become thousands of tiny messages.
 *
 * Whole multiples of `size` are passed through without copying; smaller
 * pieces are copied into one staging buffer that is reused, allocated at
 * the first such piece and grown (doubling) up to `size` as needed: a
 * small content costs a buffer of its own size, not of `size` (a 256 KiB
 * buffer per 4 KiB upload made Node's external-memory accounting start a
 * full garbage collection every 50 or so small uploads). Each yielded
 * piece is therefore valid only until the next one is asked for — which is
 * how ArtifactWriter.write consumes it: it resolves only after the message
 * has been serialised. Never collect the pieces without copying them.
 */
export async function* messageSizedChunks(
  source: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  size: number = MESSAGE_BYTES,
): AsyncGenerator<Uint8Array, void, undefined> {
  let staging: Buffer | undefined;
  let held = 0;
  for await (const item of source) {
    let chunk: Uint8Array = typeof item === "string" ? Buffer.from(item, "utf8") : item;
    while (chunk.byteLength > 0) {
      if (held === 0 && chunk.byteLength >= size) {
        const whole = chunk.byteLength - (chunk.byteLength % size);
        yield chunk.subarray(0, whole);
        chunk = chunk.subarray(whole);
        continue;
      }
      const taken = Math.min(size - held, chunk.byteLength);
      if (staging === undefined || held + taken > staging.byteLength) {
        const grown = Buffer.allocUnsafe(Math.min(size, Math.max(held + taken, 2 * (staging?.byteLength ?? 0))));
        if (staging !== undefined) staging.copy(grown, 0, 0, held);
        staging = grown;
      }
      staging.set(chunk.subarray(0, taken), held);
      held += taken;
      chunk = chunk.subarray(taken);
      if (held === size) {
        yield staging;
        held = 0;
      }
    }
  }
  if (held > 0) yield staging!.subarray(0, held);
}
