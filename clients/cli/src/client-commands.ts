import { statSync } from "node:fs";
import path from "node:path";
import {
  createArtifactClient,
  DIRECTORY_MANIFEST_MIME,
  type Artifact,
  type ArtifactClient,
  type TransferProgress,
  type UploadResponse,
} from "@artifactd/client";
import { artifactJson, artifactLine, describeArtifact, isoTime } from "./artifact-views.ts";
import { resolveConnection, type ConnectionSettings, type EmbeddedService } from "./client-connection.ts";
import { CliError, EXIT, reportFailure, UsageError } from "./client-errors.ts";
import { existsError, resolveDownloadTarget } from "./download-target.ts";
import {
  artifactId,
  CLIENT_COMMANDS,
  filterFromFlags,
  parseClientArgs,
  SCOPE_FLAGS,
  specFromFlags,
  wholeNumber,
  type ClientCommand,
  type ClientFlags,
} from "./client-flags.ts";
import { createProgressBar, SILENT_PROGRESS, type ProgressBar } from "./progress-bar.ts";

/**
 * The client half of the `artifactd` command: put, get, cat, ls, show, rm,
 * pin, unpin, search, url. It talks to a running service like any other
 * client, through the Node SDK.
 *
 * Standard output carries the result only (an id, a path, a listing, the
 * content for cat, or with --json one JSON document); messages and
 * progress bars go to standard error. A progress bar is drawn only when
 * standard error is a terminal, and never with --json or --quiet.
 * Connection settings: client-connection.ts; exit codes: client-errors.ts.
 */
export { CLIENT_COMMANDS };

const scopeFlags = SCOPE_FLAGS.map(({ flag }) => `--${flag} V`);
/** Words joined into indented lines of at most `width` characters. */
const wrap = (items: string[], indent: string, width = 78) =>
  items
    .reduce<string[]>((lines, item) => {
      const last = lines.at(-1);
      if (last !== undefined && last.length + 2 + item.length <= width) lines[lines.length - 1] = `${last}  ${item}`;
      else lines.push(`${indent}${item}`);
      return lines;
    }, [])
    .join("\n");

export const CLIENT_USAGE = `  put <file|dir|-> --kind K [options]     upload a file, a folder (as a directory
                                          artifact) or standard input; options:
      --name N  --title T  --class C  --mime M  --label k=v…  --tag T…
      --metric k=n…  --input <id>[:role]… | <ref>[=role]…
      --status draft|review|approved|rejected  --pin
      --ttl-seconds N | --expires-at TIME  --type-prefix P
      --versioned (the next version of --name)  --project P  [scope flags]
  get <id> [-o path] [-f|--force]        download, verified, to ./<name or id>:
                                          the name's last segment, or the id
                                          when that is a dotfile, only dots or
                                          empty; never over an existing file
                                          without --force; a directory
                                          artifact becomes a folder
  cat <id>                                content to standard output
  ls [filters] [--limit N]                newest first (100 unless --limit)
  search <text> [filters] [--limit N]     full-text search of names, titles and
                                          label keys (20 unless --limit)
  show <id>                               metadata
  rm <id>                                 soft-delete
  pin <id> | unpin <id>                   keep from deletion and expiry, or not
  url <id> [--ttl seconds]                a signed download link
  filters: --kind K  --class C  --name-prefix P  --mime M  --label k=v…
      --tag T… (has all)  --tag-any T… (has one)  --status S
      --pinned | --no-pinned  --include-deleted  --created-after TIME
      --created-before TIME  --metric-min k=n…  --metric-max k=n…
      --storage inline|blob  --project P  [scope flags]
  <id> is an artifact id (art_01jd…) or a reference to a version of a
      versioned name: name:alias, name:latest, name@v3, project/name@v3, or
      any of these after artifact://
  scope flags (provenance: set by put, matched by ls and search):
${wrap(scopeFlags, "      ")}
  TIME is an ISO 8601 date or date and time: 2025-06-30, 2025-06-30T12:00:00Z.
  Every client command takes --url U, --token T, --config FILE, --json (one
  JSON document on standard output) and -q/--quiet (no progress bar; bars are
  drawn on standard error, and only when it is a terminal).
  Connection: flags, then ARTIFACTD_URL / ARTIFACTD_TOKEN / ARTIFACTD_CONFIG,
  then the config file ($XDG_CONFIG_HOME/artifactd/config.json).
  Exit codes: 0 done, 1 failed, 2 bad usage, 3 not found, 4 not authenticated
  or not allowed, 5 service unreachable, 6 refused by the artifact's state,
  130 interrupted.`;

