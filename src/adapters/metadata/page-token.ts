import { ArtifactError } from "../../artifact-error.ts";

/**
 * Page tokens are opaque to clients: base64url JSON. Lists page by keyset
 * (the last row's created_at and id), so inserts between pages neither skip
 * nor repeat rows; ranked search pages by offset, since ranks have no stable
 * keyset.
 */
export function encodeKeysetToken(cursor: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify({ t: cursor.createdAt.toISOString(), i: cursor.id })).toString("base64url");
}

export function decodeKeysetToken(token: string): { createdAt: Date; id: string } {
  const parsed = decode(token) as { t?: unknown; i?: unknown };
  const createdAt = new Date(String(parsed.t));
  if (typeof parsed.i !== "string" || Number.isNaN(createdAt.getTime())) throw badToken();
  return { createdAt, id: parsed.i };
}

export function encodeOffsetToken(offset: number): string {
  return Buffer.from(JSON.stringify({ o: offset })).toString("base64url");
}

export function decodeOffsetToken(token: string): number {
  const parsed = decode(token) as { o?: unknown };
  if (typeof parsed.o !== "number" || !Number.isSafeInteger(parsed.o) || parsed.o < 0) throw badToken();
  return parsed.o;
}

function decode(token: string): unknown {
  try {
    const value: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (typeof value !== "object" || value === null) throw badToken();
    return value;
  } catch {
    throw badToken();
  }
}

function badToken(): ArtifactError {
  return new ArtifactError("invalid_argument", "page_token is not a token this server issued: pass next_page_token from the previous response unchanged");
}
