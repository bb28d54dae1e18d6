import { PROVENANCE_FIELDS, type ArtifactFilter, type ArtifactInput, type ArtifactSpec, type ArtifactStatus, type Provenance } from "../artifact.ts";
import { invalidArgument } from "../artifact-error.ts";
import { parseArtifactReference, projectProblem, versionedNameProblem } from "@artifactd/api";
import { isArtifactId, PREFIX_PATTERN } from "../artifact-id.ts";
import { LIMITS, checkNoNul } from "./field-checks.ts";
import { validateJsonFilter } from "./validate-query.ts";

/**
 * Checks what a client sent as artifact metadata and returns the domain
 * spec, or throws invalid_argument naming the field and the rule. The limits
 * are the ones the proto comments document; keep both in step.
 */
export interface RawSpec extends Omit<ArtifactSpec, "provenance" | "status"> {
  /** As sent: any keys, checked against PROVENANCE_FIELDS here. */
  readonly provenance: Readonly<Record<string, string>> | undefined;
  /** Unset: the default for a new artifact. */
  readonly status: ArtifactStatus | undefined;
  /** 0 when unset. */
  readonly ttlSeconds: number;
}

const KIND_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const MIME_PATTERN = /^[\w.+-]+\/[\w.+-]+(\s*;.*)?$/;

export function validateSpec(raw: RawSpec | undefined, now: Date): ArtifactSpec {
  if (!raw) throw invalidArgument("spec is required: give at least spec.kind");
  if (!raw.kind) throw invalidArgument('spec.kind is required: a category such as "model", "dataset" or "log"');
  if (!KIND_PATTERN.test(raw.kind)) throw invalidArgument(`spec.kind ${JSON.stringify(raw.kind)} is not valid: use 1–64 characters of A-Z a-z 0-9 . _ -`);
  if (raw.artifactClass && !KIND_PATTERN.test(raw.artifactClass)) {
    throw invalidArgument(`spec.artifact_class ${JSON.stringify(raw.artifactClass)} is not valid: use 1–64 characters of A-Z a-z 0-9 . _ -`);
  }
  checkText("spec.name", raw.name, LIMITS.maxName);
  checkText("spec.title", raw.title, LIMITS.maxTitle);
  if (raw.mimeType && (raw.mimeType.length > LIMITS.maxMimeType || !MIME_PATTERN.test(raw.mimeType))) {
    throw invalidArgument(`spec.mime_type ${JSON.stringify(raw.mimeType.slice(0, 80))} is not a media type: use type/subtype, e.g. application/octet-stream`);
  }
  if (raw.typePrefix && !PREFIX_PATTERN.test(raw.typePrefix)) {
    throw invalidArgument(`spec.type_prefix ${JSON.stringify(raw.typePrefix)} is not valid: use 3–5 lowercase letters, e.g. img`);
  }
  if (raw.expiresAt && raw.expiresAt.getTime() <= now.getTime()) {
    throw invalidArgument("spec.expires_at is in the past: give a future time or leave it unset");
  }
  if (raw.ttlSeconds !== 0) {
    if (raw.expiresAt) throw invalidArgument("give spec.expires_at or spec.ttl_seconds, not both");
    if (!Number.isSafeInteger(raw.ttlSeconds) || raw.ttlSeconds < 1 || raw.ttlSeconds > LIMITS.maxTtlSeconds) {
      throw invalidArgument(`spec.ttl_seconds ${raw.ttlSeconds} is not valid: give 1–${LIMITS.maxTtlSeconds} seconds`);
    }
  }
  if (raw.project) {
    const problem = projectProblem(raw.project);
    if (problem) throw invalidArgument(`spec.project ${JSON.stringify(raw.project.slice(0, 80))} is not valid: ${problem}`);
  }
  if (raw.versioned) {
    const problem = versionedNameProblem(raw.name);
    if (problem) throw invalidArgument(`spec.name ${JSON.stringify(raw.name.slice(0, 80))} cannot be versioned (spec.versioned): ${problem}`);
  }
  const expiresAt = raw.ttlSeconds ? new Date(now.getTime() + raw.ttlSeconds * 1000) : raw.expiresAt;
  return {
    kind: raw.kind,
    artifactClass: raw.artifactClass,
    name: raw.name,
    title: raw.title,
    mimeType: raw.mimeType,
    labels: validateLabels("spec.labels", raw.labels),
    tags: validateTags("spec.tags", raw.tags),
    metrics: validateMetrics("spec.metrics", raw.metrics),
    provenance: validateProvenance(raw.provenance),
    inputs: validateInputs(raw.inputs),
    pinned: raw.pinned,
    status: raw.status ?? "draft",
    expiresAt,
    typePrefix: raw.typePrefix,
    versioned: raw.versioned,
    project: raw.project,
  };
}

