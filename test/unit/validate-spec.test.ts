import { describe, expect, it } from "vitest";
import type { ArtifactFilter } from "../../src/artifact.ts";
import { newArtifactId } from "../../src/artifact-id.ts";
import {
  requireArtifactId,
  validateFilter,
  validateLabels,
  validateMetrics,
  validateSpec,
  validateTags,
  type RawSpec,
} from "../../src/service/validate-spec.ts";
import { LIMITS, checkNoNul } from "../../src/service/field-checks.ts";
import { expectArtifactError } from "../support/expect-artifact-error.ts";
import { EMPTY_RAW_SPEC } from "../support/raw-spec.ts";

const NOW = new Date("2026-01-01T00:00:00Z");
const EMPTY = EMPTY_RAW_SPEC;
const raw = (changes: Partial<RawSpec>): RawSpec => ({ ...EMPTY, ...changes });
const valid = (changes: Partial<RawSpec>) => validateSpec(raw(changes), NOW);
const invalid = (changes: Partial<RawSpec>, message: RegExp) => expectArtifactError(() => valid(changes), "invalid_argument", message);
const many = <T>(n: number, make: (i: number) => T): T[] => Array.from({ length: n }, (_, i) => make(i));
const input = (artifactId: string, role = "") => ({ artifactId, role, requiredClass: "", requiredKind: "" });

