import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { PRIVATE_FILE_MODE, restrictFileToOwner, writePrivateFile } from "../../private-files.ts";
import { formatUrlSigningKeys, newUrlSigningKey, parseUrlSigningKeys, type UrlSigningKey } from "../../url-signing-keys.ts";

/**
 * The download-link signing keys kept in a file on this machine
 * (`<data dir>/url-signing-keys`), used when none are configured: the format
 * of ARTIFACTD_URL_SIGNING_KEYS, one key per line, newest first.
 *
 * The file is readable by its owner only (0600): whoever reads a key can
 * forge links. One with looser permissions is narrowed to 0600 when read.
 * It is local to the machine, so replicas sharing a database do not share
 * it: those set ARTIFACTD_URL_SIGNING_KEYS alike on every replica instead.
 * (The key used to live in the database, where anyone with read access to
 * it could forge links; it no longer does.)
 */
export function urlSigningKeyFile(dataDir: string): string {
  return path.join(dataDir, "url-signing-keys");
}

/** The key file exists but does not hold a valid key list: the message names the file and what is wrong with it. */
export class InvalidUrlSigningKeyFileError extends Error {
  override readonly name = "InvalidUrlSigningKeyFileError";
}

/** The keys in `file`, or, when it does not exist, a new one written there. */
export async function loadOrCreateUrlSigningKeyFile(file: string): Promise<{ keys: UrlSigningKey[]; created: boolean }> {
  const existing = await readUrlSigningKeyFile(file);
  if (existing) return { keys: existing, created: false };
  const keys = [newUrlSigningKey()];
  await mkdir(path.dirname(file), { recursive: true });
  try {
    // "wx": of two processes starting on one data folder, the second reads what the first wrote.
    await writeFile(file, formatUrlSigningKeys(keys), { mode: PRIVATE_FILE_MODE, flag: "wx" });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    const written = await readUrlSigningKeyFile(file);
    if (written) return { keys: written, created: false };
    throw error;
  }
  return { keys, created: true };
}

/** The keys in `file`, narrowing its permissions to 0600 first; undefined when it does not exist. */
export async function readUrlSigningKeyFile(file: string): Promise<UrlSigningKey[] | undefined> {
  let mode: number;
  try {
    mode = (await stat(file)).mode;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  if ((mode & 0o777) !== PRIVATE_FILE_MODE) await restrictFileToOwner(file);
  const text = await readFile(file, "utf8");
  try {
    return parseUrlSigningKeys(text);
  } catch (error) {
    throw new InvalidUrlSigningKeyFileError(`the download-link key file ${file} is not valid: ${(error as Error).message}`);
  }
}

/**
 * Replaces the file's keys. Written to a 0600 file beside it and renamed
 * over it, so a reader sees the old keys or the new ones, never half.
 */
export async function writeUrlSigningKeyFile(file: string, keys: readonly UrlSigningKey[]): Promise<void> {
  await writePrivateFile(file, formatUrlSigningKeys(keys));
}
