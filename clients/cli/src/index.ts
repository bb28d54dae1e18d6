/**
 * @artifactd/cli — the client commands of `artifactd` (put, get, cat, ls,
 * search, show, rm, pin, unpin, url), built on the Node SDK
 * (@artifactd/client) like any other client of the service.
 *
 * The `artifactd` binary dispatches these commands here and runs the
 * server's own commands itself; both halves share the exit codes and the
 * usage errors below, so every command fails the same way.
 */
export { CLIENT_COMMANDS, CLIENT_USAGE, runClientCommand } from "./client-commands.ts";
export type { EmbeddedService } from "./client-connection.ts";
export { CliError, EXIT, UsageError } from "./client-errors.ts";
