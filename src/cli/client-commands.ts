import { Code, ConnectError } from "@connectrpc/connect";
import { existsSync, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createArtifactClient, Status, type Artifact, type ArtifactClient } from "../../clients/node/src/index.ts";

/**
 * The client half of the `artifactd` command: put, get, cat, ls, show, rm,
 * pin, unpin, search, url. It talks to a running service like any other
 * client.
 *
 * Where to connect, first found wins: --url / --token flags, then
 * ARTIFACTD_URL / ARTIFACTD_TOKEN, then the config file
 * ($XDG_CONFIG_HOME/artifactd/config.json, `{"url": …, "token": …}`), then
 * http://127.0.0.1:8080 with the embedded default's bootstrap token.
 *
 * Exit codes: 0 done; 1 unexpected failure; 2 bad usage or argument;
 * 3 not found; 4 not authenticated or not allowed; 5 service unavailable;
 * 6 refused by the artifact's state (pinned, deleted, …).
 */
export const CLIENT_COMMANDS = ["put", "get", "cat", "ls", "show", "rm", "pin", "unpin", "search", "url"] as const;

export const CLIENT_USAGE = `  put <file|-> --kind K [--name N] [--label k=v]… [--tag T]… [--metric k=n]…
      [--run-id R] [--mime M] [--pin]          upload a file (or standard input)
  get <id> [-o path]                           download, verified (default: ./<name or id>)
  cat <id>                                     content to standard output
  ls [--kind K] [--label k=v]… [--tag T]… [--run-id R] [--limit N]
  show <id>                                    metadata
  rm <id>                                      soft-delete
  pin <id> | unpin <id>
  search <text> [--kind K] [--limit N]
  url <id> [--ttl seconds]                     a signed download link
  Client commands take --url, --token and --json (one JSON document on standard output).`;

class UsageError extends Error {}

export async function runClientCommand(command: string, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      url: { type: "string" },
      token: { type: "string" },
      json: { type: "boolean" },
      kind: { type: "string" },
      name: { type: "string" },
      mime: { type: "string" },
      label: { type: "string", multiple: true },
      tag: { type: "string", multiple: true },
      metric: { type: "string", multiple: true },
      "run-id": { type: "string" },
      pin: { type: "boolean" },
      output: { type: "string", short: "o" },
      limit: { type: "string" },
      ttl: { type: "string" },
    },
  });
  const json = values.json ?? false;
  const out = (human: string, data: unknown) => console.log(json ? JSON.stringify(data, jsonSafe) : human);
  let client: ArtifactClient | undefined;
  const [target] = positionals;
  const needId = () => {
    if (!target) throw new UsageError(`${command} needs an artifact id`);
    return target;
  };
  try {
    client = connect(values.url, values.token);
    switch (command) {
      case "put": {
        if (!target) throw new UsageError("put needs a file path, or - for standard input");
        if (!values.kind) throw new UsageError('put needs --kind, e.g. --kind dataset');
        const spec = {
          kind: values.kind,
          name: values.name ?? (target === "-" ? "" : path.basename(target)),
          ...(values.mime ? { mimeType: values.mime } : {}),
          labels: pairs("--label", values.label, (v) => v),
          tags: values.tag ?? [],
          metrics: pairs("--metric", values.metric, (v) => {
            const n = Number(v);
            if (!Number.isFinite(n)) throw new UsageError(`--metric needs a number, got ${JSON.stringify(v)}`);
            return n;
          }),
          ...(values["run-id"] ? { provenance: { runId: values["run-id"] } } : {}),
          pinned: values.pin ?? false,
        };
        let result;
        if (target === "-") {
          result = await client.uploadStream(process.stdin, spec);
        } else {
          if (!existsSync(target)) throw new UsageError(`no such file: ${target}`);
          if (statSync(target).isDirectory()) throw new UsageError(`${target} is a directory: put takes one file (directory artifacts are not in this release)`);
          const progress = createProgress("upload", statSync(target).size);
          result = await client.uploadFile(target, spec);
          progress.done();
        }
        out(`${result.artifact!.id}${result.deduplicated ? " (content already stored)" : ""}`, result);
        return 0;
      }
      case "get": {
        const id = needId();
        const artifact = await client.get(id);
        const file = values.output ?? (artifact.name ? path.basename(artifact.name) : id);
        const progress = createProgress("download", Number(artifact.sizeBytes));
        await client.downloadToFile(id, file);
        progress.done();
        out(`${file}`, { id, path: path.resolve(file), size: Number(artifact.sizeBytes), blake3: artifact.blake3 });
        return 0;
      }
      case "cat": {
        const { content } = await client.download(needId());
        for await (const chunk of content) if (!process.stdout.write(chunk)) await new Promise((r) => process.stdout.once("drain", r));
        return 0;
      }
      case "ls": {
        const limit = count(values.limit, 100);
        const artifacts: Artifact[] = [];
        const filter = {
          ...(values.kind ? { kind: values.kind } : {}),
          labels: pairs("--label", values.label, (v) => v),
          tagsAll: values.tag ?? [],
          ...(values["run-id"] ? { provenance: { runId: values["run-id"] } } : {}),
        };
        for await (const artifact of client.list(filter, { pageSize: Math.min(limit, 1000) })) {
          artifacts.push(artifact);
          if (artifacts.length >= limit) break;
        }
        out(artifacts.map(line).join("\n"), artifacts);
        return 0;
      }
      case "search": {
        if (!target) throw new UsageError("search needs the text to look for");
        const response = await client.rpc.searchArtifacts({ query: positionals.join(" "), filter: values.kind ? { kind: values.kind } : {}, pageSize: count(values.limit, 20) });
        out(response.artifacts.map(line).join("\n"), response.artifacts);
        return 0;
      }
      case "show": {
        const artifact = await client.get(needId());
        out(describe(artifact), artifact);
        return 0;
      }
      case "rm": {
        const artifact = await client.delete(needId());
        out(`deleted ${artifact.id}`, artifact);
        return 0;
      }
      case "pin":
      case "unpin": {
        const { artifact } = await client.rpc.setPinned({ id: needId(), pinned: command === "pin" });
        out(`${command === "pin" ? "pinned" : "unpinned"} ${artifact!.id}`, artifact);
        return 0;
      }
      case "url": {
        const response = await client.rpc.createDownloadUrl({ id: needId(), ttlSeconds: count(values.ttl, 0) });
        out(response.url, { url: response.url, expiresAt: response.expiresAt ? new Date(Number(response.expiresAt.seconds) * 1000).toISOString() : undefined });
        return 0;
      }
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (error) {
    return report(error);
  } finally {
    await client?.close();
  }
}

function connect(url: string | undefined, token: string | undefined): ArtifactClient {
  const file = readConfigFile();
  const baseUrl = url ?? process.env.ARTIFACTD_URL ?? file.url ?? "http://127.0.0.1:8080";
  let resolvedToken = token ?? process.env.ARTIFACTD_TOKEN ?? file.token;
  if (!resolvedToken) {
    const bootstrap = path.resolve(process.env.ARTIFACTD_DATA_DIR ?? ".artifactd", "bootstrap-token");
    if (existsSync(bootstrap)) resolvedToken = readFileSync(bootstrap, "utf8").trim();
  }
  if (!resolvedToken) throw new UsageError("no API token: pass --token, set ARTIFACTD_TOKEN, or put {\"token\": …} in the config file");
  return createArtifactClient({ baseUrl, token: resolvedToken, timeoutMs: 60_000 });
}

function readConfigFile(): { url?: string; token?: string } {
  const file = path.join(process.env.XDG_CONFIG_HOME ?? path.join(os.homedir(), ".config"), "artifactd", "config.json");
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, "utf8")) as { url?: string; token?: string };
  } catch (error) {
    throw new UsageError(`the config file ${file} is not valid JSON: ${(error as Error).message}`);
  }
}

