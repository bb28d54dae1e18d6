import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { CONFIG_VARIABLES, ConfigError, readConfig, type Config } from "../config.ts";
import { UsageError } from "@artifactd/cli";

/**
 * The server commands' settings, each taken from the first place that has
 * it: a flag (--listen, --data-dir, --database-url), the environment, then
 * the server config file (--config <file>, else ARTIFACTD_SERVER_CONFIG): a
 * JSON object whose keys are the variables of the README's configuration
 * table, e.g. {"ARTIFACTD_LISTEN": "[::]:8080", "ARTIFACTD_S3_PART_SIZE": "16MiB"}.
 *
 * Everything ends up as one set of variables read by readConfig, so a bad
 * value is reported the same way wherever it came from: naming the variable.
 */
const FLAG_VARIABLES = {
  listen: "ARTIFACTD_LISTEN",
  "data-dir": "ARTIFACTD_DATA_DIR",
  "database-url": "DATABASE_URL",
} as const;

export const SERVER_SETTINGS_USAGE = `server settings (flags > environment > config file):
  --listen HOST:PORT      ARTIFACTD_LISTEN
  --data-dir DIR          ARTIFACTD_DATA_DIR
  --database-url URL      DATABASE_URL
  --config FILE           a JSON object of configuration variables (else ARTIFACTD_SERVER_CONFIG)`;

type Options = NonNullable<ParseArgsConfig["options"]>;

/** Parses a server command's arguments: its own options plus the settings flags. Unknown flags throw UsageError. */
export function parseServerArgs<T extends Options>(
  command: string,
  args: string[],
  own: T,
  env: NodeJS.ProcessEnv = process.env,
): { config: Config; positionals: string[]; values: Record<string, string | boolean | undefined> } {
  const settingsOptions = Object.fromEntries([...Object.keys(FLAG_VARIABLES), "config"].map((name) => [name, { type: "string" as const }]));
  let parsed;
  try {
    parsed = parseArgs({ args, allowPositionals: true, strict: true, options: { ...settingsOptions, ...own } });
  } catch (error) {
    throw new UsageError(`${command}: ${(error as Error).message}`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const fromFlags: Record<string, string> = {};
  for (const [flag, variable] of Object.entries(FLAG_VARIABLES)) {
    const value = values[flag];
    if (typeof value === "string") fromFlags[variable] = value;
  }
  const file = typeof values.config === "string" ? values.config : env.ARTIFACTD_SERVER_CONFIG || undefined;
  const fromFile = file === undefined ? {} : readServerConfigFile(file, typeof values.config === "string" ? "--config" : "ARTIFACTD_SERVER_CONFIG");
  const config = readConfig({ ...fromFile, ...definedOnly(env), ...fromFlags });
  return { config, positionals: parsed.positionals, values };
}

function definedOnly(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined && entry[1].trim() !== ""));
}

function readServerConfigFile(file: string, source: string): Record<string, string> {
  const resolved = path.resolve(file);
  if (!existsSync(resolved)) throw new ConfigError(`the server config file ${resolved} (from ${source}) does not exist`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(resolved, "utf8"));
  } catch (error) {
    throw new ConfigError(`the server config file ${resolved} is not valid JSON (${(error as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`the server config file ${resolved} must hold a JSON object of configuration variables, e.g. {"ARTIFACTD_LISTEN": "127.0.0.1:8080"}`);
  }
  const settings: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (!(CONFIG_VARIABLES as readonly string[]).includes(key)) {
      throw new ConfigError(`${key} in the server config file ${resolved} is not a configuration variable; they are ${CONFIG_VARIABLES.join(", ")}`);
    }
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") {
      throw new ConfigError(`${key} in the server config file ${resolved} must be a string, number or boolean`);
    }
    settings[key] = String(value);
  }
  return settings;
}
