import { createBLAKE3 } from "hash-wasm";
import type { HashRequest, HashWorkerMessage } from "./hash-file.ts";

/**
 * A dedicated worker that hashes a file with BLAKE3 off the main thread.
 * It reads the file in slices (never whole), and in the same pass hashes
 * each upload part on its own, so parts can carry part_blake3 without a
 * second read. Posts progress after every slice, then the digests.
 */
const SLICE_BYTES = 4 * 1024 * 1024;

// The DOM lib types `self` as a Window; a dedicated worker needs only these.
const scope = self as unknown as {
  onmessage: ((event: MessageEvent<HashRequest>) => void) | null;
  postMessage(message: HashWorkerMessage): void;
};

scope.onmessage = (event) => {
  hash(event.data).then(
    (done) => scope.postMessage(done),
    (error: unknown) => scope.postMessage({ type: "error", message: error instanceof Error ? error.message : String(error) }),
  );
};

async function hash({ file, partSize, salt }: HashRequest): Promise<HashWorkerMessage> {
  const whole = await createBLAKE3();
  const part = await createBLAKE3();
  whole.init();
  part.init();
  const partDigests: string[] = [];
  let inPart = 0;
  for (let offset = 0; offset < file.size; ) {
    const end = Math.min(offset + SLICE_BYTES, file.size);
    const bytes = new Uint8Array(await file.slice(offset, end).arrayBuffer());
    whole.update(bytes);
    for (let at = 0; at < bytes.byteLength; ) {
      const take = Math.min(bytes.byteLength - at, partSize - inPart);
      part.update(bytes.subarray(at, at + take));
      at += take;
      inPart += take;
      if (inPart === partSize) {
        partDigests.push(part.digest("hex"));
        part.init();
        inPart = 0;
      }
    }
    offset = end;
    scope.postMessage({ type: "progress", hashedBytes: offset });
  }
  if (inPart > 0) partDigests.push(part.digest("hex"));
  const digest = whole.digest("hex");
  // The idempotency key: what identifies this upload, hashed to a fixed length.
  const key = await createBLAKE3();
  key.init();
  key.update(`${salt}\n${digest}`);
  return { type: "done", digest, partDigests, keyDigest: key.digest("hex") };
}
