import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createCipheriv, randomBytes, randomInt } from "node:crypto";
import { appendFileSync } from "node:fs";
import { blake3Hex, createBlake3 } from "../../src/blake3.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { ArtifactService, EventType, UploadSessionState, type CreateUploadSessionRequestSchema } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";

type CreateSessionRequest = MessageInitShape<typeof CreateUploadSessionRequestSchema>;

/**
 * The soak's clients: writers (streaming uploads, some deduplicating,
 * resumable sessions, inline saves), a reader and a watcher, each a loop that
 * runs until `signal` aborts. They behave as a plain client would: a call
 * that fails is counted and never acknowledged, and the writer starts a new
 * upload; nothing here works around the server.
 *
 * Content is pseudo-random from a seed (AES-CTR over zeros), so a later
 * deduplicating upload can send the same bytes again without keeping them.
 */
export type ArtifactClient = Client<typeof ArtifactService>;

export interface Ack {
  readonly id: string;
  readonly blake3: string;
  readonly size: number;
  readonly via: "upload" | "dedup" | "session" | "inline";
  /** For blob content: regenerates it. */
  readonly seed?: string;
}

export interface WatchedEvent {
  readonly type: string;
  readonly id: string;
  readonly cursor: string;
}

export interface SoakState {
  readonly acks: Ack[];
  readonly acked: Set<string>;
  readonly counters: Record<string, number>;
  /** Failed calls by "<rpc> <code>". */
  readonly failures: Record<string, number>;
  /** The first messages of each kind of failure, for diagnosis. */
  readonly failureExamples: Record<string, string[]>;
  readonly events: WatchedEvent[];
  /** Sessions created and neither completed nor known aborted: a client cleans these up at the end. */
  readonly openSessions: Set<string>;
  /**
   * Idempotency keys of creates whose answer was lost: the session may exist. A client retries the create with
   * the same key to learn it (the cleanup at the end does, then aborts it).
   */
  readonly unconfirmedCreates: Map<string, CreateSessionRequest>;
  /** Where each acknowledgement is appended as a JSON line; undefined: memory only. */
  readonly ackLog: string | undefined;
  readonly startedAt: number;
  /** Blob writers wait while more than this many bytes per second since startedAt are acknowledged. */
  readonly bytesPerSecond: number;
  ackedBytes: number;
}

export function createSoakState(ackLog: string | undefined, bytesPerSecond = Infinity): SoakState {
  return {
    acks: [],
    acked: new Set(),
    counters: {},
    failures: {},
    failureExamples: {},
    events: [],
    openSessions: new Set(),
    unconfirmedCreates: new Map(),
    ackLog,
    startedAt: Date.now(),
    bytesPerSecond,
    ackedBytes: 0,
  };
}

export function count(state: SoakState, name: string, by = 1): void {
  state.counters[name] = (state.counters[name] ?? 0) + by;
}

