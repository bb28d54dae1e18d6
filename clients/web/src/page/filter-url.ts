/**
 * The applied filter lives in the query string (`?status=approved&q=loss`),
 * so a filtered view survives a reload, can be bookmarked or shared, and is
 * still there when the user comes back from an artifact (whose view is the
 * `#/artifacts/<id>` hash; the query string is left as it is by that route).
 * The token never goes here: it is a secret and stays in the browser's
 * storage (token-bar.ts). Whatever the query string holds, restoring it never
 * throws: URLSearchParams decodes leniently, and fields only take values
 * their type allows (filter-form.ts then names a field that is still wrong).
 */

/** Writes the form's non-empty fields into the URL, without a reload or a history entry per filter. */
export function saveFormToUrl(form: HTMLFormElement): void {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) {
    if (typeof value === "string" && value.trim() !== "") params.set(name, value.trim());
  }
  const query = params.toString();
  const search = query ? `?${query}` : "";
  if (search === location.search) return;
  history.replaceState(history.state, "", `${location.pathname}${search}${location.hash}`);
}

/** Fills the form from the URL's query string; unknown names are ignored. */
export function restoreFormFromUrl(form: HTMLFormElement): void {
  for (const [name, value] of new URLSearchParams(location.search)) {
    const field = form.elements.namedItem(name);
    if (field instanceof HTMLInputElement && field.type === "checkbox") field.checked = value !== "";
    else if (field instanceof HTMLInputElement || field instanceof HTMLSelectElement) field.value = value;
  }
}
