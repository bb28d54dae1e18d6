import pg from "pg";

export interface LockWaiter {
  readonly pid: number;
  /** The backends it waits for (pg_blocking_pids). */
  readonly blockers: number[];
}

/**
 * A connection of its own to a test's database, to hold a lock in an open
 * transaction and watch which of the service's backends come to wait on
 * locks. It asks inside its transaction, where pg_stat_activity keeps the
 * backends it listed first until the transaction ends, so a connection the
 * pool opened since (on a loaded machine, often the very one awaited) would
 * never show: each look clears that snapshot first.
 */
export async function openLockWatcher(databaseUrl: string) {
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  const pid = Number((await admin.query("select pg_backend_pid() as pid")).rows[0].pid);

  const waiters = async (): Promise<LockWaiter[]> => {
    await admin.query("select pg_stat_clear_snapshot()");
    const { rows } = await admin.query<LockWaiter>(
      `select pid, pg_blocking_pids(pid) as blockers from pg_stat_activity
        where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
    );
    return rows;
  };

  return {
    /** This connection's backend: what the first waiter waits for. */
    pid,
    query: (text: string) => admin.query(text),
    /** Once `count` backends wait on locks at once, them; after 20 s, an error saying what the backends were doing. */
    async untilWaiting(count: number): Promise<LockWaiter[]> {
      for (const deadline = Date.now() + 20_000; ; ) {
        const now = await waiters();
        if (now.length >= count) return now;
        if (Date.now() > deadline) {
          const backends = await admin.query(
            `select pid, state, wait_event_type, wait_event, left(query, 120) as query from pg_stat_activity
              where datname = current_database() and pid <> pg_backend_pid()`,
          );
          throw new Error(`${count} backends never waited on locks at once; the database's backends: ${JSON.stringify(backends.rows)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    /** Ends its transaction, if one is open, and the connection. */
    async close(): Promise<void> {
      await admin.query("rollback").catch(() => {});
      await admin.end();
    },
  };
}
