import type { Caller } from "../artifact.ts";
import { ArtifactError, failedPrecondition, invalidArgument, notFound } from "../artifact-error.ts";
import type { ArtifactQueries } from "../ports/artifact-queries.ts";
import type { ArtifactUsage, ArtifactUsageStore } from "../ports/artifact-usages.ts";
import { requireScope } from "./api-tokens.ts";
import { checkNoNul, LIMITS } from "./field-checks.ts";

export interface UsageDeps {
  readonly metadata: ArtifactQueries & { readonly artifactUsages: ArtifactUsageStore };
}

/** What RecordUsage needs beyond the store: the service's resolver of ids and references (./artifact-versions.ts). */
export interface RecordUsageDeps extends UsageDeps {
  readonly resolveId: (caller: Caller, field: string, value: string) => Promise<string>;
}

export interface RecordUsageRequest {
  /** As the request gave it: an id or a reference (`name:alias`, `name@v3`, `artifact://…`). */
  readonly artifactId: string;
  readonly runId: string;
  readonly role: string;
}

/** The longest run id, as for provenance.run_id and ArchiveRun. */
const MAX_RUN_ID = LIMITS.maxProvenance;

/**
 * RecordUsage: records that a run used an artifact without producing one.
 * The same artifact, run and role recorded again returns the first record
 * unchanged (retries and reruns are harmless). Only a live artifact of the
 * caller's tenant can be used: another tenant's id is NOT_FOUND as an
 * unknown one is, a deleted artifact FAILED_PRECONDITION.
 */
export async function recordUsage(deps: RecordUsageDeps, caller: Caller, request: RecordUsageRequest): Promise<ArtifactUsage> {
  requireScope(caller, "read-write", "record artifact usages");
  const artifactId = await deps.resolveId(caller, "artifact_id", request.artifactId);
  if (!request.runId) throw invalidArgument("run_id is required: the run that used the artifact (1–256 characters)");
  if (request.runId.length > MAX_RUN_ID) throw invalidArgument(`run_id is ${request.runId.length} characters long; at most ${MAX_RUN_ID} are allowed`);
  checkNoNul("run_id", request.runId);
  if (request.role.length > LIMITS.maxRole) throw invalidArgument(`role is ${request.role.length} characters long; at most ${LIMITS.maxRole} are allowed`);
  checkNoNul("role", request.role);

  const artifact = await deps.metadata.getArtifact(caller.tenantId, artifactId);
  if (!artifact) throw notFound(`artifact ${artifactId} does not exist`);
  const deleted = () => failedPrecondition(`artifact ${artifactId} was deleted: a deleted artifact's use cannot be recorded`);
  if (artifact.deletedAt) throw deleted();
  const usage = await deps.metadata.artifactUsages.recordUsage(caller.tenantId, {
    artifactId,
    runId: request.runId,
    role: request.role,
    recordedAt: new Date(),
    recordedBy: caller.principal,
  });
  // Nothing recorded and nothing there before: the artifact was deleted between the read and the insert.
  if (!usage) throw deleted();
  return usage;
}

/**
 * The uses of one artifact for GetLineage, oldest first. Like the lineage
 * walk they are bounded by ARTIFACTD_MAX_LINEAGE_NODES: past it the answer
 * is refused rather than cut short without saying so.
 */
export async function lineageUsages(deps: UsageDeps, caller: Caller, artifactId: string, maxUsages: number): Promise<ArtifactUsage[]> {
  const usages = await deps.metadata.artifactUsages.listUsages(caller.tenantId, artifactId, maxUsages + 1);
  if (usages.length > maxUsages) {
    throw new ArtifactError(
      "resource_exhausted",
      `artifact ${artifactId} was used by more than ${maxUsages} runs; at most ${maxUsages} uses are returned with its lineage (ARTIFACTD_MAX_LINEAGE_NODES)`,
    );
  }
  return usages;
}
