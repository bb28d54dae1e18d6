import { lstatSync, statSync } from "node:fs";
import path from "node:path";
import { UsageError } from "./client-errors.ts";

/**
 * Where `artifactd get` writes. An artifact's name is chosen by whoever
 * saved it, so it is never trusted as a path: without `-o` only its last
 * segment is used, and only when that is a plain file name — not empty, not
 * all dots (`.`, `..`), not a dotfile (`.bashrc`, `.ssh`: names that tools
 * read as configuration), free of control characters and NUL, at most 255
 * bytes. Anything else falls back to the artifact id, which is always a
 * plain name. A path given with `-o` is the user's own choice and is taken
 * as given (dotfiles included).
 */
export interface DownloadTarget {
  /** The path to write: a file, or the folder a directory artifact becomes. */
  readonly path: string;
  /** Set when the artifact's own name could not be used, with the reason, so the user can be told. */
  readonly nameRefused?: string;
}

/** Longest file name most file systems take (bytes). */
const MAX_NAME_BYTES = 255;

/** Why `name` may not be a file name in the working folder, or undefined when it may. */
export function unsafeFileNameReason(name: string): string | undefined {
  if (name === "") return "it is empty";
  if (/^\.+$/.test(name)) return "it is only dots";
  if (name.startsWith(".")) return "it would be a hidden file (give it with -o to write one)";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses in a file name.
  if (/[\u0000-\u001f\u007f]/.test(name)) return "it holds control characters";
  if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) return `it is longer than ${MAX_NAME_BYTES} bytes`;
  return undefined;
}

/**
 * The file name an artifact gets by default: the last segment of its name
 * (both `/` and `\` separate, so a name made on Windows cannot smuggle a
 * path either) when safe, else the id.
 */
export function defaultFileName(artifactName: string, id: string): { name: string; refused?: string } {
  if (artifactName === "") return { name: id };
  const last = artifactName.split(/[/\\]/).at(-1) ?? "";
  const reason = unsafeFileNameReason(last);
  return reason === undefined ? { name: last } : { name: id, refused: `its name ${JSON.stringify(artifactName)} is not used as a file name: ${reason}` };
}

/**
 * Resolves where to write: `-o` as given, or — like cp — inside it when it
 * is an existing folder, or the default name in the working folder. A file
 * that exists there is refused unless `force`; a directory artifact's target
 * is checked by restoreDir itself (it must be missing or an empty folder).
 */
export function resolveDownloadTarget(options: {
  readonly artifactName: string;
  readonly id: string;
  readonly output: string | undefined;
  readonly directory: boolean;
  readonly force: boolean;
}): DownloadTarget {
  const { name, refused } = defaultFileName(options.artifactName, options.id);
  const intoFolder = options.output !== undefined && !options.directory && statSync(options.output, { throwIfNoEntry: false })?.isDirectory() === true;
  const target = options.output === undefined ? name : intoFolder ? path.join(options.output, name) : options.output;
  // The artifact's name only matters when it names what is written.
  const nameUsed = options.output === undefined || intoFolder;
  if (!options.directory && !options.force && lstatSync(target, { throwIfNoEntry: false }) !== undefined) throw existsError(target);
  return { path: target, ...(nameUsed && refused !== undefined ? { nameRefused: refused } : {}) };
}

/** What `get` says when it would replace something. */
export function existsError(target: string): UsageError {
  return new UsageError(`${target} already exists; pass --force to replace it, or -o <path> to write elsewhere`);
}