export function createArtifactClient(url: string, token: string): ArtifactClient {
  const auth: Interceptor = (next) => (request) => {
    request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  // As the Node SDK sets it: parallel 5 MiB parts and 8 MiB chunks are more than Node's default 10 MiB of session
  // memory, past which the client itself refuses streams (NGHTTP2_ENHANCE_YOUR_CALM) — its failure, not the server's.
  return createClient(ArtifactService, createGrpcTransport({ baseUrl: url, interceptors: [auth], nodeOptions: { maxSessionMemory: 256 } }));
}

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 256 * KiB;
const SESSION_PART = 5 * MiB;
/** No call waits longer than this (a hung call during a fault counts as failed). */
const CALL_TIMEOUT_MS = 60_000;

export function content(seed: string, size: number): Buffer {
  const cipher = createCipheriv("aes-128-ctr", Buffer.from(seed, "hex"), Buffer.alloc(16));
  return cipher.update(Buffer.alloc(size));
}

/** 0 B to a few tens of MiB: many small, some one part, some spanning several 8 MiB parts. */
function randomSize(): number {
  const roll = Math.random();
  if (roll < 0.08) return 0;
  if (roll < 0.45) return randomInt(1, 256 * KiB);
  if (roll < 0.75) return randomInt(256 * KiB, 8 * MiB);
  return randomInt(8 * MiB, 28 * MiB);
}

function record(state: SoakState, ack: Ack): void {
  state.acks.push(ack);
  state.acked.add(ack.id);
  state.ackedBytes += ack.size;
  count(state, `acked_${ack.via}`);
  if (state.ackLog) appendFileSync(state.ackLog, `${JSON.stringify({ ...ack, at: new Date().toISOString() })}\n`);
}

function failed(state: SoakState, rpc: string, error: unknown): void {
  const code = error instanceof ConnectError ? Code[error.code] : ((error as Error)?.name ?? "Error");
  const key = `${rpc} ${code}`;
  state.failures[key] = (state.failures[key] ?? 0) + 1;
  const examples = (state.failureExamples[key] ??= []);
  if (examples.length < 3) examples.push(error instanceof ConnectError ? error.rawMessage : String((error as Error)?.message ?? error));
  count(state, "failed_calls");
}

function callOptions(signal: AbortSignal) {
  return { signal, timeoutMs: CALL_TIMEOUT_MS };
}

/** Checks what the server answered against what was sent: a difference is corruption at the moment of acknowledgement. */
function checkAnswer(state: SoakState, sent: { blake3: string; size: number }, artifact: { blake3: string; sizeBytes: bigint } | undefined): void {
  if (!artifact || artifact.blake3 !== sent.blake3 || Number(artifact.sizeBytes) !== sent.size) count(state, "ack_mismatch");
}

async function* uploadMessages(spec: { kind: string; name: string }, bytes: Buffer, expected: { blake3: string } | undefined) {
  yield {
    message: {
      case: "header" as const,
      value: { spec, expectedSize: BigInt(bytes.byteLength), expectedBlake3: expected?.blake3 ?? "" },
    },
  };
  for (let offset = 0; offset < bytes.byteLength; offset += CHUNK) {
    yield { message: { case: "chunk" as const, value: bytes.subarray(offset, Math.min(offset + CHUNK, bytes.byteLength)) } };
  }
  if (Math.random() < 0.5)
    yield { message: { case: "trailer" as const, value: { labels: { soak: "yes" }, tags: ["soak"], metrics: { bytes: bytes.byteLength } } } };
}

/** Streaming uploads: new content, or (one in five) content already acknowledged, declared by expected_blake3 so it deduplicates. */
export async function streamingWriter(client: ArtifactClient, state: SoakState, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    await holdBack(state, signal);
    const previous = state.acks.filter((a) => a.seed !== undefined);
    const dedupOf = previous.length > 0 && Math.random() < 0.2 ? previous[randomInt(previous.length)] : undefined;
    const seed = dedupOf?.seed ?? randomBytes(16).toString("hex");
    const bytes = content(seed, dedupOf?.size ?? randomSize());
    const digest = dedupOf?.blake3 ?? blake3Hex(bytes);
    try {
      const answer = await client.upload(
        uploadMessages({ kind: "soak-upload", name: `soak/${seed}` }, bytes, dedupOf ? { blake3: digest } : undefined),
        callOptions(signal),
      );
      checkAnswer(state, { blake3: digest, size: bytes.byteLength }, answer.artifact);
      if (dedupOf && answer.deduplicated) count(state, "deduplicated");
      record(state, { id: answer.artifact!.id, blake3: digest, size: bytes.byteLength, via: dedupOf ? "dedup" : "upload", seed });
    } catch (error) {
      if (signal.aborted) return;
      failed(state, "Upload", error);
    }
    await pause(signal, 50, 300);
  }
}

/** Resumable sessions: create (part_size 5 MiB), parts two at a time, complete. On a failure the client aborts the session if it can and starts a new upload. */
export async function sessionWriter(client: ArtifactClient, state: SoakState, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    await holdBack(state, signal);
    const seed = randomBytes(16).toString("hex");
    const size = randomInt(1, 24 * MiB);
    const bytes = content(seed, size);
    const digest = blake3Hex(bytes);
    let sessionId: string | undefined;
    let rpc = "CreateUploadSession";
    try {
      const request: CreateSessionRequest = {
        spec: { kind: "soak-session", name: `soak/${seed}` },
        expectedSize: BigInt(size),
        expectedBlake3: digest,
        partSize: BigInt(SESSION_PART),
        idempotencyKey: seed,
      };
      state.unconfirmedCreates.set(seed, request);
      const created = await client.createUploadSession(request, callOptions(signal));
      state.unconfirmedCreates.delete(seed);
      sessionId = created.session!.sessionId;
      state.openSessions.add(sessionId);
      rpc = "UploadPart";
      const parts = Math.ceil(size / SESSION_PART);
      let next = 1;
      const sendParts = async () => {
        for (let part = next++; part <= parts; part = next++) {
          const data = bytes.subarray((part - 1) * SESSION_PART, Math.min(part * SESSION_PART, size));
          await client.uploadPart({ sessionId: sessionId!, partNumber: part, data, partBlake3: blake3Hex(data) }, callOptions(signal));
        }
      };
      await Promise.all([sendParts(), sendParts()]);
      rpc = "CompleteUploadSession";
      const completed = await client.completeUploadSession({ sessionId }, callOptions(signal));
      state.openSessions.delete(sessionId);
      checkAnswer(state, { blake3: digest, size }, completed.artifact);
      record(state, { id: completed.artifact!.id, blake3: digest, size, via: "session", seed });
    } catch (error) {
      if (signal.aborted) return;
      failed(state, rpc, error);
      if (sessionId) await abortSession(client, state, sessionId, AbortSignal.timeout(5_000));
    }
    await pause(signal, 50, 300);
  }
}

