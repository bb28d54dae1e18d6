/** Buffers as they arrived, taken from the front as views (no copy) or, for a few bytes, copied. */
export class ByteQueue {
  readonly #pieces: Uint8Array[] = [];
  bytes = 0;

  push(piece: Uint8Array): void {
    if (piece.byteLength === 0) return;
    this.#pieces.push(piece);
    this.bytes += piece.byteLength;
  }

  /** Removes the first `count` bytes (count <= bytes), as views of the buffers they are in. */
  take(count: number): Uint8Array[] {
    const taken: Uint8Array[] = [];
    while (count > 0) {
      const first = this.#pieces[0]!;
      if (first.byteLength <= count) {
        this.#pieces.shift();
        taken.push(first);
        count -= first.byteLength;
        this.bytes -= first.byteLength;
      } else {
        taken.push(first.subarray(0, count));
        this.#pieces[0] = first.subarray(count);
        this.bytes -= count;
        count = 0;
      }
    }
    return taken;
  }

  /** Removes the first `count` bytes as one buffer: a view when they are in one buffer, else a copy. */
  copy(count: number): Uint8Array {
    const taken = this.take(count);
    if (taken.length === 1) return taken[0]!;
    const bytes = new Uint8Array(count);
    let offset = 0;
    for (const piece of taken) {
      bytes.set(piece, offset);
      offset += piece.byteLength;
    }
    return bytes;
  }

  /** The first `count` bytes (count <= bytes), left in place. */
  peek(count: number): Uint8Array {
    const first = this.#pieces[0]!;
    if (first.byteLength >= count) return first.subarray(0, count);
    const bytes = new Uint8Array(count);
    let offset = 0;
    for (const piece of this.#pieces) {
      const part = piece.subarray(0, count - offset);
      bytes.set(part, offset);
      offset += part.byteLength;
      if (offset === count) break;
    }
    return bytes;
  }
}
