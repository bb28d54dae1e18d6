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

/** Anything the load functions take: a bare id or `artifact://<id>`. */
export type ArtifactLocator<Prefix extends string = string> = ArtifactRef<Prefix> | `artifact://${ArtifactRef<Prefix>}`;

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
