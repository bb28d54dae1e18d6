import type { CompiledQuery, DatabaseConnection, Dialect, Driver, QueryCompiler, QueryResult, TransactionSettings } from "kysely";

/**
 * The dialect with every failure of its driver — acquiring a connection,
 * each statement, streamed rows, transaction control — passed through
 * `translate` (./postgres-errors.ts): the one place where the metadata
 * store's driver errors become ArtifactErrors, whichever store function or
 * transaction ran the statement. Errors `translate` leaves alone reach the
 * store's code unchanged, so its own checks of SQLSTATEs (a foreign-key
 * violation that means "still in use") keep working.
 */
export function translateDialectErrors(dialect: Dialect, translate: (error: unknown) => unknown): Dialect {
  return {
    createAdapter: () => dialect.createAdapter(),
    createDriver: () => new TranslatingDriver(dialect.createDriver(), translate),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createQueryCompiler: () => dialect.createQueryCompiler(),
  };
}

/**
 * Hands kysely wrapped connections and gives the inner driver its own back:
 * drivers keep private state on their connection objects (kysely's
 * PostgresDriver releases a connection through a symbol-keyed method).
 */
class TranslatingDriver implements Driver {
  readonly #inner: Driver;
  readonly #translate: (error: unknown) => unknown;
  readonly #wrapped = new WeakMap<DatabaseConnection, DatabaseConnection>();
  readonly #innerOf = new WeakMap<DatabaseConnection, DatabaseConnection>();

  constructor(inner: Driver, translate: (error: unknown) => unknown) {
    this.#inner = inner;
    this.#translate = translate;
  }

  async #run<T>(step: () => Promise<T>): Promise<T> {
    try {
      return await step();
    } catch (error) {
      throw this.#translate(error);
    }
  }

  #unwrap(connection: DatabaseConnection): DatabaseConnection {
    return this.#innerOf.get(connection) ?? connection;
  }

  #wrap(inner: DatabaseConnection): DatabaseConnection {
    let wrapped = this.#wrapped.get(inner);
    if (!wrapped) {
      const translate = this.#translate;
      wrapped = {
        executeQuery: <R>(query: CompiledQuery): Promise<QueryResult<R>> => this.#run(() => inner.executeQuery<R>(query)),
        async *streamQuery<R>(query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
          try {
            yield* inner.streamQuery<R>(query, chunkSize);
          } catch (error) {
            throw translate(error);
          }
        },
      };
      this.#wrapped.set(inner, wrapped);
      this.#innerOf.set(wrapped, inner);
    }
    return wrapped;
  }

  init(): Promise<void> {
    return this.#run(() => this.#inner.init());
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    return this.#wrap(await this.#run(() => this.#inner.acquireConnection()));
  }

  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    return this.#run(() => this.#inner.beginTransaction(this.#unwrap(connection), settings));
  }

  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#run(() => this.#inner.commitTransaction(this.#unwrap(connection)));
  }

  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.#run(() => this.#inner.rollbackTransaction(this.#unwrap(connection)));
  }

  async savepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    const step = this.#inner.savepoint?.bind(this.#inner);
    if (!step) throw new Error("The `savepoint` method is not supported by this driver");
    await this.#run(() => step(this.#unwrap(connection), savepointName, compileQuery));
  }

  async rollbackToSavepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    const step = this.#inner.rollbackToSavepoint?.bind(this.#inner);
    if (!step) throw new Error("The `rollbackToSavepoint` method is not supported by this driver");
    await this.#run(() => step(this.#unwrap(connection), savepointName, compileQuery));
  }

  async releaseSavepoint(connection: DatabaseConnection, savepointName: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    const step = this.#inner.releaseSavepoint?.bind(this.#inner);
    if (!step) throw new Error("The `releaseSavepoint` method is not supported by this driver");
    await this.#run(() => step(this.#unwrap(connection), savepointName, compileQuery));
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#run(() => this.#inner.releaseConnection(this.#unwrap(connection)));
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }
}
