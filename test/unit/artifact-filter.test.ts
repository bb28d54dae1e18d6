import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from "kysely";
import { describe, expect, it } from "vitest";
import { PROVENANCE_FIELDS, type ArtifactFilter } from "../../src/artifact.ts";
import { applyFilter } from "../../src/adapters/metadata/artifact-filter.ts";
import type { Database } from "../../src/adapters/metadata/schema.ts";

/**
 * The WHERE terms a filter becomes, compiled for Postgres, each bound
 * parameter written in place as JSON so a term reads as what it tests. That
 * the terms select the right rows is for the metadata store contract test,
 * on real databases; this pins which terms a filter makes.
 */
const db = new Kysely<Database>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (kysely) => new PostgresIntrospector(kysely),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
});

function whereTerms(filter: ArtifactFilter): string[] {
  const { sql, parameters } = applyFilter(db.selectFrom("artifacts").select("id"), filter).compile();
  const where = sql.split(" where ")[1];
  if (where === undefined) return [];
  return where.split(" and ").map((term) => term.replace(/\$(\d+)/g, (_, n: string) => JSON.stringify(parameters[Number(n) - 1])));
}

describe("the filter as SQL", () => {
  it("leaves deleted artifacts out unless asked to include them, and adds nothing for an empty filter", () => {
    expect(whereTerms({})).toStrictEqual(['"artifacts"."deleted_at" is null']);
    expect(whereTerms({ includeDeleted: true })).toStrictEqual([]);
    expect(whereTerms({ includeDeleted: false })).toStrictEqual(['"artifacts"."deleted_at" is null']);
  });

  it("compares each plain field for equality, as a bound parameter", () => {
    expect(
      whereTerms({ includeDeleted: true, kind: "model", artifactClass: "ckpt", mimeType: "text/plain", status: "approved", storage: "inline" }),
    ).toStrictEqual([
      '"artifacts"."kind" = "model"',
      '"artifacts"."artifact_class" = "ckpt"',
      '"artifacts"."mime_type" = "text/plain"',
      '"artifacts"."status" = "approved"',
      '"artifacts"."storage" = "inline"',
    ]);
  });

  it("ignores empty strings, as unset fields", () => {
    expect(
      whereTerms({
        includeDeleted: true,
        kind: "",
        artifactClass: "",
        mimeType: "",
        namePrefix: "",
        provenance: { run_id: "" },
        labels: {},
        tagsAll: [],
        tagsAny: [],
      }),
    ).toStrictEqual([]);
  });

  it("matches a name prefix with LIKE, its own %, _ and backslash escaped", () => {
    expect(whereTerms({ includeDeleted: true, namePrefix: "a%b_c\\d" })).toStrictEqual([String.raw`"artifacts"."name" like "a\\%b\\_c\\\\d%"`]);
    expect(whereTerms({ includeDeleted: true, namePrefix: "%%" })).toStrictEqual([String.raw`"artifacts"."name" like "\\%\\%%"`]);
  });

  it("filters on pinned both ways, and on the creation time as a half-open range", () => {
    const after = new Date("2026-01-01T00:00:00Z");
    const before = new Date("2026-02-01T00:00:00Z");
    expect(whereTerms({ includeDeleted: true, pinned: false })).toStrictEqual(['"artifacts"."pinned" = false']);
    expect(whereTerms({ includeDeleted: true, pinned: true, createdAfter: after, createdBefore: before })).toStrictEqual([
      '"artifacts"."pinned" = true',
      `"artifacts"."created_at" >= "${after.toISOString()}"`,
      `"artifacts"."created_at" < "${before.toISOString()}"`,
    ]);
  });

  it("compares every provenance field that is set with its own column", () => {
    const provenance = Object.fromEntries(PROVENANCE_FIELDS.map((field) => [field, `v-${field}`]));
    expect(whereTerms({ includeDeleted: true, provenance })).toStrictEqual(PROVENANCE_FIELDS.map((field) => `"artifacts"."${field}" = "v-${field}"`));
  });

  it("matches labels by JSONB containment and tags by array containment or overlap", () => {
    expect(whereTerms({ includeDeleted: true, labels: { "a.b": 'q"$' }, tagsAll: ["x", "y"], tagsAny: ["z"] })).toStrictEqual([
      `artifacts.labels @> ${JSON.stringify(JSON.stringify({ "a.b": 'q"$' }))}::jsonb`,
      'artifacts.tags @> ["x","y"]::text[]',
      'artifacts.tags && ["z"]::text[]',
    ]);
  });

  it("needs the metric present, then compares it with each bound given", () => {
    expect(
      whereTerms({
        includeDeleted: true,
        metricRanges: [
          { name: "loss", min: 0.5, max: 2 },
          { name: "acc", min: 0, max: undefined },
          { name: "f1", min: undefined, max: 0 },
          { name: "any", min: undefined, max: undefined },
        ],
      }),
    ).toStrictEqual([
      'artifacts.metrics ? "loss"',
      '(artifacts.metrics ->> "loss")::float8 >= 0.5',
      '(artifacts.metrics ->> "loss")::float8 <= 2',
      'artifacts.metrics ? "acc"',
      '(artifacts.metrics ->> "acc")::float8 >= 0',
      'artifacts.metrics ? "f1"',
      '(artifacts.metrics ->> "f1")::float8 <= 0',
      'artifacts.metrics ? "any"',
    ]);
  });
});
