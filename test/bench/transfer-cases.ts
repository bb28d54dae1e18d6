/**
 * The large-transfer cases: one blob of `size` bytes up or down, through the
 * service and straight to MinIO. Content is generated in memory (no disk in
 * the path), differs per MiB, and differs per upload (`salt`), so no upload
 * is deduplicated against an earlier one.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type { Client } from "minio";
import { request } from "undici";
import type { ArtifactClient, DownloadOptions } from "../../clients/node/src/index.ts";
import { createBlake3 } from "../../src/blake3.ts";
import type { BenchProcess } from "./bench-processes.ts";
import type { TransferCase } from "./bench-runner.ts";
import { createMultipartUploader, verifiedGetObject, type S3Credentials } from "./s3-direct.ts";

const MiB = 1024 * 1024;

export interface TransferContext {
  readonly sizeMiB: number;
  readonly bucket: string;
  readonly client: ArtifactClient;
  readonly credentials: S3Credentials;
  /** A minio-js client; `partSize` for putObject. */
  readonly minioClient: (partSize?: number) => Client;
  readonly server: BenchProcess;
  readonly minioPid: () => number | undefined;
  /** Starts the plain relay (plain-relay.ts) on first use; answers its base URL. */
  readonly relay: () => Promise<{ url: string; pid: number }>;
}

/** Per session upload: the bytes CompleteUploadSession read back from the store to hash the object (read_back_bytes). */
export const sessionReadBack: number[] = [];

const pool = randomBytes(17 * MiB);

/** sizeMiB chunks of 1 MiB, each a different window into 17 MiB of random bytes; `salt` picks another sequence of windows. */
export function* chunks(sizeMiB: number, salt: number): Generator<Buffer> {
  for (let i = 0; i < sizeMiB; i++) {
    const at = ((i * 7919 + salt * 104729) % 1024) * 16384;
    yield pool.subarray(at, at + MiB);
  }
}

function blake3Of(sizeMiB: number, salt: number): string {
  const hasher = createBlake3();
  for (const chunk of chunks(sizeMiB, salt)) hasher.update(chunk);
  return hasher.digestHex();
}

/** Memoized: the first call starts the work, every call shares it. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

/**
 * Every large-transfer case, in the order a round runs them (uploads, then
 * downloads; each service case next to its baseline).
 */
