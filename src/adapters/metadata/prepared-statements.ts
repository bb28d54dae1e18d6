/**
 * Statements the service runs on every call of a hot path (SaveInline) are
 * prepared once per Postgres connection rather than parsed and planned
 * every time: their text begins with PREPARED_STATEMENT_MARK, and the pg
 * pool (./open-metadata-store.ts) sends such a text as a named statement.
 * Only constant texts may carry the mark: each distinct one is prepared on
 * every connection that runs it, for the connection's life. PGlite ignores
 * the mark (it is an SQL comment).
 */
export const PREPARED_STATEMENT_MARK = "/* prepared */ ";

/** A name per marked text: the same text, the same name (pg refuses one name for two texts). */
export function preparedStatementNamer(): (text: string) => string | undefined {
  const names = new Map<string, string>();
  return (text) => {
    if (!text.startsWith(PREPARED_STATEMENT_MARK)) return undefined;
    let name = names.get(text);
    if (name === undefined) {
      name = `artifactd_${names.size + 1}`;
      names.set(text, name);
    }
    return name;
  };
}
