import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readUrlSigningKeyFile } from "../../src/adapters/keys/url-signing-key-file.ts";
import type { TokenScope } from "../../src/artifact.ts";
import { newArtifactId } from "../../src/artifact-id.ts";
import { Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { ArtifactService, type WatchArtifactsResponse } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "@artifactd/api/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@artifactd/api/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1Alpha } from "@artifactd/api/grpc/reflection/v1alpha/reflection_pb.js";
import { createApiToken } from "../../src/service/api-tokens.ts";
import { createUrlSigner, type UrlSigner } from "../../src/service/download-urls.ts";
import { SERVER_ROUTES } from "../../src/transport/routes.ts";
import { expectCode } from "../support/expect-code.ts";
import { clientWithAuthorization, type WireProtocol } from "../support/raw-credential-client.ts";
import { BACKENDS, startTestApp, type TestApp } from "../support/test-app.ts";

/**
 * Every ArtifactService method, one row each, made through every route the
 * server mounts for it; the server's other routes each checked as their
 * kind requires (routeChecks). The method rows check what the proto promises:
 * - tenant beta naming tenant alpha's artifacts, sessions or run gets
 *   NOT_FOUND (never PERMISSION_DENIED, which would tell they exist), what
 *   beta finds never holds alpha's, and alpha's state is as it was;
 * - a missing, malformed, unknown, revoked or expired token is
 *   UNAUTHENTICATED, and the call changes nothing;
 * - a token below the method's scope is PERMISSION_DENIED, and changes
 *   nothing; one of exactly that scope succeeds (so "changes nothing" above
 *   is about a call that would have changed something).
 */

type ArtifactClient = Client<typeof ArtifactService>;

/** Tenant alpha's resources for one row, made fresh so rows never see each other's. */
interface AlphaResources {
  /** A word unique to the row: in names and titles, and the kind of every artifact of the row. */
  readonly tag: string;
  /** Alpha's run id; beta puts artifacts of its own in the same run. */
  readonly runId: string;
  readonly parentId: string;
  /** The parent's versioned name (it is version 1), with the alias "gold" on it. */
  readonly versionedName: string;
  /** Made from parent (a lineage edge). */
  readonly childId: string;
  /** Open, with part 1 stored; spec in alpha's run. */
  readonly sessionId: string;
  readonly idempotencyKey: string;
}

interface Row {
  /** The least scope that may make the call. */
  readonly scope: TokenScope;
  /** Whether the owner's call changes alpha's state (checked, so a refused call "changing nothing" is meaningful). */
  readonly changes: boolean;
  /** How every call of the row travels; gRPC unless said. */
  readonly protocol?: WireProtocol;
  /** The call as alpha makes it on its own resources, resolved when it has fully answered. */
  asOwner(client: ArtifactClient, resources: AlphaResources): Promise<unknown>;
  /** Beta calling with alpha's resources, asserting what beta is answered; alpha's state is compared afterwards. */
  asOtherTenant(clients: { beta: ArtifactClient; alpha: ArtifactClient }, resources: AlphaResources): Promise<void>;
}

const notFound = /does not exist|not found|no upload session/i;
/** What a reference by another tenant's name is answered: the name is not there. */
const noSuchName = /there is no versioned artifact named/;
const PART_SIZE = 5n * 1024n * 1024n;

const specIn = (resources: Pick<AlphaResources, "tag" | "runId">, extra: { name?: string; title?: string; metrics?: Record<string, number> } = {}) => ({
  kind: resources.tag,
  name: `${extra.name ?? "made"}-${resources.tag}`,
  provenance: { runId: resources.runId },
  ...extra,
});

async function saveText(client: ArtifactClient, spec: object, text = "isolation") {
  return (await client.saveInline({ spec, content: { case: "text", value: text } })).artifact!;
}

async function* uploadMessages(header: object, content: Uint8Array) {
  yield { message: { case: "header" as const, value: header } };
  yield { message: { case: "chunk" as const, value: content } };
}

async function drain<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const messages: T[] = [];
  for await (const message of stream) messages.push(message);
  return messages;
}

/** The first event of a watch, then the watch is ended. */
async function firstEvent(client: ArtifactClient, request: Parameters<ArtifactClient["watchArtifacts"]>[0]): Promise<WatchArtifactsResponse> {
  const abort = new AbortController();
  try {
    const next = await client.watchArtifacts(request, { signal: abort.signal })[Symbol.asyncIterator]().next();
    if (next.done) throw new Error("the watch ended without an event");
    return next.value;
  } finally {
    abort.abort();
  }
}