export function validateLabels(field: string, labels: Readonly<Record<string, string>>, maxLabels: number = LIMITS.maxLabels): Record<string, string> {
  const entries = Object.entries(labels);
  if (entries.length > maxLabels) throw invalidArgument(`${field} has ${entries.length} labels; at most ${maxLabels} are allowed`);
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > LIMITS.maxLabelKey) {
      throw invalidArgument(`${field} key ${JSON.stringify(key.slice(0, 40))} must be 1–${LIMITS.maxLabelKey} characters`);
    }
    checkNoNul(`${field} key ${JSON.stringify(key.slice(0, 40))}`, key);
    if (value.length > LIMITS.maxLabelValue) throw invalidArgument(`${field}[${JSON.stringify(key)}] is longer than ${LIMITS.maxLabelValue} characters`);
    checkNoNul(`${field}[${JSON.stringify(key)}]`, value);
  }
  return Object.fromEntries(entries);
}

export function validateTags(field: string, tags: readonly string[], maxTags: number = LIMITS.maxTags): string[] {
  const unique = [...new Set(tags)].sort();
  if (unique.length > maxTags) throw invalidArgument(`${field} has ${unique.length} tags; at most ${maxTags} are allowed`);
  for (const tag of unique) {
    if (tag.length === 0 || tag.length > LIMITS.maxTag)
      throw invalidArgument(`${field} entry ${JSON.stringify(tag.slice(0, 40))} must be 1–${LIMITS.maxTag} characters`);
    checkNoNul(`${field} entry ${JSON.stringify(tag.slice(0, 40))}`, tag);
  }
  return unique;
}

export function validateMetrics(field: string, metrics: Readonly<Record<string, number>>): Record<string, number> {
  const entries = Object.entries(metrics);
  if (entries.length > LIMITS.maxMetrics) throw invalidArgument(`${field} has ${entries.length} metrics; at most ${LIMITS.maxMetrics} are allowed`);
  for (const [key, value] of entries) {
    if (key.length === 0 || key.length > LIMITS.maxMetricKey) {
      throw invalidArgument(`${field} key ${JSON.stringify(key.slice(0, 40))} must be 1–${LIMITS.maxMetricKey} characters`);
    }
    if (!Number.isFinite(value)) throw invalidArgument(`${field}[${JSON.stringify(key)}] is ${value}: metrics must be finite numbers`);
  }
  return Object.fromEntries(entries);
}

function validateProvenance(raw: Readonly<Record<string, string>> | undefined): Provenance {
  const provenance: Provenance = {};
  for (const field of PROVENANCE_FIELDS) {
    const value = raw?.[field];
    if (!value) continue;
    checkText(`spec.provenance.${field}`, value, LIMITS.maxProvenance);
    provenance[field] = value;
  }
  return provenance;
}

function validateInputs(inputs: readonly ArtifactInput[]): ArtifactInput[] {
  if (inputs.length > LIMITS.maxInputs) throw invalidArgument(`spec.inputs has ${inputs.length} entries; at most ${LIMITS.maxInputs} are allowed`);
  const seen = new Set<string>();
  return inputs.map((input, i) => {
    // An id, or a reference resolved when the artifact is recorded (adapters/metadata/kysely-artifact-versions.ts).
    const reference = parseArtifactReference(input.artifactId);
    if (reference.kind === "malformed") {
      throw invalidArgument(
        `spec.inputs[${i}].artifact_id ${JSON.stringify(input.artifactId.slice(0, 80))} is not an artifact id or reference: ${reference.problem}`,
      );
    }
    if (seen.has(input.artifactId)) throw invalidArgument(`spec.inputs names ${input.artifactId} twice`);
    seen.add(input.artifactId);
    checkText(`spec.inputs[${i}].role`, input.role, LIMITS.maxRole);
    if (input.requiredClass && !KIND_PATTERN.test(input.requiredClass)) {
      throw invalidArgument(`spec.inputs[${i}].required_class ${JSON.stringify(input.requiredClass)} is not a valid class`);
    }
    if (input.requiredKind && !KIND_PATTERN.test(input.requiredKind)) {
      throw invalidArgument(`spec.inputs[${i}].required_kind ${JSON.stringify(input.requiredKind)} is not a valid kind`);
    }
    return { artifactId: input.artifactId, role: input.role, requiredClass: input.requiredClass, requiredKind: input.requiredKind };
  });
}

