import type { ArtifactFilter, ArtifactOrder } from "../artifact.ts";
import { invalidArgument } from "../artifact-error.ts";
import { parseJsonPath } from "../json-path.ts";
import { checkNoNul, LIMITS } from "./field-checks.ts";

/**
 * filter.inline_json_contains and filter.json_conditions, as the proto
 * documents them: the document must parse as JSON; each condition needs a
 * path of the grammar in ../json-path.ts, a comparison, and (but for
 * EXISTS) a JSON literal — number, string, true, false or null — which the
 * ordering comparisons need to be a number or a string. Strings Postgres's
 * jsonb cannot hold (a NUL character, a lone UTF-16 surrogate) are refused
 * here rather than failing in the database.
 */
export function validateJsonFilter(filter: ArtifactFilter, maxTerms: number): void {
  if (filter.inlineJsonContains !== undefined) {
    const document = parseJson("filter.inline_json_contains", filter.inlineJsonContains, 'a JSON document, e.g. {"status": "ok"}');
    checkJsonbCanHold("filter.inline_json_contains", document);
  }
  const conditions = filter.jsonConditions ?? [];
  if (conditions.length > maxTerms) {
    throw invalidArgument(
      `filter.json_conditions has ${conditions.length} entries; at most ${maxTerms} are allowed (ARTIFACTD_MAX_FILTER_TERMS): narrow the filter, or split the request`,
    );
  }
  for (const [i, condition] of conditions.entries()) {
    const field = `filter.json_conditions[${i}]`;
    const steps = parseJsonPath(condition.path);
    if ("error" in steps) throw invalidArgument(`${field}.path ${JSON.stringify(condition.path.slice(0, 80))} ${steps.error}`);
    if (condition.comparison === "exists") continue;
    const literal = parseJson(`${field}.value`, condition.value, 'a JSON literal: a number, a string in double quotes, true, false or null, e.g. 42 or "ok"');
    if (literal !== null && typeof literal === "object") {
      throw invalidArgument(`${field}.value must be a JSON literal (a number, a string in double quotes, true, false or null), not an object or array`);
    }
    checkJsonbCanHold(`${field}.value`, literal);
    if (typeof literal === "number" && !Number.isFinite(literal)) {
      throw invalidArgument(`${field}.value ${condition.value.slice(0, 40)} is out of range: give a number a double can hold`);
    }
    if (["lt", "le", "gt", "ge"].includes(condition.comparison) && typeof literal !== "number" && typeof literal !== "string") {
      throw invalidArgument(`${field}.value ${condition.value} cannot be ordered: <, <=, > and >= compare with a number or a string in double quotes`);
    }
  }
}

/** ArtifactOrder.metric: 1–128 characters, as metric names are. */
export function validateOrder(order: ArtifactOrder | undefined): void {
  if (!order) return;
  if (order.metric.length === 0 || order.metric.length > LIMITS.maxMetricKey) {
    throw invalidArgument(`order.metric must be a metric name of 1–${LIMITS.maxMetricKey} characters, e.g. accuracy`);
  }
  checkNoNul("order.metric", order.metric);
}

function parseJson(field: string, text: string, expected: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw invalidArgument(`${field} ${JSON.stringify(text.slice(0, 80))} does not parse as JSON: give ${expected}`);
  }
}

/** Keys and string values, however deep: none may hold what jsonb refuses. */
function checkJsonbCanHold(field: string, value: unknown): void {
  const strings = (v: unknown): string[] =>
    typeof v === "string" ? [v] : v !== null && typeof v === "object" ? Object.entries(v).flatMap(([key, inner]) => [key, ...strings(inner)]) : [];
  if (strings(value).some((s) => s.includes("\u0000") || !s.isWellFormed())) {
    throw invalidArgument(`${field} holds a NUL character or a lone UTF-16 surrogate, which cannot be stored or matched`);
  }
}
