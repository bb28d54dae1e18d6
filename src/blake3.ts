import { Blake3Hasher } from "@napi-rs/blake-hash";

/**
 * Incremental BLAKE3-256 over a byte stream, on the native implementation
 * (@napi-rs/blake-hash, ~3.7 GB/s here; the `blake3` package cannot be
 * installed from our registry, see shared/anchors).
 */
export interface Blake3 {
  update(chunk: Uint8Array): void;
  /** Lowercase hex of the 32-byte digest. */
  digestHex(): string;
}

export function createBlake3(): Blake3 {
  const hasher = new Blake3Hasher();
  return {
    update(chunk) {
      // A view on the same memory: no copy on the hot path.
      hasher.update(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    },
    digestHex() {
      return hasher.digest("hex");
    },
  };
}

export function blake3Hex(data: Uint8Array): string {
  const hasher = createBlake3();
  hasher.update(data);
  return hasher.digestHex();
}

export const BLAKE3_HEX_PATTERN = /^[0-9a-f]{64}$/;
