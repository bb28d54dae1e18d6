import { parseArtifactReference } from "@artifactd/api";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";

/**
 * Typed artifact references. An artifact id is `<prefix>_<26 characters>`;
 * the prefix (3–5 lowercase letters) tells what the artifact is, as in
 * `img_…` or `vid_…`, and the types below follow it, so a function that
 * takes an ImageRef does not accept a VideoRef by mistake.
 *
 * The server picks the prefix from the mime type when the spec names none
 * (image/* → img, video/* → vid, audio/* → aud, PDF and text documents →
 * doc, inline JSON → json, inline text → txt, else art); give
 * `typePrefix` in the spec to choose it, and the save functions return an
 * artifact whose id has that type.
 */
export type ArtifactRef<Prefix extends string = string> = `${Prefix}_${string}`;

export type ImageRef = ArtifactRef<"img">;
export type VideoRef = ArtifactRef<"vid">;
export type AudioRef = ArtifactRef<"aud">;
export type DocumentRef = ArtifactRef<"doc">;
export type ReconRef = ArtifactRef<"recon">;
export type UrlRef = ArtifactRef<"url">;
export type ArrayRef = ArtifactRef<"arr">;
export type JsonRef = ArtifactRef<"json">;
export type TextRef = ArtifactRef<"txt">;
/** A directory artifact saved by `saveDir`. */
export type DirectoryRef = ArtifactRef<"dir">;

/** An Artifact whose id carries its prefix in the type. */
export type TypedArtifact<Prefix extends string = string> = Artifact & { readonly id: ArtifactRef<Prefix> };

/**
 * A reference to a version of a versioned name, resolved by the server when
 * the call runs: `orders:latest`, `team/orders:production`, `orders@v3`
 * (see the README's "Versions and aliases"). Its type cannot say what the
 * artifact is; the id of the artifact it resolved to can.
 */
export type VersionReference = `${string}:${string}` | `${string}@${string}`;

/** Anything the load functions take: a bare id, a version reference, or either after `artifact://`. */
export type ArtifactLocator<Prefix extends string = string> =
  | ArtifactRef<Prefix>
  | `artifact://${ArtifactRef<Prefix>}`
  | VersionReference
  | `artifact://${VersionReference}`;

const URI_SCHEME = "artifact://";
const ID_PATTERN = /^([a-z]{3,5})_[0-9abcdefghjkmnpqrstvwxyz]{26}$/;

/** `artifact://<id>`, the form to keep in configs, manifests and messages. */
export function artifactUri<Prefix extends string>(id: ArtifactRef<Prefix>): `artifact://${ArtifactRef<Prefix>}` {
  parseArtifactRef(id);
  return `${URI_SCHEME}${id}`;
}

/**
 * The id and prefix of a bare id or an `artifact://` URI. Throws TypeError
 * saying what is wrong, before any call is made.
 */
export function parseArtifactRef<Prefix extends string = string>(locator: ArtifactLocator<Prefix> | string): { id: ArtifactRef<Prefix>; prefix: Prefix } {
  if (typeof locator !== "string") throw new TypeError(`an artifact reference must be a string, got ${typeof locator}`);
  const id = locator.startsWith(URI_SCHEME) ? locator.slice(URI_SCHEME.length) : locator;
  const match = ID_PATTERN.exec(id);
  if (!match) {
    throw new TypeError(
      `${JSON.stringify(locator.slice(0, 80))} is not an artifact reference: expected <prefix>_<26 characters> (like img_01jd…) or artifact://<that id>`,
    );
  }
  return { id: id as ArtifactRef<Prefix>, prefix: match[1] as Prefix };
}

/** True when `value` is an artifact id, with the given prefix if one is named. */
export function isArtifactRef<Prefix extends string>(value: unknown, prefix?: Prefix): value is ArtifactRef<Prefix> {
  if (typeof value !== "string") return false;
  const match = ID_PATTERN.exec(value);
  return match !== null && (prefix === undefined || match[1] === prefix);
}

/**
 * What to send as a call's id for a locator: the id of an id or
 * `artifact://<id>`, the reference itself (without `artifact://`) for a
 * version reference, which the server resolves. Throws TypeError saying
 * what is wrong, before any call is made.
 */
export function locatorToRequestId(locator: ArtifactLocator | string): string {
  if (typeof locator !== "string") throw new TypeError(`an artifact reference must be a string, got ${typeof locator}`);
  const parsed = parseArtifactReference(locator);
  if (parsed.kind === "malformed") throw new TypeError(`${JSON.stringify(locator.slice(0, 80))} is not an artifact id or reference: ${parsed.problem}`);
  if (parsed.kind === "id") return parsed.id;
  return locator.startsWith(URI_SCHEME) ? locator.slice(URI_SCHEME.length) : locator;
}
