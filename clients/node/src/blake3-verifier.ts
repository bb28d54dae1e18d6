import { Blake3Hasher } from "@napi-rs/blake-hash";

/** Thrown when received content does not match the artifact's size or BLAKE3 digest. */
export class ArtifactIntegrityError extends Error {
  override readonly name = "ArtifactIntegrityError";
}

/** Hashes bytes as they pass and checks them against the expected size and digest at the end. */
export class Blake3Verifier {
  readonly #hasher = new Blake3Hasher();
  #size = 0;

  update(chunk: Uint8Array): void {
    this.#hasher.update(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#size += chunk.byteLength;
  }

  get size(): number {
    return this.#size;
  }

  digestHex(): string {
    return this.#hasher.digest("hex");
  }

  /** Throws ArtifactIntegrityError unless what passed is exactly `size` bytes with this digest. */
  verify(expected: { size: number; blake3: string; id: string }): void {
    if (this.#size !== expected.size) {
      throw new ArtifactIntegrityError(`artifact ${expected.id}: received ${this.#size} bytes, expected ${expected.size}`);
    }
    const digest = this.digestHex();
    if (digest !== expected.blake3) {
      throw new ArtifactIntegrityError(`artifact ${expected.id}: received content has BLAKE3 ${digest}, expected ${expected.blake3}`);
    }
  }
}
