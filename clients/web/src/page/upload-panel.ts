import type { Artifact } from "@artifactd/api/artifacts/v1/artifact_pb.js";
import type { UploadProgress } from "../upload-file.ts";
import type { WebArtifactClient } from "../web-artifact-client.ts";
import { artifactHref, byId, h } from "./dom.ts";
import { errorMessage, formatBytes, parseLabels } from "./format.ts";

const MiB = 1024 * 1024;

/**
 * The upload form: one file at a time, a progress bar and a cancel button.
 * An upload cut short (reload, lost connection, error) resumes when the same
 * file is uploaded again with the same metadata: only missing parts are sent.
 *
 * The progress element carries data-phase and data-uploaded-bytes, for
 * scripts and tests that watch an upload.
 */
export function createUploadPanel(client: WebArtifactClient, onUploaded: (artifact: Artifact) => void) {
  const form = byId<HTMLFormElement>("upload-form");
  const fileInput = byId<HTMLInputElement>("upload-file");
  const kind = byId<HTMLInputElement>("upload-kind");
  const name = byId<HTMLInputElement>("upload-name");
  const labels = byId<HTMLInputElement>("upload-labels");
  const runId = byId<HTMLInputElement>("upload-run-id");
  const partSize = byId<HTMLInputElement>("upload-part-size");
  const concurrency = byId<HTMLInputElement>("upload-concurrency");
  const start = byId<HTMLButtonElement>("upload-start");
  const cancel = byId<HTMLButtonElement>("upload-cancel");
  const bar = byId<HTMLProgressElement>("upload-progress");
  const status = byId("upload-status");
  let running: AbortController | undefined;

  const setStatus = (...children: Array<Node | string>) => status.replaceChildren(...children);
  const show = (progress: UploadProgress) => {
    const total = progress.totalBytes;
    const done = progress.phase === "hashing" ? progress.hashedBytes : progress.uploadedBytes;
    bar.value = total === 0 ? 1 : done / total;
    bar.dataset.phase = progress.phase;
    bar.dataset.uploadedBytes = String(progress.uploadedBytes);
    const of = `${formatBytes(done)} of ${formatBytes(total)}`;
    if (progress.phase === "hashing") setStatus(`Hashing… ${of}`);
    else if (progress.phase === "uploading") setStatus(`Uploading… ${of}`);
    else setStatus("Verifying and saving…");
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = fileInput.files?.[0];
    if (!file || running) return;
    let spec;
    try {
      spec = {
        kind: kind.value.trim(),
        name: name.value.trim(),
        labels: parseLabels(labels.value),
        ...(runId.value.trim() ? { provenance: { runId: runId.value.trim() } } : {}),
      };
    } catch (error) {
      setStatus(errorMessage(error));
      return;
    }
    const controller = new AbortController();
    running = controller;
    start.disabled = true;
    cancel.disabled = false;
    bar.value = 0;
    bar.dataset.phase = "hashing";
    client
      .uploadFile(file, spec, {
        partSize: Math.round(Number(partSize.value) * MiB),
        concurrency: Number(concurrency.value),
        signal: controller.signal,
        onProgress: show,
      })
      .then(
        (result) => {
          bar.value = 1;
          bar.dataset.phase = "done";
          const artifact = result.artifact;
          const note =
            result.partsSkipped > 0
              ? ` (resumed: ${result.partsSkipped} part(s) were already stored)`
              : result.deduplicated
                ? " (the content was already stored)"
                : "";
          setStatus("Uploaded ", h("a", { id: "upload-result", href: artifactHref(artifact.id) }, artifact.name || artifact.id), note);
          onUploaded(artifact);
        },
        (error: unknown) => {
          bar.dataset.phase = "failed";
          if (controller.signal.aborted) setStatus("Cancelled; the uploaded parts were discarded.");
          else setStatus(`Upload failed: ${errorMessage(error)}. Upload the same file again to resume.`);
        },
      )
      .finally(() => {
        running = undefined;
        start.disabled = false;
        cancel.disabled = true;
      });
  });
  cancel.addEventListener("click", () => running?.abort(new DOMException("the upload was cancelled", "AbortError")));
}