const rows: Record<string, Row> = {
  Upload: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.upload(uploadMessages({ spec: specIn(r) }, Buffer.from("owner's blob"))),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.upload(uploadMessages({ spec: { kind: r.tag, inputs: [{ artifactId: r.parentId }] } }, Buffer.from("x"))), Code.NotFound, notFound);
      // Bound to alpha's session, beta's bytes would become alpha's parts.
      await expectCode(beta.upload(uploadMessages({ sessionId: r.sessionId }, Buffer.from("beta's bytes"))), Code.NotFound);
    },
  },
  Download: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => drain(client.download({ id: r.childId })),
    async asOtherTenant({ beta }, r) {
      await expectCode(drain(beta.download({ id: r.childId })), Code.NotFound, notFound);
    },
  },
  GetArtifact: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.getArtifact({ id: r.childId, includeContent: true }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.getArtifact({ id: r.childId, includeContent: true }), Code.NotFound, notFound);
    },
  },
  ListArtifacts: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.listArtifacts({ filter: { provenance: { runId: r.runId } } }),
    async asOtherTenant({ beta }, r) {
      const own = await saveText(beta, specIn(r, { name: "beta-own" }));
      const listed = await beta.listArtifacts({ filter: { provenance: { runId: r.runId }, includeDeleted: true }, includeTotalCount: true });
      expect(listed.artifacts.map((a) => a.id)).toEqual([own.id]);
      expect(listed.totalCount).toBe(1n);
    },
  },
  SaveInline: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => saveText(client, specIn(r)),
    async asOtherTenant({ beta }, r) {
      await expectCode(saveText(beta, { kind: r.tag, inputs: [{ artifactId: r.parentId }] }), Code.NotFound, notFound);
    },
  },
  DeleteArtifact: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.deleteArtifact({ id: r.childId }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.deleteArtifact({ id: r.childId }), Code.NotFound, notFound);
    },
  },
  CreateUploadSession: {
    scope: "read-write",
    changes: false,
    asOwner: (client, r) => client.createUploadSession({ spec: specIn(r), partSize: PART_SIZE, idempotencyKey: `owner-${r.tag}` }),
    async asOtherTenant({ beta }, r) {
      // Alpha's idempotency key names nothing of beta's: beta gets a session of its own, not alpha's.
      const session = (await beta.createUploadSession({ spec: { kind: r.tag }, partSize: PART_SIZE, idempotencyKey: r.idempotencyKey })).session!;
      expect(session.sessionId).not.toBe(r.sessionId);
      expect(session.committedParts).toEqual([]);
      await beta.abortUploadSession({ sessionId: session.sessionId });
    },
  },
  UploadPart: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.uploadPart({ sessionId: r.sessionId, partNumber: 1, data: Buffer.from("a longer part one") }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.uploadPart({ sessionId: r.sessionId, partNumber: 1, data: Buffer.from("beta's part one, longer") }), Code.NotFound);
      await expectCode(beta.uploadPart({ sessionId: r.sessionId, partNumber: 2, data: Buffer.from("beta's part two") }), Code.NotFound);
    },
  },
  GetUploadSession: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.getUploadSession({ sessionId: r.sessionId }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.getUploadSession({ sessionId: r.sessionId }), Code.NotFound);
    },
  },
  CompleteUploadSession: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.completeUploadSession({ sessionId: r.sessionId }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.completeUploadSession({ sessionId: r.sessionId }), Code.NotFound);
    },
  },
  AbortUploadSession: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.abortUploadSession({ sessionId: r.sessionId }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.abortUploadSession({ sessionId: r.sessionId }), Code.NotFound);
    },
  },
  SearchArtifacts: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.searchArtifacts({ query: r.tag }),
    async asOtherTenant({ beta }, r) {
      const own = await saveText(beta, specIn(r, { name: "beta-own", title: `beta's ${r.tag}` }));
      expect((await beta.searchArtifacts({ query: r.tag, filter: { includeDeleted: true } })).artifacts.map((a) => a.id)).toEqual([own.id]);
    },
  },
  GetBestArtifact: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.getBestArtifact({ kind: r.tag, metric: "score" }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.getBestArtifact({ kind: r.tag, metric: "score" }), Code.NotFound);
      // Alpha's artifacts score 0.9: beta's best is beta's own all the same.
      const own = await saveText(beta, specIn(r, { name: "beta-own", metrics: { score: 0.1 } }));
      expect((await beta.getBestArtifact({ kind: r.tag, metric: "score" })).artifact?.id).toBe(own.id);
    },
  },
  GetLineage: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.getLineage({ id: r.childId, depth: 2 }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.getLineage({ id: r.childId, depth: 2 }), Code.NotFound, notFound);
      await expectCode(beta.getLineage({ id: r.parentId, depth: 2 }), Code.NotFound, notFound);
    },
  },
  FindMissingContent: {
    scope: "read-only",
    changes: false,
    asOwner: async (client, r) => {
      const { blake3, sizeBytes } = (await client.getArtifact({ id: r.childId })).artifact!;
      return client.findMissingContent({ contents: [{ blake3, sizeBytes }] });
    },
    async asOtherTenant({ beta, alpha }, r) {
      const { blake3, sizeBytes } = (await alpha.getArtifact({ id: r.childId })).artifact!;
      expect((await alpha.findMissingContent({ contents: [{ blake3, sizeBytes }] })).missing).toEqual([]);
      // Alpha has it; for beta it is missing, and cannot be recorded by its digest.
      expect((await beta.findMissingContent({ contents: [{ blake3, sizeBytes }] })).missing.map((c) => c.blake3)).toEqual([blake3]);
      const byDigest = { spec: { kind: r.tag }, expectedBlake3: blake3, expectedSize: sizeBytes, contentByDigest: true };
      await expectCode(
        beta.upload(
          (async function* () {
            yield { message: { case: "header" as const, value: byDigest } };
          })(),
        ),
        Code.FailedPrecondition,
      );
    },
  },
  RecordUsage: {
    scope: "read-write",
    // A use is kept beside the artifact, not in it: what this row checks is that beta cannot record one on alpha's.
    changes: false,
    asOwner: (client, r) => client.recordUsage({ artifactId: r.childId, runId: r.runId, role: "evaluation" }),
    async asOtherTenant({ beta, alpha }, r) {
      await expectCode(beta.recordUsage({ artifactId: r.childId, runId: r.runId }), Code.NotFound, notFound);
      expect((await alpha.getLineage({ id: r.childId })).usages).toEqual([]);
    },
  },
  SetPinned: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.setPinned({ id: r.childId, pinned: true }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.setPinned({ id: r.childId, pinned: true }), Code.NotFound, notFound);
    },
  },
  SetStatus: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.setStatus({ id: r.childId, status: Status.REVIEW }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.setStatus({ id: r.childId, status: Status.REVIEW }), Code.NotFound, notFound);
    },
  },
  CreateDownloadUrl: {
    scope: "read-only",
    changes: false,
    async asOwner(client, r) {
      // The direct_to_storage variant first, so the refused credentials are checked on it too. Let through, its only
      // refusal is that the content is inline (the row's artifacts are), or that the server offers no direct links.
      const direct = await client.createDownloadUrl({ id: r.childId, directToStorage: true }).then(
        () => new Error("a direct link to content stored inline"),
        (error: unknown) => error,
      );
      if (!(direct instanceof ConnectError && direct.code === Code.FailedPrecondition)) throw direct;
      return client.createDownloadUrl({ id: r.childId });
    },
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.createDownloadUrl({ id: r.childId }), Code.NotFound, notFound);
      await expectCode(beta.createDownloadUrl({ id: r.childId, directToStorage: true }), Code.NotFound, notFound);
      await expectCode(beta.createDownloadUrl({ id: r.parentId, directToStorage: true, offset: 1n, length: 1n }), Code.NotFound, notFound);
    },
  },
  ArchiveRun: {
    scope: "admin",
    changes: true,
    asOwner: (client, r) => client.archiveRun({ runId: r.runId }),
    async asOtherTenant({ beta }, r) {
      // The run id is the same; beta archives only its own artifact in it.
      await saveText(beta, specIn(r, { name: "beta-own" }));
      expect((await beta.archiveRun({ runId: r.runId })).deletedCount).toBe(1n);
    },
  },
  SetAlias: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.setAlias({ artifactId: `${r.versionedName}@v1`, alias: "silver" }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.setAlias({ artifactId: r.parentId, alias: "silver" }), Code.NotFound, notFound);
      await expectCode(beta.setAlias({ artifactId: `${r.versionedName}:gold`, alias: "silver" }), Code.NotFound, noSuchName);
    },
  },
  DeleteAlias: {
    scope: "read-write",
    changes: true,
    asOwner: (client, r) => client.deleteAlias({ name: r.versionedName, alias: "gold" }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.deleteAlias({ name: r.versionedName, alias: "gold" }), Code.NotFound, /has no alias "gold"/);
    },
  },
  ListVersions: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.listVersions({ name: r.versionedName }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.listVersions({ name: r.versionedName }), Code.NotFound, noSuchName);
    },
  },
  ListAliasHistory: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.listAliasHistory({ name: r.versionedName }),
    async asOtherTenant({ beta }, r) {
      await expectCode(beta.listAliasHistory({ name: r.versionedName }), Code.NotFound, noSuchName);
    },
  },
  BatchGetArtifacts: {
    scope: "read-only",
    changes: false,
    asOwner: (client, r) => client.batchGetArtifacts({ ids: [r.childId, `${r.versionedName}:gold`], includeContent: true }),
    async asOtherTenant({ beta }, r) {
      const { results } = await beta.batchGetArtifacts({ ids: [r.childId, `${r.versionedName}:gold`, r.parentId], includeContent: true });
      expect(results.map((result) => [result.artifact, result.notFound])).toEqual([
        [undefined, `artifact ${r.childId} does not exist`],
        [undefined, `there is no versioned artifact named "${r.versionedName}"`],
        [undefined, `artifact ${r.parentId} does not exist`],
      ]);
    },
  },
  WatchArtifacts: {
    scope: "read-only",
    changes: false,
    // From the log's start, so there is an event to answer with: alpha's parent being created.
    asOwner: (client, r) => firstEvent(client, { filter: { kind: r.tag }, resumeAfter: "0" }),
    async asOtherTenant({ beta, alpha }, r) {
      await watchSeesOnlyItsTenant(beta, alpha, r);
    },
  },
};

