import { randomBytes } from "node:crypto";

/**
 * Typed artifact references: `<prefix>_<26 characters>`. The prefix (3–5
 * lowercase letters) tells the type, as in `img_…`, `vid_…`; the body is a
 * ULID in lowercase Crockford base32 (48-bit millisecond time + 80 random
 * bits), so ids are unguessable and sort by creation time within a prefix.
 */
const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const ID_PATTERN = /^[a-z]{3,5}_[0-9abcdefghjkmnpqrstvwxyz]{26}$/;
export const PREFIX_PATTERN = /^[a-z]{3,5}$/;

export function newArtifactId(prefix: string, now = Date.now()): string {
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const random = randomBytes(16);
  let body = "";
  for (let i = 0; i < 16; i++) body += ALPHABET[random[i]! % 32];
  return `${prefix}_${time}${body}`;
}

export function isArtifactId(value: string): boolean {
  return ID_PATTERN.test(value);
}

/** The prefix an artifact gets when the client names none. */
export function defaultPrefix(mimeType: string, inline?: "json" | "text" | "binary"): string {
  if (inline === "json") return "json";
  if (inline === "text") return "txt";
  const type = mimeType.toLowerCase();
  if (type.startsWith("image/")) return "img";
  if (type.startsWith("video/")) return "vid";
  if (type.startsWith("audio/")) return "aud";
  if (type === "application/pdf" || type.startsWith("text/") || type.includes("document")) return "doc";
  return "art";
}
