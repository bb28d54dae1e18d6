import { describe } from "vitest";

/**
 * The backend pairs the suites run on:
 * - "postgres+minio": the machine's Postgres and a MinIO built from source
 *   (the S3 blob store);
 * - "pglite+fs": the embedded default, PGlite and a local folder.
 *
 * ARTIFACTD_TEST_BACKENDS picks one of them (or both, comma-separated);
 * unset or empty means both. Read once, here: test-app's BACKENDS, the port
 * contract suites and the global setup (which starts MinIO only when
 * "postgres+minio" is picked) all follow it.
 */
export const ALL_BACKENDS = ["postgres+minio", "pglite+fs"] as const;
export type Backend = (typeof ALL_BACKENDS)[number];

export function parseTestBackends(raw: string | undefined): Backend[] {
  const names = (raw ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
  if (names.length === 0) return [...ALL_BACKENDS];
  for (const name of names) {
    if (!(ALL_BACKENDS as readonly string[]).includes(name)) {
      throw new Error(
        `ARTIFACTD_TEST_BACKENDS=${JSON.stringify(raw)}: ${JSON.stringify(name)} is not a backend; use ${ALL_BACKENDS.join(" or ")} (or both, comma-separated)`,
      );
    }
  }
  // In the usual order, whatever order they were given in.
  return ALL_BACKENDS.filter((backend) => names.includes(backend));
}

/** The backends this run covers, in the usual order. */
export const BACKENDS: Backend[] = parseTestBackends(process.env.ARTIFACTD_TEST_BACKENDS);

export function testsBackend(backend: Backend): boolean {
  return BACKENDS.includes(backend);
}

/**
 * A describe block that needs one backend (its stores, or its servers): run
 * when the run covers that backend, else reported as skipped, never passed
 * without running.
 */
export function describeOn(backend: Backend): typeof describe {
  return describe.skipIf(!testsBackend(backend)) as typeof describe;
}

/**
 * One describe block per adapter of a port, each tied to the backend whose
 * store it is (`%s` in the title is the adapter's name): an adapter of a
 * backend this run leaves out is reported as skipped.
 */
export function describeEachAdapter<Open>(
  title: string,
  adapters: Record<string, { readonly backend: Backend; readonly open: Open }>,
  suite: (name: string, open: Open) => void,
): void {
  for (const [name, adapter] of Object.entries(adapters)) describeOn(adapter.backend)(title.replace("%s", name), () => suite(name, adapter.open));
}