const { Download: grpcDownload, Upload: grpcUpload, WatchArtifacts: grpcWatch, ...unaryRows } = rows;

/** The signed-link route's test below: links are a credential of their own, not a token, so they get their own checks. */
const SIGNED_LINKS_TEST = "signed download links: only the signing tenant's artifact, only while the link's token is active";

/**
 * How this file checks each route the server mounts (src/transport/routes.ts):
 * - rows: method rows, each made through that route;
 * - publicAnswer: a route that needs no token must give every caller the
 *   same answer (with no credentials, alpha's or beta's), so it serves
 *   nothing of a tenant's; the answer is what a caller sees of it;
 * - checkedBy: a test of its own in this file.
 */
type RouteCheck =
  | { readonly rows: Record<string, Row> }
  | { readonly publicAnswer: (t: TestApp, authorization: string | undefined) => Promise<unknown> }
  | { readonly checkedBy: string };

const routeChecks: Record<string, RouteCheck> = {
  // Every method through connect-node; over plain gRPC a binary Download, an Upload and the unary methods take their
  // fast routes instead, so here they come over Connect (a Download as JSON).
  [ArtifactService.typeName]: {
    rows: {
      WatchArtifacts: grpcWatch!,
      ...Object.fromEntries(Object.entries(unaryRows).map(([name, row]) => [`${name} over Connect`, { ...row, protocol: "connect" }])),
      "Download over Connect JSON": { ...grpcDownload!, protocol: "connect-json" },
      "Upload over Connect": { ...grpcUpload!, protocol: "connect" },
    },
  },
  "binary Download": { rows: { Download: grpcDownload!, "Download over Connect": { ...grpcDownload!, protocol: "connect" } } },
  "binary Upload": { rows: { Upload: grpcUpload! } },
  "gRPC unary": { rows: unaryRows },
  [Health.typeName]: {
    publicAnswer: async (t, authorization) => HealthCheckResponse_ServingStatus[(await publicClient(Health, t, authorization).check({})).status],
  },
  [ServerReflection.typeName]: { publicAnswer: (t, authorization) => listedServices(publicClient(ServerReflection, t, authorization)) },
  [ServerReflectionV1Alpha.typeName]: { publicAnswer: (t, authorization) => listedServices(publicClient(ServerReflectionV1Alpha, t, authorization)) },
  "health probes": {
    async publicAnswer(t, authorization) {
      const answers = [];
      for (const target of ["/healthz", "/readyz"]) {
        const response = await fetch(new URL(target, t.url), { headers: authorization === undefined ? {} : { authorization } });
        answers.push({ target, status: response.status, body: await response.text() });
      }
      return answers;
    },
  },
  "signed download links": { checkedBy: SIGNED_LINKS_TEST },
  // The operator's metrics (on the service's port unless ARTIFACTD_METRICS_LISTEN moves them): no token, and no tenant named.
  metrics: {
    async publicAnswer(t, authorization) {
      const response = await fetch(new URL("/metrics", t.url), { headers: authorization === undefined ? {} : { authorization } });
      const body = await response.text();
      return {
        status: response.status,
        type: response.headers.get("content-type"),
        countsCalls: body.includes("artifactd_rpc_calls_total"),
        namesTenant: /"(alpha|beta)"/.test(body),
      };
    },
  },
  "web page": {
    async publicAnswer(t, authorization) {
      const answers = [];
      for (const target of ["/", "/assets/index.js"]) {
        const response = await fetch(new URL(target, t.url), { headers: authorization === undefined ? {} : { authorization } });
        answers.push({ target, status: response.status, type: response.headers.get("content-type"), body: await response.text() });
      }
      return answers;
    },
  },
};

