import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { statusFromName } from "@artifactd/api";
import { Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { ArtifactFilterInit } from "../web-artifact-client.ts";
import { PROVENANCE_FILTERS } from "./filter-fields.ts";
import { parseLabels } from "./format.ts";

/** What the browse view shows: a filtered list, or ranked search results when `text` is set. */
export interface BrowseQuery {
  readonly text: string;
  readonly filter: ArtifactFilterInit;
}

/**
 * The filter form's fields as a query. Throws an Error that names the field
 * for input the server would refuse less clearly (or not at all: an empty
 * metric name with a range).
 */
export function readBrowseQuery(form: HTMLFormElement): BrowseQuery {
  const data = new FormData(form);
  const text = (name: string) => String(data.get(name) ?? "").trim();

  const filter: ArtifactFilterInit = {
    kind: text("kind"),
    artifactClass: text("artifactClass"),
    namePrefix: text("namePrefix"),
    mimeType: text("mimeType"),
    labels: parseLabels(text("labels")),
    tagsAll: parseList(text("tags")),
    status: statusOf(text("status")),
    includeDeleted: data.get("includeDeleted") !== null,
  };
  const pinned = text("pinned");
  if (pinned) filter.pinned = pinned === "yes";

  const provenance: Record<string, string> = {};
  for (const [name] of [["runId"], ...PROVENANCE_FILTERS] as const) {
    const value = text(name);
    if (value) provenance[name] = value;
  }
  if (Object.keys(provenance).length > 0) filter.provenance = provenance;

  const from = text("createdFrom");
  const to = text("createdTo");
  if (from) filter.createdAfter = timestampFromDate(startOfDay("Created from", from));
  // "To" is inclusive: before the start of the next day.
  if (to) filter.createdBefore = timestampFromDate(startOfDay("Created to", to, 1));
  if (from && to && from > to) throw new Error(`"Created from" (${from}) is after "Created to" (${to})`);

  const range = metricRange(text("metricName"), text("metricMin"), text("metricMax"));
  if (range) filter.metricRanges = [range];

  return { text: text("q"), filter };
}

/** `a, b, a` → ["a", "b"]. */
function parseList(text: string): string[] {
  return [
    ...new Set(
      text
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== ""),
    ),
  ];
}

function statusOf(choice: string): Status {
  return statusFromName(choice) ?? Status.UNSPECIFIED;
}

/**
 * A `yyyy-mm-dd` date input's value as local midnight, `plusDays` later. A
 * date input accepts years up to 275760, past what a Date (and a timestamp)
 * holds: such a date, from a link say, is named rather than thrown about as
 * a conversion error.
 */
function startOfDay(label: string, value: string, plusDays = 0): Date {
  const [year, month, day] = value.split("-").map(Number) as [number, number, number];
  const date = new Date(year, month - 1, day + plusDays);
  if (Number.isNaN(date.getTime())) throw new Error(`"${label}" (${value}) is not a date this page can search by`);
  return date;
}

function metricRange(name: string, minText: string, maxText: string) {
  if (!name && !minText && !maxText) return undefined;
  if (!name) throw new Error("a metric range needs the metric's name");
  const min = numberOf("Min", minText);
  const max = numberOf("Max", maxText);
  if (min !== undefined && max !== undefined && min > max) throw new Error(`the metric range's min ${min} is greater than its max ${max}`);
  return { name, ...(min !== undefined ? { min } : {}), ...(max !== undefined ? { max } : {}) };
}

function numberOf(label: string, text: string): number | undefined {
  if (text === "") return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new Error(`the metric range's ${label} "${text}" is not a number`);
  return value;
}
