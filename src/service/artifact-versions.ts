import { aliasProblem, LATEST_ALIAS, parseArtifactReference, projectProblem, versionedNameProblem } from "@artifactd/api";
import type { Artifact, ArtifactStatus, Caller } from "../artifact.ts";
import { invalidArgument, notFound } from "../artifact-error.ts";
import { isArtifactId } from "../artifact-id.ts";
import type { AliasMove, AliasMoveBy, VersionedName } from "../artifact-versions.ts";
import type { Page } from "../ports/artifact-queries.ts";
import type { ArtifactVersions } from "../ports/artifact-versions.ts";
import { requireScope } from "./api-tokens.ts";
import { checkNoNul } from "./field-checks.ts";

/**
 * The use cases of versions, aliases and references (ArtifactSpec.versioned,
 * SetAlias, DeleteAlias, ListVersions, ListAliasHistory, BatchGetArtifacts,
 * and the resolution of a reference wherever a call takes an id). The
 * grammar of references is @artifactd/api's, shared with the clients.
 */

/** The longest reason an alias move keeps (SetAliasRequest.reason). */
export const MAX_ALIAS_REASON = 512;

export interface SetAliasRequest {
  readonly artifactId: string;
  readonly alias: string;
  /** Undefined: move whatever the alias points at; '' : only if it does not exist yet. */
  readonly expectedArtifactId: string | undefined;
  readonly reason: string;
}

/** BatchGetArtifacts' answer for one requested id or reference. */
export type ArtifactLookup = { readonly requested: string } & ({ readonly artifact: Artifact } | { readonly notFound: string });

export interface ArtifactVersionUseCases {
  /** The id `value` (an id or a reference, from the request's `field`) stands for now: invalid_argument when malformed, not_found naming what is missing. */
  resolveId(caller: Caller, field: string, value: string): Promise<string>;
  setAlias(caller: Caller, request: SetAliasRequest): Promise<{ artifact: Artifact; move: AliasMove }>;
  deleteAlias(caller: Caller, name: VersionedName, alias: string, reason: string): Promise<AliasMove>;
  setStatusMovingAlias(caller: Caller, id: string, status: ArtifactStatus | undefined, alias: string): Promise<{ artifact: Artifact; move: AliasMove }>;
  listVersions(caller: Caller, name: VersionedName, includeDeleted: boolean, pageSize: number, pageToken: string): Promise<Page<Artifact>>;
  listAliasHistory(caller: Caller, name: VersionedName, alias: string, pageSize: number, pageToken: string): Promise<Page<AliasMove>>;
  batchGet(caller: Caller, ids: readonly string[], includeContent: boolean): Promise<ArtifactLookup[]>;
}

