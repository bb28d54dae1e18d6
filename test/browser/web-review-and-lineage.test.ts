import { randomBytes } from "node:crypto";
import type { Page } from "playwright-core";
import { beforeAll, expect, it } from "vitest";
import { Status, type Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { ArtifactSpecInit } from "@artifactd/api";
import { createApiToken } from "../../src/service/api-tokens.ts";
import type { TestApp } from "../support/test-app.ts";
import { describeOn } from "../support/test-backends.ts";
import { usePageUnderTest } from "./page-under-test.ts";

/**
 * The artifact view's lineage graph, metric chart, review actions and
 * media, PDF and CSV previews, driven in headless Chromium against the
 * service on Postgres and MinIO. What is drawn is read back from the SVG's
 * data attributes; what the buttons did is read back from the service.
 */
describeOn("postgres+minio")("the artifact view's graph, chart, review actions and previews in headless Chromium", () => {
  const suite = usePageUnderTest();
  let t: TestApp;
  beforeAll(() => {
    t = suite.t;
  });

  const openPage = (token?: string) => suite.openPage(token === undefined ? {} : { token });
  const { screenshot } = suite;

  async function open(page: Page, artifact: Artifact): Promise<void> {
    await page.goto(`${t.url}/#/artifacts/${artifact.id}`);
    await page.locator("#detail-heading", { hasText: artifact.name }).waitFor();
  }

  const save = async (spec: ArtifactSpecInit, text = spec.name ?? "x") =>
    (await t.client().saveInline({ spec, content: { case: "text", value: text } })).artifact!;
  const readBack = async (id: string) => (await t.client().getArtifact({ id })).artifact!;

  it("draws the lineage as columns of generations, with arrows and roles, to the chosen depth; a node opens its artifact", async () => {
    const raw = await save({ kind: "dataset", name: "raw.csv", status: Status.APPROVED });
    const clean = await save({ kind: "dataset", name: "clean.csv", inputs: [{ artifactId: raw.id, role: "source" }], status: Status.APPROVED });
    const config = await save({ kind: "config", name: "train.yaml" });
    // raw is an input of the model twice over: directly, and through clean.
    const model = await save({
      kind: "model",
      name: "model.bin",
      status: Status.REVIEW,
      inputs: [{ artifactId: clean.id, role: "train" }, { artifactId: config.id }, { artifactId: raw.id, role: "baseline" }],
    });
    const evaluation = await save({ kind: "eval", name: "eval.json", inputs: [{ artifactId: model.id, role: "subject" }] });
    const report = await save({ kind: "report", name: "report.md", inputs: [{ artifactId: evaluation.id, role: "results" }] });

    const { page, problems, close } = await openPage();
    await open(page, model);
    const graph = page.locator("#lineage-graph");
    await graph.waitFor();
    const drawn = async () => {
      const nodes = await graph
        .locator(".lineage-node")
        .evaluateAll((elements) =>
          elements.map((element) => [
            element.getAttribute("data-artifact-id"),
            Number(element.getAttribute("data-generation")),
            element.getAttribute("data-status"),
          ]),
        );
      const edges = await graph
        .locator(".lineage-edge")
        .evaluateAll((elements) =>
          elements.map((element) => `${element.getAttribute("data-from")}->${element.getAttribute("data-to")}:${element.getAttribute("data-role") ?? ""}`),
        );
      return { nodes: nodes.sort(), edges: edges.sort() };
    };
    // The default depth, 3, reaches every one of them. raw sits two columns left: its longest way to the model is two steps.
    expect(await page.inputValue("#lineage-depth")).toBe("3");
    expect(await drawn()).toEqual({
      nodes: [
        [clean.id, -1, "approved"],
        [config.id, -1, "draft"],
        [evaluation.id, 1, "draft"],
        [model.id, 0, "review"],
        [raw.id, -2, "approved"],
        [report.id, 2, "draft"],
      ].sort(),
      edges: [
        `${raw.id}->${clean.id}:source`,
        `${clean.id}->${model.id}:train`,
        `${config.id}->${model.id}:`,
        `${raw.id}->${model.id}:baseline`,
        `${model.id}->${evaluation.id}:subject`,
        `${evaluation.id}->${report.id}:results`,
      ].sort(),
    });
    // Columns run left to right, ancestors to descendants, and every arrow points right.
    const left = async (id: string) => (await graph.locator(`[data-artifact-id="${id}"] rect`).boundingBox())!.x;
    const xs = await Promise.all([raw, clean, model, evaluation, report].map((artifact) => left(artifact.id)));
    expect(xs).toEqual([...xs].sort((a, b) => a - b));
    expect(new Set(xs).size).toBe(5);
    expect(await left(config.id)).toBe(await left(clean.id));
    expect(await graph.locator(`[data-from="${clean.id}"][data-to="${model.id}"] text`).textContent()).toBe("train");
    expect(await graph.locator(`[data-artifact-id="${model.id}"]`).getAttribute("class")).toContain("current");
    expect(await graph.locator(`[data-artifact-id="${clean.id}"]`).textContent()).toContain("dataset/clean.csv");
    // The lists stay, below the graph.
    expect(await page.locator("#lineage").textContent()).toContain("eval.json");
    await screenshot(graph, "lineage-graph.png");

    // Depth 1: the direct inputs and outputs only.
    await page.selectOption("#lineage-depth", "1");
    await expect.poll(async () => (await drawn()).nodes.map(([id]) => id)).toEqual([clean.id, config.id, evaluation.id, model.id, raw.id].sort());
    expect((await drawn()).edges).not.toContain(`${raw.id}->${clean.id}:source`);
    expect(await graph.locator(`[data-artifact-id="${raw.id}"]`).getAttribute("data-generation")).toBe("-1");
    expect(await page.locator("#lineage").textContent()).not.toContain("report.md");

    // A node opens its artifact, drawn in the middle at the depth chosen.
    await graph.locator(`[data-artifact-id="${evaluation.id}"]`).click();
    await page.locator("#detail-heading", { hasText: "eval.json" }).waitFor();
    expect(await page.inputValue("#lineage-depth")).toBe("1");
    await expect
      .poll(async () => (await drawn()).nodes)
      .toEqual(
        [
          [evaluation.id, 0, "draft"],
          [model.id, -1, "review"],
          [report.id, 1, "draft"],
        ].sort(),
      );
    expect(problems).toEqual([]);
    await close();
  });

  it("charts a metric across the artifacts of a run or of a kind, oldest to newest, marking the best and this one", async () => {
    const scope = randomBytes(3).toString("hex");
    const kind = `ckpt-${scope}`;
    const runId = `run-${scope}`;
    const losses = [0.9, 0.5, 0.7, 0.3, 0.4];
    const accuracies = [0.61, 0.8, 0.74, 0.86, 0.83];
    const checkpoints: Artifact[] = [];
    for (const [index, loss] of losses.entries()) {
      checkpoints.push(await save({ kind, name: `step-${index}`, provenance: { runId }, metrics: { loss, accuracy: accuracies[index]! } }));
    }
    // In the run but without the metric, and of the kind but in another run.
    await save({ kind: "log", name: "train.log", provenance: { runId } });
    const elsewhere = await save({ kind, name: "other-run", provenance: { runId: `${runId}-b` }, metrics: { loss: 0.1, accuracy: 0.5 } });

    const { page, problems, close } = await openPage();
    const current = checkpoints[2]!;
    await open(page, current);
    const chart = page.locator("#metric-chart-svg");
    const points = async () =>
      chart.locator(".metric-point").evaluateAll((elements) =>
        elements.map((element) => ({
          id: element.getAttribute("data-artifact-id"),
          value: Number(element.getAttribute("data-value")),
          best: element.getAttribute("data-best") === "true",
          current: element.getAttribute("data-current") === "true",
        })),
      );
    const expected = (values: number[], ids: string[], best: number) =>
      values.map((value, index) => ({ id: ids[index], value, best: value === best, current: ids[index] === current.id }));
    const ids = checkpoints.map((artifact) => artifact.id);

    // Metrics in name order: accuracy first; the run first; higher is better.
    await chart.waitFor();
    expect(await page.inputValue("#metric-name")).toBe("accuracy");
    expect(await page.inputValue("#metric-population")).toBe("run");
    await expect.poll(points).toEqual(expected(accuracies, ids, 0.86));
    expect(await page.textContent("#metric-chart-note")).toContain("accuracy of 5 artifact(s)");
    expect(await chart.locator(`[data-artifact-id="${ids[3]}"] title`).textContent()).toContain(`${ids[3]}): accuracy = 0.86, best`);
    await screenshot(chart, "metric-chart.png");

    // Loss, where lower is better.
    await page.selectOption("#metric-name", "loss");
    await expect.poll(points).toEqual(expected(losses, ids, 0.9));
    await page.check("#metric-lower-better");
    await expect.poll(points).toEqual(expected(losses, ids, 0.3));
    // The kind's artifacts: the other run's checkpoint too, newest.
    await page.selectOption("#metric-population", "kind");
    await expect.poll(points).toEqual(expected([...losses, 0.1], [...ids, elsewhere.id], 0.1));
    expect(await page.textContent("#metric-chart-note")).toContain(`same kind (${kind})`);

    // A point opens its artifact.
    await chart.locator(`[data-artifact-id="${ids[0]}"]`).click();
    await page.locator("#detail-heading", { hasText: "step-0" }).waitFor();
    await expect.poll(async () => (await points()).find((point) => point.current)?.id).toBe(ids[0]);
    // A deleted artifact is listed in no population: nothing to plot, said so.
    const gone = await save({ kind: `${kind}-gone`, name: "gone", metrics: { loss: 1 } });
    await t.client().deleteArtifact({ id: gone.id });
    await open(page, gone);
    await page.locator("#metric-chart", { hasText: "Nothing to plot." }).waitFor();
    expect(await page.textContent("#metric-chart-note")).toContain("loss of 0 artifact(s)");
    // An artifact without metrics has no chart.
    await open(page, (await t.client().listArtifacts({ filter: { kind: "log", provenance: { runId } } })).artifacts[0]!);
    expect(await page.locator("#metric-panel").count()).toBe(0);
    expect(problems).toEqual([]);
    await close();
  });

  it("reviews, pins and deletes after an in-page confirmation, and shows the server's refusals", async () => {
    const scope = randomBytes(3).toString("hex");
    const artifact = await save({ kind: "model", name: `review-${scope}.bin` });
    const { page, problems, close } = await openPage();
    await open(page, artifact);
    const offered = () =>
      page.locator("#review-actions button[data-action]").evaluateAll((buttons) => buttons.map((button) => button.getAttribute("data-action")));
    const act = async (action: string, done: string) => {
      await page.click(`#action-${action}`);
      await page.locator("#action-confirm").waitFor();
      await page.click("#action-confirm-yes");
      await page.locator("#action-result", { hasText: done }).waitFor();
    };
    expect(await offered()).toEqual(["review", "pin", "delete"]);

    // Cancel: nothing is sent.
    await page.click("#action-review");
    expect(await page.textContent("#action-confirm-question")).toContain("goes from draft to review");
    await page.click("#action-confirm-no");
    expect(await page.isHidden("#action-confirm")).toBe(true);
    expect((await readBack(artifact.id)).status).toBe(Status.DRAFT);

    await act("review", "Sent to review.");
    expect((await readBack(artifact.id)).status).toBe(Status.REVIEW);
    expect(await offered()).toEqual(["approve", "reject", "draft", "pin", "delete"]);
    await act("reject", "Rejected.");
    expect((await readBack(artifact.id)).status).toBe(Status.REJECTED);
    expect(await offered()).toEqual(["draft", "pin", "delete"]);
    await act("draft", "Back to draft.");
    expect((await readBack(artifact.id)).status).toBe(Status.DRAFT);
    await act("review", "Sent to review.");
    await act("approve", "Approved.");
    expect((await readBack(artifact.id)).status).toBe(Status.APPROVED);
    // Approved is final: no status change is offered.
    expect(await offered()).toEqual(["pin", "delete"]);
    expect(await page.textContent("#detail-body")).toMatch(/Statusapproved/);

    await act("pin", "Pinned.");
    expect((await readBack(artifact.id)).pinned).toBe(true);
    // The server refuses to delete a pinned artifact: its message is shown, the artifact stays.
    await page.click("#action-delete");
    await page.click("#action-confirm-yes");
    await page
      .locator("#action-error", { hasText: `Delete refused: [failed_precondition] artifact ${artifact.id} is pinned: unpin it before deleting it` })
      .waitFor();
    expect((await readBack(artifact.id)).deletedAt).toBeUndefined();
    await act("unpin", "Unpinned.");
    expect((await readBack(artifact.id)).pinned).toBe(false);
    await act("delete", "Deleted.");
    expect((await readBack(artifact.id)).deletedAt).toBeDefined();
    expect(await offered()).toEqual([]);
    expect(await page.textContent("#review-actions")).toContain("Deleted: nothing more can be done with it.");
    expect(problems).toEqual([]);
    await close();

    // A read-only token sees the buttons, but the server says no, plainly.
    const readOnly = await createApiToken(t.app.metadata, "alpha", `viewer-${scope}`, { scope: "read-only" });
    const draft = await save({ kind: "model", name: `viewer-${scope}.bin` });
    const viewer = await openPage(readOnly.token);
    await open(viewer.page, draft);
    await viewer.page.click("#action-review");
    await viewer.page.click("#action-confirm-yes");
    await viewer.page
      .locator("#action-error", { hasText: "Send to review refused: [permission_denied] this token is read-only and cannot change an artifact's status" })
      .waitFor();
    await viewer.page.click("#action-pin");
    await viewer.page.click("#action-confirm-yes");
    await viewer.page
      .locator("#action-error", { hasText: "Pin refused: [permission_denied] this token is read-only and cannot pin or unpin artifacts" })
      .waitFor();
    const after = await readBack(draft.id);
    expect([after.status, after.pinned]).toEqual([Status.DRAFT, false]);
    expect(viewer.problems).toEqual([]);
    await viewer.close();
  });

  it("previews PDF, audio and video on signed links that answer byte ranges, and CSV as a table of text", async () => {
    const upload = async (name: string, mimeType: string, data: Buffer) => {
      async function* messages() {
        yield { message: { case: "header" as const, value: { spec: { kind: "media", name, mimeType } } } };
        yield { message: { case: "chunk" as const, value: data } };
      }
      return (await t.client().upload(messages())).artifact!;
    };
    const pdf = Buffer.from(minimalPdf());
    const wav = silentWav(8_000, 0.5);
    const video = randomBytes(4_096);
    const { page, problems, close } = await openPage();

    const media: Array<[Artifact, string, Buffer]> = [
      [await upload("paper.pdf", "application/pdf", pdf), "#preview-pdf", pdf],
      [await upload("tone.wav", "audio/wav", wav), "#preview-audio", wav],
      [await upload("clip.mp4", "video/mp4", video), "#preview-video", video],
    ];
    for (const [artifact, selector, data] of media) {
      await open(page, artifact);
      const element = page.locator(selector);
      await element.waitFor({ state: "attached" });
      if (selector !== "#preview-pdf") expect(await element.getAttribute("controls")).toBe("");
      const src = (await element.getAttribute("src"))!;
      expect(src.startsWith(`${t.url}/download/v1/`)).toBe(true);
      const ranged = await fetch(src, { headers: { Range: "bytes=10-99" } });
      expect(ranged.status).toBe(206);
      expect(ranged.headers.get("content-range")).toBe(`bytes 10-99/${data.length}`);
      expect(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(10, 100))).toBe(true);
    }
    // The audio really loads under the page's CSP: Chromium read the WAV header through the signed link.
    await open(page, media[1]![0]);
    await expect.poll(() => page.evaluate("document.getElementById('preview-audio').duration")).toBeCloseTo(0.5, 2);
    // A PDF is inline only to a frame of the service's own pages; the same link is a download anywhere else.
    // The page's frame gets the PDF inline (a download would be collected as a problem).
    const framedResponse = page.waitForResponse((response) => response.url().includes("/download/v1/") && response.request().resourceType() === "document");
    await open(page, media[0]![0]);
    expect((await framedResponse).headers()["content-disposition"]).toMatch(/^inline; filename="paper\.pdf"/);
    const pdfSrc = (await page.getAttribute("#preview-pdf", "src"))!;
    const framed = await fetch(pdfSrc, { headers: { "Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "same-origin" } });
    expect(framed.headers.get("content-disposition")).toMatch(/^inline; filename="paper\.pdf"/);
    expect(framed.headers.get("content-security-policy")).toBe("default-src 'none'; sandbox; frame-ancestors 'self'");
    expect(framed.headers.get("vary")).toBe("Sec-Fetch-Dest, Sec-Fetch-Site");
    expect(Buffer.from(await framed.arrayBuffer()).equals(pdf)).toBe(true);
    for (const headers of [
      {},
      { "Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "cross-site" },
      { "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "same-origin" },
    ]) {
      const response = await fetch(pdfSrc, { headers });
      expect(response.headers.get("content-disposition")).toMatch(/^attachment; /);
      await response.body?.cancel();
    }

    // CSV: quoted commas, quotes and line breaks, markup as text, the first 50 rows.
    const lines = ['name,"note, with comma",html', '"a ""quoted"" name","two\nlines",<b id=injected>bold</b>'];
    for (let row = 1; row <= 60; row++) lines.push(`row-${row},${row * 2},x`);
    const csv = await save({ kind: "table", name: "table.csv", mimeType: "text/csv" }, `${lines.join("\r\n")}\r\n`);
    await open(page, csv);
    const table = page.locator("#preview-csv");
    await table.waitFor();
    expect(await table.locator("thead th").allTextContents()).toEqual(["name", "note, with comma", "html"]);
    const rows = await table.locator("tbody tr").evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
    expect(rows).toHaveLength(49);
    expect(rows[0]).toEqual(['a "quoted" name', "two\nlines", "<b id=injected>bold</b>"]);
    expect(rows[48]).toEqual(["row-48", "96", "x"]);
    expect(await page.locator("#injected").count()).toBe(0);
    expect(await page.textContent("#preview")).toContain("The first 50 rows");
    expect(problems).toEqual([]);
    await close();
  });
});

/** A one-page PDF with no content: enough for a viewer to open. */
function minimalPdf(): string {
  const objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>", "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>"];
  let body = "%PDF-1.4\n";
  const offsets: number[] = [];
  objects.forEach((object, index) => {
    offsets.push(body.length);
    body += `${index + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xref = body.length;
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((offset) => `${String(offset).padStart(10, "0")} 00000 n \n`).join("")}`;
  return `${body}trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
}

/** Silence as 8-bit mono PCM WAV. */
function silentWav(sampleRate: number, seconds: number): Buffer {
  const samples = Math.round(sampleRate * seconds);
  const header = Buffer.alloc(44);
  header.write("RIFF", 0, "ascii");
  header.writeUInt32LE(36 + samples, 4);
  header.write("WAVEfmt ", 8, "ascii");
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(sampleRate, 28);
  header.writeUInt16LE(1, 32);
  header.writeUInt16LE(8, 34);
  header.write("data", 36, "ascii");
  header.writeUInt32LE(samples, 40);
  return Buffer.concat([header, Buffer.alloc(samples, 0x80)]);
}
