/**
 * The trailer of a refused direct-to-storage link (CreateDownloadUrl with
 * direct_to_storage answering FAILED_PRECONDITION), and why it was refused:
 * `server` (this server offers none) or `inline` (this artifact's content is
 * in the database). The service sets it; clients read it to tell "never on
 * this server" from "not for this artifact".
 */
export const DIRECT_DOWNLOAD_UNAVAILABLE = "direct-download-unavailable";
export type DirectDownloadUnavailableReason = "server" | "inline";
