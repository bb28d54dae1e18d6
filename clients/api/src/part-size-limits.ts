/**
 * Part sizes of an upload session (CreateUploadSessionRequest.part_size in
 * the proto): at least S3's smallest multipart part, at most the largest
 * UploadPart message the service takes. A client that checks before it
 * calls names the limit in its own words instead of a server refusal.
 */
const MiB = 1024 * 1024;

export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 64 * MiB;
/** What the service picks for part_size 0, and what both clients ask for unless told otherwise. */
export const DEFAULT_PART_SIZE = 8 * MiB;
