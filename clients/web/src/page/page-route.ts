import { parseArtifactReference } from "@artifactd/api";

/**
 * The page's routes, read from the URL's hash:
 *
 *   (empty), #, #/           the artifact list
 *   #/artifacts/<id>         one artifact's view
 *   #/artifacts/<reference>  the artifact a reference names now
 *                            (orders:latest, team/orders@v3, artifact://…)
 *
 * Links are typed, pasted and shared by people, so anything else — a
 * percent-escape that does not decode (`#/artifacts/%E0`), text that is
 * neither an artifact id nor a reference, a path the page does not have — is
 * an `invalid` route the page shows as such, rather than an exception in the
 * router or a request the server can only refuse.
 */
export type PageRoute =
  | { readonly view: "list" }
  | { readonly view: "artifact"; readonly id: string }
  | { readonly view: "reference"; readonly reference: string }
  | { readonly view: "invalid"; readonly reason: string };

/** Longest hash quoted back in a reason: the link is the user's, but need not fill the screen. */
const SHOWN_MAX = 80;

export function parsePageRoute(hash: string): PageRoute {
  if (hash === "" || hash === "#" || hash === "#/") return { view: "list" };
  const shown = JSON.stringify(hash.length > SHOWN_MAX ? `${hash.slice(0, SHOWN_MAX)}…` : hash);
  const match = /^#\/artifacts\/(.*)$/.exec(hash);
  if (!match) return { view: "invalid", reason: `${shown} is not a page of this site` };
  let text: string;
  try {
    text = decodeURIComponent(match[1]!);
  } catch {
    return { view: "invalid", reason: `${shown} holds a percent-escape that does not decode to text` };
  }
  const parsed = parseArtifactReference(text);
  if (parsed.kind === "malformed") {
    return {
      view: "invalid",
      reason: `${shown} does not name an artifact id (like art_01jd…) or a reference (like orders:latest, orders@v3): ${parsed.problem}`,
    };
  }
  // An id, with or without artifact://, is opened as the id; anything else is resolved by the server.
  return parsed.kind === "id" ? { view: "artifact", id: parsed.id } : { view: "reference", reference: text };
}

/**
 * A link to an artifact's view, by id or by reference. Encoded, but the
 * `:`, `@` and `/` of a reference (`team/orders:production`) are left as
 * they are: a fragment may hold them, and the link stays readable.
 */
export function artifactHref(idOrReference: string): string {
  return `#/artifacts/${encodeURIComponent(idOrReference).replace(/%3A/gi, ":").replace(/%40/gi, "@").replace(/%2F/gi, "/")}`;
}