/** One attempt to abort a session; true when it is gone (aborted, or unknown to the server). */
/** Retries the creates whose answer was lost, with the same idempotency key: a session that exists is then known (and cleaned up like any open one). */
export async function recoverUnconfirmedCreates(client: ArtifactClient, state: SoakState, signal: AbortSignal): Promise<void> {
  for (const [seed, request] of [...state.unconfirmedCreates]) {
    try {
      const { session } = await client.createUploadSession(request, { signal, timeoutMs: 10_000 });
      if (session!.state !== UploadSessionState.COMPLETED) state.openSessions.add(session!.sessionId);
      state.unconfirmedCreates.delete(seed);
    } catch (error) {
      failed(state, "CreateUploadSession", error);
    }
  }
}

export async function abortSession(client: ArtifactClient, state: SoakState, sessionId: string, signal: AbortSignal): Promise<boolean> {
  try {
    await client.abortUploadSession({ sessionId }, { signal, timeoutMs: 10_000 });
  } catch (error) {
    if (!(error instanceof ConnectError && error.code === Code.NotFound)) {
      failed(state, "AbortUploadSession", error);
      return false;
    }
  }
  state.openSessions.delete(sessionId);
  return true;
}

/** Small JSON and text saved inline. */
export async function inlineWriter(client: ArtifactClient, state: SoakState, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    const asJson = Math.random() < 0.5;
    const value = asJson
      ? JSON.stringify({ soak: randomBytes(8).toString("hex"), n: randomInt(1_000_000) })
      : `soak ${randomBytes(randomInt(1, 2048)).toString("base64")}`;
    try {
      const answer = await client.saveInline(
        { spec: { kind: "soak-inline" }, content: asJson ? { case: "json", value } : { case: "text", value } },
        callOptions(signal),
      );
      const bytes = Buffer.from(value, "utf8");
      const digest = blake3Hex(bytes);
      checkAnswer(state, { blake3: digest, size: bytes.byteLength }, answer.artifact);
      record(state, { id: answer.artifact!.id, blake3: digest, size: bytes.byteLength, via: "inline" });
    } catch (error) {
      if (signal.aborted) return;
      failed(state, "SaveInline", error);
    }
    await pause(signal, 30, 150);
  }
}

/** Downloads an acknowledged artifact and checks its BLAKE3 and size. */
export async function verifyDownload(client: ArtifactClient, ack: Ack, signal: AbortSignal): Promise<"ok" | "corrupt" | "not_found"> {
  const hasher = createBlake3();
  let size = 0;
  let announced: string | undefined;
  try {
    for await (const message of client.download({ id: ack.id }, { signal, timeoutMs: CALL_TIMEOUT_MS })) {
      if (message.message.case === "artifact") announced = message.message.value.blake3;
      else if (message.message.case === "chunk") {
        hasher.update(message.message.value);
        size += message.message.value.byteLength;
      }
    }
  } catch (error) {
    if (error instanceof ConnectError && error.code === Code.NotFound) return "not_found";
    if (error instanceof ConnectError && error.code === Code.DataLoss) return "corrupt";
    throw error;
  }
  return hasher.digestHex() === ack.blake3 && size === ack.size && announced === ack.blake3 ? "ok" : "corrupt";
}

/** Reads acknowledged artifacts back while the faults go on. */
export async function reader(client: ArtifactClient, state: SoakState, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    const ack = state.acks.length > 0 ? state.acks[randomInt(state.acks.length)] : undefined;
    if (ack) {
      try {
        count(state, `read_${await verifyDownload(client, ack, signal)}`);
      } catch (error) {
        if (signal.aborted) return;
        failed(state, "Download", error);
      }
    }
    await pause(signal, 50, 300);
  }
}

/**
 * Watches every event, recording each one's cursor; after any disconnect it
 * resumes after the last cursor seen, as the contract asks a watcher to do.
 * Until the first event arrives there is no cursor, so a disconnect before
 * then resumes "from now" (the soak saves a marker first to get one).
 */
export async function watcher(client: ArtifactClient, state: SoakState, signal: AbortSignal): Promise<void> {
  let cursor = "";
  while (!signal.aborted) {
    try {
      for await (const event of client.watchArtifacts({ resumeAfter: cursor }, { signal })) {
        const id = event.artifact?.id ?? "";
        state.events.push({ type: EventType[event.type] ?? String(event.type), id, cursor: event.cursor });
        count(state, "watch_events");
        if (event.cursor) cursor = event.cursor;
        else count(state, "watch_events_without_cursor");
      }
      if (signal.aborted) return;
      count(state, "watch_ended");
    } catch (error) {
      if (signal.aborted) return;
      count(state, "watch_disconnects");
      if (error instanceof ConnectError && error.code === Code.OutOfRange) count(state, "watch_out_of_range");
      if (error instanceof ConnectError && error.code === Code.InvalidArgument) count(state, "watch_invalid_cursor");
    }
    await pause(signal, 200, 200);
  }
}

/** Waits while the acknowledged bytes are ahead of the byte budget. */
async function holdBack(state: SoakState, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && state.ackedBytes > ((Date.now() - state.startedAt) / 1000) * state.bytesPerSecond) await pause(signal, 200, 200);
}

function pause(signal: AbortSignal, minMs: number, maxMs: number): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, minMs + Math.random() * (maxMs - minMs));
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