describe("validateSpec", () => {
  it("returns the spec with defaults filled in, tags sorted and unique, and only the set provenance fields", () => {
    const id = newArtifactId("art");
    const spec = validateSpec(
      {
        ...EMPTY,
        kind: "model",
        artifactClass: "checkpoint",
        name: "resnet",
        title: "ResNet 50",
        mimeType: "application/octet-stream",
        labels: { team: "vision" },
        tags: ["b", "a", "b"],
        metrics: { loss: 0.25 },
        provenance: { run_id: "r1", graph_id: "", unknown_field: "x" },
        inputs: [{ ...input(id, "weights"), requiredClass: "c", requiredKind: "k", extra: 1 } as never],
        pinned: true,
        typePrefix: "mdl",
      },
      NOW,
    );
    expect(spec).toStrictEqual({
      kind: "model",
      artifactClass: "checkpoint",
      name: "resnet",
      title: "ResNet 50",
      mimeType: "application/octet-stream",
      labels: { team: "vision" },
      tags: ["a", "b"],
      metrics: { loss: 0.25 },
      provenance: { run_id: "r1" },
      inputs: [{ artifactId: id, role: "weights", requiredClass: "c", requiredKind: "k" }],
      pinned: true,
      status: "draft",
      expiresAt: undefined,
      typePrefix: "mdl",
      versioned: false,
      project: "",
    });
    expect(valid({ status: "approved" }).status).toBe("approved");
  });

  it("versions only names of 1–128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit, in valid projects", () => {
    expect(valid({ versioned: true, name: "orders.v2_final-1", project: "team-a" })).toMatchObject({
      versioned: true,
      name: "orders.v2_final-1",
      project: "team-a",
    });
    expect(valid({ versioned: true, name: "n".repeat(128) }).versioned).toBe(true);
    invalid({ versioned: true, name: "" }, /^spec\.name "" cannot be versioned \(spec\.versioned\): a versioned artifact needs a name/);
    for (const bad of ["my orders", "-orders", "a/b", "a:b", "a@b", "n".repeat(129)]) {
      invalid({ versioned: true, name: bad }, /^spec\.name .* cannot be versioned/);
    }
    // Without versioning a name stays free text.
    expect(valid({ name: "my orders/a:b" }).name).toBe("my orders/a:b");
    for (const bad of [".team", "a b", "p".repeat(65), "a/b"]) invalid({ project: bad }, /^spec\.project .* is not valid: use 1–64 characters/);
  });

  it("takes references as lineage inputs, resolved when the artifact is recorded", () => {
    const spec = valid({ inputs: [input("orders:latest"), input("team/orders@v3"), input("artifact://orders:production")] });
    expect(spec.inputs.map((i) => i.artifactId)).toEqual(["orders:latest", "team/orders@v3", "artifact://orders:production"]);
    invalid({ inputs: [input("orders@v0")] }, /^spec\.inputs\[0\]\.artifact_id "orders@v0" is not an artifact id or reference: version "v0"/);
  });

  it("requires a spec and a kind", () => {
    expectArtifactError(() => validateSpec(undefined, NOW), "invalid_argument", /^spec is required: give at least spec\.kind$/);
    invalid({ kind: "" }, /^spec\.kind is required/);
  });

  it("takes kinds and classes of 1–64 characters of A-Z a-z 0-9 . _ - only", () => {
    for (const name of ["a", "Model.v2_final-1", "x".repeat(64)]) {
      expect(valid({ kind: name, artifactClass: name }).kind).toBe(name);
    }
    for (const bad of ["x".repeat(65), "a b", " ab", "ab ", "a/b", "ä"]) {
      invalid({ kind: bad }, /^spec\.kind ".*" is not valid: use 1–64 characters/);
      invalid({ artifactClass: bad }, /^spec\.artifact_class ".*" is not valid/);
    }
  });

  it("names the spec's labels, tags and metrics in their refusals", () => {
    invalid({ labels: { "": "v" } }, /^spec\.labels key "" must be/);
    invalid({ tags: [""] }, /^spec\.tags entry "" must be/);
    invalid({ metrics: { "": 1 } }, /^spec\.metrics key "" must be/);
  });

  it("caps name and title and refuses NUL in them", () => {
    expect(valid({ name: "n".repeat(LIMITS.maxName), title: "t".repeat(LIMITS.maxTitle) }).name).toHaveLength(256);
    invalid({ name: "n".repeat(257) }, /^spec\.name is 257 characters long; at most 256 are allowed$/);
    invalid({ title: "t".repeat(513) }, /^spec\.title is 513 characters long; at most 512/);
    invalid({ name: "a\u0000b" }, /^spec\.name contains a NUL character/);
  });

  it("takes media types as type/subtype with optional parameters, up to 255 characters", () => {
    for (const type of [
      "text/plain",
      "text/plain; charset=utf-8",
      "text/plain;q",
      "text/plain ;q",
      "application/vnd.a+json",
      "x-a_b/c-d.e",
      `a/${"b".repeat(253)}`,
    ]) {
      expect(valid({ mimeType: type }).mimeType).toBe(type);
    }
    for (const bad of ["textplain", "text/", "/plain", " text/plain", "text/plain x", "te xt/plain", "text/pl ain", `a/${"b".repeat(254)}`]) {
      invalid({ mimeType: bad }, /^spec\.mime_type ".*" is not a media type: use type\/subtype/);
    }
    const long = `a/${"b".repeat(300)}`;
    const error = invalid({ mimeType: long }, /is not a media type/);
    expect(error.message).toContain(JSON.stringify(long.slice(0, 80)));
    expect(error.message).not.toContain(long.slice(0, 81));
  });

  it("takes a type prefix of 3–5 lowercase letters", () => {
    expect(valid({ typePrefix: "img" }).typePrefix).toBe("img");
    invalid({ typePrefix: "IMG" }, /^spec\.type_prefix "IMG" is not valid: use 3–5 lowercase letters/);
  });

  it("takes an expiry strictly in the future", () => {
    const soon = new Date(NOW.getTime() + 1);
    expect(valid({ expiresAt: soon }).expiresAt).toBe(soon);
    invalid({ expiresAt: NOW }, /^spec\.expires_at is in the past/);
    invalid({ expiresAt: new Date(NOW.getTime() - 1000) }, /in the past/);
  });

  it("turns ttl_seconds into an expiry, within 1 second to ten years, never with expires_at", () => {
    expect(valid({ ttlSeconds: 1 }).expiresAt).toEqual(new Date(NOW.getTime() + 1000));
    expect(valid({ ttlSeconds: LIMITS.maxTtlSeconds }).expiresAt).toEqual(new Date(NOW.getTime() + LIMITS.maxTtlSeconds * 1000));
    expect(valid({ ttlSeconds: 0 }).expiresAt).toBeUndefined();
    for (const bad of [-1, 1.5, LIMITS.maxTtlSeconds + 1, Number.NaN]) {
      invalid({ ttlSeconds: bad }, new RegExp(`^spec\\.ttl_seconds ${bad} is not valid: give 1–316224000 seconds$`));
    }
    invalid({ ttlSeconds: 5, expiresAt: new Date(NOW.getTime() + 1000) }, /^give spec\.expires_at or spec\.ttl_seconds, not both$/);
  });

  it("checks provenance values: empty ones are left out, long or NUL ones refused", () => {
    expect(valid({ provenance: { run_id: "r".repeat(256), tool_name: "" } }).provenance).toStrictEqual({ run_id: "r".repeat(256) });
    invalid({ provenance: { user_id: "u".repeat(257) } }, /^spec\.provenance\.user_id is 257 characters long; at most 256/);
    invalid({ provenance: { app_id: "a\u0000" } }, /^spec\.provenance\.app_id contains a NUL/);
  });

  it("checks inputs: at most 256 distinct artifact ids, with short roles and valid required kinds and classes", () => {
    const ids = many(257, () => newArtifactId("art"));
    expect(valid({ inputs: ids.slice(0, 256).map((id) => input(id)) }).inputs).toHaveLength(256);
    invalid({ inputs: ids.map((id) => input(id)) }, /^spec\.inputs has 257 entries; at most 256 are allowed$/);
    invalid({ inputs: [input(ids[0]!), input("nope")] }, /^spec\.inputs\[1\]\.artifact_id "nope" is not an artifact id/);
    invalid({ inputs: [input(ids[0]!), input(ids[1]!), input(ids[0]!)] }, new RegExp(`^spec\\.inputs names ${ids[0]} twice$`));
    expect(valid({ inputs: [input(ids[0]!, "r".repeat(64))] }).inputs[0]!.role).toHaveLength(64);
    invalid({ inputs: [input(ids[0]!, "r".repeat(65))] }, /^spec\.inputs\[0\]\.role is 65 characters long; at most 64/);
    invalid({ inputs: [{ ...input(ids[0]!), requiredClass: "a b" }] }, /^spec\.inputs\[0\]\.required_class "a b" is not a valid class$/);
    invalid({ inputs: [{ ...input(ids[0]!), requiredKind: "a b" }] }, /^spec\.inputs\[0\]\.required_kind "a b" is not a valid kind$/);
    const error = invalid({ inputs: [input(`x${"y".repeat(100)}`)] }, /is not an artifact id/);
    expect(error.message).toContain(`"x${"y".repeat(79)}"`);
  });
});

