import type { ArtifactFilterInit } from "@artifactd/api";
import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { WebArtifactClient } from "../web-artifact-client.ts";
import { artifactHref, h, svg } from "./dom.ts";
import { errorMessage, versionedName } from "./format.ts";
import { bestValue, formatMetric, type MetricPoint } from "./metric-values.ts";

/** The most points one chart plots: the newest this many of the population. */
export const MAX_POINTS = 300;
const PAGE_SIZE = 100;
const WIDTH = 640;
const HEIGHT = 240;
const PAD = { left: 64, right: 16, top: 14, bottom: 26 };

/**
 * A set of artifacts to compare one artifact with: a ListArtifacts filter
 * (plotted oldest to newest), or the versions of a versioned name
 * (ListVersions, plotted in version order).
 */
export type MetricPopulation = {
  /** Stable key, the value of the population picker. */
  readonly key: string;
  /** What the user picks, e.g. `Same run (run-42)`. */
  readonly label: string;
} & ({ readonly filter: ArtifactFilterInit } | { readonly versionsOf: { readonly project: string; readonly name: string } });

/**
 * Where populations come from: each source offers one for an artifact, or
 * none when it does not apply (an artifact without a run has no "same run").
 * Another source (the versions of a name, say) is one more entry here.
 */
export type PopulationSource = (artifact: Artifact) => MetricPopulation | undefined;

export const POPULATION_SOURCES: readonly PopulationSource[] = [
  // First, so a versioned artifact is compared with its own versions unless another is picked.
  (artifact) =>
    artifact.version > 0n
      ? {
          key: "versions",
          label: `Versions of ${versionedName(artifact)}`,
          versionsOf: { project: artifact.project, name: artifact.name },
        }
      : undefined,
  (artifact) => {
    const runId = artifact.provenance?.runId;
    return runId ? { key: "run", label: `Same run (${runId})`, filter: { provenance: { runId } } } : undefined;
  },
  (artifact) => (artifact.kind ? { key: "kind", label: `Same kind (${artifact.kind})`, filter: { kind: artifact.kind } } : undefined),
];

/**
 * The population's artifacts that have the metric, oldest to newest by
 * created_at (or by version number, for a name's versions): at most
 * MAX_POINTS, the newest ones when there are more.
 */
export async function loadMetricPoints(
  client: WebArtifactClient,
  population: MetricPopulation,
  metric: string,
): Promise<{ points: MetricPoint[]; truncated: boolean }> {
  if ("versionsOf" in population) return loadVersionPoints(client, population.versionsOf, metric);
  const filter: ArtifactFilterInit = { ...population.filter, metricRanges: [{ name: metric }] };
  const newestFirst: Artifact[] = [];
  let pageToken = "";
  do {
    const page = await client.list(filter, { pageSize: Math.min(PAGE_SIZE, MAX_POINTS - newestFirst.length), pageToken });
    newestFirst.push(...page.artifacts);
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && newestFirst.length < MAX_POINTS);
  const points = newestFirst
    .slice(0, MAX_POINTS)
    .reverse()
    .map((artifact) => ({ id: artifact.id, name: artifact.name || artifact.title || artifact.id, value: artifact.metrics[metric]! }))
    .filter((point) => Number.isFinite(point.value));
  return { points, truncated: pageToken !== "" };
}

/**
 * The versions of a name that have the metric, in version order: of the
 * newest MAX_POINTS versions not deleted (ListVersions lists them newest
 * first and has no metric filter, so the cap counts versions, not points).
 */
async function loadVersionPoints(
  client: WebArtifactClient,
  name: { readonly project: string; readonly name: string },
  metric: string,
): Promise<{ points: MetricPoint[]; truncated: boolean }> {
  const newestFirst: Artifact[] = [];
  let pageToken = "";
  do {
    const page = await client.rpc.listVersions({ ...name, pageSize: Math.min(PAGE_SIZE, MAX_POINTS - newestFirst.length), pageToken });
    newestFirst.push(...page.versions);
    pageToken = page.nextPageToken;
  } while (pageToken !== "" && newestFirst.length < MAX_POINTS);
  const points = newestFirst
    .slice(0, MAX_POINTS)
    .filter((version) => Number.isFinite(version.metrics[metric]))
    .sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : 0))
    .map((version) => ({ id: version.id, name: `v${version.version}`, value: version.metrics[metric]!, version: Number(version.version) }));
  return { points, truncated: pageToken !== "" };
}

/**
 * A line and point chart of one metric across artifacts, oldest (or the
 * lowest version) left. The
 * current artifact's point is highlighted; the best point(s) are ringed.
 * Points are links to their artifacts, with data-artifact-id, data-version
 * (for versions), data-value, data-best and data-current.
 */
