import type { CompiledQuery, DatabaseConnection, Dialect, Driver, QueryCompiler, QueryResult, TransactionSettings } from "kysely";
import type { StoreOperation, StoreOperationObserver } from "../../observability/calls.ts";

/**
 * The dialect with each statement reported to the observers
 * (observability/calls.ts): started in the caller's async context when the
 * statement is sent, ended with its result or failure. Every statement of
 * the metadata store passes here, whichever port function or transaction
 * ran it, on Postgres and PGlite alike.
 *
 * What a statement is called stays bounded: its first keyword (SELECT,
 * INSERT, UPDATE, DELETE, WITH, …; anything else OTHER) and, for a
 * statement built with kysely's query builder, its main table. The SQL's
 * text and parameters are never reported.
 *
 * With no observer the dialect is returned as it is.
 */
export function observeDialect(dialect: Dialect, observers: readonly StoreOperationObserver[]): Dialect {
  if (observers.length === 0) return dialect;
  return {
    createAdapter: () => dialect.createAdapter(),
    createDriver: () => new ObservingDriver(dialect.createDriver(), observers),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createQueryCompiler: () => dialect.createQueryCompiler(),
  };
}

const KEYWORDS = new Set(["SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "MERGE", "CREATE", "ALTER", "DROP", "SET", "RESET", "LISTEN", "NOTIFY", "LOCK"]);

/** The statement's first keyword, past leading comments (a prepared statement's mark) and parentheses. */
function operationOf(sql: string): string {
  const match = /^(?:\s|\(|\/\*.*?\*\/|--[^\n]*\n)*([A-Za-z]+)/s.exec(sql);
  const keyword = match?.[1]?.toUpperCase();
  return keyword !== undefined && KEYWORDS.has(keyword) ? keyword : "OTHER";
}

interface Node {
  readonly kind: string;
  readonly [field: string]: unknown;
}

/** The main table of a statement built with the query builder: what it selects from, inserts into, updates or deletes from. */
function tableOf(root: Node): string | undefined {
  const target =
    root.kind === "InsertQueryNode"
      ? root.into
      : root.kind === "UpdateQueryNode"
        ? root.table
        : root.kind === "SelectQueryNode" || root.kind === "DeleteQueryNode"
          ? (root.from as { froms?: readonly unknown[] } | undefined)?.froms?.[0]
          : undefined;
  let node = target as Node | undefined;
  if (node?.kind === "AliasNode") node = node.node as Node;
  if (node?.kind !== "TableNode") return undefined;
  return (node.table as { identifier?: { name?: string } }).identifier?.name;
}

function describe(query: CompiledQuery): StoreOperation {
  return { system: "postgresql", operation: operationOf(query.sql), collection: tableOf(query.query as unknown as Node) };
}

/** Hands kysely wrapped connections and the inner driver its own back (drivers keep state on their connection objects). */
class ObservingDriver implements Driver {
  readonly #inner: Driver;
  readonly #observers: readonly StoreOperationObserver[];
  readonly #wrapped = new WeakMap<DatabaseConnection, DatabaseConnection>();
  readonly #innerOf = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(inner: Driver, observers: readonly StoreOperationObserver[]) {
    this.#inner = inner;
    this.#observers = observers;
  }

  #start(query: CompiledQuery): (error?: unknown) => void {
    const operation = describe(query);
    const ends = this.#observers.map((observer) => observer.started(operation));
    return (error) => {
      for (const end of ends) end(error);
    };
  }

  #unwrap(connection: DatabaseConnection): DatabaseConnection {
    return this.#innerOf.get(connection) ?? connection;
  }

  #wrap(inner: DatabaseConnection): DatabaseConnection {
    let wrapped = this.#wrapped.get(inner);
    if (!wrapped) {
      const start = (query: CompiledQuery) => this.#start(query);
      wrapped = {
        executeQuery: async <R>(query: CompiledQuery): Promise<QueryResult<R>> => {
          const end = start(query);
          try {
            const result = await inner.executeQuery<R>(query);
            end();
            return result;
          } catch (error) {
            end(error);
            throw error;
          }
        },
        async *streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
          const end = start(query);
          let failure: unknown;
          try {
            yield* inner.streamQuery<R>(query, chunkSize);
          } catch (error) {
            failure = error;
            throw error;
          } finally {
            end(failure);
          }
        },
      };
      this.#wrapped.set(inner, wrapped);
      this.#innerOf.set(wrapped, inner);
    }
    return wrapped;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    return this.#wrap(await this.#inner.acquireConnection());
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.#inner.beginTransaction(this.#unwrap(connection), settings);
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.commitTransaction(this.#unwrap(connection));
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#inner.rollbackTransaction(this.#unwrap(connection));
  }

  async savepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await this.#inner.savepoint?.(this.#unwrap(connection), savepointName, compileQuery);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await this.#inner.rollbackToSavepoint?.(this.#unwrap(connection), savepointName, compileQuery);
  }

  async releaseSavepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    await this.#inner.releaseSavepoint?.(this.#unwrap(connection), savepointName, compileQuery);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(this.#unwrap(connection));
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}
