import type { StatusName } from "@artifactd/api";

/**
 * The status changes the service allows (STATUS_TRANSITIONS in
 * src/artifact.ts; test/unit/web-page-views.test.ts keeps the two
 * equal). Only these are offered: a button the server would always refuse
 * is no use.
 */
export const REVIEW_TRANSITIONS: Readonly<Record<StatusName, readonly StatusName[]>> = {
  draft: ["review"],
  review: ["approved", "rejected", "draft"],
  rejected: ["draft"],
  approved: [],
};
