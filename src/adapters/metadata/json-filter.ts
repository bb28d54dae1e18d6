import { sql, type RawBuilder } from "kysely";
import type { JsonCondition } from "../../artifact.ts";
import { parseJsonPath, toSqlJsonPath } from "../../json-path.ts";

/**
 * filter.inline_json_contains and filter.json_conditions as WHERE terms on
 * artifacts.inline_json. Every value is a bound parameter: the JSON document,
 * the SQL/JSON path (written from the parsed steps, see ../../json-path.ts)
 * and the literal. Filters reach it validated (validateFilter).
 *
 * Paths are strict (no automatic unwrapping of arrays) and silent (a path
 * that does not exist is no match, not an error). EXISTS, EQ and NE read the
 * value at the path (jsonb_path_query_first: SQL NULL when there is none,
 * JSON null when it holds null) and compare it as jsonb, numbers by value
 * (1 = 1.0); NE holds for a value of another type. An equality on a path of
 * members only also adds the containment it implies
 * (`inline_json @> {"a":{"b":v}}`), which the GIN index
 * artifacts_inline_json serves. The ordering comparisons are one SQL/JSON
 * path filter, which compares only values of the same type (numbers by
 * value, strings by code point).
 */
export function jsonFilterTerms(inlineJsonContains: string | undefined, conditions: readonly JsonCondition[]): RawBuilder<boolean>[] {
  const terms: RawBuilder<boolean>[] = [];
  // Implied by every term below; said outright, it lets the planner read the tenant's JSON artifacts alone
  // (artifacts_tenant_json_created) where no other index narrows the rows.
  if (inlineJsonContains !== undefined || conditions.length > 0) terms.push(sql<boolean>`artifacts.inline_json is not null`);
  if (inlineJsonContains !== undefined) terms.push(sql<boolean>`artifacts.inline_json @> ${inlineJsonContains}::jsonb`);
  for (const condition of conditions) {
    const steps = parseJsonPath(condition.path);
    if ("error" in steps) throw new Error(`json_conditions path ${JSON.stringify(condition.path)} reached the store unvalidated: ${steps.error}`);
    const value = sql`jsonb_path_query_first(artifacts.inline_json, ${toSqlJsonPath(steps)}::jsonpath, '{}'::jsonb, true)`;
    if (condition.comparison === "exists") {
      terms.push(sql<boolean>`${value} is not null`);
      continue;
    }
    const literal: unknown = JSON.parse(condition.value);
    const operand = sql`${JSON.stringify(literal)}::jsonb`;
    switch (condition.comparison) {
      case "eq":
        if (steps.every((s) => "member" in s)) {
          const document = steps.reduceRight<unknown>((inner, s) => ({ [(s as { member: string }).member]: inner }), literal);
          terms.push(sql<boolean>`artifacts.inline_json @> ${JSON.stringify(document)}::jsonb`);
        }
        terms.push(sql<boolean>`${value} = ${operand}`);
        break;
      case "ne":
        terms.push(sql<boolean>`${value} <> ${operand}`);
        break;
      default: {
        // One jsonpath filter, its literal a variable ($v) rather than text in the path. SQL/JSON path
        // compares only values of the same type: a string is neither less nor more than a number.
        const operator = { lt: "<", le: "<=", gt: ">", ge: ">=" }[condition.comparison];
        const path = `${toSqlJsonPath(steps)} ? (@ ${operator} $v)`;
        terms.push(sql<boolean>`jsonb_path_exists(artifacts.inline_json, ${path}::jsonpath, ${JSON.stringify({ v: literal })}::jsonb, true)`);
      }
    }
  }
  return terms;
}
