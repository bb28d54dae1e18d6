import { sql, type RawBuilder } from "kysely";
import type { JsonCondition } from "../../artifact.ts";
import { parseJsonPath, toSqlJsonPath } from "../../json-path.ts";

/**
 * filter.inline_json_contains and filter.json_conditions as WHERE terms on
 * artifacts.inline_json. Every value is a bound parameter: the JSON document,
 * the SQL/JSON path (written from the parsed steps, see ../../json-path.ts)
 * and the literal. Filters reach it validated (validateFilter).
 *
 * A condition reads the value at its path once (jsonb_path_query_first,
 * strict and silent: SQL NULL when the path does not exist, JSON null when
 * it holds null) and compares it as jsonb: numbers by value (1 = 1.0),
 * strings by the database collation. Ordering comparisons also require the
 * same JSON type, since jsonb orders values of different types by type.
 * An equality on a path of members only also adds the containment it
 * implies (`inline_json @> {"a":{"b":v}}`), which the GIN index
 * artifacts_inline_json serves.
 */
export function jsonFilterTerms(inlineJsonContains: string | undefined, conditions: readonly JsonCondition[]): RawBuilder<boolean>[] {
  const terms: RawBuilder<boolean>[] = [];
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
        const type = typeof literal === "number" ? "number" : "string";
        const operator = { lt: sql`<`, le: sql`<=`, gt: sql`>`, ge: sql`>=` }[condition.comparison];
        terms.push(sql<boolean>`(jsonb_typeof(${value}) = ${type} and ${value} ${operator} ${operand})`);
      }
    }
  }
  return terms;
}
