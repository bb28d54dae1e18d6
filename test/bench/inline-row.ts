/**
 * The row a SaveInline of a small text stores, as the benchmark writes it
 * without the service: one prepared single-row INSERT … RETURNING into the
 * real `artifacts` table. Shared by the direct Postgres case (small-cases.ts)
 * and the inline relay (plain-relay.ts), so both do the same database work.
 */
import type pg from "pg";
import { blake3Hex } from "../../src/blake3.ts";

/** ~200 bytes of text, different for every n (what the SaveInline cases send). */
export const inlineText = (n: number) =>
  `{"step":${n},"loss":${(1 / (n + 1)).toFixed(6)},"note":"a small inline artifact of the size configs, metrics and short logs have; ${"x".repeat(60)}"}`;

const INSERT_ARTIFACT = `insert into artifacts (id, tenant_id, kind, name, mime_type, size_bytes, blake3, storage, inline_text, status, created_at, created_by)
  values ($1, $2, $3, $4, $5, $6, $7, 'inline', $8, 'draft', now(), $9) returning id`;

/** Hashes `content` (UTF-8 text) with BLAKE3 and inserts it as an inline artifact named `name`. */
export async function insertInlineArtifact(pool: pg.Pool, row: { id: string; name: string; content: Buffer }): Promise<void> {
  await pool.query({
    name: "bench-insert-artifact",
    text: INSERT_ARTIFACT,
    values: [
      row.id,
      "bench",
      "bench-inline",
      row.name,
      "text/plain; charset=utf-8",
      row.content.byteLength,
      blake3Hex(row.content),
      row.content.toString("utf8"),
      "bench",
    ],
  });
}
