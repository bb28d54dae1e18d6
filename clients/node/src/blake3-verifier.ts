import { Blake3Hasher } from "@napi-rs/blake-hash";

/**
 * Thrown when downloaded content does not match the size or BLAKE3 digest
 * the server announced for it: the bytes were damaged in storage or on the
 * way and must not be used.
 */
export class ArtifactIntegrityError extends Error {
  override readonly name = "ArtifactIntegrityError";
}

/** Hashes bytes as they pass and checks them against the expected size and digest at the end. */
export interface Blake3Verifier {
  update(chunk: Uint8Array): void;
  /** Bytes seen so far. */
  readonly size: number;
  /** Lowercase hex BLAKE3-256 of what passed; call once, at the end. */
  digestHex(): string;
  /** Throws ArtifactIntegrityError unless what passed is exactly `size` bytes with digest `blake3`. */
  verify(expected: { readonly size: number; readonly blake3: string; readonly id: string }): void;
}

export function createBlake3Verifier(): Blake3Verifier {
  const hasher = new Blake3Hasher();
  let size = 0;
  const verifier: Blake3Verifier = {
    update(chunk) {
      // A view on the same memory: no copy on the hot path.
      hasher.update(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      size += chunk.byteLength;
    },
    get size() {
      return size;
    },
    digestHex() {
      return hasher.digest("hex");
    },
    verify(expected) {
      if (size !== expected.size) {
        throw new ArtifactIntegrityError(
          `artifact ${expected.id}: received ${size} bytes, expected ${expected.size}; the content is damaged, download it again`,
        );
      }
      const digest = verifier.digestHex();
      if (digest !== expected.blake3) {
        throw new ArtifactIntegrityError(
          `artifact ${expected.id}: received content has BLAKE3 ${digest}, expected ${expected.blake3}; the content is damaged, download it again`,
        );
      }
    },
  };
  return verifier;
}
