import { createWebArtifactClient } from "../web-artifact-client.ts";
import { createArtifactDetail } from "./artifact-detail.ts";
import { createArtifactList } from "./artifact-list.ts";
import { artifactHref, byId } from "./dom.ts";
import { parsePageRoute } from "./page-route.ts";
import { createTokenBar } from "./token-bar.ts";
import { createUploadPanel } from "./upload-panel.ts";

/**
 * The page: a token bar with an "open" field, an upload form, the artifact
 * list, and one artifact's view at `#/artifacts/<id or reference>` (routes:
 * page-route.ts; a link that is not one of them gets a "Not a valid link"
 * view). It talks to the service that
 * served it (same origin), so the page's CSP can allow only 'self'.
 */
const message = byId("message");
function showError(text: string): void {
  message.textContent = text;
  message.hidden = false;
}
function clearError(): void {
  message.hidden = true;
  message.textContent = "";
}

const tokenBar = createTokenBar(() => {
  clearError();
  void list.refresh();
  route();
});
const client = createWebArtifactClient({ baseUrl: location.origin, token: tokenBar.token });
const list = createArtifactList(client, showError);
const detail = createArtifactDetail(client, showError);
createUploadPanel(client, () => void list.refresh());

const invalidLink = byId("invalid-link");
const invalidLinkReason = byId("invalid-link-reason");

function route(): void {
  const current = parsePageRoute(location.hash);
  invalidLink.hidden = current.view !== "invalid";
  if (current.view === "artifact") {
    list.show(false);
    void detail.show(current.id);
  } else if (current.view === "reference") {
    list.show(false);
    void detail.show(current.reference, undefined, true);
  } else if (current.view === "invalid") {
    detail.hide();
    list.show(false);
    invalidLinkReason.textContent = `This link cannot be opened: ${current.reason}.`;
  } else {
    detail.hide();
    list.show(true);
  }
}
// An id or a reference typed or pasted: opened through the route, so the link can be shared and a bad one is explained there.
const openForm = byId<HTMLFormElement>("open-form");
const openInput = byId<HTMLInputElement>("open-ref");
openForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = openInput.value.trim();
  if (text === "") return;
  const hash = artifactHref(text);
  // The same link again (the alias may have moved since): no hashchange, so route by hand.
  if (location.hash === hash) route();
  else location.hash = hash;
});

window.addEventListener("hashchange", () => {
  clearError();
  route();
});

if (!tokenBar.token()) showError("Enter an API token (adt_…) to see this tenant's artifacts.");
else void list.refresh();
route();