/** A client of a public service over gRPC, sending exactly this `authorization` header (or none). */
function publicClient<S extends DescService>(service: S, t: TestApp, authorization: string | undefined): Client<S> {
  return createClient(
    service,
    createGrpcTransport({
      baseUrl: t.url,
      interceptors: [
        (next) => (request) => {
          if (authorization !== undefined) request.header.set("authorization", authorization);
          return next(request);
        },
      ],
    }),
  );
}

/** The services a reflection endpoint lists (v1 and v1alpha share the message shapes). */
async function listedServices(reflection: Client<typeof ServerReflection> | Client<typeof ServerReflectionV1Alpha>): Promise<string[]> {
  const requests = (async function* () {
    yield { messageRequest: { case: "listServices" as const, value: "" } };
  })();
  for await (const answer of (reflection as Client<typeof ServerReflection>).serverReflectionInfo(requests)) {
    if (answer.messageResponse.case !== "listServicesResponse") throw new Error(`reflection answered ${answer.messageResponse.case}`);
    return answer.messageResponse.value.service.map((service) => service.name).sort();
  }
  throw new Error("reflection answered nothing");
}

/**
 * Beta's watches while alpha creates, changes and deletes an artifact: one
 * live from now, one resumed after beta's first live event (read back from
 * the event log), one resumed from the log's start with a filter on the
 * row's kind (which alpha's events match too). Each gets beta's marker after
 * alpha's events, and nothing of alpha's before it.
 */
