import type { ArtifactOrder } from "../../artifact.ts";
import { ArtifactError } from "../../artifact-error.ts";

/**
 * Page tokens are opaque to clients: base64url JSON of the last row's keyset
 * position, so inserts between pages neither skip nor repeat rows:
 * - newest first: created_at and id;
 * - by a metric: the order itself (metric, ascending) and, for a row with
 *   the metric, its value; for one without it (the tail), none;
 * - search by relevance: the row's rank (a float8 the query computes the
 *   same way on every page) besides created_at and id.
 * A token names what order it continues, and is refused with another.
 */
export interface NewestCursor {
  readonly createdAt: Date;
  readonly id: string;
}

/** `value` undefined: the row lacked the metric (the tail of the order). */
export interface MetricCursor extends NewestCursor {
  readonly value: number | undefined;
}

export interface RankCursor extends NewestCursor {
  readonly rank: number;
}

/**
 * One page of `rows`, read with one row more than the page holds (whether
 * there is a next page is whether that row came): the page's rows, and the
 * token after its last one (`tokenAfter`), or "" on the last page.
 */
export function pageOf<Row>(rows: readonly Row[], pageSize: number, tokenAfter: (last: Row) => string): { rows: readonly Row[]; nextPageToken: string } {
  if (rows.length <= pageSize) return { rows, nextPageToken: "" };
  const pageRows = rows.slice(0, pageSize);
  return { rows: pageRows, nextPageToken: tokenAfter(pageRows.at(-1)!) };
}

export function encodeKeysetToken(cursor: NewestCursor): string {
  return encode({ t: cursor.createdAt.toISOString(), i: cursor.id });
}

export function encodeMetricToken(order: ArtifactOrder, cursor: MetricCursor): string {
  return encode({
    o: [order.metric, order.ascending],
    ...(cursor.value === undefined ? {} : { v: cursor.value }),
    t: cursor.createdAt.toISOString(),
    i: cursor.id,
  });
}

export function encodeRankToken(cursor: RankCursor): string {
  return encode({ r: cursor.rank, t: cursor.createdAt.toISOString(), i: cursor.id });
}

/** Versions and alias moves, newest first: the page's last version (or move seq), which the next page starts below. */
export function encodeBelowToken(below: number): string {
  return encode({ below });
}

export function decodeBelowToken(token: string): number | undefined {
  if (token === "") return undefined;
  const { below } = decode(token);
  if (typeof below !== "number" || !Number.isSafeInteger(below) || below < 1) throw badToken();
  return below;
}

export function decodeKeysetToken(token: string): NewestCursor {
  const parsed = decode(token);
  if (Array.isArray(parsed.o)) throw otherOrder("newest first (no order)");
  if ("r" in parsed) throw otherOrder("newest first (no order)", "search by relevance");
  return newest(parsed);
}

export function decodeMetricToken(token: string, order: ArtifactOrder): MetricCursor {
  const parsed = decode(token);
  const wanted = `metric ${JSON.stringify(order.metric)} ${order.ascending ? "ascending" : "descending"}`;
  const made = parsed.o;
  if (made === undefined) throw otherOrder(wanted, "r" in parsed ? "search by relevance" : "newest first");
  if (!Array.isArray(made) || typeof made[0] !== "string" || typeof made[1] !== "boolean") throw badToken();
  if (made[0] !== order.metric || made[1] !== order.ascending) {
    throw otherOrder(wanted, `metric ${JSON.stringify(made[0])} ${made[1] ? "ascending" : "descending"}`);
  }
  if (parsed.v !== undefined && (typeof parsed.v !== "number" || !Number.isFinite(parsed.v))) throw badToken();
  return { ...newest(parsed), value: parsed.v as number | undefined };
}

export function decodeRankToken(token: string): RankCursor {
  const parsed = decode(token);
  if (Array.isArray(parsed.o)) throw otherOrder("relevance (no order)");
  if (!("r" in parsed)) throw "t" in parsed ? otherOrder("relevance (no order)", "newest first") : badToken();
  if (typeof parsed.r !== "number" || !Number.isFinite(parsed.r)) throw badToken();
  return { ...newest(parsed), rank: parsed.r };
}

function newest(parsed: Record<string, unknown>): NewestCursor {
  const createdAt = new Date(String(parsed.t));
  if (typeof parsed.i !== "string" || Number.isNaN(createdAt.getTime())) throw badToken();
  return { createdAt, id: parsed.i };
}

function encode(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

function decode(token: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw badToken();
    return value as Record<string, unknown>;
  } catch {
    throw badToken();
  }
}

function otherOrder(wanted: string, made = "another order"): ArtifactError {
  return new ArtifactError(
    "invalid_argument",
    `page_token continues a listing in ${made}, but this request asks for ${wanted}: pass the same order as the request that returned the token, or start again without page_token`,
  );
}

function badToken(): ArtifactError {
  return new ArtifactError("invalid_argument", "page_token is not a token this server issued: pass next_page_token from the previous response unchanged");
}