describe("labels, tags and metrics", () => {
  it("takes up to the label limit, with keys of 1–128 and values up to 1024 characters", () => {
    const labels = Object.fromEntries(many(64, (i) => `k${i}`).map((k) => [k, "v"]));
    expect(validateLabels("spec.labels", labels)).toStrictEqual(labels);
    expectArtifactError(
      () => validateLabels("spec.labels", { ...labels, extra: "v" }),
      "invalid_argument",
      /^spec\.labels has 65 labels; at most 64 are allowed$/,
    );
    expectArtifactError(() => validateLabels("f", { a: "", b: "" }, 1), "invalid_argument", /^f has 2 labels; at most 1 are allowed$/);
    expect(validateLabels("f", { ["k".repeat(128)]: "v".repeat(1024) })).toStrictEqual({ ["k".repeat(128)]: "v".repeat(1024) });
    expectArtifactError(() => validateLabels("f", { "": "v" }), "invalid_argument", /^f key "" must be 1–128 characters$/);
    expectArtifactError(() => validateLabels("f", { ["k".repeat(129)]: "v" }), "invalid_argument", new RegExp(`^f key "${"k".repeat(40)}" must be 1–128`));
    expectArtifactError(() => validateLabels("f", { a: "v".repeat(1025) }), "invalid_argument", /^f\["a"\] is longer than 1024 characters$/);
    expectArtifactError(() => validateLabels("f", { "a\u0000": "v" }), "invalid_argument", /^f key "a\\u0000" contains a NUL/);
    expectArtifactError(() => validateLabels("f", { a: "\u0000" }), "invalid_argument", /^f\["a"\] contains a NUL/);
    expectArtifactError(
      () => validateLabels("f", { [`${"k".repeat(50)}\u0000`]: "v" }),
      "invalid_argument",
      new RegExp(`^f key "${"k".repeat(40)}" contains a NUL`),
    );
  });

  it("sorts tags and counts them once each; each is 1–128 characters without NUL", () => {
    const tags = many(64, (i) => `t${String(i).padStart(2, "0")}`);
    expect(validateTags("f", [...tags].reverse().concat(tags))).toStrictEqual(tags);
    expectArtifactError(() => validateTags("f", [...tags, "extra"]), "invalid_argument", /^f has 65 tags; at most 64 are allowed$/);
    expectArtifactError(() => validateTags("f", ["a", "b"], 1), "invalid_argument", /^f has 2 tags; at most 1/);
    expect(validateTags("f", ["t".repeat(128)])).toStrictEqual(["t".repeat(128)]);
    expectArtifactError(() => validateTags("f", [""]), "invalid_argument", /^f entry "" must be 1–128 characters$/);
    expectArtifactError(() => validateTags("f", ["t".repeat(129)]), "invalid_argument", new RegExp(`^f entry "${"t".repeat(40)}" must be`));
    expectArtifactError(() => validateTags("f", ["a\u0000"]), "invalid_argument", /^f entry "a\\u0000" contains a NUL/);
    expectArtifactError(() => validateTags("f", [`${"t".repeat(50)}\u0000`]), "invalid_argument", new RegExp(`^f entry "${"t".repeat(40)}" contains a NUL`));
  });

  it("takes up to 64 finite metrics with keys of 1–128 characters", () => {
    const metrics = Object.fromEntries(many(64, (i) => [`m${i}`, i] as const));
    expect(validateMetrics("f", metrics)).toStrictEqual(metrics);
    expectArtifactError(() => validateMetrics("f", { ...metrics, extra: 1 }), "invalid_argument", /^f has 65 metrics; at most 64 are allowed$/);
    expect(validateMetrics("f", { ["m".repeat(128)]: -1.5 })).toStrictEqual({ ["m".repeat(128)]: -1.5 });
    expectArtifactError(() => validateMetrics("f", { "": 1 }), "invalid_argument", /^f key "" must be 1–128 characters$/);
    expectArtifactError(() => validateMetrics("f", { ["m".repeat(129)]: 1 }), "invalid_argument", new RegExp(`^f key "${"m".repeat(40)}" must be 1–128`));
    expectArtifactError(() => validateMetrics("f", { a: Number.NaN }), "invalid_argument", /^f\["a"\] is NaN: metrics must be finite numbers$/);
    expectArtifactError(() => validateMetrics("f", { a: Infinity }), "invalid_argument", /is Infinity/);
  });

  it("checkNoNul names the field", () => {
    expect(() => checkNoNul("x", "plain")).not.toThrow();
    expectArtifactError(() => checkNoNul("the field", "\u0000"), "invalid_argument", /^the field contains a NUL character, which cannot be stored or matched$/);
  });
});

