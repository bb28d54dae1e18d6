import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { GetLineageResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { artifactHref, shorten, svg } from "./dom.ts";
import { formatStatus } from "./format.ts";
import { layOutLineage } from "./lineage-layout.ts";

const NODE_WIDTH = 150;
const NODE_HEIGHT = 44;
/** Room between columns for the arrows and their role labels. */
const COLUMN_GAP = 58;
const ROW_GAP = 14;
const MARGIN = 8;
/** Characters of kind/name that fit in a node; the full text is in its tooltip. */
const LABEL_CHARS = 19;

/**
 * The lineage as an SVG drawing: one column per generation (ancestors left,
 * the artifact in the middle, descendants right), an arrow from each input
 * to what was made from it, labelled with the input's role. Each other
 * artifact is a link to its own view. Nodes carry data-artifact-id,
 * data-generation and data-status; edges data-from, data-to and data-role.
 */
export function lineageGraph(artifact: Artifact, lineage: GetLineageResponse): SVGSVGElement {
  const artifacts = new Map<string, Artifact>([[artifact.id, artifact]]);
  for (const other of [...lineage.ancestors, ...lineage.descendants]) artifacts.set(other.id, other);
  const layout = layOutLineage(artifact.id, lineage);
  const tallest = Math.max(...layout.columns.map((column) => column.length));
  const width = MARGIN * 2 + layout.columns.length * NODE_WIDTH + (layout.columns.length - 1) * COLUMN_GAP;
  const height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1) * ROW_GAP;
  const position = new Map<string, { x: number; y: number }>();
  layout.columns.forEach((column, index) => {
    const top = MARGIN + ((tallest - column.length) * (NODE_HEIGHT + ROW_GAP)) / 2;
    for (const [rowIndex, id] of column.entries()) {
      position.set(id, { x: MARGIN + index * (NODE_WIDTH + COLUMN_GAP), y: top + rowIndex * (NODE_HEIGHT + ROW_GAP) });
    }
  });

  const drawing = svg("svg", {
    id: "lineage-graph",
    class: "lineage-graph",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `Lineage of ${artifact.name || artifact.id}: ${lineage.ancestors.length} ancestor(s), ${lineage.descendants.length} descendant(s)`,
  });
  drawing.append(
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "lineage-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" },
        svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "lineage-arrow-head" }),
      ),
    ),
  );
  for (const edge of lineage.edges) {
    const from = position.get(edge.fromId);
    const to = position.get(edge.toId);
    if (!from || !to) continue;
    const [x1, y1] = [from.x + NODE_WIDTH, from.y + NODE_HEIGHT / 2];
    const [x2, y2] = [to.x, to.y + NODE_HEIGHT / 2];
    const bend = Math.max(COLUMN_GAP / 2, Math.abs(x2 - x1) / 3);
    // An edge that skips columns passes between their nodes: its label goes in the last gap, near its target.
    const [labelX, labelY] = x2 - x1 > COLUMN_GAP + 1 ? [x2 - COLUMN_GAP / 2, y2 - 4 + (y1 - y2) / 8] : [(x1 + x2) / 2, (y1 + y2) / 2 - 4];
    drawing.append(
      svg(
        "g",
        { class: "lineage-edge", "data-from": edge.fromId, "data-to": edge.toId, "data-role": edge.role || undefined },
        svg("path", { d: `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`, "marker-end": "url(#lineage-arrow)" }),
        edge.role ? svg("text", { x: labelX, y: labelY, "text-anchor": "middle", class: "lineage-role" }, shorten(edge.role, 10)) : null,
        svg("title", {}, `${edge.fromId} → ${edge.toId}${edge.role ? ` as ${edge.role}` : ""}`),
      ),
    );
  }
  for (const [id, { x, y }] of position) {
    const node = artifacts.get(id)!;
    const label = `${node.kind}/${node.name || node.id}`;
    const status = formatStatus(node.status);
    const isCentre = id === artifact.id;
    const attributes = {
      class: isCentre ? "lineage-node current" : "lineage-node",
      "data-artifact-id": id,
      "data-generation": layout.generation.get(id),
      "data-status": status,
    };
    const children = [
      svg("rect", { x, y, width: NODE_WIDTH, height: NODE_HEIGHT, rx: 6 }),
      svg("text", { x: x + 8, y: y + 18, class: "lineage-label" }, shorten(label, LABEL_CHARS)),
      svg("text", { x: x + 8, y: y + 35, class: `lineage-status status-${status}` }, node.deletedAt ? `${status}, deleted` : status),
      svg("title", {}, `${label}\n${node.id}\n${status}`),
    ];
    drawing.append(isCentre ? svg("g", attributes, ...children) : svg("a", { ...attributes, href: artifactHref(id) }, ...children));
  }
  return drawing;
}
