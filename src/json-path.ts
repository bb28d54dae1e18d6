/**
 * The JSON paths of filter.json_conditions: `$` then `.member` or `[index]`
 * steps (`$.rows`, `$.eval.f1`, `$.items[0].id`), at most 16 steps, members
 * of [A-Za-z0-9_-]. Deliberately a small grammar rather than SQL/JSON path:
 * what a client sends is parsed into steps here, and the store writes the
 * SQL/JSON path from the steps alone, so no text from a request reaches the
 * path language (and none reaches SQL but as a bound parameter).
 */
export type JsonPathStep = { readonly member: string } | { readonly index: number };

export const MAX_JSON_PATH_STEPS = 16;
const STEP = /^(?:\.([A-Za-z0-9_-]+)|\[(0|[1-9][0-9]{0,8})\])/;

/** The steps of a path, or why it is not one. */
export function parseJsonPath(path: string): JsonPathStep[] | { readonly error: string } {
  if (!path.startsWith("$")) return { error: "must start with $, e.g. $.rows or $.items[0].id" };
  const steps: JsonPathStep[] = [];
  let rest = path.slice(1);
  while (rest.length > 0) {
    const step = STEP.exec(rest);
    if (!step) {
      return { error: `cannot read ${JSON.stringify(rest.slice(0, 40))}: steps are .member (letters, digits, _ and -) or [index] (a whole number)` };
    }
    steps.push(step[1] !== undefined ? { member: step[1] } : { index: Number(step[2]) });
    if (steps.length > MAX_JSON_PATH_STEPS) return { error: `has more than ${MAX_JSON_PATH_STEPS} steps` };
    rest = rest.slice(step[0].length);
  }
  return steps;
}

/**
 * The steps as an SQL/JSON path in strict mode (no automatic unwrapping of
 * arrays, so `$.a` never matches inside `{"a": [..]}` element by element).
 * Members are double-quoted; the grammar above allows no character that
 * would need escaping inside the quotes.
 */
export function toSqlJsonPath(steps: readonly JsonPathStep[]): string {
  return `strict $${steps.map((s) => ("member" in s ? `."${s.member}"` : `[${s.index}]`)).join("")}`;
}