/** Runs one client command to its end, reporting any failure on standard error; answers the exit code (EXIT). */
export async function runClientCommand(command: string, args: string[], embedded: EmbeddedService): Promise<number> {
  let connection: ConnectionSettings | undefined;
  let client: ArtifactClient | undefined;
  // Ctrl-C during a transfer cancels it cleanly (the service drops a partial upload, a partial download file is
  // removed) before exiting; a second Ctrl-C, or one during any other command, ends the process at once.
  const interrupt = new AbortController();
  const onInterrupt = () => {
    interrupt.abort();
    setTimeout(() => process.exit(EXIT.interrupted), 3000).unref();
  };
  if (TRANSFERS.has(command)) process.once("SIGINT", onInterrupt);
  try {
    if (!(CLIENT_COMMANDS as readonly string[]).includes(command)) throw new UsageError(`unknown command ${command}`);
    const { flags, positionals } = parseClientArgs(command as ClientCommand, args);
    connection = resolveConnection({ url: flags.string("url"), token: flags.string("token"), config: flags.string("config") }, embedded);
    client = createArtifactClient({ baseUrl: connection.baseUrl, token: connection.token, timeoutMs: 60_000 });
    return await COMMANDS[command as ClientCommand]({ client, flags, positionals, signal: interrupt.signal, out: output(flags) });
  } catch (error) {
    if (interrupt.signal.aborted) return reportFailure(new CliError("interrupted", EXIT.interrupted), connection, printError);
    return reportFailure(error, connection, printError);
  } finally {
    process.off("SIGINT", onInterrupt);
    await client?.close();
  }
}

const TRANSFERS = new Set(["put", "get", "cat"]);

interface CommandContext {
  readonly client: ArtifactClient;
  readonly flags: ClientFlags;
  readonly positionals: string[];
  readonly signal: AbortSignal;
  /** Prints the human form, or with --json the JSON form, on standard output. */
  readonly out: (human: string, json: unknown) => void;
}

