/**
 * The page's routes, read from the URL's hash:
 *
 *   (empty), #, #/        the artifact list
 *   #/artifacts/<id>      one artifact's view
 *
 * Links are typed, pasted and shared by people, so anything else — a
 * percent-escape that does not decode (`#/artifacts/%E0`), an id that is not
 * an artifact id, a path the page does not have — is an `invalid` route the
 * page shows as such, rather than an exception in the router or a request
 * the server can only refuse.
 */
export type PageRoute = { readonly view: "list" } | { readonly view: "artifact"; readonly id: string } | { readonly view: "invalid"; readonly reason: string };

/** An artifact id: a 3–5 letter type prefix, `_`, 26 base-32 characters (as the service makes them). */
const ARTIFACT_ID = /^[a-z]{3,5}_[0-9abcdefghjkmnpqrstvwxyz]{26}$/;
/** Longest hash quoted back in a reason: the link is the user's, but need not fill the screen. */
const SHOWN_MAX = 80;

export function parsePageRoute(hash: string): PageRoute {
  if (hash === "" || hash === "#" || hash === "#/") return { view: "list" };
  const shown = JSON.stringify(hash.length > SHOWN_MAX ? `${hash.slice(0, SHOWN_MAX)}…` : hash);
  const match = /^#\/artifacts\/([^/]*)$/.exec(hash);
  if (!match) return { view: "invalid", reason: `${shown} is not a page of this site` };
  let id: string;
  try {
    id = decodeURIComponent(match[1]!);
  } catch {
    return { view: "invalid", reason: `${shown} holds a percent-escape that does not decode to text` };
  }
  if (!ARTIFACT_ID.test(id)) return { view: "invalid", reason: `${shown} does not name an artifact id (like art_01jd…)` };
  return { view: "artifact", id };
}