async function watchSeesOnlyItsTenant(beta: ArtifactClient, alpha: ArtifactClient, r: AlphaResources): Promise<void> {
  const abort = new AbortController();
  const watch = (request: Parameters<ArtifactClient["watchArtifacts"]>[0]) => beta.watchArtifacts(request, { signal: abort.signal })[Symbol.asyncIterator]();
  const live = watch({});
  try {
    // A from-now watch is live once it delivers anything: until then, beta saves markers (a watch that never goes live fails at the deadline).
    const firstLive = live.next();
    const deadline = Date.now() + 10_000;
    let settled = false;
    const settle = () => (settled = true);
    firstLive.then(settle, settle);
    const early: string[] = [];
    while (!settled) {
      if (Date.now() > deadline) throw new Error("beta's watch delivered none of beta's markers within 10 s");
      early.push((await saveText(beta, specIn(r, { name: "beta-early-marker" }))).id);
      await Promise.race([firstLive, sleep(100)]);
    }
    const first = (await firstLive).value as WatchArtifactsResponse;
    const afterFirst = early.slice(early.indexOf(first.artifact!.id) + 1);

    // Outside alpha's run, which the row checks stays as it was.
    const made = await saveText(alpha, specIn({ tag: r.tag, runId: `${r.runId}-events` }, { name: "alpha-event" }));
    await alpha.setStatus({ id: made.id, status: Status.REVIEW });
    await alpha.setPinned({ id: made.id, pinned: true });
    await alpha.setPinned({ id: made.id, pinned: false });
    await alpha.deleteArtifact({ id: made.id });
    const marker = await saveText(beta, specIn(r, { name: "beta-marker" }));

    // Each resumed watch opens only when its turn comes, so none is left unread when an earlier one fails.
    const watches: [string, () => AsyncIterator<WatchArtifactsResponse>, WatchArtifactsResponse[], string[] | undefined][] = [
      ["live", () => live, [first], undefined],
      ["resumed after its first event", () => watch({ resumeAfter: first.cursor }), [], [...afterFirst, marker.id]],
      ["resumed from the start, by kind", () => watch({ filter: { kind: r.tag }, resumeAfter: "0" }), [], [...early, marker.id]],
    ];
    for (const [name, open, seen, expected] of watches) {
      const events = open();
      while (seen.at(-1)?.artifact?.id !== marker.id) {
        const next = await events.next();
        if (next.done) throw new Error(`beta's watch (${name}) ended before beta's marker`);
        seen.push(next.value);
      }
      const ids = seen.map((event) => event.artifact?.id);
      expect(
        seen.filter((event) => event.artifact?.tenantId !== "beta"),
        `alpha's events in beta's watch (${name})`,
      ).toEqual([]);
      expect(ids, `beta's watch (${name})`).not.toContain(made.id);
      if (expected) expect(ids, `beta's watch (${name})`).toEqual(expected);
    }
  } finally {
    abort.abort();
  }
}