const COMMANDS: Record<ClientCommand, (context: CommandContext) => Promise<number>> = {
  async put({ client, flags, positionals, signal, out }) {
    const [target] = positionals;
    if (!target) throw new UsageError("put needs a file or folder path, or - for standard input");
    if (target === "-") {
      const spec = specFromFlags(flags, "");
      const result = await withProgress(progressBar(flags, "put -", undefined), (onProgress) =>
        client.uploadStream(process.stdin, spec, { signal, onProgress, resumable: true }),
      );
      return putResult(flags, out, result);
    }
    const info = statSync(target, { throwIfNoEntry: false });
    if (!info) throw new UsageError(`no such file or folder: ${target}`);
    if (info.isDirectory()) {
      if (flags.string("mime") !== undefined) throw new UsageError("--mime does not apply to a folder: a directory artifact's content is its manifest");
      const spec = specFromFlags(flags, path.basename(path.resolve(target)));
      let artifact;
      try {
        artifact = await withProgress(progressBar(flags, `put ${target}/`, undefined), (onProgress) => client.saveDir(target, spec, { signal, onProgress }));
      } catch (error) {
        // saveDir names what it cannot store (a link, a socket, a bad name) with a TypeError: the folder is the problem, not the service.
        if (error instanceof TypeError) throw new UsageError(error.message);
        throw error;
      }
      out(artifact.id, { artifact: artifactJson(artifact) });
      return EXIT.ok;
    }
    if (!info.isFile()) throw new UsageError(`${target} is not a regular file or folder`);
    const spec = specFromFlags(flags, path.basename(target));
    const result = await withProgress(progressBar(flags, `put ${target}`, info.size), (onProgress) => client.uploadFile(target, spec, { signal, onProgress }));
    return putResult(flags, out, result);
  },

  async get({ client, flags, positionals, signal, out }) {
    // A reference is resolved once: everything after reads the version it named then.
    const artifact = await client.get(artifactId("get", positionals[0]));
    const id = artifact.id;
    if (artifact.deletedAt) throw new CliError(`artifact ${id} was deleted at ${isoTime(artifact.deletedAt)}; its content cannot be read`, EXIT.notFound);
    const directory = artifact.mimeType === DIRECTORY_MANIFEST_MIME;
    const force = flags.boolean("force") ?? false;
    if (directory && force) throw new UsageError("--force does not apply to a directory artifact: it is restored only into a missing or empty folder");
    const target = resolveDownloadTarget({ artifactName: artifact.name, id, output: flags.string("output"), directory, force });
    if (target.nameRefused && !flags.boolean("quiet") && !flags.boolean("json")) printError(`artifactd: ${target.nameRefused}; writing to ${target.path}`);
    if (directory) {
      let manifest;
      try {
        manifest = await withProgress(progressBar(flags, `get ${target.path}/`, undefined), (onProgress) =>
          client.restoreDir(id, target.path, { signal, onProgress }),
        );
      } catch (error) {
        // restoreDir refuses a target that exists and is not an empty folder with a TypeError, before any transfer.
        if (error instanceof TypeError) throw new UsageError(`${error.message} (with -o)`);
        throw error;
      }
      const files = manifest.entries.filter((e) => e.type === "file");
      const bytes = files.reduce((sum, e) => sum + e.size, 0);
      out(target.path, { id, path: path.resolve(target.path), directory: true, files: files.length, folders: manifest.entries.length - files.length, bytes });
      return EXIT.ok;
    }
    const file = target.path;
    const size = Number(artifact.sizeBytes);
    try {
      // Without --force the verified file is put in place only if the name is still free then.
      await withProgress(progressBar(flags, `get ${path.basename(file)}`, size), (onProgress) =>
        client.downloadToFile(id, file, { signal, onProgress, overwrite: force }),
      );
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST") throw existsError(file);
      throw error;
    }
    out(file, { id, path: path.resolve(file), directory: false, bytes: size, blake3: artifact.blake3 });
    return EXIT.ok;
  },

  async cat({ client, flags, positionals, signal }) {
    const id = artifactId("cat", positionals[0]);
    // The bar is made once the download has answered with the artifact, so it can show the name and the size.
    // Standard output is the content; the bar, on standard error, is drawn even when the content is piped on.
    let bar = SILENT_PROGRESS;
    try {
      const { artifact, content } = await client.download(id, { signal, onProgress: (progress) => bar.update(progress) });
      bar = progressBar(flags, `cat ${artifact.name ? path.basename(artifact.name) : id}`, Number(artifact.sizeBytes));
      const code = await writeAllToStdout(content);
      bar.finish();
      return code;
    } catch (error) {
      bar.stop();
      throw error;
    }
  },

  async ls({ client, flags, out }) {
    const limit = wholeNumber("--limit", flags.string("limit"), 1, 100);
    const artifacts: Artifact[] = [];
    for await (const artifact of client.list(filterFromFlags(flags), { pageSize: Math.min(limit, 1000) })) {
      artifacts.push(artifact);
      if (artifacts.length >= limit) break;
    }
    out(artifacts.map(artifactLine).join("\n"), artifacts.map(artifactJson));
    return EXIT.ok;
  },

  async search({ client, flags, positionals, out }) {
    if (positionals.length === 0) throw new UsageError('search needs the text to look for, e.g. artifactd search "revenue forecast"');
    const limit = wholeNumber("--limit", flags.string("limit"), 1, 20);
    const filter = filterFromFlags(flags);
    const artifacts: Artifact[] = [];
    let pageToken = "";
    do {
      const response = await client.rpc.searchArtifacts({
        query: positionals.join(" "),
        filter,
        pageSize: Math.min(limit - artifacts.length, 1000),
        pageToken,
      });
      artifacts.push(...response.artifacts.slice(0, limit - artifacts.length));
      pageToken = response.nextPageToken;
    } while (pageToken && artifacts.length < limit);
    out(artifacts.map(artifactLine).join("\n"), artifacts.map(artifactJson));
    return EXIT.ok;
  },

  async show({ client, positionals, out }) {
    const artifact = await client.get(artifactId("show", positionals[0]));
    out(describeArtifact(artifact), artifactJson(artifact));
    return EXIT.ok;
  },

  async rm({ client, positionals, out }) {
    const artifact = await client.delete(artifactId("rm", positionals[0]));
    out(`deleted ${artifact.id}`, artifactJson(artifact));
    return EXIT.ok;
  },

  pin: (context) => setPinned(context, true),
  unpin: (context) => setPinned(context, false),

  async url({ client, flags, positionals, out }) {
    const id = artifactId("url", positionals[0]);
    const response = await client.rpc.createDownloadUrl({ id, ttlSeconds: wholeNumber("--ttl", flags.string("ttl"), 1, 0) });
    out(response.url, { url: response.url, expiresAt: response.expiresAt ? isoTime(response.expiresAt) : undefined });
    return EXIT.ok;
  },
};