export function createArtifactVersionUseCases(deps: {
  readonly versions: ArtifactVersions;
  readonly maxBatchItems: number;
  /** The page size a request asks for, checked (0: the default). */
  readonly pageSizeOf: (pageSize: number) => number;
}): ArtifactVersionUseCases {
  const { versions } = deps;

  /** An id, or the reference resolved; what is missing when it resolves to nothing. */
  const lookUp = async (caller: Caller, field: string, value: string): Promise<{ id: string } | { missing: string }> => {
    if (!value) throw invalidArgument(`${field} is required: an artifact id, or a reference such as orders:latest or orders@v3`);
    const reference = parseArtifactReference(value);
    if (reference.kind === "malformed") {
      throw invalidArgument(`${field} ${JSON.stringify(value.slice(0, 80))} is not an artifact id or reference: ${reference.problem}`);
    }
    if (reference.kind === "id") return { id: reference.id };
    return versions.resolveReference(caller.tenantId, reference);
  };

  const resolveId = async (caller: Caller, field: string, value: string) => {
    const found = await lookUp(caller, field, value);
    if ("missing" in found) throw notFound(`${field} ${value}: ${found.missing}`);
    return found.id;
  };

  const by = (caller: Caller, reason: string): AliasMoveBy => {
    if (reason.length > MAX_ALIAS_REASON) throw invalidArgument(`reason is ${reason.length} characters long; at most ${MAX_ALIAS_REASON} are allowed`);
    checkNoNul("reason", reason);
    return { movedBy: caller.principal, reason };
  };

  return {
    resolveId,

    async setAlias(caller, request) {
      requireScope(caller, "read-write", "set aliases");
      checkSettableAlias(request.alias);
      const expected = request.expectedArtifactId;
      if (expected && !isArtifactId(expected)) {
        throw invalidArgument(
          `expected_artifact_id ${JSON.stringify(expected.slice(0, 80))} is not an artifact id: give the id the alias points at now, or "" for "does not exist yet"`,
        );
      }
      const moveBy = by(caller, request.reason);
      const id = await resolveId(caller, "artifact_id", request.artifactId);
      const result = await versions.setAlias(caller.tenantId, id, request.alias, moveBy, expected);
      if (!result) throw notFound(`artifact ${id} does not exist`);
      return result;
    },

    async deleteAlias(caller, name, alias, reason) {
      requireScope(caller, "read-write", "delete aliases");
      checkName(name);
      checkSettableAlias(alias);
      const move = await versions.deleteAlias(caller.tenantId, name, alias, by(caller, reason));
      if (!move) throw notFound(`${describe(name)} has no alias ${JSON.stringify(alias)}`);
      return move;
    },

    async setStatusMovingAlias(caller, rawId, status, alias) {
      requireScope(caller, "read-write", "change an artifact's status");
      if (status !== "approved") {
        throw invalidArgument(
          `move_alias is only for status STATUS_APPROVED (an approval moves the alias), not ${status ? `STATUS_${status.toUpperCase()}` : "an unset status"}`,
        );
      }
      checkSettableAlias(alias, "move_alias");
      const id = await resolveId(caller, "id", rawId);
      const result = await versions.setStatusMovingAlias(caller.tenantId, id, status, alias, { movedBy: caller.principal, reason: "approved" });
      if (!result) throw notFound(`artifact ${id} does not exist`);
      return result;
    },

    async listVersions(caller, name, includeDeleted, pageSize, pageToken) {
      checkName(name);
      const page = await versions.listVersions(caller.tenantId, name, includeDeleted, { pageSize: deps.pageSizeOf(pageSize), pageToken });
      if (!page) throw notFound(`there is no versioned artifact named ${describe(name)}`);
      return page;
    },

    async listAliasHistory(caller, name, alias, pageSize, pageToken) {
      checkName(name);
      if (alias) checkAlias(alias, "alias");
      const page = await versions.listAliasHistory(caller.tenantId, name, alias, { pageSize: deps.pageSizeOf(pageSize), pageToken });
      if (!page) throw notFound(`there is no versioned artifact named ${describe(name)}`);
      return page;
    },

    async batchGet(caller, ids, includeContent) {
      if (ids.length > deps.maxBatchItems) {
        throw invalidArgument(`ids has ${ids.length} entries; at most ${deps.maxBatchItems} are allowed (ARTIFACTD_MAX_BATCH_ITEMS): split the request`);
      }
      // Every entry is parsed before anything is read: a malformed one fails the call, whatever its place.
      for (const [i, value] of ids.entries()) {
        const parsed = parseArtifactReference(value);
        if (parsed.kind === "malformed") {
          throw invalidArgument(`ids[${i}] ${JSON.stringify(value.slice(0, 80))} is not an artifact id or reference: ${parsed.problem}`);
        }
      }
      const found: ({ id: string } | { missing: string })[] = [];
      for (const [i, value] of ids.entries()) found.push(await lookUp(caller, `ids[${i}]`, value));
      const wanted = found.flatMap((entry) => ("id" in entry ? [entry.id] : []));
      const byId = new Map((await versions.getArtifacts(caller.tenantId, wanted, includeContent)).map((a) => [a.id, a]));
      return ids.map((requested, i): ArtifactLookup => {
        const entry = found[i]!;
        if ("missing" in entry) return { requested, notFound: entry.missing };
        const artifact = byId.get(entry.id);
        return artifact ? { requested, artifact } : { requested, notFound: `artifact ${entry.id} does not exist` };
      });
    },
  };
}

function checkName(name: VersionedName): void {
  const problem = versionedNameProblem(name.name);
  if (problem) throw invalidArgument(`name ${JSON.stringify(name.name.slice(0, 80))} is not a versioned name: ${problem}`);
  if (name.project) {
    const projectIssue = projectProblem(name.project);
    if (projectIssue) throw invalidArgument(`project ${JSON.stringify(name.project.slice(0, 80))} is not valid: ${projectIssue}`);
  }
}

function checkAlias(alias: string, field: string): void {
  if (!alias) throw invalidArgument(`${field} is required: an alias name such as production`);
  const problem = aliasProblem(alias);
  if (problem) throw invalidArgument(`${field} ${JSON.stringify(alias.slice(0, 80))} is not a valid alias: ${problem}`);
}

/** An alias a client may set or remove: valid, and not `latest`, which the server keeps itself. */
function checkSettableAlias(alias: string, field = "alias"): void {
  checkAlias(alias, field);
  if (alias === LATEST_ALIAS) throw invalidArgument(`${field} "${LATEST_ALIAS}" follows the newest version not deleted by itself: it cannot be set or removed`);
}

function describe(name: VersionedName): string {
  return JSON.stringify(name.project ? `${name.project}/${name.name}` : name.name);
}
