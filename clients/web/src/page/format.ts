import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Status, Storage } from "@artifactd/api/artifacts/v1/artifact_pb.js";

export function formatBytes(bytes: number | bigint): string {
  let value = Number(bytes);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatTime(timestamp: Timestamp | undefined): string {
  if (!timestamp) return "";
  const date = new Date(Number(timestamp.seconds) * 1000 + Math.floor(timestamp.nanos / 1e6));
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function formatStatus(status: Status): string {
  return Status[status]?.toLowerCase() ?? String(status);
}

export function formatStorage(storage: Storage): string {
  return Storage[storage]?.toLowerCase() ?? String(storage);
}

/** `key=value, key=value` → a record; a pair without `=` is an error naming it. */
export function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of text.split(",")) {
    const trimmed = pair.trim();
    if (!trimmed) continue;
    const at = trimmed.indexOf("=");
    if (at <= 0) throw new Error(`label "${trimmed}" is not key=value`);
    labels[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1).trim();
  }
  return labels;
}

/** A message for the user from any error (ConnectError messages carry the code and the server's text). */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** `team/orders` or `orders`: a versioned name as references write it. */
export function versionedName(artifact: { readonly project: string; readonly name: string }): string {
  return artifact.project ? `${artifact.project}/${artifact.name}` : artifact.name;
}
