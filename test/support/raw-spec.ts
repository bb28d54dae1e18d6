import type { RawSpec } from "../../src/service/validate-spec.ts";

/** A spec as a client sends it with only the kind set: what unit tests vary one field of. */
export const EMPTY_RAW_SPEC: RawSpec = Object.freeze({
  kind: "model",
  artifactClass: "",
  name: "",
  title: "",
  mimeType: "",
  labels: {},
  tags: [],
  metrics: {},
  provenance: undefined,
  inputs: [],
  pinned: false,
  status: undefined,
  expiresAt: undefined,
  ttlSeconds: 0,
  typePrefix: "",
  versioned: false,
  project: "",
});
