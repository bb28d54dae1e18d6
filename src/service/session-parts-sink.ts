import { randomUUID } from "node:crypto";
import type { Caller } from "../artifact.ts";
import { failedPrecondition } from "../artifact-error.ts";
import { WRITER_LEASE_MS } from "../ports/upload-session-store.ts";
import { keepAlive } from "./keep-alive.ts";
import type { RestOfContentSink } from "./upload-stream-reader.ts";
import { checkNotExpired, checkPart, completeUploadSession, heldByWriter, liveSession, storePart, viewOf, type UploadSessionDeps } from "./upload-sessions.ts";

/**
 * Where a streaming upload bound to a session puts its bytes: the session's
 * parts, stored as they fill (one part stored while the next fills: memory
 * is two parts), and the stream's normal end completes the session. If the
 * stream breaks, the parts stored so far stay; the client resumes from
 * resume_offset.
 *
 * The session is loaded once, when the stream binds to it as its one writer
 * (a lease renewed while the stream runs); each part is then recorded with
 * a compare-and-set that refuses it if the session stopped being open, or
 * this stream stopped being its writer, meanwhile.
 */
export async function openSessionPartsSink(
  deps: UploadSessionDeps,
  caller: Caller,
  start: { readonly sessionId: string; readonly offset: number },
): Promise<RestOfContentSink> {
  const session = await liveSession(deps, caller, start.sessionId);
  if (session.state !== "open") throw failedPrecondition(`upload session ${session.id} is ${session.state} and takes no more bytes`);
  const { resumeOffset } = viewOf(session);
  // Any part boundary up to resume_offset will do: parts sent again replace the stored ones. A client that read
  // resume_offset while its dropped stream's last part was still being stored is then one part behind, not refused.
  if (start.offset > resumeOffset || start.offset % session.partSize !== 0) {
    throw failedPrecondition(
      `upload session ${session.id} cannot continue at byte ${start.offset}: give a multiple of its part size (${session.partSize}) ` +
        `no greater than resume_offset (${resumeOffset}), as GetUploadSession reports`,
    );
  }
  // One writer per session: a second stream (or a part call) while this one holds it answers ABORTED.
  const writerId = randomUUID();
  const acquired = await deps.metadata.uploadSessions.acquireWriter(session.id, writerId);
  if (acquired === "held") throw heldByWriter(session.id);
  if (acquired === "closed") throw failedPrecondition(`upload session ${session.id} is no longer open and takes no more bytes`);
  const lease = keepAlive(() => deps.metadata.uploadSessions.renewWriter(session.id, writerId), WRITER_LEASE_MS / 3);

  let partNumber = start.offset / session.partSize + 1;
  let buffer: Buffer = Buffer.allocUnsafe(session.partSize);
  /** The buffer of the part in flight, filled again once that part is stored (a fresh one per part costs page faults and garbage collection). */
  let sending: Buffer | undefined;
  let filled = 0;
  let pending: Promise<unknown> | undefined;
  const flush = async () => {
    // One part in flight while the next one fills: memory is two parts.
    await pending;
    const data = buffer.subarray(0, filled);
    const number = partNumber++;
    const free = sending;
    sending = buffer;
    buffer = free ?? Buffer.allocUnsafe(session.partSize);
    filled = 0;
    if (lease.lost) throw heldByWriter(session.id);
    checkNotExpired(session);
    checkPart(deps, session, number, data.byteLength);
    pending = storePart(deps, caller, session, number, data, writerId);
    // Awaited by the next flush or at the end; until then a failure (the session aborted meanwhile, say) must
    // not count as an unhandled rejection, which would stop the whole server.
    pending.catch(() => {});
  };

  return {
    carries: "rest of a session",
    startOffset: start.offset,
    expectedSize: session.expectedSize,
    metadata: session.spec,

    async write(pieces) {
      for (const data of pieces) {
        let offset = 0;
        while (offset < data.byteLength) {
          const take = Math.min(data.byteLength - offset, session.partSize - filled);
          buffer.set(data.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          if (filled === session.partSize) await flush();
        }
      }
    },

    async finish({ metadata }) {
      if (filled > 0) await flush();
      await pending;
      return completeUploadSession(deps, caller, session.id, metadata);
    },

    async fail() {
      // Keep what was stored: the part in flight is recorded if it lands.
      await pending?.catch(() => {});
    },

    async close() {
      lease.stop();
      await deps.metadata.uploadSessions.releaseWriter(session.id, writerId).catch(() => {});
    },
  };
}
