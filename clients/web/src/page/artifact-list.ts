import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { ListPage, WebArtifactClient } from "../web-artifact-client.ts";
import { artifactHref, byId, h } from "./dom.ts";
import { addFilterFields } from "./filter-fields.ts";
import { readBrowseQuery, type BrowseQuery } from "./filter-form.ts";
import { restoreFormFromUrl, saveFormToUrl } from "./filter-url.ts";
import { errorMessage, formatBytes, formatStatus, formatTime } from "./format.ts";

const PAGE_SIZE = 50;
const NO_QUERY: BrowseQuery = { text: "", filter: {} };

/**
 * The artifact table with its filter form, free-text search and "Load more"
 * paging. Without search text it lists newest first (ListArtifacts); with it,
 * the same filter narrows a SearchArtifacts call and rows keep the server's
 * rank order. The applied form is mirrored in the URL's query string.
 */
export function createArtifactList(client: WebArtifactClient, showError: (message: string) => void) {
  const section = byId("browse");
  const form = byId<HTMLFormElement>("filter-form");
  const table = byId<HTMLTableElement>("artifact-table");
  const rows = table.tBodies[0]!;
  const empty = byId("list-empty");
  const more = byId<HTMLButtonElement>("load-more");
  const fields = addFilterFields(form);
  const summary = h("p", { id: "list-summary", class: "muted", role: "status", hidden: true });
  table.before(summary);
  let query = NO_QUERY;
  let nextPageToken = "";
  let generation = 0;

  function fetchPage(pageToken: string): Promise<ListPage> {
    if (query.text === "") return client.list(query.filter, { pageSize: PAGE_SIZE, pageToken });
    return client.rpc.searchArtifacts({ query: query.text, filter: query.filter, pageSize: PAGE_SIZE, pageToken });
  }

  async function load(append: boolean): Promise<void> {
    const mine = ++generation;
    more.disabled = true;
    try {
      const page = await fetchPage(append ? nextPageToken : "");
      if (mine !== generation) return;
      nextPageToken = page.nextPageToken;
      if (append) rows.append(...page.artifacts.map(row));
      else rows.replaceChildren(...page.artifacts.map(row));
      empty.hidden = rows.rows.length > 0;
      more.hidden = nextPageToken === "";
    } catch (error) {
      if (mine === generation) showError(`${query.text ? "Search" : "Listing"} failed: ${errorMessage(error)}`);
    } finally {
      if (mine === generation) more.disabled = false;
    }
  }

  /** Takes the form as the new query; false (and the error shown) when a field is invalid. */
  function takeForm(): boolean {
    try {
      query = readBrowseQuery(form);
    } catch (error) {
      showError(errorMessage(error));
      return false;
    }
    fields.showActive();
    summary.textContent = query.text ? `Matches for “${query.text}”, best match first.` : "";
    summary.hidden = query.text === "";
    return true;
  }

  function apply(): void {
    if (!takeForm()) return;
    saveFormToUrl(form);
    void load(false);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  // The fields clear after this event.
  form.addEventListener("reset", () => setTimeout(apply));
  // Emptying the search box (typing it away, or the box's own clear button) goes back to the plain list.
  fields.search.addEventListener("input", () => {
    if (fields.search.value.trim() === "" && query.text !== "") apply();
  });
  more.addEventListener("click", () => void load(true));

  restoreFormFromUrl(form);
  if (!takeForm()) query = NO_QUERY;

  return {
    refresh: () => load(false),
    show(visible: boolean) {
      section.hidden = !visible;
    },
  };
}

function row(artifact: Artifact): HTMLTableRowElement {
  return h(
    "tr",
    { "data-id": artifact.id, class: artifact.deletedAt ? "deleted" : undefined },
    h(
      "td",
      {},
      h("a", { class: "artifact-link", href: artifactHref(artifact.id) }, artifact.name || artifact.title || artifact.id),
      artifact.pinned ? h("span", { class: "muted" }, " (pinned)") : null,
      // Shown so a tag filter's effect can be seen at a glance.
      artifact.tags.length > 0 ? h("ul", { class: "tags row-tags" }, ...artifact.tags.map((tag) => h("li", {}, tag))) : null,
    ),
    h("td", {}, artifact.kind),
    h("td", {}, artifact.mimeType),
    h("td", { class: "num" }, formatBytes(artifact.sizeBytes)),
    h("td", {}, formatTime(artifact.createdAt)),
    h("td", {}, formatStatus(artifact.status)),
  );
}
