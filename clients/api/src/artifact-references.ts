/**
 * References to artifacts, as the proto's "References" section writes them
 * (proto/artifacts/v1/artifact_service.proto), parsed the same way by the
 * service, the Node SDK, the CLI and the web page:
 *
 *     <id>                          art_01jf3k8z9q4v6w2x7y5t0r1s3m
 *     [project/]name:alias          orders:latest, team/orders:production
 *     [project/]name@v3             orders@v3, orders@3
 *     artifact://<any of the above> artifact://team/orders@v3
 *
 * The rules on names, projects and aliases are the ones ArtifactSpec.versioned,
 * ArtifactSpec.project and SetAlias check, kept here so a reference that
 * parses names something that could exist.
 */

export type ArtifactReference =
  | { readonly kind: "id"; readonly id: string }
  | { readonly kind: "alias"; readonly project: string; readonly name: string; readonly alias: string }
  | { readonly kind: "version"; readonly project: string; readonly name: string; readonly version: number };

/** What parseArtifactReference answers: the reference, or why the text is not one. */
export type ParsedArtifactReference = ArtifactReference | { readonly kind: "malformed"; readonly problem: string };

export const ARTIFACT_URI_SCHEME = "artifact://";

/** The alias every versioned name has: its newest version not deleted; computed, never stored or set. */
export const LATEST_ALIAS = "latest";

const ID_PATTERN = /^[a-z]{3,5}_[0-9abcdefghjkmnpqrstvwxyz]{26}$/;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const PROJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ALIAS_PATTERN = /^[a-z][a-z0-9._-]{0,63}$/;
const VERSION_LIKE = /^v[0-9]+$/;
const VERSION_PATTERN = /^v?([1-9][0-9]{0,14})$/;

const GRAMMAR = "expected an id (art_01jf…), [project/]name:alias, [project/]name@v3, or artifact:// followed by one of these";

/** Why `name` cannot be a versioned name (1–128 of [A-Za-z0-9._-], starting with a letter or digit); undefined when it can. */
export function versionedNameProblem(name: string): string | undefined {
  if (name === "") return "a versioned artifact needs a name";
  return NAME_PATTERN.test(name) ? undefined : "use 1–128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit";
}

/** Why `project` cannot be a project (1–64 of [A-Za-z0-9._-], starting with a letter or digit); undefined when it can. */
export function projectProblem(project: string): string | undefined {
  return PROJECT_PATTERN.test(project) ? undefined : "use 1–64 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit";
}

/**
 * Why `alias` cannot be an alias name (1–64 of [a-z0-9._-], starting with a
 * letter, not v<digits>, which reads as a version); undefined when it can.
 * `latest` passes: whether it may be set is SetAlias's rule, not the name's.
 */
export function aliasProblem(alias: string): string | undefined {
  if (!ALIAS_PATTERN.test(alias)) return "use 1–64 characters of a-z 0-9 . _ -, starting with a lowercase letter";
  if (VERSION_LIKE.test(alias)) return "v followed by digits names a version, not an alias";
  return undefined;
}

/** True for an artifact id (`<prefix>_<26 characters>`), not a reference by name. */
export function isArtifactIdText(value: string): boolean {
  return ID_PATTERN.test(value);
}

/** The reference `text` stands for, or why it stands for none. Never throws. */
export function parseArtifactReference(text: string): ParsedArtifactReference {
  const malformed = (problem: string): ParsedArtifactReference => ({ kind: "malformed", problem });
  if (typeof text !== "string" || text === "") return malformed(`it is empty: ${GRAMMAR}`);
  const body = text.startsWith(ARTIFACT_URI_SCHEME) ? text.slice(ARTIFACT_URI_SCHEME.length) : text;
  if (ID_PATTERN.test(body)) return { kind: "id", id: body };
  const at = body.search(/[:@]/);
  if (at < 0) return malformed(`it is neither an id nor names a version or alias: ${GRAMMAR}`);
  const path = body.slice(0, at);
  const selector = body.slice(at + 1);
  const slash = path.indexOf("/");
  const project = slash < 0 ? "" : path.slice(0, slash);
  const name = slash < 0 ? path : path.slice(slash + 1);
  if (slash >= 0) {
    const problem = projectProblem(project);
    if (problem) return malformed(`project ${JSON.stringify(project)}: ${problem}`);
  }
  const nameProblem = versionedNameProblem(name);
  if (nameProblem) return malformed(`name ${JSON.stringify(name)}: ${nameProblem}`);
  if (body[at] === "@") {
    const version = VERSION_PATTERN.exec(selector);
    if (!version) return malformed(`version ${JSON.stringify(selector)}: give @v<number> or @<number>, from 1`);
    return { kind: "version", project, name, version: Number(version[1]) };
  }
  const problem = aliasProblem(selector);
  if (problem) return malformed(`alias ${JSON.stringify(selector)}: ${problem}`);
  return { kind: "alias", project, name, alias: selector };
}

/** The text of a reference, as parseArtifactReference reads it back (without the artifact:// scheme). */
export function formatArtifactReference(reference: ArtifactReference): string {
  if (reference.kind === "id") return reference.id;
  const path = reference.project ? `${reference.project}/${reference.name}` : reference.name;
  return reference.kind === "alias" ? `${path}:${reference.alias}` : `${path}@v${reference.version}`;
}