function checkText(field: string, value: string, max: number): void {
  if (value.length > max) throw invalidArgument(`${field} is ${value.length} characters long; at most ${max} are allowed`);
  checkNoNul(field, value);
}

/**
 * A filter from a request, before it becomes SQL. Each of its lists is
 * capped first (`maxTerms`, ARTIFACTD_MAX_FILTER_TERMS): every entry becomes
 * one or more WHERE terms, and thousands of them overflow the query builder's
 * stack, which surfaced as INTERNAL, or make a query Postgres takes long to
 * plan. Then every value is checked as checkFilterText and
 * validateLabels / validateTags say.
 */
export function validateFilter(filter: ArtifactFilter, maxTerms: number): void {
  const lists = {
    metric_ranges: filter.metricRanges?.length ?? 0,
    labels: Object.keys(filter.labels ?? {}).length,
    tags_all: filter.tagsAll?.length ?? 0,
    tags_any: filter.tagsAny?.length ?? 0,
  };
  for (const [name, count] of Object.entries(lists)) {
    if (count > maxTerms) {
      throw invalidArgument(
        `filter.${name} has ${count} entries; at most ${maxTerms} are allowed (ARTIFACTD_MAX_FILTER_TERMS): narrow the filter, or split the request`,
      );
    }
  }
  checkFilterText(filter);
  if (filter.labels) validateLabels("filter.labels", filter.labels, maxTerms);
  if (filter.tagsAll) validateTags("filter.tags_all", filter.tagsAll, maxTerms);
  if (filter.tagsAny) validateTags("filter.tags_any", filter.tagsAny, maxTerms);
  for (const range of filter.metricRanges ?? []) {
    if (!range.name) throw invalidArgument("filter.metric_ranges[].name is required");
    if (range.min !== undefined && range.max !== undefined && range.min > range.max) {
      throw invalidArgument(`filter.metric_ranges for ${JSON.stringify(range.name)}: min ${range.min} is greater than max ${range.max}`);
    }
  }
  if (filter.createdAfter && filter.createdBefore && filter.createdAfter >= filter.createdBefore) {
    throw invalidArgument("filter.created_after must be earlier than filter.created_before");
  }
  validateJsonFilter(filter, maxTerms);
}

/**
 * The plain text fields of a filter: none may hold a NUL character (Postgres
 * refuses it, which would surface as an internal error). Labels and tags are
 * checked, NUL included, by validateLabels / validateTags.
 */
function checkFilterText(filter: ArtifactFilter): void {
  const plain = {
    kind: filter.kind,
    artifact_class: filter.artifactClass,
    name_prefix: filter.namePrefix,
    mime_type: filter.mimeType,
    project: filter.project,
    name: filter.name,
  };
  for (const [name, value] of Object.entries(plain)) if (value) checkNoNul(`filter.${name}`, value);
  for (const name of PROVENANCE_FIELDS) {
    const value = filter.provenance?.[name];
    if (value) checkNoNul(`filter.provenance.${name}`, value);
  }
  for (const [i, range] of (filter.metricRanges ?? []).entries()) checkNoNul(`filter.metric_ranges[${i}].name`, range.name);
}

/** Artifact ids from requests: malformed ones are refused before any lookup. */
export function requireArtifactId(field: string, value: string): string {
  if (!value) throw invalidArgument(`${field} is required`);
  if (!isArtifactId(value)) {
    throw invalidArgument(
      `${field} ${JSON.stringify(value.slice(0, 80))} is not an artifact id: expected <prefix>_<26 characters>, e.g. art_01jf3k8z9q4v6w2x7y5t0r1s3m`,
    );
  }
  return value;
}