describe("validateFilter", () => {
  const refused = (filter: ArtifactFilter, maxTerms: number, message: RegExp) =>
    expectArtifactError(() => validateFilter(filter, maxTerms), "invalid_argument", message);
  const range = (name: string, min?: number, max?: number) => ({ name, min, max });

  it("caps each list at maxTerms entries, naming the list and the variable", () => {
    const two = ["a", "b"];
    expect(() => validateFilter({ tagsAll: two, tagsAny: two, labels: { a: "1", b: "2" }, metricRanges: [range("a"), range("b")] }, 2)).not.toThrow();
    refused(
      { metricRanges: [range("a"), range("b"), range("c")] },
      2,
      /^filter\.metric_ranges has 3 entries; at most 2 are allowed \(ARTIFACTD_MAX_FILTER_TERMS\): narrow/,
    );
    refused({ labels: { a: "", b: "", c: "" } }, 2, /^filter\.labels has 3 entries; at most 2/);
    refused({ tagsAll: ["a", "b", "c"] }, 2, /^filter\.tags_all has 3 entries/);
    refused({ tagsAny: ["a", "a", "a"] }, 2, /^filter\.tags_any has 3 entries/);
  });

  it("lets maxTerms raise the label and tag limits a spec has", () => {
    const labels = Object.fromEntries(many(70, (i) => [`k${i}`, "v"] as const));
    const tags = many(70, (i) => `t${i}`);
    expect(() => validateFilter({ labels, tagsAll: tags, tagsAny: tags }, 100)).not.toThrow();
  });

  it("checks label and tag values as a spec's", () => {
    refused({ labels: { "": "v" } }, 8, /^filter\.labels key "" must be 1–128/);
    refused({ tagsAll: [""] }, 8, /^filter\.tags_all entry ""/);
    refused({ tagsAny: ["t".repeat(129)] }, 8, /^filter\.tags_any entry/);
  });

  it("refuses NUL in every text field", () => {
    refused({ kind: "a\u0000" }, 8, /^filter\.kind contains a NUL/);
    refused({ artifactClass: "\u0000" }, 8, /^filter\.artifact_class contains a NUL/);
    refused({ namePrefix: "\u0000" }, 8, /^filter\.name_prefix contains a NUL/);
    refused({ mimeType: "\u0000" }, 8, /^filter\.mime_type contains a NUL/);
    refused({ provenance: { run_id: "ok", tool_name: "\u0000" } }, 8, /^filter\.provenance\.tool_name contains a NUL/);
    refused({ metricRanges: [range("ok"), range("\u0000")] }, 8, /^filter\.metric_ranges\[1\]\.name contains a NUL/);
    expect(() => validateFilter({ kind: "k", artifactClass: "c", namePrefix: "n", mimeType: "m", provenance: { run_id: "r" } }, 8)).not.toThrow();
  });

  it("needs metric range names and min <= max", () => {
    refused({ metricRanges: [range("")] }, 8, /^filter\.metric_ranges\[\]\.name is required$/);
    refused({ metricRanges: [range("loss", 2, 1)] }, 8, /^filter\.metric_ranges for "loss": min 2 is greater than max 1$/);
    expect(() => validateFilter({ metricRanges: [range("loss", 1, 1), range("a", 5), range("b", undefined, -5)] }, 8)).not.toThrow();
  });

  it("needs created_after earlier than created_before", () => {
    const t = new Date("2026-01-01T00:00:00Z");
    const later = new Date(t.getTime() + 1);
    expect(() => validateFilter({ createdAfter: t, createdBefore: later }, 8)).not.toThrow();
    expect(() => validateFilter({ createdAfter: later }, 8)).not.toThrow();
    expect(() => validateFilter({ createdBefore: t }, 8)).not.toThrow();
    refused({ createdAfter: t, createdBefore: t }, 8, /^filter\.created_after must be earlier than filter\.created_before$/);
    refused({ createdAfter: later, createdBefore: t }, 8, /created_after must be earlier/);
  });
});

describe("requireArtifactId", () => {
  it("returns a well-formed id and refuses a missing or malformed one", () => {
    const id = newArtifactId("img");
    expect(requireArtifactId("id", id)).toBe(id);
    expectArtifactError(() => requireArtifactId("id", ""), "invalid_argument", /^id is required$/);
    const error = expectArtifactError(
      () => requireArtifactId("input", "z".repeat(100)),
      "invalid_argument",
      /^input "z+" is not an artifact id: expected <prefix>_<26 characters>/,
    );
    expect(error.message).toContain(`"${"z".repeat(80)}"`);
  });
});
