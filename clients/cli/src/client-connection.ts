import { existsSync, readFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import os from "node:os";
import path from "node:path";
import { CliError, EXIT, UsageError, type ConnectionContext } from "./client-errors.ts";

/**
 * Where the client commands connect, and with which token. Each setting is
 * taken from the first place that has it:
 *
 *   1. the flags, --url and --token;
 *   2. the environment, ARTIFACTD_URL and ARTIFACTD_TOKEN;
 *   3. the config file, `{"url": "…", "token": "…"}`: --config <file>, else
 *      ARTIFACTD_CONFIG, else $XDG_CONFIG_HOME/artifactd/config.json (XDG
 *      unset: ~/.config/artifactd/config.json);
 *   4. the defaults: http://127.0.0.1:8080, and the bootstrap token an
 *      embedded service writes on its first run
 *      ($ARTIFACTD_DATA_DIR/bootstrap-token, ARTIFACTD_DATA_DIR unset: ./.artifactd).
 *
 * The bootstrap token is an admin token of the embedded service on this
 * machine, so it is sent only there: to a loopback host (127.0.0.0/8, ::1,
 * localhost) on the port that service listens on (ARTIFACTD_LISTEN's, by
 * default 8080; any port when that says 0). Any other URL gets it only
 * when it is given as a token explicitly; otherwise the command stops
 * before connecting.
 *
 * The URL and the token are looked up separately, so the file can hold the
 * URL while the token comes from the environment. The config file is read
 * only when a setting is still missing after the flags and the environment,
 * and a file named by --config or ARTIFACTD_CONFIG must exist. Each setting
 * remembers where it came from, so an error can say what to change.
 */
export interface ConnectionSettings extends ConnectionContext {
  readonly token: string;
}

export interface ConnectionFlags {
  readonly url?: string | undefined;
  readonly token?: string | undefined;
  readonly config?: string | undefined;
}

/**
 * What the client commands must know of the service an `artifactd` serve on
 * this machine runs: where it listens by default, and how its ARTIFACTD_LISTEN
 * setting reads. It is the server's configuration, so the `artifactd` command
 * passes it in rather than this package importing the server.
 */
export interface EmbeddedService {
  /** `host:port` it listens on when ARTIFACTD_LISTEN is unset: also the client's default URL. */
  readonly defaultListen: string;
  /** An ARTIFACTD_LISTEN value read as the server reads it; undefined when malformed. */
  readonly parseListen: (raw: string) => { readonly port: number } | undefined;
}

export function resolveConnection(flags: ConnectionFlags, embedded: EmbeddedService, env: NodeJS.ProcessEnv = process.env): ConnectionSettings {
  const defaultUrl = `http://${embedded.defaultListen}`;
  let file: { path: string; url?: string; token?: string } | undefined;
  const fromFile = () => (file ??= readConfigFile(flags.config, env));

  const url = pick([flags.url, "--url"], [env.ARTIFACTD_URL, "ARTIFACTD_URL"], () => [fromFile().url, `"url" in the config file ${fromFile().path}`]) ?? [
    defaultUrl,
    `the default, as neither --url, ARTIFACTD_URL nor the config file ${fromFile().path} names one`,
  ];
  const [baseUrl, urlSource] = url;
  let parsed: URL | undefined;
  try {
    parsed = new URL(baseUrl);
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
    throw new UsageError(`the service URL ${JSON.stringify(baseUrl)} from ${urlSource} is not an http:// or https:// URL, e.g. ${defaultUrl}`);
  }

  const bootstrapFile = path.resolve(env.ARTIFACTD_DATA_DIR || ".artifactd", "bootstrap-token");
  const bootstrapSource = `the bootstrap token file ${bootstrapFile}`;
  const token = pick(
    [flags.token, "--token"],
    [env.ARTIFACTD_TOKEN, "ARTIFACTD_TOKEN"],
    () => [fromFile().token, `"token" in the config file ${fromFile().path}`],
    () => [existsSync(bootstrapFile) ? readFileSync(bootstrapFile, "utf8").trim() : undefined, bootstrapSource],
  );
  if (token?.[1] === bootstrapSource) {
    const refusal = bootstrapTokenRefusal(parsed, embedded, env);
    if (refusal) {
      throw new CliError(
        `not sending the bootstrap token from ${bootstrapFile} to ${parsed.origin} (from ${urlSource}): it goes only to the embedded service ` +
          `on this machine, ${refusal}. Pass the token for that service with --token or ARTIFACTD_TOKEN (or "token" in the config file ${fromFile().path})`,
        EXIT.auth,
      );
    }
  }
  if (!token) {
    throw new CliError(
      `no API token: pass --token, set ARTIFACTD_TOKEN, or put {"token": "adt_…"} in the config file ${fromFile().path}; ` +
        "an operator makes one with `artifactd token create --tenant <tenant>`",
      EXIT.auth,
    );
  }
  return { baseUrl, urlSource, token: token[0], tokenSource: token[1] };
}

/** Why `url` is not the embedded service's own loopback address, or undefined when it is. */
function bootstrapTokenRefusal(url: URL, embedded: EmbeddedService, env: NodeJS.ProcessEnv): string | undefined {
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1"); // URL keeps IPv6 hosts in brackets, and has already normalised 127.1 and the like
  const loopback = host === "localhost" || host === "::1" || (isIPv4(host) && host.startsWith("127."));
  if (!loopback) return "and this host is not loopback (127.0.0.0/8, ::1, localhost)";
  const listenRaw = env.ARTIFACTD_LISTEN || embedded.defaultListen;
  const port = embedded.parseListen(listenRaw)?.port;
  // Port 0 (any free port) or a setting we cannot read: the host is all we can check.
  if (port === undefined || port === 0) return undefined;
  const urlPort = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  if (urlPort !== port) return `which listens on port ${port} (ARTIFACTD_LISTEN=${listenRaw}${env.ARTIFACTD_LISTEN ? "" : ", the default"}), not ${urlPort}`;
  return undefined;
}

type Candidate = readonly [value: string | undefined, source: string];

/** The first candidate with a non-empty value; functions are only called when reached. */
function pick(...candidates: (Candidate | (() => Candidate))[]): [string, string] | undefined {
  for (const candidate of candidates) {
    const [value, source] = typeof candidate === "function" ? candidate() : candidate;
    if (value) return [value, source];
  }
  return undefined;
}

function readConfigFile(flag: string | undefined, env: NodeJS.ProcessEnv): { path: string; url?: string; token?: string } {
  const named = flag ?? (env.ARTIFACTD_CONFIG || undefined);
  const file = path.resolve(named ?? path.join(env.XDG_CONFIG_HOME || path.join(os.homedir(), ".config"), "artifactd", "config.json"));
  if (!existsSync(file)) {
    if (named !== undefined) throw new UsageError(`the config file ${file} (from ${flag !== undefined ? "--config" : "ARTIFACTD_CONFIG"}) does not exist`);
    return { path: file };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new UsageError(`the config file ${file} is not valid JSON (${(error as Error).message}); it should read {"url": "…", "token": "…"}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new UsageError(`the config file ${file} must hold a JSON object: {"url": "…", "token": "…"}`);
  const { url, token } = raw as Record<string, unknown>;
  for (const [key, value] of Object.entries({ url, token })) {
    if (value !== undefined && typeof value !== "string") throw new UsageError(`"${key}" in the config file ${file} must be a string`);
  }
  return { path: file, ...(typeof url === "string" ? { url } : {}), ...(typeof token === "string" ? { token } : {}) };
}
