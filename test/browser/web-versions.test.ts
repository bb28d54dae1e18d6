import { randomBytes } from "node:crypto";
import type { Page } from "playwright-core";
import { Code } from "@connectrpc/connect";
import { beforeAll, expect, it } from "vitest";
import { Status, type Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { ArtifactSpecInit } from "@artifactd/api";
import { expectCode } from "../support/expect-code.ts";
import type { TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";
import { usePageUnderTest } from "./page-under-test.ts";

/** The name of the test app's token for tenant alpha, which the alias history records as who moved an alias. */
const TOKEN_NAME = "alpha-ci";

/**
 * A versioned artifact's view: its version and aliases, the name's versions,
 * moving and removing aliases (a concurrent move refused), approving with an
 * alias, a delete the aliases hold up and then forced, the chart across
 * versions, and references in the link and the "open" field — driven in
 * headless Chromium against the service on Postgres and MinIO, what the page
 * did read back from the service.
 */
describeOn("postgres+minio")("versions and aliases on the web page in headless Chromium", () => {
  const suite = usePageUnderTest();
  let t: TestApp;
  beforeAll(() => {
    t = suite.t;
  });

  const openPage = () => suite.openPage();
  const { screenshot } = suite;

  /** Opens a version's view and waits until its versions and history are loaded. */
  async function open(page: Page, artifact: Artifact): Promise<void> {
    await page.goto(`${t.url}/#/artifacts/${artifact.id}`);
    await page.locator(`#version-badges [data-version="${artifact.version}"]`).waitFor();
    await loaded(page);
  }
  async function loaded(page: Page): Promise<void> {
    await expect.poll(() => page.textContent("#versions-status")).toBe("");
    await expect.poll(async () => !/Loading/.test((await page.textContent("#alias-history-status")) ?? "")).toBe(true);
  }

  const unique = (prefix: string) => `${prefix}-${randomBytes(3).toString("hex")}`;
  const saveVersion = async (name: string, spec: ArtifactSpecInit = {}) =>
    (await t.client().saveInline({ spec: { kind: "model", name, versioned: true, ...spec }, content: { case: "text", value: name } })).artifact!;
  const saveVersions = async (name: string, count: number, spec: (index: number) => ArtifactSpecInit = () => ({})) => {
    const saved: Artifact[] = [];
    for (let index = 0; index < count; index++) saved.push(await saveVersion(name, spec(index)));
    return saved;
  };
  const resolve = async (reference: string) => (await t.client().getArtifact({ id: reference })).artifact!;
  const history = async (name: string) => (await t.client().listAliasHistory({ name })).moves;

  /** The versions table as drawn: version, aliases, deleted, and the key metric's cell. */
  const versionRows = (page: Page) =>
    page.locator("#versions-table tbody tr").evaluateAll((rows) =>
      rows.map((row) => ({
        version: Number(row.getAttribute("data-version")),
        aliases: [...row.querySelectorAll("[data-alias]")].map((badge) => badge.getAttribute("data-alias")),
        deleted: row.getAttribute("data-deleted") === "true",
        metric: row.querySelector("td.num")?.textContent ?? null,
      })),
    );
  /** The alias history as drawn, newest first: alias, from version, to version, who. */
  const historyRows = (page: Page) =>
    page
      .locator("#alias-history tbody tr")
      .evaluateAll((rows) =>
        rows.map((row) => [
          row.getAttribute("data-alias"),
          Number(row.getAttribute("data-from-version")),
          Number(row.getAttribute("data-to-version")),
          row.getAttribute("data-moved-by"),
        ]),
      );
  const badges = (page: Page) => page.locator("#version-badges .badge.alias").evaluateAll((spans) => spans.map((span) => span.getAttribute("data-alias")));

  /** Move alias… on the open view: type the alias, Next, read the question, confirm. */
  async function moveAlias(page: Page, alias: string, reason = ""): Promise<string> {
    await page.click("#alias-move");
    await page.fill("#alias-name", alias);
    await page.fill("#alias-reason", reason);
    await page.click("#alias-form-next");
    await page.locator("#alias-confirm").waitFor();
    const question = (await page.textContent("#alias-confirm-question")) ?? "";
    await page.click("#alias-confirm-yes");
    return question;
  }

  it("lists the name's versions newest first, a page at a time, with aliases, deleted ones marked; a row opens its version", async () => {
    const name = unique("model");
    const versions = await saveVersions(name, 12, (index) => ({ metrics: { loss: 1 - index / 20 } }));
    await t.client().setAlias({ artifactId: versions[2]!.id, alias: "production" });
    await t.client().deleteArtifact({ id: versions[4]!.id });
    const { page, problems, close } = await openPage();
    await open(page, versions[11]!);

    expect(await page.textContent("#version-badges")).toBe("v12latest");
    // The first page: v12 down to v3; the key metric (this artifact's first) in each row.
    expect(await page.getAttribute("#versions-table th[data-metric]", "data-metric")).toBe("loss");
    const expected = (version: number) => ({
      version,
      aliases: version === 12 ? ["latest"] : version === 3 ? ["production"] : [],
      deleted: version === 5,
      metric: String(Number((1 - (version - 1) / 20).toPrecision(4))),
    });
    expect(await versionRows(page)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3].map(expected));
    expect(await page.getAttribute('#versions-table tr[data-version="12"]', "class")).toContain("current");
    expect(await page.getAttribute('#versions-table tr[data-version="5"]', "class")).toContain("deleted");
    expect(await page.textContent('#versions-table tr[data-version="5"]')).toContain("deleted");
    await page.click("#versions-more");
    await expect.poll(() => versionRows(page)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1].map(expected));
    expect(await page.isHidden("#versions-more")).toBe(true);
    // The history has the one move made above.
    expect(await historyRows(page)).toEqual([["production", 0, 3, TOKEN_NAME]]);

    // A row (not only its number) opens that version.
    await page.click('#versions-table tr[data-version="3"] td:nth-child(4)');
    await page.locator('#version-badges [data-version="3"]').waitFor();
    expect(await badges(page)).toEqual(["production"]);
    expect(page.url()).toContain(`#/artifacts/${versions[2]!.id}`);
    expect(problems).toEqual([]);
    await close();
  });

  it("moves, creates and removes aliases after an in-page confirmation, recorded in the history with the token's name", async () => {
    const name = unique("model");
    const [v1, v2] = await saveVersions(name, 3);
    await t.client().setAlias({ artifactId: v1!.id, alias: "production" });
    const { page, problems, close } = await openPage();
    await open(page, v2!);

    // Cancel sends nothing.
    await page.click("#alias-move");
    await page.fill("#alias-name", "production");
    await page.click("#alias-form-next");
    await page.click("#alias-confirm-no");
    expect(await page.isHidden("#alias-confirm")).toBe(true);
    expect((await resolve(`${name}:production`)).id).toBe(v1!.id);

    const question = await moveAlias(page, "production", "better eval");
    expect(question).toContain(`Move alias "production" of ${name} from v1 to v2?`);
    await page.locator("#alias-result", { hasText: 'Alias "production" now points at v2 (it was on v1).' }).waitFor();
    expect((await resolve(`${name}:production`)).id).toBe(v2!.id);
    const [move] = await history(name);
    expect(move).toMatchObject({ alias: "production", fromArtifactId: v1!.id, toArtifactId: v2!.id, movedBy: TOKEN_NAME, reason: "better eval" });
    // The view is redrawn from the server: the badge, the table and the history say the same.
    expect(await badges(page)).toEqual(["production"]);
    await loaded(page);
    expect((await versionRows(page)).map((row) => [row.version, row.aliases])).toEqual([
      [3, ["latest"]],
      [2, ["production"]],
      [1, []],
    ]);
    expect(await historyRows(page)).toEqual([
      ["production", 1, 2, TOKEN_NAME],
      ["production", 0, 1, TOKEN_NAME],
    ]);
    expect(await page.textContent("#alias-history tbody tr")).toContain("better eval");
    await screenshot(page.locator("#versions-panel"), "versions-panel.png");

    // A new alias: the page has never seen it, so it asks the server to create it only if it does not exist.
    expect(await moveAlias(page, "staging")).toContain(`Create alias "staging" of ${name}, pointing at v2?`);
    await page.locator("#alias-result", { hasText: 'Alias "staging" now points at v2.' }).waitFor();
    expect((await resolve(`${name}:staging`)).id).toBe(v2!.id);

    // A name the server refuses: its message, nothing set.
    expect(await moveAlias(page, "v7")).toContain('Create alias "v7"');
    await page.locator("#alias-error", { hasText: 'Create alias refused: [invalid_argument] alias "v7" is not a valid alias' }).waitFor();

    // Remove alias: offered with this version's first settable alias.
    await page.click("#alias-remove");
    expect(await page.inputValue("#alias-name")).toBe("production");
    await page.fill("#alias-name", "staging");
    await page.click("#alias-form-next");
    expect(await page.textContent("#alias-confirm-question")).toContain(`Remove alias "staging" of ${name} (on v2 now)?`);
    await page.click("#alias-confirm-yes");
    await page.locator("#alias-result", { hasText: 'Alias "staging" removed (it was on v2).' }).waitFor();
    await expectCode(t.client().getArtifact({ id: `${name}:staging` }), Code.NotFound, /has no alias "staging"/);
    expect((await history(name))[0]).toMatchObject({ alias: "staging", fromArtifactId: v2!.id, toArtifactId: "", movedBy: TOKEN_NAME });
    expect(await badges(page)).toEqual(["production"]);
    expect(problems).toEqual([]);
    await close();
  });

  it("refuses a move when someone else moved the alias since the page looked, says so plainly and shows where it is now", async () => {
    const name = unique("model");
    const [v1, v2, v3] = await saveVersions(name, 3);
    await t.client().setAlias({ artifactId: v1!.id, alias: "production" });
    const { page, problems, close } = await openPage();
    await open(page, v2!);
    // Another writer moves it to v3 while the page shows it on v1.
    await t.client().setAlias({ artifactId: v3!.id, alias: "production", reason: "hotfix" });

    expect(await moveAlias(page, "production")).toContain("from v1 to v2");
    await page.locator("#alias-error", { hasText: 'Not moved: alias "production" changed since this page loaded it' }).waitFor();
    expect(await page.textContent("#alias-error")).toContain(`[aborted] alias "production" of "${name}" points at ${v3!.id}, not ${v1!.id}`);
    // Nothing moved: the other writer's move stands.
    expect((await resolve(`${name}:production`)).id).toBe(v3!.id);
    expect((await history(name)).map((move) => move.toVersion)).toEqual([3n, 1n]);
    // The page reloaded what is there now…
    await loaded(page);
    expect((await versionRows(page)).map((row) => [row.version, row.aliases])).toEqual([
      [3, ["latest", "production"]],
      [2, []],
      [1, []],
    ]);
    expect(await historyRows(page)).toEqual([
      ["production", 1, 3, TOKEN_NAME],
      ["production", 0, 1, TOKEN_NAME],
    ]);
    // …so moving it again is a move from where it really is, and succeeds.
    expect(await moveAlias(page, "production")).toContain("from v3 to v2");
    await page.locator("#alias-result", { hasText: 'Alias "production" now points at v2 (it was on v3).' }).waitFor();
    expect((await resolve(`${name}:production`)).id).toBe(v2!.id);

    // An alias made by someone else after the page looked is refused too, not silently taken over.
    await t.client().setAlias({ artifactId: v1!.id, alias: "canary" });
    expect(await moveAlias(page, "canary")).toContain('Create alias "canary"');
    await page.locator("#alias-error", { hasText: "[aborted]" }).waitFor();
    expect((await resolve(`${name}:canary`)).id).toBe(v1!.id);
    expect(problems).toEqual([]);
    await close();
  });

  it("approves a version and points an alias at it in the same call", async () => {
    const name = unique("model");
    const [v1, v2] = await saveVersions(name, 2, () => ({ status: Status.REVIEW }));
    await t.client().setAlias({ artifactId: v1!.id, alias: "production" });
    const { page, problems, close } = await openPage();
    await open(page, v2!);

    // Only approving offers the alias.
    await page.click("#action-reject");
    expect(await page.isHidden("#action-move-alias-field")).toBe(true);
    await page.click("#action-confirm-no");
    await page.click("#action-approve");
    await page.locator("#action-move-alias-field").waitFor();
    await page.fill("#action-move-alias", "production");
    await page.click("#action-confirm-yes");
    await page.locator("#action-result", { hasText: 'Approved. Alias "production" now points at v2.' }).waitFor();
    const approved = await resolve(`${name}:production`);
    expect([approved.id, approved.status]).toEqual([v2!.id, Status.APPROVED]);
    expect((await history(name))[0]).toMatchObject({ alias: "production", fromArtifactId: v1!.id, toArtifactId: v2!.id, movedBy: TOKEN_NAME });
    expect(await badges(page)).toEqual(["latest", "production"]);

    // Approving without an alias moves none.
    await page.goto(`${t.url}/#/artifacts/${v1!.id}`);
    await page.locator('#version-badges [data-version="1"]').waitFor();
    await page.click("#action-approve");
    await page.click("#action-confirm-yes");
    await page.locator("#action-result", { hasText: "Approved." }).waitFor();
    expect((await resolve(v1!.id)).status).toBe(Status.APPROVED);
    expect((await history(name)).length).toBe(2);
    expect(problems).toEqual([]);
    await close();
  });

  it("shows a delete refused because aliases point at the version, then deletes with force after a second confirmation", async () => {
    const name = unique("model");
    const [v1, v2, v3] = await saveVersions(name, 3);
    await t.client().setAlias({ artifactId: v2!.id, alias: "production" });
    await t.client().setAlias({ artifactId: v2!.id, alias: "approved" });
    const { page, problems, close } = await openPage();
    await open(page, v2!);

    await page.click("#action-delete");
    await page.click("#action-confirm-yes");
    await page
      .locator("#action-error", { hasText: `Delete refused: [failed_precondition] artifact ${v2!.id} is what aliases "approved", "production"` })
      .waitFor();
    expect((await resolve(v2!.id)).deletedAt).toBeUndefined();
    await page.click("#action-delete-force");
    expect(await page.textContent("#action-confirm-question")).toContain(
      `Delete ${name} (v2) anyway? This also removes aliases "approved", "production" of ${name}`,
    );
    await page.click("#action-confirm-yes");
    await page.locator("#action-result", { hasText: `Deleted; aliases "approved", "production" of ${name} removed.` }).waitFor();
    const deleted = await resolve(v2!.id);
    expect([deleted.deletedAt !== undefined, deleted.aliases]).toEqual([true, []]);
    await expectCode(t.client().getArtifact({ id: `${name}:production` }), Code.NotFound, /has no alias "production"/);
    expect((await history(name)).slice(0, 2).map((move) => [move.alias, move.fromArtifactId, move.toArtifactId, move.movedBy])).toEqual([
      ["production", v2!.id, "", TOKEN_NAME],
      ["approved", v2!.id, "", TOKEN_NAME],
    ]);
    // The view shows it deleted, among the versions, and the removals in the history.
    await loaded(page);
    expect((await versionRows(page)).map((row) => [row.version, row.deleted])).toEqual([
      [3, false],
      [2, true],
      [1, false],
    ]);
    expect((await historyRows(page)).slice(0, 2)).toEqual([
      ["production", 2, 0, TOKEN_NAME],
      ["approved", 2, 0, TOKEN_NAME],
    ]);
    expect(await page.isVisible("#alias-actions")).toBe(false);

    // A pinned version is refused for being pinned: forcing would not help, so it is not offered.
    await t.client().setAlias({ artifactId: v1!.id, alias: "production" });
    await t.client().setPinned({ id: v1!.id, pinned: true });
    await open(page, v1!);
    await page.click("#action-delete");
    await page.click("#action-confirm-yes");
    await page.locator("#action-error", { hasText: "is pinned" }).waitFor();
    expect(await page.isHidden("#action-delete-force")).toBe(true);
    // Nor for a version only `latest` points at: it is deleted at once.
    await open(page, v3!);
    await page.click("#action-delete");
    await page.click("#action-confirm-yes");
    await page.locator("#action-result", { hasText: "Deleted." }).waitFor();
    expect((await resolve(v3!.id)).deletedAt).toBeDefined();
    expect(problems).toEqual([]);
    await close();
  });

  it("charts a metric across the versions of the name in version order, one point per version, the best marked", async () => {
    const name = unique("chart");
    const losses = [0.9, 0.5, 0.7, 0.3, 0.4];
    const versions = await saveVersions(name, losses.length, (index) => ({ metrics: { loss: losses[index]! } }));
    // A version without the metric, and a deleted one, are not plotted.
    await saveVersion(name, { metrics: { accuracy: 0.5 } });
    const gone = await saveVersion(name, { metrics: { loss: 0.01 } });
    await t.client().deleteArtifact({ id: gone.id });
    const { page, problems, close } = await openPage();
    const current = versions[2]!;
    await open(page, current);

    const chart = page.locator("#metric-chart-svg");
    await chart.waitFor();
    expect(await page.inputValue("#metric-population")).toBe("versions");
    const points = () =>
      chart.locator(".metric-point").evaluateAll((elements) =>
        elements.map((element) => ({
          version: Number(element.getAttribute("data-version")),
          id: element.getAttribute("data-artifact-id"),
          value: Number(element.getAttribute("data-value")),
          best: element.getAttribute("data-best") === "true",
          current: element.getAttribute("data-current") === "true",
        })),
      );
    const expected = (best: number) =>
      losses.map((value, index) => ({ version: index + 1, id: versions[index]!.id, value, best: value === best, current: index === 2 }));
    await expect.poll(points).toEqual(expected(0.9));
    await page.check("#metric-lower-better");
    await expect.poll(points).toEqual(expected(0.3));
    expect(await page.textContent("#metric-chart-note")).toContain(`loss of 5 version(s), versions of ${name}, by version; best (lowest): 0.3.`);
    expect(await chart.locator(".metric-axis").allTextContents()).toEqual(expect.arrayContaining(["v1", "v5"]));
    expect(await chart.locator('[data-version="4"] title').textContent()).toContain("v4");
    // The other populations stay on offer.
    expect(await page.locator("#metric-population option").evaluateAll((options) => options.map((option) => option.getAttribute("value")))).toEqual([
      "versions",
      "kind",
    ]);
    expect(problems).toEqual([]);
    await close();
  });

  it("opens a reference from the link or the open field, showing the id it resolved to", async () => {
    const name = unique("model");
    const versions = await saveVersions(name, 3);
    await t.client().setAlias({ artifactId: versions[0]!.id, alias: "production" });
    const { page, problems, close } = await openPage();

    await page.goto(`${t.url}/#/artifacts/${name}:latest`);
    await page.locator("#resolved-reference").waitFor();
    expect(await page.textContent("#resolved-reference")).toBe(`${name}:latest resolved to ${versions[2]!.id} (v3 of ${name})`);
    expect(await page.textContent("#version-badges")).toBe("v3latest");
    // A newer version: the same link now opens it.
    const v4 = await saveVersion(name);
    await page.fill("#open-ref", `${name}:latest`);
    await page.click("#open-form button[type=submit]");
    await page.locator("#resolved-reference", { hasText: v4.id }).waitFor();

    // The open field takes versions, aliases and artifact:// too, and puts the reference in the link.
    for (const [reference, artifact] of [
      [`${name}@v2`, versions[1]!],
      [`${name}:production`, versions[0]!],
      [`artifact://${name}@3`, versions[2]!],
    ] as const) {
      await page.fill("#open-ref", reference);
      await page.click("#open-form button[type=submit]");
      await page.locator("#resolved-reference", { hasText: `${reference} resolved to ${artifact.id}` }).waitFor();
      expect(decodeURIComponent(new URL(page.url()).hash)).toBe(`#/artifacts/${reference}`);
      await page.locator(`#version-badges [data-version="${artifact.version}"]`).waitFor();
    }
    // An id typed in the field opens as an id.
    await page.fill("#open-ref", versions[1]!.id);
    await page.click("#open-form button[type=submit]");
    await page.locator('#version-badges [data-version="2"]').waitFor();
    expect(await page.locator("#resolved-reference").count()).toBe(0);

    // What does not resolve is said: a missing alias by the server, a malformed reference by the page.
    await page.fill("#open-ref", `${name}:nosuch`);
    await page.click("#open-form button[type=submit]");
    await page.locator("#detail-body .error", { hasText: `Could not open ${name}:nosuch: [not_found]` }).waitFor();
    await page.fill("#open-ref", `${name}:Prod`);
    await page.click("#open-form button[type=submit]");
    await page.locator("#invalid-link-reason", { hasText: 'alias "Prod": use 1–64 characters of a-z 0-9 . _ -, starting with a lowercase letter' }).waitFor();
    expect(problems).toEqual([]);
    await close();
  });
});
