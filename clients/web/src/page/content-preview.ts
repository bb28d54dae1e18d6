import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { WebArtifactClient } from "../web-artifact-client.ts";
import { parseCsv } from "./csv-parse.ts";
import { csvTable } from "./csv-table.ts";
import { h } from "./dom.ts";
import { errorMessage, formatBytes } from "./format.ts";

/** Text previews read at most this much (one ranged request). */
const TEXT_PREVIEW_BYTES = 256 * 1024;
const IMAGE_PREVIEW_MAX_BYTES = 64 * 1024 * 1024;
/** Rows of a CSV file shown as a table (the header row included). */
export const CSV_PREVIEW_ROWS = 50;

export type PreviewKind = "image" | "pdf" | "audio" | "video" | "csv" | "json" | "text";

/**
 * Previews of uploaded content, all through signed URLs:
 * - images in an <img> (an image context never runs scripts, SVG included);
 * - PDF in an <iframe> on the signed link: the link answers a PDF inline to
 *   a frame, under a CSP sandbox, so the browser's PDF viewer shows it and
 *   nothing in it runs in the page's origin;
 * - audio and video in <audio controls> / <video controls> on the signed
 *   link (the link answers byte ranges, so seeking works);
 * - CSV as a table of its first rows, every cell as text;
 * - text and JSON fetched and shown with textContent in a <pre>. HTML,
 *   XML and SVG sources count as text here: uploaded markup is never
 *   rendered, only shown.
 * Anything else gets no preview.
 */
export function previewKind(mimeType: string): PreviewKind | undefined {
  const type = mimeType.split(";")[0]!.trim().toLowerCase();
  if (/^image\/(png|jpeg|gif|webp|avif|bmp|svg\+xml|x-icon|vnd\.microsoft\.icon)$/.test(type)) return "image";
  if (type === "application/pdf") return "pdf";
  if (/^audio\/[a-z0-9.+-]+$/.test(type)) return "audio";
  if (/^video\/[a-z0-9.+-]+$/.test(type)) return "video";
  if (type === "text/csv" || type === "application/csv") return "csv";
  if (type === "application/json" || type.endsWith("+json") || type === "application/x-ndjson") return "json";
  if (type.startsWith("text/") || /^application\/(xml|yaml|x-yaml|toml|javascript|x-sh|sql)$/.test(type) || type.endsWith("+xml")) return "text";
  return undefined;
}

export async function renderPreview(client: WebArtifactClient, artifact: Artifact, signedUrl: string, signal: AbortSignal): Promise<HTMLElement> {
  const kind = previewKind(artifact.mimeType);
  const size = Number(artifact.sizeBytes);
  if (!kind) return h("p", { class: "muted" }, `No preview for ${artifact.mimeType || "this type"}.`);
  if (size === 0) return h("p", { class: "muted" }, "The content is empty.");
  if (kind === "image") {
    if (size > IMAGE_PREVIEW_MAX_BYTES) return h("p", { class: "muted" }, `The image is too large to preview (${formatBytes(size)}).`);
    return h("img", { id: "preview-image", class: "preview-image", src: signedUrl, alt: artifact.title || artifact.name || artifact.id });
  }
  const title = artifact.title || artifact.name || artifact.id;
  if (kind === "pdf") return h("iframe", { id: "preview-pdf", class: "preview-pdf", src: signedUrl, title });
  if (kind === "audio") return h("audio", { id: "preview-audio", class: "preview-media", src: signedUrl, controls: true, preload: "metadata", title });
  if (kind === "video") return h("video", { id: "preview-video", class: "preview-media", src: signedUrl, controls: true, preload: "metadata", title });
  try {
    const partial = size > TEXT_PREVIEW_BYTES;
    const response = await client.download(artifact.id, partial ? { length: TEXT_PREVIEW_BYTES, signal } : { signal });
    const bytes = new Uint8Array(await response.arrayBuffer());
    let text = new TextDecoder("utf-8").decode(bytes);
    if (kind === "csv") {
      const { rows, more } = parseCsv(text, CSV_PREVIEW_ROWS, !partial);
      return h(
        "div",
        {},
        csvTable(rows),
        more ? h("p", { class: "muted" }, `The first ${rows.length} rows of ${formatBytes(size)}; download for the rest.`) : null,
      );
    }
    if (kind === "json" && !partial) {
      try {
        text = JSON.stringify(JSON.parse(text), null, 2);
      } catch {
        // Not valid JSON after all: show it as it is.
      }
    }
    const pre = h("pre", { id: "preview-text", class: "preview-text" });
    pre.textContent = text;
    return h(
      "div",
      {},
      pre,
      partial ? h("p", { class: "muted" }, `The first ${formatBytes(TEXT_PREVIEW_BYTES)} of ${formatBytes(size)}; download for the rest.`) : null,
    );
  } catch (error) {
    if (signal.aborted) throw error;
    return h("p", { class: "error" }, `The preview failed: ${errorMessage(error)}`);
  }
}