export function metricChart(points: readonly MetricPoint[], options: { metric: string; currentId: string; lowerIsBetter: boolean }): SVGSVGElement {
  const best = bestValue(points, options.lowerIsBetter);
  const values = points.map((point) => point.value);
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (low === high) {
    // One value: give the axis some height so the point sits in the middle.
    const spread = Math.abs(low) * 0.1 || 1;
    low -= spread;
    high += spread;
  }
  const plotWidth = WIDTH - PAD.left - PAD.right;
  const plotHeight = HEIGHT - PAD.top - PAD.bottom;
  const x = (index: number) => PAD.left + (points.length === 1 ? plotWidth / 2 : (index * plotWidth) / (points.length - 1));
  const y = (value: number) => PAD.top + ((high - value) * plotHeight) / (high - low);

  // A name's versions are placed in version order, and the ends say which versions they are.
  const byVersion = points.length > 0 && points.every((point) => point.version !== undefined);
  const [first, last] = byVersion ? [`v${points[0]!.version}`, `v${points.at(-1)!.version}`] : ["oldest", "newest"];
  const chart = svg("svg", {
    id: "metric-chart-svg",
    class: "metric-chart",
    width: WIDTH,
    height: HEIGHT,
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    "aria-label": `${options.metric} of ${points.length} ${byVersion ? "version(s), by version" : "artifact(s), oldest to newest"}`,
  });
  for (const tick of [high, (low + high) / 2, low]) {
    chart.append(
      svg("line", { class: "metric-grid", x1: PAD.left, x2: WIDTH - PAD.right, y1: y(tick), y2: y(tick) }),
      svg("text", { class: "metric-axis", x: PAD.left - 6, y: y(tick) + 4, "text-anchor": "end" }, formatMetric(tick)),
    );
  }
  chart.append(
    svg("text", { class: "metric-axis", x: PAD.left, y: HEIGHT - 6 }, first),
    svg("text", { class: "metric-axis", x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end" }, last),
  );
  if (points.length > 1) {
    chart.append(svg("polyline", { class: "metric-line", points: points.map((point, index) => `${x(index)},${y(point.value)}`).join(" ") }));
  }
  points.forEach((point, index) => {
    const isBest = point.value === best;
    const isCurrent = point.id === options.currentId;
    const classes = ["metric-point", isBest ? "best" : "", isCurrent ? "current" : ""].filter(Boolean).join(" ");
    chart.append(
      svg(
        "a",
        {
          class: classes,
          href: artifactHref(point.id),
          "data-artifact-id": point.id,
          "data-version": point.version === undefined ? undefined : String(point.version),
          "data-value": String(point.value),
          "data-best": String(isBest),
          "data-current": String(isCurrent),
        },
        isBest ? svg("circle", { class: "metric-best-ring", cx: x(index), cy: y(point.value), r: 9 }) : null,
        svg("circle", { cx: x(index), cy: y(point.value), r: isCurrent ? 6 : 4 }),
        svg("title", {}, `${point.name} (${point.id}): ${options.metric} = ${point.value}${isBest ? ", best" : ""}${isCurrent ? ", this artifact" : ""}`),
      ),
    );
  });
  return chart;
}

/**
 * The chart panel of an artifact with metrics: pickers for the metric, the
 * population and which way is better, the chart, and a line saying what is
 * plotted. Returns undefined for an artifact without metrics.
 */
export function createMetricChartPanel(client: WebArtifactClient, artifact: Artifact, signal: AbortSignal): HTMLElement | undefined {
  const metrics = Object.keys(artifact.metrics).sort((a, b) => a.localeCompare(b));
  const populations = POPULATION_SOURCES.map((source) => source(artifact)).filter((population) => population !== undefined);
  if (metrics.length === 0 || populations.length === 0) return undefined;

  const metricPicker = h("select", { id: "metric-name" }, ...metrics.map((name) => h("option", { value: name }, name)));
  const populationPicker = h(
    "select",
    { id: "metric-population" },
    ...populations.map((population) => h("option", { value: population.key }, population.label)),
  );
  const lowerIsBetter = h("input", { id: "metric-lower-better", type: "checkbox" });
  const plot = h("div", { id: "metric-chart", class: "metric-chart-box" });
  const note = h("p", { id: "metric-chart-note", class: "muted", role: "status" });
  let generation = 0;

  async function draw(): Promise<void> {
    const mine = ++generation;
    const metric = metricPicker.value;
    const population = populations.find((candidate) => candidate.key === populationPicker.value)!;
    note.textContent = "Loading…";
    try {
      const { points, truncated } = await loadMetricPoints(client, population, metric);
      if (mine !== generation || signal.aborted) return;
      const lower = lowerIsBetter.checked;
      // Deleted artifacts are not listed: a deleted one's population may hold none.
      plot.replaceChildren(
        points.length > 0 ? metricChart(points, { metric, currentId: artifact.id, lowerIsBetter: lower }) : h("p", { class: "muted" }, "Nothing to plot."),
      );
      const best = bestValue(points, lower);
      note.textContent =
        `${metric} of ${points.length} ${"versionsOf" in population ? "version(s)" : "artifact(s)"}, ${population.label.toLowerCase()}, ` +
        `${"versionsOf" in population ? "by version" : "oldest to newest"}` +
        `${truncated ? ` (the newest ${MAX_POINTS})` : ""}; best (${lower ? "lowest" : "highest"}): ${best === undefined ? "none" : formatMetric(best)}.`;
    } catch (error) {
      if (mine !== generation || signal.aborted) return;
      plot.replaceChildren();
      note.textContent = "";
      note.append(h("span", { class: "error" }, `The chart could not be loaded: ${errorMessage(error)}`));
    }
  }
  for (const control of [metricPicker, populationPicker, lowerIsBetter]) control.addEventListener("change", () => void draw());
  void draw();
  return h(
    "div",
    { id: "metric-panel" },
    h(
      "div",
      { class: "grid chart-controls" },
      h("label", {}, "Metric ", metricPicker),
      h("label", {}, "Compared with ", populationPicker),
      h("label", { class: "check" }, lowerIsBetter, " Lower is better"),
    ),
    plot,
    note,
  );
}
