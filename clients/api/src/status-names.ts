import { Status } from "../gen/artifacts/v1/artifact_pb.js";

/**
 * The statuses by the lower-case names people type and read (`--status
 * approved` on the command line, the web page's status filter) and the
 * service stores. One table, so a status added to the proto is named in one
 * place for the service and both clients.
 */
export const STATUS_BY_NAME = Object.freeze({
  draft: Status.DRAFT,
  review: Status.REVIEW,
  approved: Status.APPROVED,
  rejected: Status.REJECTED,
} as const);

export type StatusName = keyof typeof STATUS_BY_NAME;

/** The names in the order of the workflow: draft → review → approved / rejected. */
export const STATUS_NAMES: readonly StatusName[] = Object.freeze(Object.keys(STATUS_BY_NAME) as StatusName[]);

/** The status a name stands for; undefined for any other string (names are lower-case, as in STATUS_BY_NAME). */
export function statusFromName(name: string): Status | undefined {
  return Object.hasOwn(STATUS_BY_NAME, name) ? STATUS_BY_NAME[name as StatusName] : undefined;
}

/** The name of a status; undefined for STATUS_UNSPECIFIED and for numbers no Status value has. */
export function statusName(status: Status): StatusName | undefined {
  return STATUS_NAMES.find((name) => STATUS_BY_NAME[name] === status);
}
