/**
 * Element building for the page. Text always goes in as text nodes
 * (textContent), never as markup: artifact names, labels and content come
 * from uploads and must never be parsed as HTML.
 */
export type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Readonly<Record<string, string | boolean | undefined>> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...nodes(children));
  return element;
}

export function nodes(children: readonly Child[]): Node[] {
  const out: Node[] = [];
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    out.push(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
  return out;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
}

/** Links are made where they are read (page-route.ts, free of the DOM); re-exported for the views. */
export { artifactHref } from "./page-route.ts";

/** A <dl> of the entries whose value is not empty. */
export function definitionList(entries: ReadonlyArray<readonly [string, Child]>, empty = "none"): HTMLElement {
  const shown = entries.filter(([, value]) => value !== "" && value !== null && value !== undefined && value !== false);
  if (shown.length === 0) return h("p", { class: "muted" }, empty);
  return h("dl", {}, ...shown.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, built like h(): attributes as given, text children as text nodes. */
export function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: Readonly<Record<string, string | number | undefined>> = {},
  ...children: Child[]
): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== undefined) element.setAttribute(name, String(value));
  }
  element.append(...nodes(children));
  return element;
}

/** Text cut to `max` characters with an ellipsis, for labels drawn in a fixed width. */
export function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