function pairs<T>(flag: string, items: string[] | undefined, convert: (value: string) => T): Record<string, T> {
  const result: Record<string, T> = {};
  for (const item of items ?? []) {
    const at = item.indexOf("=");
    if (at <= 0) throw new UsageError(`${flag} takes key=value, got ${JSON.stringify(item)}`);
    result[item.slice(0, at)] = convert(item.slice(at + 1));
  }
  return result;
}

function count(raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`expected a whole number, got ${JSON.stringify(raw)}`);
  return n;
}

function line(a: Artifact): string {
  const when = a.createdAt ? new Date(Number(a.createdAt.seconds) * 1000).toISOString().slice(0, 19).replace("T", " ") : "";
  return [a.id, a.kind, humanBytes(Number(a.sizeBytes)), when, a.name].join("\t");
}

function describe(a: Artifact): string {
  const rows: [string, string][] = [
    ["id", a.id],
    ["kind", a.kind],
    ["name", a.name],
    ["mime", a.mimeType],
    ["size", `${humanBytes(Number(a.sizeBytes))} (${a.sizeBytes} bytes)`],
    ["blake3", a.blake3],
    ["status", Status[a.status] ?? String(a.status)],
    ["pinned", String(a.pinned)],
    ["labels", JSON.stringify(a.labels)],
    ["tags", a.tags.join(", ")],
    ["metrics", JSON.stringify(a.metrics)],
    ["created", a.createdAt ? new Date(Number(a.createdAt.seconds) * 1000).toISOString() : ""],
    ["deleted", a.deletedAt ? new Date(Number(a.deletedAt.seconds) * 1000).toISOString() : ""],
  ];
  return rows.filter(([, v]) => v !== "" && v !== "{}").map(([k, v]) => `${k.padEnd(8)} ${v}`).join("\n");
}

function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Rate and ETA on standard error while attached to a terminal; silent otherwise. */
function createProgress(what: string, total: number): { done(): void } {
  if (!process.stderr.isTTY) return { done() {} };
  const started = Date.now();
  process.stderr.write(`${what}: ${humanBytes(total)}…\r`);
  return {
    done() {
      const seconds = (Date.now() - started) / 1000;
      process.stderr.write(`${what}: ${humanBytes(total)} in ${seconds.toFixed(1)} s (${humanBytes(total / Math.max(seconds, 0.001))}/s)\n`);
    },
  };
}

function report(error: unknown): number {
  if (error instanceof UsageError) {
    console.error(`artifactd: ${error.message}`);
    return 2;
  }
  if (error instanceof ConnectError) {
    const hint: Partial<Record<Code, string>> = {
      [Code.Unauthenticated]: " (check --token / ARTIFACTD_TOKEN)",
      [Code.Unavailable]: " (is the service running? check --url / ARTIFACTD_URL)",
    };
    console.error(`artifactd: ${error.rawMessage}${hint[error.code] ?? ""}`);
    switch (error.code) {
      case Code.InvalidArgument:
      case Code.OutOfRange:
        return 2;
      case Code.NotFound:
        return 3;
      case Code.Unauthenticated:
      case Code.PermissionDenied:
        return 4;
      case Code.Unavailable:
      case Code.DeadlineExceeded:
        return 5;
      case Code.FailedPrecondition:
      case Code.Aborted:
      case Code.AlreadyExists:
        return 6;
      default:
        return 1;
    }
  }
  console.error(`artifactd: ${(error as Error).message ?? String(error)}`);
  return 1;
}

function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? Number(value) : value;
}