async function setPinned({ client, positionals, out }: CommandContext, pinned: boolean): Promise<number> {
  const { artifact } = await client.rpc.setPinned({ id: artifactId(pinned ? "pin" : "unpin", positionals[0]), pinned });
  out(`${pinned ? "pinned" : "unpinned"} ${artifact!.id}`, artifactJson(artifact!));
  return EXIT.ok;
}

function output(flags: ClientFlags): (human: string, json: unknown) => void {
  const json = flags.boolean("json") ?? false;
  return (human, data) => {
    const text = json ? JSON.stringify(data) : human;
    if (text !== "") console.log(text);
  };
}

function printError(message: string): void {
  console.error(message);
}

/** The new id alone on standard output, so `id=$(artifactd put …)` works; a note on a terminal when the content was already stored. */
function putResult(flags: ClientFlags, out: CommandContext["out"], result: UploadResponse): number {
  const artifact = result.artifact!;
  if (result.deduplicated && chatty(flags))
    printError(`artifactd: the content was already stored (BLAKE3 ${artifact.blake3.slice(0, 16)}…); ${artifact.id} shares it`);
  out(artifact.id, { artifact: artifactJson(artifact), deduplicated: result.deduplicated });
  return EXIT.ok;
}

/** Progress and notes go to standard error only when it is a terminal, and not with --json or --quiet. */
function chatty(flags: ClientFlags): boolean {
  return process.stderr.isTTY === true && !flags.boolean("json") && !flags.boolean("quiet");
}

/** A bar on standard error when chatty; else one that draws nothing. */
function progressBar(flags: ClientFlags, label: string, totalBytes: number | undefined): ProgressBar {
  if (!chatty(flags)) return SILENT_PROGRESS;
  return createProgressBar({ label, totalBytes, stream: process.stderr });
}

/** Runs a transfer fed by `onProgress`: the last line when it succeeds, the line erased when it fails. */
async function withProgress<T>(bar: ProgressBar, transfer: (onProgress: (progress: TransferProgress) => void) => Promise<T>): Promise<T> {
  try {
    const result = await transfer((progress) => bar.update(progress));
    bar.finish();
    return result;
  } catch (error) {
    bar.stop();
    throw error;
  }
}

/**
 * Copies content to standard output, waiting on backpressure. A reader that
 * goes away (`artifactd cat … | head`) ends the copy quietly with exit 0,
 * as it would for cat(1) under a shell that ignores SIGPIPE.
 */
async function writeAllToStdout(content: AsyncIterable<Uint8Array>): Promise<number> {
  let broken: Error | undefined;
  const onError = (error: Error) => (broken = error);
  process.stdout.on("error", onError);
  try {
    for await (const chunk of content) {
      if (broken) break;
      if (!process.stdout.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            process.stdout.off("drain", done);
            process.stdout.off("error", done);
            resolve();
          };
          process.stdout.on("drain", done);
          process.stdout.on("error", done);
        });
      }
    }
    if (broken && (broken as NodeJS.ErrnoException).code !== "EPIPE") throw broken;
    return EXIT.ok;
  } finally {
    process.stdout.off("error", onError);
  }
}
