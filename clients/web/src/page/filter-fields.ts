import { STATUS_NAMES } from "@artifactd/api";
import { h } from "./dom.ts";

/**
 * The browse form's search box and its "More filters" disclosure. The
 * basic fields (kind, name prefix, labels, run id) are in index.html; these
 * are built here so every field the list reads is named in one module
 * (filter-form.ts reads them by these names).
 */

/** Provenance scope levels besides run id (which index.html has), as [field, label]. */
export const PROVENANCE_FILTERS = [
  ["graphId", "Graph id"],
  ["nodeId", "Node id"],
  ["sessionId", "Session id"],
  ["userId", "User id"],
  ["appId", "App id"],
] as const;

/** SearchArtifacts takes 1–512 characters. */
const MAX_QUERY_LENGTH = 512;

export interface FilterFields {
  /** The free-text search input (name "q"). */
  readonly search: HTMLInputElement;
  /** Opens the disclosure and counts its active fields in the summary; call after the form changes. */
  showActive(): void;
}

export function addFilterFields(form: HTMLFormElement): FilterFields {
  const search = h("input", {
    id: "filter-search",
    name: "q",
    type: "search",
    maxlength: String(MAX_QUERY_LENGTH),
    placeholder: "words in name, title or labels",
    "aria-label": "Search",
  });
  form.prepend(h("label", { class: "search" }, "Search", search));

  const summary = h("summary", {}, "More filters");
  const details = h("details", { id: "more-filters", class: "options more-filters" }, summary, h("div", { class: "grid" }, ...fields()));
  // Before the buttons, so the form reads top to bottom.
  const actions = form.querySelector(":scope > .actions");
  form.insertBefore(details, actions);

  const inputs = () => [...details.querySelectorAll<HTMLInputElement | HTMLSelectElement>("input, select")];
  return {
    search,
    showActive() {
      const active = inputs().filter((input) => (input instanceof HTMLInputElement && input.type === "checkbox" ? input.checked : input.value !== "")).length;
      summary.textContent = active > 0 ? `More filters (${active})` : "More filters";
      // A filter restored from the URL must not hide inside a closed disclosure.
      if (active > 0) details.open = true;
    },
  };
}

function fields(): HTMLElement[] {
  const text = (name: string, label: string, attributes: Record<string, string> = {}) => h("label", {}, label, h("input", { name, ...attributes }));
  const select = (name: string, label: string, choices: ReadonlyArray<readonly [string, string]>) =>
    h("label", {}, label, h("select", { name }, ...choices.map(([value, text]) => h("option", { value }, text))));
  return [
    text("artifactClass", "Class"),
    text("mimeType", "MIME type", { placeholder: "text/csv" }),
    select("status", "Status", [["", "any"], ...STATUS_NAMES.map((status) => [status, status] as const)]),
    select("pinned", "Pinned", [
      ["", "any"],
      ["yes", "yes"],
      ["no", "no"],
    ]),
    text("tags", "Tags (all of)", { placeholder: "tag, tag" }),
    text("createdFrom", "Created from", { type: "date" }),
    text("createdTo", "Created to", { type: "date" }),
    h(
      "fieldset",
      { class: "metric-range" },
      h("legend", {}, "Metric range"),
      text("metricName", "Metric", { placeholder: "accuracy" }),
      text("metricMin", "Min", { type: "number", step: "any" }),
      text("metricMax", "Max", { type: "number", step: "any" }),
    ),
    ...PROVENANCE_FILTERS.map(([name, label]) => text(name, label)),
    h("label", { class: "check" }, h("input", { name: "includeDeleted", type: "checkbox" }), "Include deleted"),
  ];
}
