import { ArtifactError, storageFull } from "../../artifact-error.ts";
import { classifyWithCauses, DISK_FULL_CODES } from "../driver-errors.ts";

/**
 * What file-system failures mean for a caller of the folder blob store: a
 * full disk (or quota) is RESOURCE_EXHAUSTED, with the errno as the cause.
 * Every call into the store passes through here
 * (./translate-blob-store-errors.ts, applied where ./fs-blob-store.ts makes
 * the store); anything else (ENOENT of a missing blob, EACCES) stays as it is.
 */
export type FsFailure = "full";

export function classifyFsError(error: unknown): FsFailure | undefined {
  return classifyWithCauses<FsFailure>(error, ({ code }) => (typeof code === "string" && DISK_FULL_CODES.has(code) ? "full" : undefined));
}

/** The ArtifactError a file-system failure means, or the error itself. */
export function fromFsError(error: unknown): unknown {
  if (error instanceof ArtifactError) return error;
  return classifyFsError(error) === "full" ? storageFull(error) : error;
}

/** No file under the key. */
export function isMissingFile(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "ENOENT";
}