describe.each(BACKENDS)("tenant isolation and authentication of every RPC (%s)", (backend) => {
  let t: TestApp;
  let signer: UrlSigner;
  const clients = new Map<string, ArtifactClient>();
  const client = (authorization: string | undefined, protocol: WireProtocol = "grpc") => {
    const key = `${protocol} ${authorization}`;
    if (!clients.has(key)) clients.set(key, clientWithAuthorization(t.url, authorization, protocol));
    return clients.get(key)!;
  };
  const bearer = (token: string) => `Bearer ${token}`;
  /** Alpha's tokens by scope (admin is test-app's alpha token). */
  const alphaTokens = {} as Record<TokenScope, string>;
  /** Credentials that must be refused, with what the refusal says. */
  const refused: Record<string, { authorization: string | undefined; message: RegExp; tokenId?: string }> = {};

  beforeAll(async () => {
    // A short token cache, so a revoked token is refused within a moment.
    t = await startTestApp(backend, { ARTIFACTD_TOKEN_CACHE_MS: "100" });
    signer = createUrlSigner((await readUrlSigningKeyFile(path.join(t.dataDir, "url-signing-keys")))!, { maxTtlSeconds: 86_400 });
    alphaTokens.admin = t.tokens.alpha;
    alphaTokens["read-write"] = (await createApiToken(t.app.metadata, "alpha", "alpha-writer", { scope: "read-write" })).token;
    alphaTokens["read-only"] = (await createApiToken(t.app.metadata, "alpha", "alpha-reader", { scope: "read-only" })).token;

    // Admin tokens of alpha, so a call they got through with would act on alpha's resources and show.
    const revoked = await createApiToken(t.app.metadata, "alpha", "alpha-revoked", { scope: "admin" });
    await client(bearer(revoked.token)).listArtifacts({});
    await t.app.metadata.revokeToken(revoked.id, new Date());
    await refusedWithin(bearer(revoked.token));
    const expired = await createApiToken(t.app.metadata, "alpha", "alpha-expired", { scope: "admin", expiresAt: new Date(Date.now() + 300) });
    await refusedWithin(bearer(expired.token));

    Object.assign(refused, {
      "no authorization header": { authorization: undefined, message: /missing credentials/ },
      "a header that is not Bearer": { authorization: `Basic ${Buffer.from("alpha:secret").toString("base64")}`, message: /must read `Bearer <token>`/ },
      "a malformed token": { authorization: "Bearer adt_short", message: /malformed/ },
      "an unknown token": {
        authorization: bearer(`adt_${randomBytes(32).toString("base64url")}`),
        message: /unknown or revoked/,
        tokenId: newArtifactId("tok"),
      },
      "a revoked token": { authorization: bearer(revoked.token), message: /unknown or revoked/, tokenId: revoked.id },
      "an expired token": { authorization: bearer(expired.token), message: /expired at/, tokenId: expired.id },
    });
  });
  afterAll(() => t?.close());

  /**
   * Waits, polling, until calls with this header are refused (the token
   * cache has let go of the token), for 5 s at most: a token still accepted
   * then is for the rows to report, call by call.
   */
  async function refusedWithin(authorization: string): Promise<void> {
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      try {
        await client(authorization).listArtifacts({});
      } catch (error) {
        if (error instanceof ConnectError && error.code === Code.Unauthenticated) return;
        throw error;
      }
      await sleep(50);
    }
  }

  async function givenAlpha(): Promise<AlphaResources> {
    const alpha = client(bearer(t.tokens.alpha));
    const tag = `iso${randomBytes(5).toString("hex")}`;
    const base = { tag, runId: `run-${tag}`, idempotencyKey: `key-${tag}` };
    const spec = (name: string, extra: object = {}) => ({ ...specIn(base, { name }), title: `${name} ${tag}`, metrics: { score: 0.9 }, ...extra });
    // A name of the row's own: version 1 of it is the parent.
    const versionedName = `alpha-parent-${tag}`;
    const parentId = (await saveText(alpha, spec(versionedName, { versioned: true }))).id;
    await alpha.setAlias({ artifactId: parentId, alias: "gold" });
    // Content of its own: the content-first row checks that beta does not have it.
    const childId = (await saveText(alpha, spec("alpha-child", { inputs: [{ artifactId: parentId, role: "source" }] }), `alpha's ${tag}`)).id;
    const session = (await alpha.createUploadSession({ spec: spec("alpha-session"), partSize: PART_SIZE, idempotencyKey: base.idempotencyKey })).session!;
    await alpha.uploadPart({ sessionId: session.sessionId, partNumber: 1, data: Buffer.from("part one") });
    return { ...base, parentId, versionedName, childId, sessionId: session.sessionId };
  }

  /** What of alpha's a call could change: its artifacts in the row's run (with life-cycle state) and its session. */
  async function alphaState(r: AlphaResources) {
    const alpha = client(bearer(t.tokens.alpha));
    const { artifacts } = await alpha.listArtifacts({ filter: { provenance: { runId: r.runId }, includeDeleted: true }, pageSize: 100 });
    const session = await alpha.getUploadSession({ sessionId: r.sessionId }).then(
      ({ session }) => ({ state: session!.state, parts: session!.committedParts, bytes: session!.committedBytes, artifactId: session!.artifactId }),
      (error: unknown) => {
        if (error instanceof ConnectError && error.code === Code.NotFound) return "gone";
        throw error;
      },
    );
    return {
      artifacts: artifacts
        .map((a) => ({ id: a.id, tenant: a.tenantId, pinned: a.pinned, status: Status[a.status], deleted: a.deletedAt !== undefined, aliases: a.aliases }))
        .sort((a, b) => a.id.localeCompare(b.id)),
      session,
    };
  }

  it("has a row for every ArtifactService method, and no row for a method it lacks", () => {
    const methods = ArtifactService.methods.map((method) => method.name);
    expect(
      methods.filter((name) => !(name in rows)),
      "methods without a row",
    ).toEqual([]);
    expect(
      Object.keys(rows).filter((name) => !methods.includes(name)),
      "rows without a method",
    ).toEqual([]);
  });

  it("has a check for every route the server mounts, and none for a route it lacks", () => {
    expect(
      SERVER_ROUTES.filter((route) => !(route in routeChecks)),
      "routes without a check",
    ).toEqual([]);
    expect(
      Object.keys(routeChecks).filter((route) => !SERVER_ROUTES.includes(route)),
      "checks of no route",
    ).toEqual([]);
    const rowsOfRoutes = Object.values(routeChecks).flatMap((check) => ("rows" in check ? Object.values(check.rows) : []));
    expect(
      Object.entries(rows).filter(([, row]) => !rowsOfRoutes.includes(row)),
      "method rows made through no route",
    ).toEqual([]);
  });

  const rowsByRoute = Object.values(routeChecks).flatMap((check) => ("rows" in check ? Object.entries(check.rows) : []));
  const SCOPES: TokenScope[] = ["read-only", "read-write", "admin"];
  it.each(rowsByRoute)("%s", async (_name, row) => {
    const protocol = row.protocol ?? "grpc";
    const r = await givenAlpha();
    const before = await alphaState(r);
    expect(before.artifacts.map((a) => a.id)).toEqual([r.parentId, r.childId].sort());

    await row.asOtherTenant({ beta: client(bearer(t.tokens.beta), protocol), alpha: client(bearer(t.tokens.alpha), protocol) }, r);
    expect(await alphaState(r), "alpha's state after beta's calls").toEqual(before);

    for (const [credential, { authorization, message }] of Object.entries(refused)) {
      const error = await expectCode(row.asOwner(client(authorization, protocol), r), Code.Unauthenticated).catch((e: unknown) => {
        throw new Error(`${credential}: ${(e as Error).message}`);
      });
      expect(error.rawMessage, credential).toMatch(message);
    }
    for (const scope of SCOPES.slice(0, SCOPES.indexOf(row.scope))) {
      await expectCode(row.asOwner(client(bearer(alphaTokens[scope]), protocol), r), Code.PermissionDenied, new RegExp(`this token is ${scope} and cannot`));
    }
    expect(await alphaState(r), "alpha's state after refused calls").toEqual(before);

    // The same call with a token of the row's scope goes through: what was refused above would have been done.
    await row.asOwner(client(bearer(alphaTokens[row.scope]), protocol), r);
    if (row.changes) expect(await alphaState(r), "alpha's state after its own call").not.toEqual(before);
    await client(bearer(t.tokens.alpha))
      .abortUploadSession({ sessionId: r.sessionId })
      .catch(() => undefined);
  });

  const publicRoutes = Object.entries(routeChecks).flatMap(([route, check]) => ("publicAnswer" in check ? [[route, check.publicAnswer] as const] : []));
  it.each(publicRoutes)("%s needs no token and answers every caller alike", async (_route, publicAnswer) => {
    const anonymous = await publicAnswer(t, undefined);
    expect(await publicAnswer(t, bearer(t.tokens.alpha)), "alpha's answer").toEqual(anonymous);
    expect(await publicAnswer(t, bearer(t.tokens.beta)), "beta's answer").toEqual(anonymous);
  });

  it(SIGNED_LINKS_TEST, async () => {
    const r = await givenAlpha();
    const get = async (target: string) => {
      const response = await fetch(new URL(target, t.url));
      return { status: response.status, body: await response.text() };
    };
    const targetOf = (url: string) => url.slice(t.url.length);
    const expiresAtSeconds = Math.floor(Date.now() / 1000) + 600;
    const tokenIdOf = async (tenant: string, name: string) => (await t.app.metadata.listTokens(tenant)).find((token) => token.name === name)!.id;
    const alphaLink = targetOf((await client(bearer(t.tokens.alpha)).createDownloadUrl({ id: r.childId, ttlSeconds: 600 })).url);
    expect(await get(alphaLink)).toEqual({ status: 200, body: `alpha's ${r.tag}` });

    // Beta's own link, re-aimed at alpha's artifact: the signature no longer matches.
    const betaOwn = await saveText(client(bearer(t.tokens.beta)), specIn(r, { name: "beta-own" }));
    const betaLink = targetOf((await client(bearer(t.tokens.beta)).createDownloadUrl({ id: betaOwn.id, ttlSeconds: 600 })).url);
    expect(await get(betaLink)).toEqual({ status: 200, body: "isolation" });
    const forbidden = { status: 403, body: "forbidden\n" };
    expect(await get(betaLink.replace(betaOwn.id, r.childId))).toEqual(forbidden);
    expect(await get(betaLink.replace(`/beta/${betaOwn.id}`, `/alpha/${r.childId}`))).toEqual(forbidden);
    // Even validly signed, beta's link names alpha's artifact in beta's tenant, where it does not exist.
    const betaTokenId = await tokenIdOf("beta", "beta-ci");
    expect(await get(signer.sign({ tenantId: "beta", artifactId: r.childId, tokenId: betaTokenId, expiresAtSeconds }))).toEqual(forbidden);

    // The link's credentials: its signature and the token it was made with.
    expect(await get(alphaLink.slice(0, alphaLink.indexOf("&sig=")))).toEqual(forbidden);
    const sig = alphaLink.slice(alphaLink.indexOf("&sig=") + 5);
    expect(await get(alphaLink.replace(sig, `${sig[0] === "A" ? "B" : "A"}${sig.slice(1)}`))).toEqual(forbidden);
    // Signed with the server's own key: the very link the token made, or would have, before it stopped being valid.
    for (const [credential, { tokenId }] of Object.entries(refused)) {
      if (!tokenId) continue;
      expect({ credential, ...(await get(signer.sign({ tenantId: "alpha", artifactId: r.childId, tokenId, expiresAtSeconds }))) }).toEqual({
        credential,
        ...forbidden,
      });
    }
    // A read-only token's link is enough, and alpha's own link still works.
    const readerLink = signer.sign({ tenantId: "alpha", artifactId: r.childId, tokenId: await tokenIdOf("alpha", "alpha-reader"), expiresAtSeconds });
    expect(await get(readerLink)).toEqual({ status: 200, body: `alpha's ${r.tag}` });
    expect(await get(alphaLink)).toEqual({ status: 200, body: `alpha's ${r.tag}` });
    await client(bearer(t.tokens.alpha)).abortUploadSession({ sessionId: r.sessionId });
  });
});