export function transferCases(context: TransferContext): TransferCase[] {
  const { sizeMiB, bucket, client, server } = context;
  const size = sizeMiB * MiB;
  const withMinio = () => ({ server: server.pid, minio: context.minioPid() });
  const directOnly = () => ({ minio: context.minioPid() });
  const expectBytes = (what: string, bytes: number) => {
    if (bytes !== size) throw new Error(`${what}: ${bytes} bytes, expected ${size}`);
    return bytes;
  };
  // Distinct content per case and round (salt 0 is the downloads' object).
  const salt = (caseNumber: number, roundNumber: number) => roundNumber * 16 + caseNumber;
  const multipart = createMultipartUploader(context.credentials, { partSize: 16 * MiB, inFlight: 4 });
  let relayPid: number | undefined;
  const withRelay = () => ({ relay: relayPid, minio: context.minioPid() });
  const startRelay = async () => void (relayPid = (await context.relay()).pid);
  /** Per round, the digest the relay answered for its upload. */
  const relayDigests = new Map<number, string>();

  // What the download cases read: the same content through the service and straight from MinIO.
  const downloadContent = once(async () => blake3Of(sizeMiB, 0));
  const serviceArtifact = once(async () => {
    const { artifact } = await client.uploadStream(chunks(sizeMiB, 0), { kind: "bench", name: "download.bin" }, { expectedSize: size });
    return artifact!.id;
  });
  const directObject = once(async () => {
    expectBytes("direct object", await multipart.upload(bucket, "direct-download.bin", chunks(sizeMiB, 0)));
    return "direct-download.bin";
  });

  const uploads: TransferCase[] = [
    {
      key: "service_upload",
      label: "service upload (Node SDK writer)",
      processes: withMinio,
      sampleRssOf: () => server.pid,
      run: async (roundNumber) => {
        const { artifact } = await client.uploadStream(
          chunks(sizeMiB, salt(1, roundNumber)),
          { kind: "bench", name: `upload-${roundNumber}.bin` },
          { expectedSize: size },
        );
        return expectBytes("service upload", Number(artifact!.sizeBytes));
      },
    },
    {
      key: "direct_multipart_upload",
      label: "direct multipart (16 MiB × 4, unsigned)",
      processes: directOnly,
      run: async (roundNumber) =>
        expectBytes("multipart upload", await multipart.upload(bucket, `multipart-${roundNumber}.bin`, chunks(sizeMiB, salt(2, roundNumber)))),
      afterRun: (roundNumber) => context.minioClient().removeObject(bucket, `multipart-${roundNumber}.bin`),
    },
    {
      key: "direct_put_object",
      label: "direct minio-js putObject (16 MiB parts)",
      processes: directOnly,
      run: async (roundNumber) => {
        await context.minioClient(16 * MiB).putObject(bucket, `put-${roundNumber}.bin`, Readable.from(chunks(sizeMiB, salt(3, roundNumber))), size);
        return size;
      },
      afterRun: (roundNumber) => context.minioClient().removeObject(bucket, `put-${roundNumber}.bin`),
    },
    {
      key: "relay_upload",
      label: "plain Node relay upload (HTTP/1.1 → undici multipart) + BLAKE3",
      processes: withRelay,
      // Bounded by the parts it holds (4 in flight, 1 gathering): the request is paused, not buffered.
      sampleRssOf: () => relayPid!,
      prepare: startRelay,
      run: async (roundNumber) => {
        const { url } = await context.relay();
        const response = await request(`${url}/${bucket}/relay-upload-${roundNumber}.bin`, {
          method: "PUT",
          headers: { "content-length": String(size), "content-type": "application/octet-stream" },
          // undici writes an iterable body piece by piece (its types list only Readable).
          body: chunks(sizeMiB, salt(5, roundNumber)) as unknown as Readable,
        });
        const answer = await response.body.text();
        if (response.statusCode !== 200) throw new Error(`relay upload: ${response.statusCode} ${answer}`);
        relayDigests.set(roundNumber, answer);
        return size;
      },
      // The digest is checked here, unmeasured: hashing the content again in the bench would charge the client.
      afterRun: async (roundNumber) => {
        const key = `relay-upload-${roundNumber}.bin`;
        const expected = blake3Of(sizeMiB, salt(5, roundNumber));
        if (relayDigests.get(roundNumber) !== expected) throw new Error(`relay upload: BLAKE3 ${relayDigests.get(roundNumber)}, expected ${expected}`);
        expectBytes("relay upload", (await context.minioClient().statObject(bucket, key)).size);
        await context.minioClient().removeObject(bucket, key);
      },
    },
    {
      key: "session_upload",
      label: "session upload (4 × 8 MiB parts, complete)",
      processes: withMinio,
      run: async (roundNumber) => {
        const response = await sessionUpload(client, chunks(sizeMiB, salt(4, roundNumber)), size, roundNumber);
        sessionReadBack.push(Number(response.readBackBytes));
        return size;
      },
    },
  ];

  /** A download through the service by the Node SDK (BLAKE3-verified by it), with these download options. */
  const serviceDownload = (key: string, label: string, options: DownloadOptions = {}): TransferCase => ({
    key,
    label,
    processes: withMinio,
    prepare: async () => void (await serviceArtifact()),
    run: async () => {
      let received = 0;
      for await (const chunk of (await client.download(await serviceArtifact(), options)).content) received += chunk.byteLength;
      return expectBytes(label, received);
    },
  });

  const downloads: TransferCase[] = [
    // Relayed through the service: the bench's server offers direct links, so the SDK is told not to use them here.
    serviceDownload("service_download", "service download (Node SDK, verified)", { directDownloads: false }),
    // The direct-to-storage download: the service hands the SDK a presigned S3 GET; the SDK fetches it and verifies
    // BLAKE3 itself ("always": a refusal fails the case rather than quietly measuring the relay).
    serviceDownload("service_download_direct_mode", "service download, direct from storage (Node SDK, verified)", { directDownloads: "always" }),
    {
      key: "direct_get_verified",
      label: "direct getObject + BLAKE3",
      processes: directOnly,
      prepare: async () => void (await Promise.all([directObject(), downloadContent()])),
      run: async () => expectBytes("direct getObject", await verifiedGetObject(context.minioClient(), bucket, await directObject(), await downloadContent())),
    },
    {
      key: "relay_download",
      label: "plain Node relay (undici → HTTP/1.1) + BLAKE3",
      processes: withRelay,
      prepare: async () => void (await Promise.all([directObject(), downloadContent(), startRelay()])),
      run: async () => {
        const { url } = await context.relay();
        return expectBytes("plain relay", await hashedHttpGet(`${url}/${bucket}/${await directObject()}`, await downloadContent()));
      },
    },
  ];
  return [...uploads, ...downloads];
}

/** The session path browsers use: CreateUploadSession, UploadPart calls 4 at a time, CompleteUploadSession (as the bench has always driven it). */
async function sessionUpload(client: ArtifactClient, source: Iterator<Buffer>, size: number, roundNumber: number) {
  const partSize = 8 * MiB;
  const parallel = 4;
  const { session } = await client.rpc.createUploadSession({
    spec: { kind: "bench", name: `session-${roundNumber}.bin` },
    expectedSize: BigInt(size),
    partSize: BigInt(partSize),
  });
  let nextPart = 1;
  // Each worker fills one part buffer of its own and reuses it once its part is acknowledged (the bytes have been
  // sent by then), as a client reading a file part by part would: a fresh 8 MiB buffer per part measured the
  // bench's own allocations and their garbage collection, more CPU than the SDK's call itself.
  const takePart = (into: Buffer): { number: number; data: Buffer } | undefined => {
    let filled = 0;
    for (let i = 0; i < partSize / MiB; i++) {
      const next = source.next();
      if (next.done) break;
      filled += next.value.copy(into, filled);
    }
    return filled ? { number: nextPart++, data: into.subarray(0, filled) } : undefined;
  };
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      const buffer = Buffer.allocUnsafeSlow(partSize);
      for (let part = takePart(buffer); part; part = takePart(buffer)) {
        await client.rpc.uploadPart({ sessionId: session!.sessionId, partNumber: part.number, data: part.data });
      }
    }),
  );
  return client.rpc.completeUploadSession({ sessionId: session!.sessionId }, { timeoutMs: 600_000 });
}

/** GET over HTTP/1.1 (undici: the reading side as lean as the relay), every chunk through BLAKE3, checked against the expected digest. */
async function hashedHttpGet(url: string, expectedBlake3: string): Promise<number> {
  const response = await request(url);
  if (response.statusCode !== 200) throw new Error(`GET ${url}: ${response.statusCode} ${await response.body.text()}`);
  const hasher = createBlake3();
  let received = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    hasher.update(chunk);
    received += chunk.byteLength;
  }
  const digest = hasher.digestHex();
  if (digest !== expectedBlake3) throw new Error(`GET ${url}: BLAKE3 ${digest}, expected ${expectedBlake3}`);
  return received;
}
