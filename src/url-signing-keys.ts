import { randomBytes } from "node:crypto";

/**
 * The keys that sign download links, newest first: the first signs, every
 * one verifies, so a key can be rotated in while links signed by the one
 * before keep working until that one is removed.
 *
 * One format for the environment (ARTIFACTD_URL_SIGNING_KEYS) and the key
 * file: `<id>:<secret>` entries separated by commas or newlines, e.g.
 * `k2:<secret>,k1:<secret>`. Blank lines and lines starting with `#` are
 * skipped. An id is 1–32 characters of A–Z a–z 0–9 _ - (it travels in every
 * link, so it needs no escaping); a secret is at least 32 characters
 * without commas or white space.
 */
export interface UrlSigningKey {
  readonly id: string;
  readonly secret: string;
}

export const URL_SIGNING_KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;
const SECRET_PATTERN = /^[^\s,]{32,}$/;

/** Throws an Error whose message says which entry is wrong and how (the caller names where it came from). */
export function parseUrlSigningKeys(text: string): UrlSigningKey[] {
  const keys: UrlSigningKey[] = [];
  const entries = text
    .split("\n")
    .filter((line) => !line.trim().startsWith("#"))
    .flatMap((line) => line.split(","))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  for (const [index, entry] of entries.entries()) {
    const colon = entry.indexOf(":");
    const id = colon < 0 ? "" : entry.slice(0, colon);
    const secret = colon < 0 ? "" : entry.slice(colon + 1);
    // Never repeat a secret in a message: it may end up in logs.
    if (!URL_SIGNING_KEY_ID_PATTERN.test(id)) {
      throw new Error(`key ${index + 1} must read <id>:<secret> with an id of 1–32 characters of A-Z a-z 0-9 _ -`);
    }
    if (!SECRET_PATTERN.test(secret)) {
      throw new Error(`the secret of key ${id} must be at least 32 characters, without commas or spaces (e.g. \`openssl rand -base64 32\`)`);
    }
    if (keys.some((key) => key.id === id)) throw new Error(`key id ${id} appears twice: every key needs its own id`);
    keys.push(Object.freeze({ id, secret }));
  }
  if (keys.length === 0) throw new Error("no key given: write <id>:<secret>, newest first, separated by commas");
  return keys;
}

/** The key file's text: a comment, then one key per line, newest (the signing one) first. */
export function formatUrlSigningKeys(keys: readonly UrlSigningKey[]): string {
  return (
    "# artifactd download-link signing keys, newest first: the first signs, all verify.\n" +
    "# <id>:<secret>. Keep this file private (mode 0600); every replica must have the same keys.\n" +
    keys.map((key) => `${key.id}:${key.secret}\n`).join("")
  );
}

/**
 * A fresh key with an id made from the time (`k20261204T225639Z`), so ids
 * sort by age and tell when a key was made; `taken` ids get a suffix.
 */
export function newUrlSigningKey(taken: readonly string[] = [], now: Date = new Date()): UrlSigningKey {
  const stamp = `k${now.toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "")}`;
  let id = stamp;
  for (let n = 2; taken.includes(id); n++) id = `${stamp}-${n}`;
  return Object.freeze({ id, secret: randomBytes(32).toString("base64url") });
}
