import type { ArtifactEventType, ArtifactStatus } from "../artifact.ts";
import type { AliasMove } from "../artifact-versions.ts";

/**
 * The artifact event log (an outbox): the metadata store's writes add one
 * row per change (created, status changed, pinned, unpinned, deleted, alias moved) in the
 * same transaction as the change, numbered by `seq`.
 *
 * Rows become visible in seq order: a reader that has seen seq N never later
 * finds a committed seq below N. So "every event after N" is a complete
 * answer whenever it is asked, which is what lets a tailer read on from its
 * last seq and a watcher resume after a cursor without missing anything.
 *
 * Events older than the retention are pruned, oldest first; the log keeps
 * the highest seq it pruned, so a reader can tell "nothing happened" from
 * "what happened is gone".
 */
export interface ArtifactEventLog {
  /** Events after `afterSeq`, oldest first, at most `limit`: of one tenant, or of every tenant when `tenantId` is undefined. */
  readAfter(afterSeq: number, limit: number, tenantId?: string): Promise<LoggedEvent[]>;
  bounds(): Promise<EventLogBounds>;
  /** Deletes the events recorded before `cutoff`, and every event below them; returns how many. */
  prune(cutoff: Date): Promise<number>;
  /**
   * Calls `listener` after this process commits a change that wrote events,
   * with those events (as readAfter would return them, in seq order): the
   * in-process wake-up of the log's readers (other processes hear of it
   * through Postgres NOTIFY, sent in the same transaction).
   */
  onAppended(listener: (appended: readonly LoggedEvent[]) => void): () => void;
}

/** One change to an artifact, with its life-cycle fields as they were when it happened. */
export interface LoggedEvent {
  readonly seq: number;
  readonly tenantId: string;
  readonly type: ArtifactEventType;
  readonly artifactId: string;
  readonly status: ArtifactStatus;
  readonly pinned: boolean;
  readonly deletedAt: Date | undefined;
  /** For alias_moved: the move. */
  readonly aliasMove?: AliasMove;
}

export interface EventLogBounds {
  /** Every event at or below this seq has been pruned (0: none ever was). */
  readonly prunedThrough: number;
  /** The highest seq ever written (prunedThrough when the log is empty). */
  readonly lastSeq: number;
}
