import type { GetLineageResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";

export interface LineageLayout {
  /** Each artifact's column: 0 for the artifact itself, negative for ancestors, positive for descendants. */
  readonly generation: ReadonlyMap<string, number>;
  /** The columns from the leftmost (oldest ancestors) to the rightmost, each listed top to bottom. */
  readonly columns: ReadonlyArray<readonly string[]>;
}

/**
 * Columns by generation. An ancestor goes one column left of the leftmost
 * artifact it was an input of, a descendant one column right of the
 * rightmost input it has, so every edge among ancestors, and among
 * descendants, points left to right even when one artifact is reached by
 * paths of different lengths (lineage has no cycles: inputs are checked
 * when an artifact is made). Within a column, artifacts are ordered by where
 * their neighbours in the column nearer the middle are, to keep edges from
 * crossing where that is easy.
 */
export function layOutLineage(centre: string, lineage: GetLineageResponse): LineageLayout {
  const generation = new Map<string, number>([[centre, 0]]);
  for (const ancestor of lineage.ancestors) generation.set(ancestor.id, -1);
  for (const descendant of lineage.descendants) generation.set(descendant.id, 1);
  const ancestors = new Set(lineage.ancestors.map((artifact) => artifact.id));
  const descendants = new Set(lineage.descendants.map((artifact) => artifact.id));
  const edges = lineage.edges.filter((edge) => generation.has(edge.fromId) && generation.has(edge.toId));
  // At most one pass per artifact: each pass settles at least one more column.
  for (let pass = 0; pass <= generation.size; pass++) {
    let changed = false;
    for (const { fromId, toId } of edges) {
      const from = generation.get(fromId)!;
      const to = generation.get(toId)!;
      if (ancestors.has(fromId) && (ancestors.has(toId) || toId === centre) && from > to - 1) {
        generation.set(fromId, to - 1);
        changed = true;
      }
      if (descendants.has(toId) && (descendants.has(fromId) || fromId === centre) && to < from + 1) {
        generation.set(toId, from + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }

  const byGeneration = new Map<number, string[]>();
  for (const [id, column] of generation) byGeneration.set(column, [...(byGeneration.get(column) ?? []), id]);
  const first = Math.min(...byGeneration.keys());
  const last = Math.max(...byGeneration.keys());
  const row = new Map<string, number>([[centre, 0]]);
  const neighbours = (id: string, towards: number) =>
    edges.flatMap(({ fromId, toId }) => {
      if (fromId === id && generation.get(toId) === towards) return [toId];
      if (toId === id && generation.get(fromId) === towards) return [fromId];
      return [];
    });
  const order = (column: number, towards: number) => {
    const ids = byGeneration.get(column) ?? [];
    const place = (id: string) => {
      const placed = neighbours(id, towards).map((other) => row.get(other) ?? 0);
      return placed.length === 0 ? Number.POSITIVE_INFINITY : placed.reduce((sum, value) => sum + value, 0) / placed.length;
    };
    const sorted = ids.map((id, index) => ({ id, index, at: place(id) })).sort((a, b) => a.at - b.at || a.index - b.index);
    for (const [index, { id }] of sorted.entries()) row.set(id, index);
    byGeneration.set(
      column,
      sorted.map(({ id }) => id),
    );
  };
  for (let column = -1; column >= first; column--) order(column, column + 1);
  for (let column = 1; column <= last; column++) order(column, column - 1);
  const columns: string[][] = [];
  for (let column = first; column <= last; column++) columns.push(byGeneration.get(column) ?? []);
  return { generation, columns };
}
