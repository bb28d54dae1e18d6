#!/usr/bin/env node
import { CLIENT_COMMANDS, CLIENT_USAGE, CliError, runClientCommand, type EmbeddedService } from "@artifactd/cli";
import { ArtifactError } from "./artifact-error.ts";
import { ConfigError, DEFAULT_LISTEN, parseHostPort } from "./config.ts";
import { SERVER_SETTINGS_USAGE } from "./cli/server-settings.ts";

const SERVER_COMMANDS = ["serve", "migrate", "token", "tenant", "gc", "url-keys"] as const;

/** The client commands send the bootstrap token only to the service `serve` runs here, which they find by its listen setting. */
const EMBEDDED_SERVICE: EmbeddedService = { defaultListen: DEFAULT_LISTEN, parseListen: parseHostPort };

const USAGE = `usage: artifactd <command> [flags]

commands:
  serve                                   run the service (the default)
  migrate                                 bring the database schema up to date
  token create --tenant T [--name N]      make an API token (printed once)
  token list [--tenant T]                 list tokens (never their secrets)
  token revoke <token-id>                 revoke a token
  tenant set-quota <tenant> [--stored-bytes SIZE|unlimited] [--concurrent-uploads N]
     [--concurrent-downloads N] [--open-sessions N] [--calls-per-second N] [--burst N]
                                          override a tenant's quotas (a flag given
                                          "default" drops that override)
  tenant set-quota <tenant> --clear       back to the configured defaults
  tenant show-quota <tenant> [--json]     its quotas (override or default) and usage
  gc [--dry-run] [--grace-seconds N]      expire artifacts past their TTL, then reclaim
     [--json]                             content no live artifact needs
  url-keys list|rotate|retire <key-id>    download-link keys in <data dir>/url-signing-keys
     [--json]                             (ids only; the server reads them at start-up)

client commands (talk to a running service):
${CLIENT_USAGE}

${SERVER_SETTINGS_USAGE}
Every variable is in the README's configuration table.`;

async function main(argv: string[]): Promise<number> {
  const [command = "serve", ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return 0;
  }
  if ((CLIENT_COMMANDS as readonly string[]).includes(command)) return runClientCommand(command, rest, EMBEDDED_SERVICE);
  if (!(SERVER_COMMANDS as readonly string[]).includes(command)) {
    console.error(`artifactd: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    return 2;
  }
  // Loaded only here: the server's stores (pg, kysely, PGlite, minio) take about a second to import, which client commands should not pay.
  const { runServerCommand } = await import("./cli/server-commands.ts");
  return runServerCommand(command, rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (error instanceof CliError) {
      console.error(`artifactd: ${error.message}\n(artifactd --help lists the commands and their flags)`);
      process.exit(error.exitCode);
    }
    if (error instanceof ConfigError || error instanceof ArtifactError) console.error(`artifactd: ${error.message}`);
    else console.error("artifactd: failed:", error);
    process.exit(error instanceof ConfigError || error instanceof ArtifactError ? 2 : 1);
  },
);
