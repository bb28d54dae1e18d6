import { Code } from "@connectrpc/connect";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import type { Page, Route } from "playwright-core";
import { beforeAll, expect, it } from "vitest";
import { blake3Hex } from "../../src/blake3.ts";
import { Status } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import { UploadSessionState } from "@artifactd/api/artifacts/v1/artifact_service_pb.js";
import { expectCode } from "../support/expect-code.ts";
import { captureStorageKeys, expectNothingStored, untilStored } from "../support/nothing-stored.ts";
import type { TestApp } from "../support/test-app.ts";
import { usePageUnderTest } from "./page-under-test.ts";
import { describeOn } from "../support/test-backends.ts";

const MiB = 1024 * 1024;
const UPLOAD_PART = "**/artifacts.v1.ArtifactService/UploadPart";
const SESSION_KEY_PREFIX = "artifactd.upload-session.";

/**
 * The page the service serves, driven in headless Chromium: uploads through
 * the browser client (BLAKE3 in a worker, parallel parts, retries, resume
 * after a reload, cancel), listing, filtering and search, the artifact view,
 * signed downloads, and that uploaded HTML is shown as text and never rendered.
 */
describeOn("postgres+minio")("the web page in headless Chromium", () => {
  const suite = usePageUnderTest();
  let t: TestApp;
  beforeAll(() => {
    t = suite.t;
  });

  const openPage = () => suite.openPage({ context: { acceptDownloads: true } });

  /** A real file on disk, so the page's File has a stable name and lastModified, as a user's would. */
  function fileOf(name: string, data: Buffer | string): string {
    const file = path.join(suite.dir, name);
    writeFileSync(file, data);
    return file;
  }

  async function sessionIdsIn(page: Page): Promise<string[]> {
    const entries = await page.evaluate<Array<[string, string]>>("Object.entries(localStorage)");
    return entries.filter(([key]) => key.startsWith(SESSION_KEY_PREFIX)).map(([, value]) => (JSON.parse(value) as { sessionId: string }).sessionId);
  }

  it("uploads a 12 MiB file, retrying a dropped part, then lists, filters, opens and downloads it", async () => {
    const { page, problems, close } = await openPage();
    const data = randomBytes(12 * MiB + 12_345);
    // The first part's connection drops once: the client retries it.
    let partRequests = 0;
    await page.route(UPLOAD_PART, (route) => (++partRequests === 1 ? route.abort("connectionreset") : route.continue()));

    await page.setInputFiles("#upload-file", fileOf("weights.bin", data));
    await page.fill("#upload-kind", "model");
    await page.fill("#upload-labels", "team=vision, stage=train");
    await page.fill("#upload-run-id", "run-42");
    await page.click("#upload-start");
    await expect.poll(() => page.textContent("#upload-status"), { timeout: 30_000 }).toMatch(/^Uploaded weights\.bin/);
    // Two 8 MiB parts, one of them sent twice.
    expect(partRequests).toBe(3);
    await page.unrouteAll();
    expect(await sessionIdsIn(page)).toEqual([]);

    // Listed (the list refreshes after an upload), and found by each filter.
    const row = page.locator("#artifact-table tbody tr", { hasText: "weights.bin" });
    await row.waitFor();
    const filter = async (fields: Record<string, string>) => {
      for (const name of ["kind", "namePrefix", "labels", "runId"]) await page.fill(`#filter-form [name=${name}]`, fields[name] ?? "");
      await page.click("#filter-form button[type=submit]");
    };
    await filter({ kind: "model", namePrefix: "weights", labels: "team=vision", runId: "run-42" });
    await row.waitFor();
    await filter({ labels: "team=audio" });
    await page.locator("#list-empty").waitFor();
    await filter({ runId: "run-42" });
    await row.waitFor();

    // The artifact's view.
    await row.locator("a").click();
    await page.locator("#detail-heading", { hasText: "weights.bin" }).waitFor();
    expect(await page.textContent("#detail-blake3")).toBe(blake3Hex(data));
    const detail = await page.textContent("#detail-body");
    expect(detail).toContain("team");
    expect(detail).toContain("vision");
    expect(detail).toContain("run-42");
    expect(detail).toContain(`${data.length} bytes`);
    expect(await page.textContent("#preview")).toContain("No preview for application/octet-stream");

    // The download link is a signed URL: the bytes that arrive are the bytes uploaded.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download-link")]);
    expect(download.suggestedFilename()).toBe("weights.bin");
    const saved = await download.path();
    expect(readFileSync(saved).equals(data)).toBe(true);
    expect(problems).toEqual([]);
    await close();
  });

  it("resumes after a reload: only the parts the session lacks are sent", async () => {
    const { page, problems, close } = await openPage();
    const data = randomBytes(30 * MiB - 1_000);
    const file = fileOf("big.bin", data);
    const setOptions = async () => {
      await page.fill("#upload-kind", "dataset");
      await page.locator("#upload-form details summary").click();
      await page.fill("#upload-part-size", "5");
      await page.fill("#upload-concurrency", "1");
    };
    await setOptions();

    // Parts 1 and 2 go through; part 3 is held, as if the connection hung.
    let partRequests = 0;
    let held: () => void;
    const thirdPartSent = new Promise<void>((resolve) => (held = resolve));
    await page.route(UPLOAD_PART, (route: Route) => {
      if (++partRequests <= 2) return route.continue();
      held();
      return undefined;
    });
    await page.setInputFiles("#upload-file", file);
    await page.click("#upload-start");
    await thirdPartSent;

    const [sessionId] = await sessionIdsIn(page);
    expect(sessionId).toMatch(/^ups_/);
    const before = (await t.client().getUploadSession({ sessionId: sessionId! })).session!;
    expect(before.committedParts).toEqual([1, 2]);
    expect(before.committedBytes).toBe(BigInt(10 * MiB));

    // The reload cancels the held request; it never reaches the server.
    await page.reload();
    await page.unrouteAll({ behavior: "ignoreErrors" });
    expect((await t.client().getUploadSession({ sessionId: sessionId! })).session!.committedParts).toEqual([1, 2]);
    const partsAfterReload: string[] = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/artifacts.v1.ArtifactService/UploadPart")) partsAfterReload.push(request.url());
    });
    await setOptions();
    await page.setInputFiles("#upload-file", file);
    await page.click("#upload-start");
    await expect.poll(() => page.textContent("#upload-status"), { timeout: 30_000 }).toMatch(/^Uploaded big\.bin \(resumed: 2 part\(s\) were already stored\)/);

    // Six parts in all; the two committed before the reload were not sent again.
    expect(partsAfterReload).toHaveLength(4);
    const after = (await t.client().getUploadSession({ sessionId: sessionId! })).session!;
    expect(after.state).toBe(UploadSessionState.COMPLETED);
    const { artifact } = await t.client().getArtifact({ id: after.artifactId });
    expect(artifact!.blake3).toBe(blake3Hex(data));
    expect(artifact!.sizeBytes).toBe(BigInt(data.length));
    expect(await sessionIdsIn(page)).toEqual([]);
    expect(problems).toEqual([]);
    await close();
  });

  it("cancels an upload: the session and its parts are discarded, in Postgres and in the bucket", async () => {
    const { page, problems, close } = await openPage();
    using storage = captureStorageKeys(t);
    await page.locator("#upload-form details summary").click();
    await page.fill("#upload-part-size", "5");
    await page.fill("#upload-concurrency", "1");
    let partRequests = 0;
    let held: () => void;
    const secondPartSent = new Promise<void>((resolve) => (held = resolve));
    await page.route(UPLOAD_PART, (route: Route) => {
      if (++partRequests <= 1) return route.continue();
      held();
      return undefined;
    });
    await page.setInputFiles("#upload-file", fileOf("cancelled.bin", randomBytes(12 * MiB)));
    await page.click("#upload-start");
    await secondPartSent;
    const [sessionId] = await sessionIdsIn(page);
    expect(sessionId).toMatch(/^ups_/);
    // The first part is stored under the session's key: the cancel has something to discard.
    await untilStored(t, storage.keys, 5 * MiB);
    await page.click("#upload-cancel");
    await expect.poll(() => page.textContent("#upload-status")).toMatch(/^Cancelled/);
    await expectCode(t.client().getUploadSession({ sessionId: sessionId! }), Code.NotFound);
    // No maintenance runs here: only the cancel's AbortUploadSession can have removed them.
    await expectNothingStored(t, { keys: storage.keys, sessionIds: [sessionId!] });
    expect(await sessionIdsIn(page)).toEqual([]);
    expect(await page.getAttribute("#upload-start", "disabled")).toBeNull();
    await page.unrouteAll({ behavior: "ignoreErrors" });
    expect(problems).toEqual([]);
    await close();
  });

  it("previews images and JSON, and shows lineage", async () => {
    const image = solidPng(24, 16, [200, 60, 40]);
    async function* messages() {
      yield { message: { case: "header" as const, value: { spec: { kind: "plot", name: "loss.png", mimeType: "image/png" } } } };
      yield { message: { case: "chunk" as const, value: image } };
    }
    const plot = (await t.client().upload(messages())).artifact!;
    const { artifact: report } = await t.client().saveInline({
      spec: { kind: "report", name: "summary.json", inputs: [{ artifactId: plot.id, role: "figure" }], metrics: { accuracy: 0.93 }, tags: ["nightly"] },
      content: { case: "json", value: JSON.stringify({ accuracy: 0.93, epochs: [1, 2] }) },
    });
    const { page, problems, close } = await openPage();

    await page.goto(`${t.url}/#/artifacts/${report!.id}`);
    await page.locator("#preview-text").waitFor();
    expect(JSON.parse((await page.textContent("#preview-text"))!)).toEqual({ accuracy: 0.93, epochs: [1, 2] });
    expect(await page.textContent("#preview-text")).toContain('\n  "epochs"');
    expect(await page.textContent("#detail-body")).toContain("nightly");
    const lineage = page.locator("#lineage");
    expect(await lineage.textContent()).toMatch(/Made fromloss\.png plot as figure/);

    // Through the lineage link to the image: it loads from its signed URL under the page's CSP.
    await lineage.locator("a", { hasText: "loss.png" }).click();
    await page.locator("#preview-image").waitFor();
    await expect.poll(() => page.evaluate("document.getElementById('preview-image').naturalWidth")).toBe(24);
    expect(await page.locator("#lineage").textContent()).toMatch(/Used bysummary\.json report as figure/);
    expect(problems).toEqual([]);
    await close();
  });

  it("filters by status, tags, a metric range and provenance, searches in rank order, and keeps the filter in the URL", async () => {
    // Other tests share the tenant: a graph id of this test's own scopes every view.
    const graphId = `graph-${randomBytes(4).toString("hex")}`;
    const save = async (
      name: string,
      spec: { title?: string; status: Status; tags: string[]; metrics?: Record<string, number>; labels?: Record<string, string>; pinned?: boolean },
    ) => (await t.client().saveInline({ spec: { kind: "model", name, provenance: { graphId }, ...spec }, content: { case: "text", value: name } })).artifact!;
    // Created one after another, so the plain list (newest first) is delta, gamma, beta, alpha.
    await save("alpha-model", { title: "Zeppelin detector", status: Status.APPROVED, tags: ["vision", "prod"], metrics: { accuracy: 0.91 } });
    // "zeppelin" only in a label value: it ranks below alpha, where it is in the title.
    await save("beta-model", { title: "Baseline", status: Status.REVIEW, tags: ["vision"], metrics: { accuracy: 0.72 }, labels: { note: "zeppelin" } });
    const gamma = await save("gamma-notes", { title: "Release notes", status: Status.APPROVED, tags: ["prod"], metrics: { accuracy: 0.55 } });
    await save("delta-draft", { status: Status.DRAFT, tags: ["vision", "prod", "nightly"], pinned: true });

    const { page, problems, close } = await openPage();
    const listed = () => page.locator("#artifact-table tbody tr .artifact-link").allTextContents();
    const SELECTS = new Set(["status", "pinned"]);
    const browse = async (fields: Record<string, string>) => {
      for (const name of ["graphId", "status", "pinned", "tags", "metricName", "metricMin", "metricMax"]) {
        const field = page.locator(`#filter-form [name=${name}]`);
        if (SELECTS.has(name)) await field.selectOption({ value: fields[name] ?? "" });
        else await field.fill(fields[name] ?? "");
      }
      await page.click("#filter-form button[type=submit]");
    };
    await page.locator("#more-filters summary").click();

    await browse({ graphId });
    await expect.poll(listed).toEqual(["delta-draft", "gamma-notes", "beta-model", "alpha-model"]);
    await browse({ graphId, status: "approved" });
    await expect.poll(listed).toEqual(["gamma-notes", "alpha-model"]);
    await browse({ graphId, tags: "vision, prod" });
    await expect.poll(listed).toEqual(["delta-draft", "alpha-model"]);
    await browse({ graphId, metricName: "accuracy", metricMin: "0.6", metricMax: "0.95" });
    await expect.poll(listed).toEqual(["beta-model", "alpha-model"]);
    await browse({ graphId, pinned: "yes" });
    await expect.poll(listed).toEqual(["delta-draft"]);
    await browse({ graphId, status: "rejected" });
    await page.locator("#list-empty").waitFor();

    // Search: Enter in the box, results in rank order, narrowed by the same filter.
    await browse({ graphId });
    await page.fill("#filter-search", "zeppelin");
    await page.press("#filter-search", "Enter");
    await expect.poll(listed).toEqual(["alpha-model", "beta-model"]);
    expect(await page.textContent("#list-summary")).toContain("zeppelin");
    await browse({ graphId, status: "review" });
    await expect.poll(listed).toEqual(["beta-model"]);
    // Emptying the box goes back to the plain list, filter kept.
    await page.fill("#filter-search", "");
    await expect.poll(listed).toEqual(["beta-model"]);
    expect(await page.isHidden("#list-summary")).toBe(true);
    await browse({ graphId });
    await expect.poll(listed).toEqual(["delta-draft", "gamma-notes", "beta-model", "alpha-model"]);

    // Deleted artifacts only on request, struck through.
    await t.client().deleteArtifact({ id: gamma.id });
    await browse({ graphId });
    await expect.poll(listed).toEqual(["delta-draft", "beta-model", "alpha-model"]);
    await page.check("#filter-form [name=includeDeleted]");
    await page.click("#filter-form button[type=submit]");
    await expect.poll(listed).toEqual(["delta-draft", "gamma-notes", "beta-model", "alpha-model"]);
    expect(await page.getAttribute(`#artifact-table tr[data-id="${gamma.id}"]`, "class")).toBe("deleted");
    await page.uncheck("#filter-form [name=includeDeleted]");

    // The applied filter is in the URL: a reload, or a trip to an artifact and back, keeps it.
    await page.fill("#filter-search", "zeppelin");
    await browse({ graphId, tags: "vision" });
    await expect.poll(listed).toEqual(["alpha-model", "beta-model"]);
    expect(new URL(page.url()).searchParams.get("graphId")).toBe(graphId);
    await page.reload();
    await expect.poll(listed).toEqual(["alpha-model", "beta-model"]);
    expect(await page.inputValue("#filter-search")).toBe("zeppelin");
    expect(await page.inputValue("#filter-form [name=tags]")).toBe("vision");
    expect(await page.getAttribute("#more-filters", "open")).not.toBeNull();
    await page.locator("#artifact-table .artifact-link", { hasText: "beta-model" }).click();
    await page.locator("#detail-heading", { hasText: "Baseline" }).waitFor();
    await page.click("#detail a[href='#']");
    await expect.poll(listed).toEqual(["alpha-model", "beta-model"]);

    // Clear resets every field and lists everything again.
    await page.click("#filter-form button[type=reset]");
    await expect.poll(async () => (await listed()).length).toBeGreaterThan(4);
    expect(new URL(page.url()).search).toBe("");
    expect(problems).toEqual([]);
    await close();
  });

  it("keeps the token for the browser session only, unless it is remembered; unticking forgets it", async () => {
    const TOKEN_KEY = "artifactd.token";
    const stored = (page: Page) =>
      page.evaluate<{ local: string | null; session: string | null }>(
        `({ local: localStorage.getItem("${TOKEN_KEY}"), session: sessionStorage.getItem("${TOKEN_KEY}") })`,
      );
    /** What a browser restart keeps (cookies and localStorage, not sessionStorage), opened in a new context. */
    const restart = async (page: Page) => {
      const context = await suite.browser.newContext({ storageState: await page.context().storageState() });
      const next = await context.newPage();
      await next.goto(`${t.url}/`);
      return { page: next, close: () => context.close() };
    };
    const signedIn = async (page: Page) => {
      await page.locator("#artifact-table tbody tr").first().waitFor();
      expect(await page.inputValue("#token")).toBe(t.tokens.alpha);
    };
    const signedOut = async (page: Page) => {
      await page.locator("#message", { hasText: "Enter an API token" }).waitFor();
      expect(await page.inputValue("#token")).toBe("");
    };
    // Something to list, so a working token shows rows.
    await t.client().saveInline({ spec: { kind: "note", name: "token-check" }, content: { case: "text", value: "x" } });

    // Not remembered (the default): this tab's session only.
    const { page, problems, close } = await openPage();
    expect(await page.isChecked("#token-remember")).toBe(false);
    expect(await stored(page)).toEqual({ local: null, session: t.tokens.alpha });
    await page.reload();
    await signedIn(page);
    const newTab = await page.context().newPage();
    await newTab.goto(`${t.url}/`);
    await signedOut(newTab);
    await newTab.close();
    const afterRestart = await restart(page);
    await signedOut(afterRestart.page);
    await afterRestart.close();

    // Remembered: in localStorage only, and still there after a restart, with the box ticked.
    await page.check("#token-remember");
    expect(await stored(page)).toEqual({ local: t.tokens.alpha, session: null });
    const remembered = await restart(page);
    await signedIn(remembered.page);
    expect(await remembered.page.isChecked("#token-remember")).toBe(true);

    // Unticking forgets it from localStorage at once (no Save needed); this tab keeps it for its session.
    await remembered.page.uncheck("#token-remember");
    expect(await stored(remembered.page)).toEqual({ local: null, session: t.tokens.alpha });
    await remembered.page.reload();
    await signedIn(remembered.page);
    expect(await remembered.page.isChecked("#token-remember")).toBe(false);
    const forgotten = await restart(remembered.page);
    await signedOut(forgotten.page);
    await forgotten.close();
    await remembered.close();

    // Saving an empty token removes it from wherever it was.
    await page.fill("#token", "");
    await page.click("#token-form button[type=submit]");
    expect(await stored(page)).toEqual({ local: null, session: null });
    expect(problems).toEqual([]);
    await close();
  });

  it("shows a malformed link as not valid, on load and on a hash change, and a malformed query as a named field", async () => {
    /** A same-document navigation, as following an in-page link does. */
    const setHash = (page: Page, hash: string) => page.evaluate(`location.hash = ${JSON.stringify(hash)}`);
    const { page, problems, close } = await openPage();
    const { artifact } = await t.client().saveInline({ spec: { kind: "note", name: "link-check" }, content: { case: "text", value: "x" } });
    const invalid = async (why: RegExp) => {
      await page.locator("#invalid-link-heading", { hasText: "Not a valid link" }).waitFor();
      expect(await page.textContent("#invalid-link-reason")).toMatch(why);
      expect(await page.isHidden("#browse")).toBe(true);
      expect(await page.isHidden("#detail")).toBe(true);
    };
    const badLinks: [string, RegExp][] = [
      ["#/artifacts/%E0", /percent-escape that does not decode/],
      ["#/artifacts/%E0%A4%A", /percent-escape that does not decode/],
      ["#/artifacts/%", /percent-escape that does not decode/],
      ["#/artifacts/not-an-id", /does not name an artifact id/],
      [`#/artifacts/${artifact!.id}%00`, /does not name an artifact id/],
      ["#/artifacts/", /does not name an artifact id/],
      ["#/nowhere", /is not a page of this site/],
    ];
    for (const [hash, why] of badLinks) {
      // Opened as a new page load (the query string differs, so it is not a same-document navigation)…
      await page.goto(`${t.url}/?load=${encodeURIComponent(hash)}${hash}`);
      await invalid(why);
      // …and reached by a hash change from a working view.
      await setHash(page, "#/");
      await page.locator("#browse").waitFor();
      expect(await page.isHidden("#invalid-link")).toBe(true);
      await setHash(page, hash);
      await invalid(why);
    }
    // From the invalid view back to the list, and to a good link.
    await page.click("#invalid-link a[href='#']");
    await page.locator("#browse").waitFor();
    expect(await page.isHidden("#invalid-link")).toBe(true);
    await setHash(page, `#/artifacts/${encodeURIComponent(artifact!.id)}`);
    await page.locator("#detail-heading", { hasText: "link-check" }).waitFor();
    expect(await page.isHidden("#invalid-link")).toBe(true);

    // A query string the form cannot hold: malformed escapes are decoded leniently, a field out of range is named.
    await page.goto(`${t.url}/?q=%E0%A4&tags=%&createdTo=275760-09-13&status=%FF`);
    await page.locator("#message", { hasText: '"Created to" (275760-09-13) is not a date this page can search by' }).waitFor();
    await page.goto(`${t.url}/?labels=novalue`);
    await page.locator("#message", { hasText: 'label "novalue" is not key=value' }).waitFor();
    expect(problems).toEqual([]);
    await close();
  });

  it("shows uploaded HTML as text and never renders it", async () => {
    const { page, problems, close } = await openPage();
    const html = [
      "<!doctype html><title>evil</title>",
      "<script>window.__pwned = 'script'; alert('script ran')</script>",
      `<img src="/nope.png" onerror="window.__pwned = 'onerror'; alert('onerror ran')">`,
      "<h1 id=injected>rendered</h1>",
    ].join("\n");
    await page.setInputFiles("#upload-file", fileOf("evil.html", html));
    await page.click("#upload-start");
    await expect.poll(() => page.textContent("#upload-status"), { timeout: 30_000 }).toMatch(/^Uploaded evil\.html/);
    await page.click("#upload-result");
    await page.locator("#preview-text").waitFor();

    expect(await page.textContent("#preview-text")).toBe(html);
    expect(await page.textContent("#detail-body")).toContain("text/html");
    expect(await page.locator("#injected").count()).toBe(0);
    expect(await page.locator("#detail img").count()).toBe(0);
    // Give a would-be onerror handler time to fire.
    await page.waitForTimeout(300);
    expect(await page.evaluate("typeof window.__pwned")).toBe("undefined");
    expect(problems).toEqual([]);
    await close();
  });
});

/** A valid PNG of one colour (RGB, no interlace), for image previews. */
function solidPng(width: number, height: number, [r, g, b]: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => [r, g, b]).flat())]);
  const pixels = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", zlib.deflateSync(pixels)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}
