import { invalidArgument } from "../artifact-error.ts";

/** Sizes of what a request may hold, shared by every check of its fields. */
export const LIMITS = Object.freeze({
  maxLabels: 64,
  maxLabelKey: 128,
  maxLabelValue: 1024,
  maxTags: 64,
  maxTag: 128,
  maxMetrics: 64,
  maxMetricKey: 128,
  maxName: 256,
  maxTitle: 512,
  maxMimeType: 255,
  maxProvenance: 256,
  maxInputs: 256,
  maxRole: 64,
  maxTtlSeconds: 10 * 366 * 24 * 3600,
});

/** Postgres text, jsonb and text[] cannot hold U+0000: refuse it before it reaches the database. */
export function checkNoNul(field: string, value: string): void {
  if (value.includes("\u0000")) throw invalidArgument(`${field} contains a NUL character, which cannot be stored or matched`);
}
