import type { Artifact, Provenance } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { GetLineageResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import type { WebArtifactClient } from "../web-artifact-client.ts";
import { renderPreview } from "./content-preview.ts";
import { artifactHref, byId, definitionList, h, nodes } from "./dom.ts";
import { errorMessage, formatBytes, formatStatus, formatStorage, formatTime, versionedName } from "./format.ts";
import { lineageGraph } from "./lineage-graph.ts";
import { createMetricChartPanel } from "./metric-chart.ts";
import { reviewActions } from "./review-actions.ts";
import { createVersionsPanel, versionBadges, type VersionsNote } from "./versions-panel.ts";

/** The service's answer to an action on the view, shown as it is, and what to say about it where. */
interface ViewChange {
  readonly artifact: Artifact;
  readonly notice: string;
  /** The review actions' line (the default), or the versions panel's; `failed` shows it as a refusal. */
  readonly area?: "review" | "versions";
  readonly failed?: boolean;
}

/** The depths the lineage picker offers (GetLineage takes 1–32; a graph deeper than this is too wide to read). */
const LINEAGE_DEPTHS = [1, 2, 3, 4, 5] as const;
const DEFAULT_LINEAGE_DEPTH = 3;
const PROVENANCE_FIELDS: ReadonlyArray<readonly [keyof Omit<Provenance, "$typeName" | "$unknown">, string]> = [
  ["runId", "Run"],
  ["graphId", "Graph"],
  ["nodeId", "Node"],
  ["toolName", "Tool"],
  ["toolVersion", "Tool version"],
  ["workflowId", "Workflow"],
  ["templateId", "Template"],
  ["sessionId", "Session"],
  ["userId", "User"],
  ["clientId", "Client"],
  ["appId", "App"],
];

/**
 * One artifact: review actions, for a versioned one its version, aliases,
 * the name's versions and the alias actions and history, metadata,
 * provenance, labels, metrics (and a chart of one across related artifacts),
 * tags, lineage (a graph to the chosen depth, and lists), a preview and a
 * download link (signed URL, renewed if it has expired).
 */
export function createArtifactDetail(client: WebArtifactClient, showError: (message: string) => void) {
  const section = byId("detail");
  const heading = byId("detail-heading");
  const body = byId("detail-body");
  let current: AbortController | undefined;
  // Kept while moving from artifact to artifact, as through the graph's nodes.
  let lineageDepth = DEFAULT_LINEAGE_DEPTH;

  /**
   * Shows the artifact `target` names: an id, or a reference (`orders:latest`,
   * `orders@v3`) the server resolves, the id it resolved to shown. `changed`
   * is the service's answer to an action on it.
   */
  async function show(target: string, changed?: ViewChange, reference = false): Promise<void> {
    current?.abort();
    const controller = new AbortController();
    current = controller;
    section.hidden = false;
    heading.textContent = target;
    if (!changed) body.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    let artifact: Artifact;
    let lineage: GetLineageResponse;
    try {
      if (reference) {
        // Resolved once: the lineage is of the artifact shown, even if the alias moves meanwhile.
        artifact = await client.get(target);
        lineage = await client.lineage(artifact.id, lineageDepth);
      } else {
        [artifact, lineage] = await Promise.all([changed ? changed.artifact : client.get(target), client.lineage(target, lineageDepth)]);
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      body.replaceChildren(h("p", { class: "error" }, `Could not open ${target}: ${errorMessage(error)}`));
      return;
    }
    if (controller.signal.aborted) return;
    heading.textContent = artifact.title || artifact.name || artifact.id;

    const readable = !artifact.deletedAt;
    let link: { url: string; expiresAt: Date } | undefined;
    if (readable) {
      try {
        link = await client.downloadUrl(artifact.id);
      } catch (error) {
        showError(`No download link: ${errorMessage(error)}`);
      }
    }
    if (controller.signal.aborted) return;

    const preview = h("div", { id: "preview" }, h("p", { class: "muted" }, "Loading the preview…"));
    const chart = createMetricChartPanel(client, artifact, controller.signal);
    const area = changed?.area ?? "review";
    const versionsNote: VersionsNote | undefined = changed && area === "versions" ? { text: changed.notice, failed: changed.failed ?? false } : undefined;
    const versions =
      artifact.version > 0n
        ? createVersionsPanel(
            client,
            artifact,
            controller.signal,
            (answer, note) => void show(answer.id, { artifact: answer, notice: note.text, area: "versions", failed: note.failed }),
            versionsNote,
          )
        : undefined;
    body.replaceChildren(
      ...nodes([
        reference &&
          h(
            "p",
            { id: "resolved-reference", class: "muted" },
            h("code", {}, target),
            " resolved to ",
            h("a", { href: artifactHref(artifact.id) }, h("code", {}, artifact.id)),
            artifact.version > 0n ? ` (v${artifact.version} of ${versionedName(artifact)})` : "",
          ),
        versionBadges(artifact),
      ]),
      h(
        "div",
        { class: "actions" },
        link ? downloadLink(artifact, link) : h("span", { class: "muted" }, readable ? "" : "Deleted: the content can no longer be read."),
      ),
      reviewActions(client, artifact, (answer, notice) => void show(answer.id, { artifact: answer, notice }), area === "review" ? changed?.notice : ""),
      ...(versions ? [h("h3", {}, "Versions"), versions] : []),
      h("h3", {}, "Metadata"),
      definitionList([
        ["Id", h("code", {}, artifact.id)],
        ["Kind", artifact.kind],
        ["Class", artifact.artifactClass],
        ["Project", artifact.project],
        ["Name", artifact.name],
        ["Version", artifact.version > 0n ? `v${artifact.version}` : ""],
        ["Aliases", artifact.aliases.join(", ")],
        ["Title", artifact.title],
        ["Type", artifact.mimeType],
        ["Size", `${formatBytes(artifact.sizeBytes)} (${artifact.sizeBytes} bytes)`],
        ["BLAKE3", h("code", { id: "detail-blake3" }, artifact.blake3)],
        ["Storage", formatStorage(artifact.storage)],
        ["Status", formatStatus(artifact.status)],
        ["Pinned", artifact.pinned ? "yes" : "no"],
        ["Created", formatTime(artifact.createdAt)],
        ["Created by", artifact.createdBy],
        ["Expires", formatTime(artifact.expiresAt)],
        ["Deleted", formatTime(artifact.deletedAt)],
      ]),
      h("h3", {}, "Provenance"),
      definitionList(PROVENANCE_FIELDS.map(([field, label]) => [label, artifact.provenance?.[field] ?? ""] as const)),
      h("h3", {}, "Labels"),
      definitionList(Object.entries(artifact.labels).sort(([a], [b]) => a.localeCompare(b))),
      h("h3", {}, "Metrics"),
      definitionList(
        Object.entries(artifact.metrics)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([name, value]) => [name, String(value)] as const),
      ),
      ...(chart ? [h("h4", {}, "Compared"), chart] : []),
      h("h3", {}, "Tags"),
      artifact.tags.length > 0 ? h("ul", { class: "tags" }, ...artifact.tags.map((tag) => h("li", {}, tag))) : h("p", { class: "muted" }, "none"),
      h("h3", {}, "Lineage"),
      lineageSection(artifact, lineage, controller.signal),
      h("h3", {}, "Preview"),
      preview,
    );
    if (!link) {
      preview.replaceChildren(h("p", { class: "muted" }, "No preview."));
      return;
    }
    try {
      preview.replaceChildren(await renderPreview(client, artifact, link.url, controller.signal));
    } catch {
      // Another artifact was opened meanwhile.
    }
  }

  function downloadLink(artifact: Artifact, link: { url: string; expiresAt: Date }): HTMLElement {
    const anchor = h("a", { id: "download-link", class: "button", href: link.url, download: artifact.name || artifact.id }, "Download");
    let expiresAt = link.expiresAt;
    // A page left open past the URL's expiry gets a fresh one on click.
    anchor.addEventListener("click", (event) => {
      if (Date.now() < expiresAt.getTime() - 10_000) return;
      event.preventDefault();
      client.downloadUrl(artifact.id).then(
        (fresh) => {
          expiresAt = fresh.expiresAt;
          anchor.href = fresh.url;
          anchor.click();
        },
        (error: unknown) => showError(`Download failed: ${errorMessage(error)}`),
      );
    });
    return h("span", {}, anchor, " ", h("span", { class: "muted" }, formatBytes(artifact.sizeBytes)));
  }

  /** The depth picker, the graph and the lists; a new depth fetches the lineage again and redraws both. */
  function lineageSection(artifact: Artifact, lineage: GetLineageResponse, signal: AbortSignal): HTMLElement {
    const picker = h(
      "select",
      { id: "lineage-depth" },
      ...LINEAGE_DEPTHS.map((depth) => h("option", { value: String(depth), selected: depth === lineageDepth }, String(depth))),
    );
    const drawn = h("div", { id: "lineage-drawn" }, ...lineageParts(artifact, lineage));
    const status = h("span", { id: "lineage-status", class: "muted", role: "status" });
    let generation = 0;
    picker.addEventListener("change", async () => {
      const mine = ++generation;
      lineageDepth = Number(picker.value);
      status.textContent = "Loading…";
      try {
        const deeper = await client.lineage(artifact.id, lineageDepth);
        if (mine !== generation || signal.aborted) return;
        drawn.replaceChildren(...lineageParts(artifact, deeper));
        status.textContent = "";
      } catch (error) {
        if (mine !== generation || signal.aborted) return;
        status.textContent = "";
        status.append(h("span", { class: "error" }, `The lineage could not be loaded: ${errorMessage(error)}`));
      }
    });
    return h("div", {}, h("div", { class: "grid" }, h("label", { class: "inline" }, "Depth ", picker), status), drawn);
  }

  function hide(): void {
    current?.abort();
    section.hidden = true;
    body.replaceChildren();
  }

  return { show, hide };
}

function lineageParts(artifact: Artifact, lineage: GetLineageResponse): HTMLElement[] {
  const none = lineage.ancestors.length === 0 && lineage.descendants.length === 0;
  return [
    none ? h("p", { class: "muted" }, "No inputs or outputs are recorded.") : h("div", { class: "lineage-graph-box" }, lineageGraph(artifact, lineage)),
    lineageView(artifact, lineage),
  ];
}

function lineageView(artifact: Artifact, lineage: GetLineageResponse): HTMLElement {
  const roles = new Map<string, string>();
  for (const edge of lineage.edges) {
    if (edge.toId === artifact.id && edge.role) roles.set(edge.fromId, edge.role);
    if (edge.fromId === artifact.id && edge.role) roles.set(edge.toId, edge.role);
  }
  const item = (other: Artifact) =>
    h(
      "li",
      {},
      h("a", { href: artifactHref(other.id) }, other.name || other.title || other.id),
      ` ${other.kind}`,
      roles.has(other.id) ? h("span", { class: "muted" }, ` as ${roles.get(other.id)}`) : null,
    );
  const list = (title: string, artifacts: Artifact[]) =>
    h("div", {}, h("h4", {}, title), artifacts.length > 0 ? h("ul", {}, ...artifacts.map(item)) : h("p", { class: "muted" }, "none"));
  return h("div", { id: "lineage", class: "lineage" }, list("Made from", lineage.ancestors), list("Used by", lineage.descendants));
}
