/**
 * Rows of CSV text (RFC 4180: comma-separated, fields optionally in double
 * quotes, "" for a quote inside, line breaks inside quotes kept), at most
 * `maxRows`. `complete` is false when the text was cut short (a ranged read):
 * then a last row without its line end is dropped, as it may be partial.
 */
export function parseCsv(text: string, maxRows: number, complete = true): { rows: string[][]; more: boolean } {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  let at = 0;
  const endRow = () => {
    row.push(field);
    rows.push(row);
    row = [];
    field = "";
  };
  while (at < text.length && rows.length <= maxRows) {
    const char = text[at]!;
    if (quoted) {
      if (char === '"' && text[at + 1] === '"') {
        field += '"';
        at += 2;
        continue;
      }
      if (char === '"') quoted = false;
      else field += char;
    } else if (char === '"' && field === "") {
      quoted = true;
    } else if (char === ",") {
      row.push(field);
      field = "";
    } else if (char === "\n" || char === "\r") {
      if (char === "\r" && text[at + 1] === "\n") at++;
      endRow();
    } else {
      field += char;
    }
    at++;
  }
  // A quoted field left open counts too: its row is kept when the text is whole.
  const unfinished = field !== "" || row.length > 0 || quoted;
  if (unfinished && complete && rows.length <= maxRows) endRow();
  return { rows: rows.slice(0, maxRows), more: !complete || rows.length > maxRows };
}
