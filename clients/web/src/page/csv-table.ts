import { h } from "./dom.ts";

/** A table of the rows, the first as its header; every cell is text. */
export function csvTable(rows: readonly string[][]): HTMLTableElement {
  const [header = [], ...body] = rows;
  const columns = Math.max(0, ...rows.map((row) => row.length));
  const cells = (row: readonly string[], tag: "th" | "td") => Array.from({ length: columns }, (_, index) => h(tag, {}, row[index] ?? ""));
  return h(
    "table",
    { id: "preview-csv", class: "preview-csv" },
    h("thead", {}, h("tr", {}, ...cells(header, "th"))),
    h("tbody", {}, ...body.map((row) => h("tr", {}, ...cells(row, "td")))),
  );
}
