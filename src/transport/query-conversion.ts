import {
  JsonComparison,
  type ArtifactFilter as ArtifactFilterMessage,
  type ArtifactOrder as ArtifactOrderMessage,
} from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { ArtifactFilter, ArtifactOrder, JsonComparison as Comparison, JsonCondition } from "../artifact.ts";
import { invalidArgument } from "../artifact-error.ts";

/** The inline JSON terms of a proto filter (empty inline_json_contains: unset). Their values are checked by the service. */
export function jsonFilterFromProto(message: ArtifactFilterMessage): Pick<ArtifactFilter, "inlineJsonContains" | "jsonConditions"> {
  const terms: { inlineJsonContains?: string; jsonConditions?: JsonCondition[] } = {};
  if (message.inlineJsonContains !== "") terms.inlineJsonContains = message.inlineJsonContains;
  if (message.jsonConditions.length > 0) {
    terms.jsonConditions = message.jsonConditions.map((c, i) => ({
      path: c.path,
      comparison: comparisonFromProto(`filter.json_conditions[${i}].comparison`, c.comparison),
      value: c.value,
    }));
  }
  return terms;
}

const COMPARISONS: Partial<Record<JsonComparison, Comparison>> = {
  [JsonComparison.EQ]: "eq",
  [JsonComparison.NE]: "ne",
  [JsonComparison.LT]: "lt",
  [JsonComparison.LE]: "le",
  [JsonComparison.GT]: "gt",
  [JsonComparison.GE]: "ge",
  [JsonComparison.EXISTS]: "exists",
};

function comparisonFromProto(field: string, comparison: JsonComparison): Comparison {
  const known = COMPARISONS[comparison];
  if (!known) throw invalidArgument(`${field} is required: one of EQ, NE, LT, LE, GT, GE, EXISTS (got ${comparison})`);
  return known;
}

/** Unset: the call's default order. */
export function orderFromProto(message: ArtifactOrderMessage | undefined): ArtifactOrder | undefined {
  return message ? { metric: message.metric, ascending: message.ascending } : undefined;
}
