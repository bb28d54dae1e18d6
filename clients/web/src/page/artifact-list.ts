import type { Artifact } from "../gen/artifacts/v1/artifact_pb.ts";
import type { ArtifactFilterInit, WebArtifactClient } from "../web-artifact-client.ts";
import { artifactHref, byId, h } from "./dom.ts";
import { errorMessage, formatBytes, formatStatus, formatTime, parseLabels } from "./format.ts";

const PAGE_SIZE = 50;

/** The artifact table with its filter form and "Load more" paging. */
export function createArtifactList(client: WebArtifactClient, showError: (message: string) => void) {
  const section = byId("browse");
  const form = byId<HTMLFormElement>("filter-form");
  const rows = byId<HTMLTableElement>("artifact-table").tBodies[0]!;
  const empty = byId("list-empty");
  const more = byId<HTMLButtonElement>("load-more");
  let filter: ArtifactFilterInit = {};
  let nextPageToken = "";
  let generation = 0;

  function readFilter(): ArtifactFilterInit {
    const data = new FormData(form);
    const text = (name: string) => String(data.get(name) ?? "").trim();
    const runId = text("runId");
    return {
      kind: text("kind"),
      namePrefix: text("namePrefix"),
      labels: parseLabels(text("labels")),
      ...(runId ? { provenance: { runId } } : {}),
    };
  }

  async function load(append: boolean): Promise<void> {
    const mine = ++generation;
    more.disabled = true;
    try {
      const page = await client.list(filter, { pageSize: PAGE_SIZE, pageToken: append ? nextPageToken : "" });
      if (mine !== generation) return;
      nextPageToken = page.nextPageToken;
      if (append) rows.append(...page.artifacts.map(row));
      else rows.replaceChildren(...page.artifacts.map(row));
      empty.hidden = rows.rows.length > 0;
      more.hidden = nextPageToken === "";
    } catch (error) {
      if (mine === generation) showError(`Listing failed: ${errorMessage(error)}`);
    } finally {
      if (mine === generation) more.disabled = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      filter = readFilter();
    } catch (error) {
      showError(errorMessage(error));
      return;
    }
    void load(false);
  });
  form.addEventListener("reset", () => {
    filter = {};
    // The fields clear after this event.
    setTimeout(() => void load(false));
  });
  more.addEventListener("click", () => void load(true));

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
    h("td", {}, h("a", { href: artifactHref(artifact.id) }, artifact.name || artifact.title || artifact.id)),
    h("td", {}, artifact.kind),
    h("td", {}, artifact.mimeType),
    h("td", { class: "num" }, formatBytes(artifact.sizeBytes)),
    h("td", {}, formatTime(artifact.createdAt)),
    h("td", {}, formatStatus(artifact.status)),
  );
}
